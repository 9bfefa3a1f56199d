"""The public functions behind the commands, called from Python as docs/*.md "From Python" show them.

Each one is checked against an independent computation or against what the matching ``zoo`` command prints
for the same work (the command is now only a printer of these functions' results).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.support.archives import registry_yaml, zoo_archive
from tests.support.datasets import decoded, make_voc, naive_metrics
from tests.support.eval_graphs import build_graph, install, quantize_red, registry_entry
from tests.support.http_server import fault_server  # noqa: F401 - fixture
from zoo_cli.bench import report
from zoo_cli.bench.settings import BenchOptions
from zoo_cli.bench.sweep import bench_checkpoint
from zoo_cli.cli.app import cli
from zoo_cli.errors import CacheError, DownloadError, UnknownCheckpointError, UsageError
from zoo_cli.evaluation import dataset_job, image_job
from zoo_cli.evaluation.palettes import get_palette
from zoo_cli.evaluation.predictors import resolve_graph
from zoo_cli.evaluation.settings import EvalOptions, default_results_dir
from zoo_cli.hub import batch, removal, verify
from zoo_cli.hub.cache import Cache
from zoo_cli.registry.catalog import load_registry

# Values that differ between two runs of the same work.
TIMINGS = ("seconds", "images_per_second")


@pytest.fixture(scope="module")
def voc_graph() -> bytes:
    return build_graph(crop=(40, 40), num_classes=21).SerializeToString()


@pytest.fixture
def tiny(zoo_home, tmp_path, monkeypatch, voc_graph):
    """A registry with one installed tiny VOC checkpoint (and one not installed); returns (registry, cache)."""
    reg = tmp_path / "registry.yaml"
    reg.write_text("version: 1\ncheckpoints:\n" + registry_entry("tiny_voc", "voc", 21, 255, miou=61.5)
                   + registry_entry("absent_voc", "voc", 21, 255))
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    install(zoo_home, "tiny_voc", voc_graph)
    return load_registry(reg), Cache(zoo_home)


def _cli_json(*args):
    result = CliRunner().invoke(cli, [*map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _without_timings(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in TIMINGS}


# ---------------------------------------------------------------- evaluate


def test_evaluate_checkpoint_matches_independent_metrics_and_the_cli(tiny, tmp_path, zoo_home):
    registry, cache = tiny
    samples = make_voc(tmp_path / "VOC2012", n=5)
    ckpt = registry.get("tiny_voc")
    result = dataset_job.evaluate_checkpoint(ckpt, tmp_path / "VOC2012", cache, EvalOptions(progress=False))
    pairs = [(gt, quantize_red(decoded(path), 21)) for path, gt in samples.values()]
    miou, iou, acc = naive_metrics(pairs, 21, 255)
    assert result.summary.miou == pytest.approx(miou * 100, abs=1e-3)
    assert result.summary.pixel_accuracy == pytest.approx(acc * 100, abs=1e-3)
    names = get_palette("voc").class_names
    for name, value in zip(names, iou):
        got = result.summary.per_class_iou[name]
        assert (got is None) if value is None else got == pytest.approx(value * 100, abs=1e-3)
    # Saved where 'zoo eval' saves by default, with the reported rows marked as the command shows them.
    out = zoo_home / "results" / "tiny_voc" / "voc-val" / "single-scale"
    assert result.confusion_path == out / "confusion.npy" and result.metrics_path.is_file()
    first_row = result.extra["reported"][0]
    assert (first_row["miou"], first_row["matches_run"]) == (61.5, True)
    assert result.extra["eval_settings"]["scales"] == list(result.scales) == [1.0]
    # The command prints exactly this result.
    cli = _cli_json("eval", "tiny_voc", "--data-dir", tmp_path / "VOC2012")
    assert _without_timings(cli) == _without_timings(result.to_json())


def test_evaluate_checkpoint_options_shard_text_no_save_and_bare_graph(tiny, tmp_path, voc_graph, zoo_home):
    samples = make_voc(tmp_path / "voc", n=4)
    graph = tmp_path / "g.pb"
    graph.write_bytes(voc_graph)
    result = dataset_job.evaluate_checkpoint(None, tmp_path / "voc", Cache(zoo_home),
                                             EvalOptions(shard="1/2", progress=False), graph_path=graph, save=False)
    chosen = list(samples.values())[1::2]
    pairs = [(gt, quantize_red(decoded(path), 21)) for path, gt in chosen]
    assert result.num_images == 2 and result.shard == (1, 2)
    assert result.summary.miou == pytest.approx(naive_metrics(pairs, 21, 255)[0] * 100, abs=1e-3)
    assert result.checkpoint is None and result.extra["reported"] == []
    assert result.confusion_path is None and not (zoo_home / "results").exists()
    assert default_results_dir(zoo_home / "results", None, graph, "voc", "val", (1, 2)) == \
        zoo_home / "results" / tmp_path.name / "voc-val" / "single-scale-shard1of2"


def test_predict_checkpoint_images_writes_the_labels_the_cli_writes(tiny, tmp_path):
    registry, cache = tiny
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(30, 20, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    run = image_job.predict_checkpoint_images(registry.get("tiny_voc"), [tmp_path / "a.png"], tmp_path / "out",
                                              cache, EvalOptions(progress=False))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), quantize_red(img, 21))
    assert run.settings.source == "the graph as exported" and run.graph_crop == (40, 40)
    assert run.palette.dataset == "voc" and [r.image for r in run.images] == [tmp_path / "a.png"]
    cli = _cli_json("eval", "tiny_voc", "--images", tmp_path / "a.png", "--out", tmp_path / "out")
    assert cli == run.to_json()


def test_resolve_graph_names_the_fix(tiny, tmp_path):
    registry, cache = tiny
    assert resolve_graph(registry.get("tiny_voc"), cache) == cache.model_dir("tiny_voc") / \
        "frozen_inference_graph.pb"
    with pytest.raises(UsageError, match="name a checkpoint"):
        resolve_graph(None, cache)
    with pytest.raises(UsageError, match="does not exist"):
        resolve_graph(None, cache, tmp_path / "missing.pb")
    with pytest.raises(CacheError, match="zoo download absent_voc"):
        resolve_graph(registry.get("absent_voc"), cache)


# ---------------------------------------------------------------- bench


def test_bench_checkpoint_is_what_zoo_bench_prints(tiny, tmp_path):
    registry, cache = tiny
    run = bench_checkpoint(registry.get("tiny_voc"), cache, BenchOptions(runs=1, warmup=0, input_size=(40, 40)))
    assert run.graph == cache.frozen_graph_path(registry.get("tiny_voc"))
    assert run.results[0].setting.scales == (1.0,)
    data = run.to_json()
    assert data["graph"] == str(run.graph) and len(data["settings"]) == len(run.results)
    # Multiply-Adds do not depend on timing: the command reports the same count for the same setting.
    cli = _cli_json("bench", "tiny_voc", "--runs", "1", "--warmup", "0", "--input-size", "40x40", "--no-store")
    assert cli["measured"]["madds_billion"] == data["measured"]["madds_billion"]
    assert [s["setting"] for s in cli["settings"]] == [s["setting"] for s in data["settings"]]
    with pytest.raises(UsageError, match="name a checkpoint"):
        bench_checkpoint(None, cache)


# ---------------------------------------------------------------- fetch: download / verify / rm


@pytest.fixture
def served(fault_server, tmp_path, monkeypatch, zoo_home):  # noqa: F811 - fixture from tests.support
    """Two checkpoints on a local server: 'good', and 'bad' whose pinned sha256 does not match."""
    archive = zoo_archive(data_size=20_000)
    path = tmp_path / "registry.yaml"
    path.write_text(registry_yaml([
        {"name": "good", "url": fault_server.add("m/good.tar.gz", archive)},
        {"name": "bad", "url": fault_server.add("m/bad.tar.gz", archive), "sha256": "0" * 64},
    ]))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return load_registry(path), Cache(zoo_home), hashlib.sha256(archive).hexdigest()


def test_install_checkpoints_records_failures_and_carries_on(served):
    registry, cache, digest = served
    seen, failed = [], []
    outcome = batch.install_checkpoints(registry.resolve(["bad", "good"]), cache, progress=False,
                                        on_installed=lambda r: seen.append(r.name),
                                        on_failed=lambda name, exc: failed.append(name))
    assert [r["status"] for r in outcome.rows] == ["failed", "installed"]
    assert seen == ["good"] and failed == ["bad"] and outcome.results[0].sha256 == digest
    assert outcome.first_error is not None and outcome.first_error.exit_code == 4
    assert cache.is_installed("good") and not cache.model_dir("bad").exists()
    again = batch.install_checkpoints([registry.get("good")], cache, progress=False)
    assert [r.status for r in again.results] == ["present"] and again.first_error is None
    with pytest.raises(DownloadError, match="offline"):
        batch.install_checkpoints([registry.get("bad")], cache, offline=True, stop_on_error=True)


def test_verify_and_remove_checkpoints(served):
    registry, cache, _ = served
    assert verify.verify_checkpoints(registry, cache) == []  # nothing installed yet
    batch.install_checkpoints([registry.get("good")], cache, progress=False)
    (report_,) = verify.verify_checkpoints(registry, cache)
    assert report_.name == "good" and report_.ok and report_.files_checked > 0
    (cache.model_dir("good") / "frozen_inference_graph.pb").write_bytes(b"tampered")
    (bad,) = verify.verify_checkpoints(registry, cache, ["go*"])
    assert not bad.ok and any("frozen_inference_graph.pb" in p for p in bad.problems)
    assert removal.remove_checkpoints(registry, cache, ["bad"])[0]["removed"] == []
    (row,) = removal.remove_checkpoints(registry, cache, everything=True)
    assert row["name"] == "good" and row["removed"] == [str(cache.model_dir("good"))] and row["bytes_freed"] > 0
    assert not cache.model_dir("good").exists()
    assert removal.remove_checkpoints(registry, cache, everything=True) == []
    with pytest.raises(UnknownCheckpointError):
        removal.remove_checkpoints(registry, cache, ["nope"])


# ---------------------------------------------------------------- report


def test_make_report_writes_what_zoo_report_prints(tiny, tmp_path):
    registry, cache = tiny
    run = report.make_report(registry, cache)
    assert run.results == [] and run.out_path is None
    assert run.markdown == report.build_report(registry, [])
    assert _cli_json("report") == run.to_json()
    written = report.make_report(registry, cache, out_path=tmp_path / "r.md")
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == run.markdown
    assert written.to_json()["markdown"] is None and written.to_json()["report"] == str(tmp_path / "r.md")
