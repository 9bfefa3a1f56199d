"""The classes a checkpoint is scored on: a graph with the wrong class count is refused, the registry's
num_classes / class_names / ignore_label rule when the checkpoint was trained on the dataset's layout.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from tests.registry.test_registry import GOOD_ENTRY, error_of, registry_text
from tests.support.datasets import make_voc, naive_metrics
from tests.support.eval_graphs import (  # noqa: F401 (tiny_voc_graph: a fixture)
    build_graph,
    install,
    install_tiny_voc,
    registry_entry,
    tiny_voc_graph,
)
from zoo_cli.cli.app import cli
from zoo_cli.evaluation.palettes import get_palette
from zoo_cli.registry.catalog import parse_registry

# ---------------------------------------------------------------- a wrong class count is refused right after the
# graph loads, in both modes, before any re-targeting


@pytest.fixture(scope="module")
def four_class_graph():
    return build_graph(crop=(40, 40), num_classes=4).SerializeToString()


@pytest.fixture
def zoo_four_classes(zoo_home, tmp_path, monkeypatch, four_class_graph):
    (tmp_path / "g4.pb").write_bytes(four_class_graph)
    install_tiny_voc(zoo_home, tmp_path, monkeypatch, four_class_graph)

    def no_predictor(*args, **kwargs):
        raise AssertionError("a predictor (re-targeted graph) was built before the class count was checked")

    monkeypatch.setattr("zoo_cli.evaluation.predictors.make_predictor", no_predictor)
    return lambda *args: CliRunner().invoke(cli, ["eval", *map(str, args)])


@pytest.mark.parametrize("source", [["tiny_voc"], ["tiny_voc", "--graph", "{t}/g4.pb"]])
@pytest.mark.parametrize("mode", ["images", "data-dir"])
def test_wrong_class_count_is_refused_in_both_modes(zoo_four_classes, tmp_path, source, mode):
    make_voc(tmp_path / "voc", n=1)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "p.png")
    target = (["--images", tmp_path / "p.png", "--out", tmp_path / "o"] if mode == "images"
              else ["--data-dir", tmp_path / "voc"])
    args = [a.format(t=tmp_path) for a in source]
    result = zoo_four_classes(*args, *target, "--scales", "0.5,1", "--flip")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: the graph predicts 4 classes but the registry entry tiny_voc says "
                                    "num_classes 21")
    assert not (tmp_path / "o").exists()


def test_images_with_dataset_but_no_checkpoint_is_checked(zoo_four_classes, tmp_path):
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "p.png")
    result = zoo_four_classes("--graph", tmp_path / "g4.pb", "--dataset", "voc", "--images", tmp_path / "p.png",
                              "--out", tmp_path / "o")
    assert result.exit_code == 2 and "predicts 4 classes but voc has 21" in result.output


# ---------------------------------------------------------------- a class set that is not the layout's
# ``zoo eval`` with a checkpoint whose class set is not its dataset layout's (the 4-class demo in the VOC layout):
# the registry's num_classes and class_names rule, and ``--images`` runs the graph as exported by default.
# Uses the shipped demo model (its frozen graph installed straight into the cache) and val set; expected numbers
# come from the graph's own predictions scored by tests.support.datasets.naive_metrics.


REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "zoo_cli" / "demo"
VAL = DEMO / "voc"
NAMES = ["background", "circle", "square", "triangle"]


@pytest.fixture(scope="module")
def demo_graph_bytes() -> bytes:
    (archive,) = DEMO.glob("*.tar.gz")
    with tarfile.open(archive, "r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("frozen_inference_graph.pb"))
        return tar.extractfile(member).read()


@pytest.fixture(scope="module")
def demo_predictions(demo_graph_bytes, tmp_path_factory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (ground truth, the exported graph's labels at scale 1) for every shipped val image."""
    from zoo_cli.graph.runner import FrozenGraphModel

    path = tmp_path_factory.mktemp("demo") / "frozen_inference_graph.pb"
    path.write_bytes(demo_graph_bytes)
    out = {}
    with FrozenGraphModel(path) as model:
        for image in sorted((VAL / "JPEGImages").glob("*.jpg")):
            gt = np.asarray(Image.open(VAL / "SegmentationClass" / f"{image.stem}.png"))
            out[image.stem] = (gt, model.predict(np.asarray(Image.open(image).convert("RGB"))))
    return out


