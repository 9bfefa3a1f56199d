"""``zoo eval --data-dir``: a wrong data dir fails before any model loads, and results are saved per setting
(runs with other scales/flip/crop never overwrite each other) with the registry's rows marked.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.datasets import make_voc
from tests.support.eval_graphs import install, registry_entry, tiny_voc, tiny_voc_graph  # noqa: F401 (fixtures)
from zoo_cli.cli.app import cli
from zoo_cli.evaluation.settings import default_results_dir, setting_slug

# ---------------------------------------------------------------- a wrong --data-dir is reported before any model
# is loaded (no 3 s TensorFlow start-up for a typo)


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


# ---------------------------------------------------------------- results are saved per setting: runs with other
# scales/flip/crop never overwrite each other


@pytest.fixture
def zoo(tiny_voc):

    def run_json(*args):
        result = CliRunner().invoke(cli, ["eval", "tiny_voc", *map(str, args), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return run_json


def test_slugs():
    assert setting_slug((1.0,), False) == "single-scale"
    assert setting_slug((0.75, 1.0, 1.25), True) == "scales-0.75-1-1.25-flip"
    assert setting_slug((1.0,), True) == "scales-1-flip"
    assert setting_slug((0.5, 1.0), False, (513, 513), (513, 513)) == "scales-0.5-1"
    assert setting_slug((1.0,), False, (1000, 1000), (513, 513)) == "single-scale-crop1000x1000"
    assert default_results_dir("/r", None, "/m/g/frozen.pb", "voc", "val", (0, 4), setting="scales-1-flip").as_posix() \
        == "/r/g/voc-val/scales-1-flip-shard0of4"


def test_runs_at_other_settings_keep_their_own_results(zoo, tmp_path, zoo_home):
    make_voc(tmp_path / "voc", n=3, size=(24, 32))
    base = zoo_home / "results" / "tiny_voc" / "voc-val"
    runs = {
        "single-scale": zoo("--data-dir", tmp_path / "voc"),
        "scales-0.5-1-flip": zoo("--data-dir", tmp_path / "voc", "--scales", "0.5,1", "--flip"),
        "single-scale-crop48x48": zoo("--data-dir", tmp_path / "voc", "--crop", "48,48"),
    }
    for slug, data in runs.items():
        assert data["setting"] == slug
        assert data["confusion_matrix"] == str(base / slug / "confusion.npy")
        saved = json.loads((base / slug / "metrics.json").read_text())
        assert saved["miou"] == data["miou"] and saved["scales"] == data["scales"] and saved["flip"] == data["flip"]
        assert np.load(base / slug / "confusion.npy").sum() == data["pixels"]
    # the single-scale result is still the single-scale one after the other runs
    first = json.loads((base / "single-scale" / "metrics.json").read_text())
    assert (first["scales"], first["flip"], first["eval_settings"]["eval_crop"]) == ([1.0], False, [40, 40])


def test_reported_row_is_marked_only_when_the_crop_matches_too(zoo, tmp_path):
    make_voc(tmp_path / "voc", n=2, size=(24, 32))
    same = zoo("--data-dir", tmp_path / "voc")  # the graph's crop 40x40 (the entry has no eval_crop)
    row = next(r for r in same["reported"] if r["scales"] == [1.0])
    assert row["matches_run"] and not row["crop_differs"]
    other = zoo("--data-dir", tmp_path / "voc", "--crop", "48,48")
    row = next(r for r in other["reported"] if r["scales"] == [1.0])
    assert not row["matches_run"] and row["crop_differs"]
    assert not any(r["matches_run"] for r in other["reported"])
    human = CliRunner().invoke(cli, ["eval", "tiny_voc", "--data-dir", str(tmp_path / "voc"), "--crop", "48,48",
                                     "--out", str(tmp_path / "r")], terminal_width=200)
    assert human.exit_code == 0, human.output
    assert "←" not in human.output and "[crop differs]" in human.output
    scales_reordered = zoo("--data-dir", tmp_path / "voc", "--scales", "1,0.75,0.5", "--flip")
    assert [r["matches_run"] for r in scales_reordered["reported"]] == [False, True]


def test_reported_rows_unit():
    from types import SimpleNamespace

    from zoo_cli.evaluation.results import reported_rows
    from zoo_cli.registry.types import EvalRow

    rows = [EvalRow(output_stride=16, scales=(1.0,), flip=False, madds_billion=None, runtime_s=None,
                    latency_ms=None, miou=70.0, pixel_accuracy=None, split="val")]
    ckpt = SimpleNamespace(evals=rows, reported_on=None)
    assert reported_rows(ckpt, (1.0,), False, (513, 513), (513, 513))[0]["matches_run"]
    got = reported_rows(ckpt, (1.0,), False, (1000, 1000), (513, 513))[0]
    assert (got["matches_run"], got["crop_differs"]) == (False, True)
    got = reported_rows(ckpt, (1.0,), True, (1000, 1000), (513, 513))[0]
    assert (got["matches_run"], got["crop_differs"]) == (False, False)
