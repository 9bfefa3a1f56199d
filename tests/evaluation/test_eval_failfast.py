"""A wrong --data-dir is reported before any model is loaded (no 3 s TensorFlow start-up for a typo)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.support.eval_graphs import install, registry_entry
from zoo_cli.cli.app import cli


@pytest.fixture
def installed_voc(zoo_home, tmp_path, monkeypatch):
    registry = tmp_path / "reg.yaml"
    registry.write_text("version: 1\ncheckpoints:\n" + registry_entry("tiny_voc", "voc", 21, 255))
    install(zoo_home, "tiny_voc", b"not even a graph: it must never be read")
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the dataset was checked")

    monkeypatch.setattr("zoo_cli.graph.runner.FrozenGraphModel", no_model)


@pytest.mark.parametrize("layout,message", [
    (None, "does not exist; pass the dataset root to --data-dir"),
    ("empty", "JPEGImages does not exist; point --data-dir at VOCdevkit/VOC2012"),
    ("no_split", "ImageSets/Segmentation/val.txt does not exist"),
    ("missing_label", "(label of a, listed in val.txt) does not exist"),
    ("empty_split", "ImageSets/Segmentation/val.txt lists no images; it needs one image id per line"),
])
def test_bad_data_dir_fails_before_the_model_loads(installed_voc, tmp_path, layout, message):
    root = tmp_path / "data"
    if layout is not None:
        root.mkdir()
    if layout in ("no_split", "missing_label", "empty_split"):
        (root / "JPEGImages").mkdir()
        (root / "JPEGImages" / "a.jpg").write_bytes(b"")
    if layout == "missing_label":
        (root / "ImageSets" / "Segmentation").mkdir(parents=True)
        (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    if layout == "empty_split":
        (root / "ImageSets" / "Segmentation").mkdir(parents=True)
        (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    result = CliRunner().invoke(cli, ["eval", "tiny_voc", "--data-dir", str(root)])
    assert result.exit_code in (2, 7), result.output
    assert result.output.startswith("Error: ") and message in result.output
    assert result.output.count("\n") == 1


@pytest.mark.parametrize("extra,message", [
    (["--shard", "3/4"], "--shard 3/4 selects none of the 2 voc val images in "),
    (["--limit", "1", "--shard", "1/2"], "--limit 1 and --shard 1/2 select none of the 2 voc val images"),
])
def test_a_shard_that_selects_nothing_names_only_the_options_given(installed_voc, tmp_path, extra, message):
    from tests.support.datasets import make_voc

    make_voc(tmp_path / "voc", n=2)
    result = CliRunner().invoke(cli, ["eval", "tiny_voc", "--data-dir", str(tmp_path / "voc"), *extra])
    assert result.exit_code == 7, result.output
    assert message in result.output and "None" not in result.output