def _registry(tmp_path: Path, *, class_names: list[str] | None = NAMES, num_classes: int = 4,
              multiscale_first: bool = False) -> Path:
    data = yaml.safe_load((DEMO / "registry.yaml").read_text())
    entry = data["checkpoints"][0]
    entry["num_classes"] = num_classes
    entry.pop("class_names", None)
    if class_names is not None:
        entry["class_names"] = class_names
    if multiscale_first:  # a checkpoint whose default eval row (first at the graph's OS 8) is scales + flip
        entry["evals"] = sorted(entry["evals"], key=lambda r: -len(r["scales"]))
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def zoo_demo(zoo_home, monkeypatch, demo_graph_bytes):
    install(zoo_home, "demo_shapes", demo_graph_bytes)

    def invoke(registry: Path, *args: object):
        return CliRunner().invoke(cli, ["--registry", str(registry), "eval", "demo_shapes", *map(str, args)])

    return invoke


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_registry_num_classes_and_class_names_for_the_demo_model(zoo_demo, tmp_path, demo_predictions):
    data = _json(zoo_demo(_registry(tmp_path), "--data-dir", VAL, "--json"))
    miou, iou, acc = naive_metrics(list(demo_predictions.values()), 4, 255)
    assert data["num_classes"] == 4 and data["dataset"] == "voc"
    assert list(data["per_class_iou"]) == NAMES
    for name, value in zip(NAMES, iou):
        assert data["per_class_iou"][name] == pytest.approx(value * 100, abs=1e-3)
    assert data["miou"] == pytest.approx(miou * 100, abs=1e-3)
    assert data["pixel_accuracy"] == pytest.approx(acc * 100, abs=1e-3)
    assert np.load(data["confusion_matrix"]).shape == (4, 4)
    # the recorded single-scale number of the shipped registry (what 'zoo demo' checks too)
    assert data["scales"] == [1.0] and not data["flip"]
    assert data["miou"] == pytest.approx(90.88, abs=0.1)
    # the demo's reported numbers come from zoo's build script, not the seed's machine, and say so
    assert all("build_demo_model.py" in row["reported_on"] for row in data["reported"])
    human = zoo_demo(_registry(tmp_path), "--data-dir", VAL, "--limit", "1")
    assert human.exit_code == 0, human.output
    assert "(seed)" not in human.output and "reported (registry): zoo's tools/build_demo_model.py" in human.output


def test_without_class_names_the_dataset_palette_names_are_used(zoo_demo, tmp_path):
    data = _json(zoo_demo(_registry(tmp_path, class_names=None), "--data-dir", VAL, "--json", "--limit", "2"))
    assert list(data["per_class_iou"]) == list(get_palette("voc").class_names[:4])


def test_class_count_mismatch_names_the_registry_entry(zoo_demo, tmp_path):
    result = zoo_demo(_registry(tmp_path, class_names=None, num_classes=5), "--data-dir", VAL)
    assert result.exit_code == 2
    assert "predicts 4 classes" in result.output and "demo_shapes says num_classes 5" in result.output


def test_images_default_to_the_graph_as_exported(zoo_demo, tmp_path, demo_predictions):
    registry = _registry(tmp_path, multiscale_first=True)
    images = sorted((VAL / "JPEGImages").glob("*.jpg"))[:3]
    repeated = [arg for image in images for arg in ("--images", image)]
    data = _json(zoo_demo(registry, *repeated, "--out", tmp_path / "out", "--json"))
    settings = data["eval_settings"]
    assert settings["scales"] == [1.0] and settings["flip"] is False and settings["eval_crop"] == [129, 129]
    assert settings["row"] is None and settings["source"] == "the graph as exported"
    assert data["class_names"] == NAMES
    for image, record in zip(images, data["images"]):
        labels = np.asarray(Image.open(record["labels"]))
        assert np.array_equal(labels, demo_predictions[image.stem][1])  # exactly one run of the graph
        ids, counts = np.unique(labels, return_counts=True)
        assert record["classes"] == {NAMES[i]: int(c) for i, c in zip(ids, counts)}
    human = zoo_demo(registry, "--images", images[0], "--out", tmp_path / "out2")
    assert human.exit_code == 0, human.output
    assert "scale 1, no flip, crop 129x129 (the graph as exported)" in human.output


def test_images_take_row_or_options_when_given_and_data_dir_keeps_the_row_default(zoo_demo, tmp_path):
    registry = _registry(tmp_path, multiscale_first=True)
    image = sorted((VAL / "JPEGImages").glob("*.jpg"))[0]
    row = _json(zoo_demo(registry, "--images", image, "--out", tmp_path / "a", "--row", "1", "--json"))["eval_settings"]
    assert row["scales"] == [0.75, 1.0, 1.25] and row["flip"] is True and row["source"] == "eval row 1"
    flip = _json(zoo_demo(registry, "--images", image, "--out", tmp_path / "b", "--flip", "--json"))["eval_settings"]
    assert flip["scales"] == [1.0] and flip["flip"] is True
    assert flip["source"] == "the graph as exported, --flip given"
    data = _json(zoo_demo(registry, "--data-dir", VAL, "--limit", "1", "--json"))
    assert data["scales"] == [0.75, 1.0, 1.25] and data["flip"] is True
    assert data["eval_settings"]["source"] == "eval row 1"


