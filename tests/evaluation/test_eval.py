"""``zoo eval`` end to end: dataset mIOU against an independent computation, shards, images, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.support.datasets import decoded, make_ade20k, make_cityscapes, make_voc, naive_metrics
from tests.support.eval_graphs import build_graph, install, quantize_red, registry_entry
from zoo_cli.cli.app import cli
from zoo_cli.evaluation.palettes import get_palette


@pytest.fixture(scope="module")
def graph_bytes():
    return {
        "voc": build_graph(crop=(40, 40), num_classes=21).SerializeToString(),
        "cityscapes": build_graph(crop=(41, 49), num_classes=19).SerializeToString(),
        "ade20k": build_graph(crop=(33, 33), num_classes=151).SerializeToString(),
    }


@pytest.fixture
def zoo(zoo_home, tmp_path, monkeypatch, graph_bytes):
    """A registry with three tiny checkpoints, all installed; returns a CLI invoker."""
    reg = tmp_path / "registry.yaml"
    reg.write_text("version: 1\ncheckpoints:\n"
                   + registry_entry("tiny_voc", "voc", 21, 255, miou=61.5)
                   + registry_entry("tiny_city", "cityscapes", 19, 255)
                   + registry_entry("tiny_ade", "ade20k", 151, 0, input_size=(33, 33))
                   + registry_entry("absent_voc", "voc", 21, 255))
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    install(zoo_home, "tiny_voc", graph_bytes["voc"])
    install(zoo_home, "tiny_city", graph_bytes["cityscapes"])
    install(zoo_home, "tiny_ade", graph_bytes["ade20k"])

    def invoke(*args: str):
        return CliRunner().invoke(cli, ["eval", *map(str, args)])

    return invoke


def run_json(zoo, *args):
    result = zoo(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def expected(samples, num_classes, ignore, predict=lambda img: quantize_red(img, 21)):
    pairs = [(gt, predict(decoded(path))) for path, gt in samples.values()]
    return naive_metrics(pairs, num_classes, ignore)


def check(data, exp, class_names):
    miou, iou, acc = exp
    assert data["miou"] == pytest.approx(miou * 100, abs=1e-3)
    assert data["pixel_accuracy"] == pytest.approx(acc * 100, abs=1e-3)
    assert list(data["per_class_iou"]) == list(class_names)
    for name, value in zip(class_names, iou):
        got = data["per_class_iou"][name]
        assert (got is None) if value is None else got == pytest.approx(value * 100, abs=1e-3)


def test_voc_miou_matches_independent_computation(zoo, tmp_path, zoo_home):
    samples = make_voc(tmp_path / "VOC2012", n=5)
    data = run_json(zoo, "tiny_voc", "--data-dir", tmp_path / "VOC2012")
    check(data, expected(samples, 21, 255), get_palette("voc").class_names)
    assert data["num_images"] == 5 and data["scales"] == [1.0] and data["flip"] is False
    saved = Path(data["confusion_matrix"])
    assert saved == zoo_home / "results" / "tiny_voc" / "voc-val" / "single-scale" / "confusion.npy"
    assert np.load(saved).sum() == data["pixels"]
    assert json.loads((saved.parent / "metrics.json").read_text())["miou"] == data["miou"]
    reported = {(tuple(r["scales"]), r["flip"]): r for r in data["reported"]}
    assert reported[((1.0,), False)]["matches_run"] and reported[((1.0,), False)]["miou"] == 61.5
    assert not reported[((0.5, 0.75, 1.0), True)]["matches_run"]


def test_human_output_shows_measured_beside_reported(zoo, tmp_path):
    make_voc(tmp_path, n=2)
    result = zoo("tiny_voc", "--data-dir", tmp_path, "--out", tmp_path / "res")
    assert result.exit_code == 0, result.output
    assert "measured" in result.output and "reported" in result.output and "61.50%" in result.output
    assert "aeroplane" in result.output and (tmp_path / "res" / "confusion.npy").is_file()


def test_cityscapes_label_ids_are_mapped(zoo, tmp_path):
    samples = make_cityscapes(tmp_path, n=3, label_kind="labelIds")
    data = run_json(zoo, "tiny_city", "--data-dir", tmp_path)
    check(data, expected(samples, 19, 255, lambda img: quantize_red(img, 19)), get_palette("cityscapes").class_names)


def test_ade20k_ignores_zero_with_151_classes(zoo, tmp_path):
    samples = make_ade20k(tmp_path, n=3, size=(20, 33))
    data = run_json(zoo, "tiny_ade", "--data-dir", tmp_path)
    exp = expected(samples, 151, 0, lambda img: quantize_red(img, 151))
    check(data, exp, get_palette("ade20k").class_names)
    assert data["num_classes"] == 151 and data["ignore_label"] == 0 and data["long_side"] == 33
    assert data["per_class_iou"]["other"] is not None  # predicted 0 on labelled pixels counts, as the reference


def test_shards_merge_to_the_full_run(zoo, tmp_path):
    make_voc(tmp_path / "voc", n=7)
    full = run_json(zoo, "tiny_voc", "--data-dir", tmp_path / "voc", "--out", tmp_path / "full")
    for k in range(3):
        part = run_json(zoo, "tiny_voc", "--data-dir", tmp_path / "voc", "--shard", f"{k}/3", "--out", tmp_path / f"s{k}")
        assert part["shard"] == [k, 3] and part["num_images"] == len(range(k, 7, 3))
    merged = run_json(zoo, "merge", *(tmp_path / f"s{k}" for k in range(3)), "--out", tmp_path / "merged")
    for key in ("miou", "pixel_accuracy", "per_class_iou", "num_images", "pixels", "scales", "flip"):
        assert merged[key] == full[key], key
    assert merged["warnings"] == []
    assert np.array_equal(np.load(tmp_path / "merged" / "confusion.npy"), np.load(tmp_path / "full" / "confusion.npy"))
    # a missing shard is reported; a repeated one refused
    partial = run_json(zoo, "merge", tmp_path / "s0" / "confusion.npy", tmp_path / "s1")
    assert any("2/3" in w for w in partial["warnings"])
    again = zoo("merge", tmp_path / "s0", tmp_path / "s0", tmp_path / "s1", tmp_path / "s2")
    assert again.exit_code == 2 and "given twice" in again.output


def test_limit_and_jobs_give_the_same_numbers(zoo, tmp_path):
    samples = make_voc(tmp_path, n=6)
    data = run_json(zoo, "tiny_voc", "--data-dir", tmp_path, "--limit", 4, "--jobs", 2, "--threads", 1)
    first4 = dict(list(samples.items())[:4])
    check(data, expected(first4, 21, 255), get_palette("voc").class_names)
    assert data["num_images"] == 4


def test_images_write_palette_labels_and_overlays(zoo, tmp_path):
    rng = np.random.default_rng(5)
    src = tmp_path / "in"
    src.mkdir()
    images = {}
    for i, size in enumerate(((20, 30), (40, 40))):
        img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(img).save(src / f"im{i}.png")
        images[f"im{i}"] = img
    Image.fromarray(images["im0"][..., 0], mode="L").save(src / "gray.png")  # grayscale input
    data = run_json(zoo, "tiny_voc", "--images", src, "--out", tmp_path / "out")
    assert len(data["images"]) == 3 and data["palette"] == "voc"
    for name, img in images.items():
        label = Image.open(tmp_path / "out" / f"{name}.png")
        assert label.mode == "P" and label.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
        assert np.array_equal(np.asarray(label), quantize_red(img, 21))
        overlay = np.asarray(Image.open(tmp_path / "out" / f"{name}_overlay.png"))
        assert overlay.shape == img.shape
    gray = np.asarray(Image.open(tmp_path / "out" / "gray.png"))
    assert np.array_equal(gray, quantize_red(np.repeat(images["im0"][..., :1], 3, axis=2), 21))


def test_large_image_is_shrunk_and_said_so(zoo, tmp_path):
    rng = np.random.default_rng(6)
    Image.fromarray(rng.integers(0, 256, size=(90, 60, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    result = zoo("tiny_voc", "--images", tmp_path / "big.png", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "larger than the graph's crop 40x40" in result.output
    assert np.asarray(Image.open(tmp_path / "o" / "big.png")).shape == (90, 60)


def test_graph_path_without_registry(zoo, tmp_path, graph_bytes):
    (tmp_path / "g.pb").write_bytes(graph_bytes["voc"])
    samples = make_voc(tmp_path / "voc", n=2)
    data = run_json(zoo, "--graph", tmp_path / "g.pb", "--data-dir", tmp_path / "voc", "--out", tmp_path / "r")
    check(data, expected(samples, 21, 255), get_palette("voc").class_names)
    assert data["checkpoint"] is None and data["reported"] == []


def test_explicit_run_subcommand_and_help(zoo, tmp_path):
    make_voc(tmp_path, n=1)
    assert zoo("run", "tiny_voc", "--data-dir", tmp_path, "--json").exit_code == 0
    help_text = zoo("--help").output
    assert "--data-dir" in help_text and "merge FILES" in help_text


@pytest.mark.parametrize("args,code,message", [
    (["absent_voc", "--images", "x.png", "--out", "o"], 5, "zoo download absent_voc"),
    (["tiny_voc"], 2, "either --images"),
    (["tiny_voc", "--images", "x.png"], 2, "--out"),
    (["nonesuch", "--data-dir", "."], 2, "unknown checkpoint"),
    (["tiny_voc", "--data-dir", ".", "--shard", "3/3"], 2, "K must be in 0..N-1"),
    ([], 2, "either --images"),
])
def test_usage_errors(zoo, args, code, message):
    result = zoo(*args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_wrong_dataset_for_the_model(zoo, tmp_path):
    make_voc(tmp_path, n=1)
    result = zoo("tiny_city", "--data-dir", tmp_path, "--dataset", "voc")
    assert result.exit_code == 2 and "predicts 19 classes but voc has 21" in result.output


def test_truncated_dataset_image_names_the_file(zoo, tmp_path):
    samples = make_voc(tmp_path, n=3)
    path = list(samples.values())[1][0]
    path.write_bytes(path.read_bytes()[:200])
    result = zoo("tiny_voc", "--data-dir", tmp_path)
    assert result.exit_code == 7 and path.name in result.output and "truncated" in result.output


def test_label_size_mismatch_names_the_file(zoo, tmp_path):
    make_voc(tmp_path, n=2)
    label = sorted((tmp_path / "SegmentationClass").glob("*.png"))[0]
    Image.fromarray(np.zeros((3, 3), dtype=np.uint8), mode="P").save(label)
    result = zoo("tiny_voc", "--data-dir", tmp_path)
    assert result.exit_code == 7 and label.name in result.output and "does not belong" in result.output


def test_parallelism_plan():
    from zoo_cli.evaluation.predictors import plan_parallelism

    assert plan_parallelism(None, 0, (513, 513), cpus=2) == (2, 1)
    assert plan_parallelism(None, 0, (513, 513), cpus=8) == (2, 4)
    assert plan_parallelism(None, 0, (1025, 2049), cpus=8) == (1, 0)  # big crops: one image at a time
    assert plan_parallelism(None, 0, None, cpus=1) == (1, 0)
    assert plan_parallelism(3, 0, None, cpus=6) == (3, 2)
    assert plan_parallelism(None, 5, (513, 513), cpus=2) == (2, 5)  # explicit threads win


def test_progress_bar_shows_rate_and_running_miou(zoo, tmp_path):
    make_voc(tmp_path, n=3)
    result = zoo("tiny_voc", "--data-dir", tmp_path, "--progress", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "img/s" in result.stderr and "mIOU" in result.stderr and "3/3" in result.stderr
