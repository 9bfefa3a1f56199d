"""``zoo eval --ray`` / ``zoo bench --all --ray`` on one local Ray instance (2 CPUs) started once per session.

The confusion matrices are checked against an independent computation (the tiny graph's labels are known
without TensorFlow) and against the single-process run of the same command.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.archives import checkpoint_files, frozen_graph_bytes, registry_yaml, zoo_archive
from tests.support.datasets import decoded, make_voc
from tests.support.eval_graphs import quantize_red, tiny_voc, tiny_voc_graph  # noqa: F401 (fixtures)
from tests.support.http_server import fault_server  # noqa: F401 (fixture)
from zoo_cli.cli.app import cli

IMAGES = 5  # not a multiple of the 2 workers: uneven shards


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """A 5-image VOC split and its confusion matrix computed without TensorFlow or zoo_cli.evaluation.metrics."""
    root = tmp_path_factory.mktemp("voc")
    samples = make_voc(root, n=IMAGES)
    matrix = np.zeros((21, 21), dtype=np.int64)
    for path, gt in samples.values():
        pred = quantize_red(decoded(path), 21)
        valid = gt != 255
        np.add.at(matrix, (gt[valid], pred[valid]), 1)
    return root, samples, matrix


def zoo(*args, env=None):
    return CliRunner().invoke(cli, ["eval", "tiny_voc", *map(str, args)], env=env)


def run(*args, env=None) -> dict:
    result = zoo(*args, "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def matrix_of(data: dict) -> np.ndarray:
    return np.load(data["confusion_matrix"])


def test_ray_run_is_the_single_process_run(ray_session, tiny_voc, voc, zoo_home):
    root, _, expected = voc
    single = run("--data-dir", root)
    single_matrix = matrix_of(single)
    distributed = run("--data-dir", root, "--ray", "--workers", "2")
    # the same results folder and key, and nothing of the shards left behind
    assert distributed["confusion_matrix"] == single["confusion_matrix"]
    folder = Path(distributed["confusion_matrix"]).parent
    assert sorted(p.name for p in folder.iterdir()) == ["confusion.npy", "metrics.json"]
    assert np.array_equal(matrix_of(distributed), expected)
    assert np.array_equal(single_matrix, expected)
    for key in ("miou", "pixel_accuracy", "per_class_iou", "num_images", "setting", "scales", "flip", "graph",
                "reported", "eval_settings", "graph_output_stride"):
        assert distributed[key] == single[key], key
    assert distributed["ray"]["workers"] == 2 and distributed["ray"]["shards"] == IMAGES
    assert json.loads((folder / "metrics.json").read_text())["miou"] == single["miou"]


def test_multiscale_flip_matches_single_process(ray_session, tiny_voc, tiny_voc_graph, voc, tmp_path):
    root = voc[0]
    graph = tmp_path / "frozen_inference_graph.pb"  # --graph: its bytes reach the workers by the object store
    graph.write_bytes(tiny_voc_graph)
    args = ("--data-dir", root, "--graph", graph, "--scales", "0.75,1", "--flip", "--crop", "44,44")
    single = run(*args, "--out", tmp_path / "single")
    distributed = run(*args, "--out", tmp_path / "ray", "--ray", "--workers", "2")
    assert distributed["scales"] == [0.75, 1.0] and distributed["flip"] is True
    assert distributed["setting"] == single["setting"] == "scales-0.75-1-flip-crop44x44"
    assert np.array_equal(matrix_of(distributed), matrix_of(single))

    def timeless(facts):  # the guard's seconds are a measurement, not part of the result
        return {**facts, "guard": {k: v for k, v in (facts.get("guard") or {}).items() if k != "seconds"}}

    assert timeless(distributed["multiscale"]) == timeless(single["multiscale"])
    assert distributed["multiscale"]["guard"]["pixels_differ"] == 0.0
    assert distributed["per_class_iou"] == single["per_class_iou"]
    assert distributed["graph"] == single["graph"] == str(graph)


def test_corrupt_image_fails_the_run_and_resume_finishes_it(ray_session, tiny_voc, voc, tmp_path):
    from zoo_cli.cluster.eval import SHARDS_PER_WORKER

    root, samples, expected = voc
    shards = min(IMAGES, SHARDS_PER_WORKER)  # one worker's shards: image i is in shard i % shards
    broken = tmp_path / "voc"
    shutil.copytree(root, broken)
    bad = broken / "JPEGImages" / Path(list(samples.values())[shards - 1][0]).name  # alone in the last shard
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 3])
    out = tmp_path / "r"
    # one worker runs its shards in order (uneven: shard 0 holds images 0 and 4), so all shards before the
    # broken image's are saved when it fails
    failed = zoo("--data-dir", broken, "--ray", "--workers", "1", "--out", out)
    assert failed.exit_code == 7, failed.output
    assert str(bad) in failed.stderr and "Traceback" not in failed.output
    assert failed.stderr.count("Error:") == 1
    assert not (out / "metrics.json").exists()  # no final result
    assert len(list((out / "ray-shards").glob("shard-*/confusion.npy"))) == shards - 1
    bad.write_bytes(good)
    resumed = zoo("--data-dir", broken, "--ray", "--workers", "2", "--out", out, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    data = json.loads(resumed.stdout)
    assert data["ray"]["resumed_shards"] == shards - 1 and data["num_images"] == IMAGES
    assert data["ray"]["workers"] == 1  # one shard left for two workers: the idle one was let go
    assert np.array_equal(matrix_of(data), expected)


def test_bench_all_on_ray_stores_results_for_report(ray_session, tiny_voc, zoo_home):
    result = CliRunner().invoke(cli, ["bench", "--all", "--ray", "--runs", "1", "--warmup", "0", "--scales", "1",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["name"] for r in data["results"]] == ["tiny_voc"] and not data["failures"]
    stored = list((zoo_home / "results" / "bench").glob("tiny_voc__single__*.json"))
    assert len(stored) == 1
    conditions = json.loads(stored[0].read_text())["conditions"]
    assert conditions["ray"]["cpus_reserved"] == 2 and "one bench task per node" in conditions["ray"]["isolation"]
    report = CliRunner().invoke(cli, ["report", "--json"])
    assert report.exit_code == 0 and "tiny_voc" in report.stdout


# Last of the Ray runs: Ray's notices of the death arrive late, on the session's stdout.
def test_worker_killed_mid_shard_is_retried_without_counting_twice(ray_session, tiny_voc, voc, tmp_path):
    root, _, expected = voc
    marker = tmp_path / "died"
    data = run("--data-dir", root, "--ray", "--workers", "2", "--out", tmp_path / "r",
               env={"ZOO_TEST_RAY_DIE_ONCE": str(marker)})
    assert marker.exists()  # a worker did exit hard after its first image of a shard
    assert data["num_images"] == IMAGES
    assert np.array_equal(matrix_of(data), expected)


def test_without_ray_installed_the_flag_says_how_to_install(tiny_voc, voc, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # 'import ray' now raises ImportError
    result = zoo("--data-dir", voc[0], "--ray")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: --ray needs Ray, which is not installed; install it with pip install 'zoo-cli[ray]' "
        "(or pip install 'ray>=2.40')"]


def test_plan_workers_fits_the_cluster():
    from zoo_cli.cluster.runtime import plan_workers
    from zoo_cli.errors import UsageError

    assert plan_workers([2], None, 0, 100) == (2, 1)        # one worker per CPU
    assert plan_workers([2], 1, 0, 100) == (1, 2)           # one worker gets the whole node
    assert plan_workers([8, 4], 3, 0, 100) == (3, 4)        # an even share, at most one node each
    assert plan_workers([2], None, 0, 1) == (1, 1)          # never more workers than images
    assert plan_workers([8, 4], None, 0, 100, large=True) == (3, 4)  # large crops: smallest node-sized workers
    with pytest.raises(UsageError, match="does not fit"):
        plan_workers([2], 3, 0, 100)
    with pytest.raises(UsageError, match="no Ray node has 4 CPUs"):
        plan_workers([2, 2], None, 4, 100)


def test_a_node_gets_the_checkpoint_only_verified_against_the_drivers_install(fault_server, tmp_path):
    """The worker side of checkpoint delivery (no Ray needed): install through the mirror pinned to the
    driver's archive hash, reuse a matching install, refuse a changed archive or a different install."""
    import dataclasses

    from zoo_cli.cluster.delivery import graph_source, node_graph
    from zoo_cli.constants import FROZEN_GRAPH
    from zoo_cli.errors import CacheError, ChecksumError
    from zoo_cli.hub.cache import Cache
    from zoo_cli.hub.install import install_checkpoint
    from zoo_cli.registry.catalog import parse_registry

    fault_server.add("models/m.tar.gz", zoo_archive(data_size=1000))
    ckpt = parse_registry(registry_yaml([{"name": "m", "url": "http://zoo.invalid/models/m.tar.gz"}])).get("m")
    mirror = fault_server.base_url
    driver = Cache(tmp_path / "driver")
    install_checkpoint(ckpt, driver, mirror=mirror, progress=False)  # no pin: the hash recorded on first use
    source = graph_source(None, ckpt, driver, mirror=mirror)
    assert source.archive_sha256 == driver.manifest("m")["sha256"]

    node = tmp_path / "node"
    path, _ = node_graph(dataclasses.replace(source, home=str(node)))
    assert path == Cache(node).model_dir("m") / FROZEN_GRAPH
    assert path.read_bytes() == (driver.model_dir("m") / FROZEN_GRAPH).read_bytes()
    assert node_graph(dataclasses.replace(source, home=str(node)))[0] == path  # reused, not fetched again
    assert len(fault_server.requests("models/m.tar.gz")) == 2  # the driver's and the node's downloads

    changed = {**checkpoint_files(data_size=1000), FROZEN_GRAPH: frozen_graph_bytes(num_classes=19)}
    fault_server.add("models/m.tar.gz", zoo_archive(files=changed))  # the server's file changed
    with pytest.raises(ChecksumError, match="nothing was installed"):
        node_graph(dataclasses.replace(source, home=str(tmp_path / "node2")))
    assert not Cache(tmp_path / "node2").is_installed("m")
    other = Cache(tmp_path / "node3")
    install_checkpoint(ckpt, other, mirror=mirror, progress=False)  # holds the changed graph
    with pytest.raises(CacheError, match="not the driver's install"):
        node_graph(dataclasses.replace(source, home=str(other.home)))