def test_bare_graph_with_an_unknown_class_count_gets_generic_names(zoo_home, tmp_path):
    """The QA case: a 4-class --graph without NAME/--dataset was labelled aeroplane... in VOC colours."""
    from tests.support.eval_graphs import write_graph
    from zoo_cli.evaluation.palettes import generic_palette

    graph = tmp_path / "g" / "frozen_inference_graph.pb"
    graph.parent.mkdir()
    write_graph(graph, crop=(40, 40), num_classes=4)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    args = ["eval", "--graph", str(graph), "--images", str(tmp_path / "p.png"), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "aeroplane" not in result.output and "class " in result.output
    assert "no known dataset's count" in result.output and "--dataset" in result.output
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)
    assert data["palette"] == "generic" and data["class_names"] == ["class 0", "class 1", "class 2", "class 3"]
    assert set(data["images"][0]["classes"]) <= set(data["class_names"])
    assert data["notes"]
    png = Image.open(data["images"][0]["labels"])
    assert png.getpalette()[: 3 * 4] == generic_palette(4).png_palette()[: 3 * 4]
    # --dataset names the layout: its class count is then checked (4 is not Cityscapes' 19)
    result = CliRunner().invoke(cli, [*args, "--dataset", "cityscapes"])
    assert result.exit_code == 2 and "4 classes" in result.output


# ---------------------------------------------------------------- registry num_classes / ignore_label
# validated when the registry loads, and used by the evaluation


def _entry(extra: str) -> str:
    return GOOD_ENTRY.replace("    eval_crop: [65, 65]\n", "    eval_crop: [65, 65]\n" + extra)


@pytest.mark.parametrize("extra,why", [
    ("    num_classes: -3\n", "-3 is out of range 1-256"),
    ("    num_classes: 0\n", "0 is out of range 1-256"),
    ("    num_classes: 300\n", "300 is out of range 1-256"),
    ("    num_classes: 21\n    ignore_label: 1000\n", "1000 is out of range 0-255"),
    ("    num_classes: 21\n    ignore_label: -1\n", "-1 is out of range 0-255"),
    ("    num_classes: 21\n    ignore_label: 7\n", "7 is a class id"),
])
def test_registry_refuses_impossible_class_fields(extra, why):
    message = error_of(registry_text(_entry(extra)))
    assert why in message and "reg.yaml" in message


@pytest.mark.parametrize("extra", ["    num_classes: 21\n    ignore_label: 255\n",
                                   "    num_classes: 151\n    ignore_label: 0\n",   # ADE20K: 0 is 'other'
                                   "    num_classes: 21\n    ignore_label: 21\n"])
def test_registry_accepts_real_ignore_labels(extra):
    ckpt = parse_registry(registry_text(_entry(extra)), "reg.yaml").get("tiny_voc")
    assert ckpt.ignore_label in (255, 0, 21)


def test_eval_scores_without_the_registry_ignore_label(zoo_home, tmp_path, monkeypatch, tiny_voc_graph):
    """A VOC-layout set whose label files mark unlabelled pixels with 21 (not 255): the registry says so, and the
    evaluation leaves exactly those pixels out and reports 21 (it used to report the layout's 255 always)."""
    gts = make_voc(tmp_path / "voc", n=2)
    expected_pixels = 0
    palette = None
    for name, (_, gt) in gts.items():
        path = tmp_path / "voc" / "SegmentationClass" / f"{name}.png"
        palette = Image.open(path).getpalette()
        relabelled = np.where(gt == 255, 21, gt).astype(np.uint8)
        image = Image.fromarray(relabelled, mode="P")
        image.putpalette(palette)
        image.save(path)
        expected_pixels += int((relabelled != 21).sum())
    reg = tmp_path / "registry.yaml"
    reg.write_text("version: 1\ncheckpoints:\n" + registry_entry("tiny_voc", "voc", 21, 21))
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    install(zoo_home, "tiny_voc", tiny_voc_graph)
    result = CliRunner().invoke(cli, ["eval", "tiny_voc", "--data-dir", str(tmp_path / "voc"), "--json",
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ignore_label"] == 21 and data["pixels"] == expected_pixels
