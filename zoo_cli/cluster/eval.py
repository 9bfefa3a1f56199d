"""``zoo eval --data-dir DIR --ray``: one evaluation spread over a Ray cluster's workers, with the single-process
run's result.

The split is cut with the ``--shard K/N`` selection (:func:`zoo_cli.evaluation.dataset_job.select`). One actor per
worker loads and re-targets the graph once (:func:`zoo_cli.evaluation.dataset_job.load_eval_runner`, as the
single-process run does) and scores whole shards; a shard's confusion matrix comes back only when the shard is
complete, so a worker that dies mid-shard (Ray restarts it and re-runs the shard) never counts an image twice.
Each finished shard is saved under ``<results>/ray-shards/`` as it arrives (``--resume`` skips those); the
driver sums the matrices as ``zoo eval merge`` does and writes the single-process run's ``metrics.json`` /
``confusion.npy`` to the same folder.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

from zoo_cli.atomic import read_json_object
from zoo_cli.cluster.delivery import GraphSource, check_visible, graph_source, node_graph, renamed_error
from zoo_cli.cluster.runtime import (
    RETRIES,
    Log,
    driver_omp_threads,
    driver_threads_env,
    node_cpus,
    plan_workers,
    ray_cluster,
    ray_get,
)
from zoo_cli.errors import ClusterError, DatasetError, UsageError, ZooError
from zoo_cli.evaluation.settings import EvalOptions
from zoo_cli.hub.cache import Cache
from zoo_cli.registry.types import Checkpoint

SHARDS_DIR = "ray-shards"
PLAN_FILE = "plan.json"
SHARDS_PER_WORKER = 4  # finer shards balance uneven images and lose less work to a crash or Ctrl-C
IN_FLIGHT = 2  # shards queued per actor, so a worker never waits for the driver between shards


def _die_once(marker: str) -> None:
    """Test hook (ZOO_TEST_RAY_DIE_ONCE): the first caller creates ``marker`` and exits its process hard."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)


class ProgressCounter:
    """Images done per shard across all workers; a re-run shard starts again from 0, so none counts twice."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def start(self, shard: int) -> None:
        self.counts[shard] = 0

    def add(self, shard: int) -> None:
        self.counts[shard] = self.counts.get(shard, 0) + 1

    def total(self) -> int:
        return sum(self.counts.values())


class EvalWorker:
    """One Ray actor: loads and re-targets the graph once (on its first call, so a restarted actor reloads it)
    and scores whole shards of the split. The graph source, the dataset and the progress counter come with
    every call, not with the constructor: Ray re-runs a call after a restart with its arguments, and warns
    against restartable actors whose constructor arguments live in the object store."""

    def __init__(self, ckpt: Any, options: EvalOptions, omp_num_threads: str | None,
                 die_once: str | None = None) -> None:
        self.ckpt, self.options, self.omp_num_threads, self.die_once = ckpt, options, omp_num_threads, die_once
        self.runner = self.dataset = None
        self.host = socket.gethostname()

    def _ensure(self, source: GraphSource, dataset: Any) -> Any:
        if self.runner is None:
            import ray

            from zoo_cli.evaluation.dataset_job import load_eval_runner

            self.dataset = dataset
            driver_threads_env(self.omp_num_threads)
            check_visible([dataset.root], dataset.root, self.host)
            path, cleanup = node_graph(source, get_object=ray.get)
            try:
                self.runner = load_eval_runner(path, self.ckpt, dataset, self.options)
            except ZooError as exc:
                raise renamed_error(exc, path, source.path) from None
            finally:
                cleanup()
        return self.runner

    def ready(self, source: GraphSource, dataset: Any) -> dict[str, Any]:
        """Load now; what the driver needs to name and describe the result."""
        from zoo_cli import __version__
        from zoo_cli.evaluation.results import predictor_facts

        runner = self._ensure(source, dataset)
        return {"host": self.host, "version": __version__, "info": runner.model.info, "settings": runner.settings,
                "num_classes": runner.num_classes, "ignore_label": runner.ignore_label,
                "facts": predictor_facts(runner.predictor),
                "long_side": self.dataset.long_side}

    def run_shard(self, k: int, n: int, source: GraphSource, dataset: Any, counter: Any) -> dict[str, Any]:
        """Score shard K/N; the matrix is returned only when every image of it is in."""
        from zoo_cli.evaluation.dataset_job import evaluate_dataset, select

        runner = self._ensure(source, dataset)
        o = self.options
        samples = select(self.dataset.samples, limit=o.limit, shard=(k, n))
        check_visible([p for s in samples for p in (s.image_path, s.label_path)], self.dataset.root, self.host)
        counter.start.remote(k)
        predictor = runner.predictor
        before = predictor.fitted, predictor.enlarged
        cpu = time.process_time()

        def on_image(done: int, _matrix: Any) -> None:
            counter.add.remote(k)
            if self.die_once and done == 1:
                _die_once(self.die_once)  # mid-shard: one image in, the matrix not yet returned

        matrix, count, seconds = evaluate_dataset(
            self.dataset, predictor, limit=o.limit, shard=(k, n), jobs=o.jobs, progress=False,
            on_image=on_image, num_classes=runner.num_classes, ignore_label=runner.ignore_label)
        return {"shard": k, "matrix": matrix.matrix, "images": count, "seconds": seconds, "host": self.host,
                "cpu_seconds": time.process_time() - cpu,
                "fitted": predictor.fitted - before[0],
                "enlarged": predictor.enlarged - before[1]}


def _finished_shards(folder: Path, plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Shards of ``plan`` already saved in ``folder`` (matrix and metrics.json of this plan): K -> metrics."""
    from zoo_cli.evaluation.results import CONFUSION_FILE, METRICS_FILE

    done = {}
    n = plan["shards"]
    for k in range(n):
        d = folder / f"shard-{k}of{n}"
        meta = read_json_object(d / METRICS_FILE)
        if meta is not None and (d / CONFUSION_FILE).is_file() and meta.get("ray_run") == plan:
            done[k] = meta
    return done


def _prepare_shards(out_dir: Path, identity: dict[str, Any], default_n: int, resume: bool,
                    log: Log) -> tuple[Path, dict[str, Any], dict[int, dict[str, Any]]]:
    """The shard folder, the plan (identity + shard count) and the shards already done (``resume``)."""
    from zoo_cli.atomic import write_json_atomic

    folder = out_dir / SHARDS_DIR
    old = read_json_object(folder / PLAN_FILE) if folder.is_dir() else None
    if resume and old is not None:
        differs = sorted(k for k in identity if old.get(k) != identity[k])
        if differs:
            raise UsageError(f"--resume: the unfinished run in {folder} differs in {', '.join(differs)}; run the "
                             "same command as before, or drop --resume to start afresh")
        done = _finished_shards(folder, old)
        log(f"resuming: {len(done)} of {old['shards']} shards already done in {folder}")
        return folder, old, done
    if resume:
        log(f"--resume: no unfinished run in {folder}; starting afresh")
    if folder.exists():
        shutil.rmtree(folder)  # another run's partial shards: never mixed into this one
    plan = {**identity, "shards": default_n}
    folder.mkdir(parents=True)
    write_json_atomic(folder / PLAN_FILE, plan)
    return folder, plan, {}


def evaluate_checkpoint_ray(ckpt: Checkpoint | None, data_dir: Path | str, cache: Cache,
                            options: EvalOptions = EvalOptions(), *, graph_path: Path | str | None = None,
                            out_dir: Path | str | None = None, workers: int | None = None,
                            address: str | None = None, resume: bool = False, mirror: str | None = None,
                            offline: bool = False, shards: int | None = None, die_once: str | None = None,
                            log: Log | None = None) -> Any:
    """``zoo eval NAME --data-dir DIR --ray``: :func:`zoo_cli.evaluation.dataset_job.evaluate_checkpoint` on a Ray cluster.

    Same options and the same result (matrix, ``metrics.json``, results folder), plus: ``workers`` actors
    (default: one per CPU, :func:`plan_workers`) at ``address`` (default ``RAY_ADDRESS``, else a local
    instance), ``shards`` (default 4 per worker), ``resume`` (skip the shards an interrupted run saved),
    ``mirror`` / ``offline`` for nodes that must install the checkpoint, ``die_once`` (test hook: a marker
    file; the first worker to reach it exits mid-shard). Always saves; imports Ray, not TensorFlow.
    """
    from tqdm import tqdm

    from zoo_cli import __version__
    from zoo_cli.evaluation.dataset_job import no_images_message, select
    from zoo_cli.evaluation.datasets import open_eval_dataset
    from zoo_cli.evaluation.metrics import ConfusionMatrix, merge_matrices
    from zoo_cli.evaluation.predictors import LARGE_CROP_PIXELS, plan_parallelism, resolve_graph
    from zoo_cli.evaluation.results import CONFUSION_FILE, build_eval_result, run_setting, save_result
    from zoo_cli.evaluation.settings import default_results_dir, progress_disable

    log = log or (lambda _msg: None)
    limit, progress = options.limit, options.progress
    user_graph = graph_path
    graph_path = resolve_graph(ckpt, cache, graph_path)
    ds = open_eval_dataset(data_dir, ckpt, kind=options.dataset, split=options.split)
    selected = select(ds.samples, limit=limit)
    if not selected:
        raise DatasetError(no_images_message(ds, limit, None))
    if shards is not None and shards < 1:
        raise UsageError("shards must be at least 1")
    started = time.perf_counter()
    with ray_cluster(address) as ray:
        connected = time.perf_counter() - started
        nodes = node_cpus(ray)
        eval_crop = ckpt.eval_crop if ckpt is not None else None
        large = eval_crop is not None and eval_crop[0] * eval_crop[1] > LARGE_CROP_PIXELS
        n_workers, per = plan_workers([c for _, _, c in nodes], workers, options.threads, len(selected), large)
        # --threads is the worker's CPU share here; its images at once split it (never TensorFlow's default of
        # all the node's cores, which several workers on one node would oversubscribe).
        run_jobs, tf_threads = plan_parallelism(options.jobs, 0, eval_crop, cpus=per)
        tf_threads = tf_threads or per
        worker_options = dataclasses.replace(options, threads=tf_threads, inter_threads=options.inter_threads or per,
                                             jobs=run_jobs, progress=False)
        log(f"Ray: {sum(c for _, _, c in nodes)} CPUs on {len(nodes)} node(s); {n_workers} worker(s) x {per} CPU(s), "
            f"{run_jobs} image(s) at once with {tf_threads} TensorFlow thread(s) each")
        source = graph_source(ray, ckpt, cache, user_graph, mirror=mirror, offline=offline)
        counter = ray.remote(num_cpus=0)(ProgressCounter).remote()
        worker_cls = ray.remote(num_cpus=per, max_restarts=RETRIES, max_task_retries=RETRIES)(EvalWorker)
        ds_ref = ray.put(ds)
        actors = [worker_cls.remote(ckpt, worker_options, driver_omp_threads(), die_once) for _ in range(n_workers)]
        try:
            infos = ray_get(ray, [a.ready.remote(source, ds_ref) for a in actors], "loading the graph")
            loaded = time.perf_counter() - started
            stale = sorted({i["host"] for i in infos if i["version"] != __version__})
            if stale:
                raise ClusterError(f"Ray node(s) {', '.join(stale)} run another zoo-cli version than the driver's "
                                   f"{__version__}; install the same version on every node")
            first = infos[0]
            ds.long_side = first["long_side"]
            info = dataclasses.replace(first["info"], path=str(Path(graph_path)))
            settings, num_classes, ignore_label = first["settings"], first["num_classes"], first["ignore_label"]

            def facts(fitted: int, enlarged: int) -> dict[str, Any]:
                out = dict(first["facts"], fitted=fitted)
                if out.get("multiscale") is not None:
                    out["multiscale"] = dict(out["multiscale"], enlarged_images=enlarged)
                return out

            def result_of(matrix: Any, count: int, seconds: float, shard: tuple[int, int] | None,
                          fitted: int, enlarged: int) -> Any:
                return build_eval_result(matrix, count, seconds, dataset=ds, ckpt=ckpt,
                                                  graph_path=graph_path, shard=shard, num_classes=num_classes,
                                                  info=info, settings=settings, facts=facts(fitted, enlarged),
                                                  ignore_label=ignore_label)

            slug = run_setting(ckpt, info, settings, first["facts"])
            if out_dir is None:
                out_dir = default_results_dir(cache.results_dir, ckpt, graph_path, ds.kind, ds.split,
                                                       None, setting=slug)
            out_dir = Path(out_dir)
            identity = {"checkpoint": ckpt.name if ckpt is not None else None, "graph_sha256": source.graph_sha256,
                        "dataset": ds.kind, "split": ds.split, "data_dir": str(Path(data_dir).resolve()),
                        "limit": limit, "images": len(selected), "setting": slug,
                        "eval_settings": settings.to_json()}
            folder, plan, done = _prepare_shards(out_dir, identity,
                                                 shards or min(len(selected), n_workers * SHARDS_PER_WORKER),
                                                 resume, log)
            n = plan["shards"]
            parts: dict[int, tuple[Any, int, int, int]] = {}  # K -> (matrix, images, fitted, enlarged)
            cpu_seconds = 0.0  # the workers' CPU time on this invocation's shards (all their threads)
            for k, meta in done.items():
                matrix = ConfusionMatrix.load(folder / f"shard-{k}of{n}" / CONFUSION_FILE,
                                          meta.get("ignore_label"))
                parts[k] = (matrix, int(meta.get("num_images", 0)), int(meta.get("shrunk_to_fit", 0)),
                            int((meta.get("multiscale") or {}).get("enlarged_images", 0)))
            todo = deque(k for k in range(n) if k not in done)
            actors_used = actors[:max(1, min(len(actors), len(todo)))]
            for extra in actors[len(actors_used):]:
                ray.kill(extra, no_restart=True)  # more workers than shards left: free their CPUs
            resumed = sum(p[1] for p in parts.values())
            bar = tqdm(total=len(selected), initial=resumed, unit="img", disable=progress_disable(progress),
                       desc=f"eval {ds.kind} (ray x{len(actors_used)})", dynamic_ncols=True)
            eval_start = time.perf_counter()
            inflight: dict[Any, tuple[Any, int]] = {}

            def submit(actor: Any) -> None:
                if todo:
                    k = todo.popleft()
                    inflight[actor.run_shard.remote(k, n, source, ds_ref, counter)] = (actor, k)

            try:
                for actor in actors_used:
                    for _ in range(IN_FLIGHT):
                        submit(actor)
                while inflight:
                    ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.25)
                    for ref in ready:
                        actor, k = inflight.pop(ref)
                        out = ray_get(ray, ref, f"scoring shard {k}/{n}")
                        matrix = ConfusionMatrix(num_classes, ignore_label, out["matrix"])
                        part = result_of(matrix, out["images"], out["seconds"], (k, n), out["fitted"],
                                         out["enlarged"])
                        part.extra["ray_run"] = plan
                        part.extra["ray_node"] = out["host"]
                        save_result(part, matrix, folder / f"shard-{k}of{n}")
                        parts[k] = (matrix, out["images"], out["fitted"], out["enlarged"])
                        cpu_seconds += out["cpu_seconds"]
                        submit(actor)
                        running = merge_matrices([p[0] for p in parts.values()])
                        bar.set_postfix_str(f"mIOU {running.mean_iou() * 100:.2f}%", refresh=False)
                    counted = resumed + ray_get(ray, counter.total.remote(), "counting progress")
                    bar.update(max(0, min(counted, len(selected)) - bar.n))
            except KeyboardInterrupt:
                log(f"{len(parts)} of {n} shards are saved in {folder}; the same command with --resume continues")
                raise
            finally:
                bar.close()
                for ref in inflight:  # cancelled before their actors are killed: no retry is attempted
                    ray.cancel(ref)
            seconds = time.perf_counter() - eval_start
            ordered = [parts[k] for k in range(n)]
            total = merge_matrices([p[0] for p in ordered])  # what 'zoo eval merge' sums
            count = sum(p[1] for p in ordered)
            if count == 0:
                raise DatasetError(no_images_message(ds, limit, None))
            result = result_of(total, count, seconds, None, sum(p[2] for p in ordered), sum(p[3] for p in ordered))
        finally:
            for actor in actors:  # on success, an error or Ctrl-C: no remote work outlives the command
                ray.kill(actor, no_restart=True)
            ray.kill(counter, no_restart=True)
    result.extra["ray"] = {"workers": len(actors_used), "cpus_per_worker": per, "tensorflow_threads": tf_threads,
                           "jobs": run_jobs, "shards": n, "resumed_shards": len(done), "resumed_images": resumed,
                           "nodes": sorted({i["host"] for i in infos}), "connect_seconds": round(connected, 3),
                           "ready_seconds": round(loaded, 3), "worker_cpu_seconds": round(cpu_seconds, 3)}
    save_result(result, total, out_dir)
    shutil.rmtree(folder, ignore_errors=True)  # the final result is in; the shards were only for --resume
    return result

