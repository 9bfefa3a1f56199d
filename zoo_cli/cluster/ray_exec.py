"""``zoo eval --ray`` and ``zoo bench --all --ray``: the same work spread over a Ray cluster's CPUs and machines.

Ray is the engine (scheduling, actor restarts, the object store); this module only says what runs where:

* **eval**: the split is cut with the ``--shard K/N`` selection (:func:`zoo_cli.evaluation.dataset_job.select`). One actor
  per worker loads and re-targets the graph once (:func:`zoo_cli.evaluation.dataset_job.load_eval_runner`, as the
  single-process run does) and scores whole shards; a shard's confusion matrix comes back only when the shard
  is complete, so a worker that dies mid-shard (Ray restarts it and re-runs the shard) never counts an image
  twice. Each finished shard is saved under ``<results>/ray-shards/`` as it arrives (``--resume`` skips
  those); the driver sums the matrices as ``zoo eval merge`` does and writes the single-process run's
  ``metrics.json`` / ``confusion.npy`` to the same folder.
* **bench**: one task per checkpoint x setting on one actor per node that reserves all the node's CPUs, so a
  latency is never measured beside another task.
* **checkpoints**: a worker runs the graph its node's cache holds when it hashes to the driver's; otherwise it
  installs it through the normal verified path, pinned to the driver's archive sha256. ``--graph`` bytes
  travel through the object store. **datasets** are read at the driver's path (a shared file system).

Ray is imported only by these functions (never at module import), so commands without ``--ray`` never load it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import time
from collections import deque
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from zoo_cli.errors import CacheError, ChecksumError, ClusterError, DatasetError, UsageError, ZooError

RAY_HINT = "pip install 'zoo-cli[ray]' (or pip install 'ray>=2.40')"
SHARDS_DIR = "ray-shards"
PLAN_FILE = "plan.json"
SHARDS_PER_WORKER = 4  # finer shards balance uneven images and lose less work to a crash or Ctrl-C
IN_FLIGHT = 2  # shards queued per actor, so a worker never waits for the driver between shards
RETRIES = 3  # Ray restarts of a dead worker, and re-runs of the shard it held

Log = Callable[[str], None]


def import_ray() -> Any:
    """The ``ray`` module, or UsageError (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray needs Ray, which is not installed; install it with {RAY_HINT}") from None
    return ray


@contextmanager
def ray_cluster(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Connected Ray: ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), else Ray's own ``RAY_ADDRESS``,
    else a new local instance on this machine (``num_cpus``: its size; default all cores), shut down on exit.
    An already initialised Ray (a test session, a notebook) is used as is and left running."""
    ray = import_ray()
    # Ray prints its notices (e.g. "A worker died ...") on stdout; stdout is for the command's output (--json).
    with redirect_stdout(sys.stderr):
        if ray.is_initialized():
            yield ray
            return
        with _own_cluster(ray, address, num_cpus):
            yield ray


@contextmanager
def _own_cluster(ray: Any, address: str | None, num_cpus: int | None) -> Iterator[None]:
    import logging

    try:
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=True)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError ... here
        where = address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"could not start or reach Ray at {where} ({first}); start a cluster with "
                           "'ray start --head' and pass --ray-address auto, or check --ray-address / RAY_ADDRESS"
                           ) from None
    try:
        yield
    finally:
        ray.shutdown()


def node_cpus(ray: Any) -> list[tuple[str, str, int]]:
    """(node id, host name, CPUs) of every live node that offers CPUs."""
    out = []
    for node in ray.nodes():
        cpus = int(node.get("Resources", {}).get("CPU", 0))
        if node.get("Alive") and cpus > 0:
            out.append((node["NodeID"], node.get("NodeManagerHostname", "?"), cpus))
    return out


def plan_workers(cpus: Sequence[int], workers: int | None, threads: int, images: int,
                 large: bool = False) -> tuple[int, int]:
    """(actors, CPUs per actor) for ``images`` on nodes with ``cpus`` CPUs each.

    ``threads`` > 0 is each worker's CPU share (and TensorFlow threads); else a given ``workers`` splits the
    cluster evenly (at most one node per worker), and the default is one worker per CPU at 1 thread each,
    which measured best for DeepLab on CPUs (docs/eval.md) — or, for a ``large`` crop (memory: the
    Cityscapes graphs need GBs per image), workers the size of the smallest node (one per node when the nodes
    are alike). Never more workers than images.
    """
    if not cpus:
        raise ClusterError("the Ray cluster has no node with CPUs; start one with 'ray start --head'")
    total, biggest = sum(cpus), max(cpus)
    if threads > 0:
        per = threads
    elif workers:
        per = max(1, min(biggest, total // workers))
    else:
        per = min(cpus) if large else 1
    if per > biggest:
        raise UsageError(f"--threads {threads}: no Ray node has {per} CPUs (the largest has {biggest}); "
                         "lower --threads")
    fit = sum(c // per for c in cpus)
    if workers is None:
        workers = fit
    elif workers > fit:
        raise UsageError(f"--workers {workers} x {per} CPU(s) does not fit the Ray cluster ({total} CPUs on "
                         f"{len(cpus)} node(s)); lower --workers or --threads, or add nodes")
    return max(1, min(workers, images)), per


# ---------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class GraphSource:
    """How a worker gets the frozen graph: ``ckpt`` installed verified in the node's cache at ``home``
    (hashing to ``graph_sha256``; installed pinned to ``archive_sha256`` when absent), or the bytes of a
    ``--graph`` file in the object store (``data``, an ObjectRef; ``path`` is the driver's file)."""

    path: str
    graph_sha256: str
    ckpt: Any = None
    archive_sha256: str | None = None
    home: str | None = None
    mirror: str | None = None
    offline: bool = False
    data: Any = None


def graph_source(ray: Any, ckpt: Any | None, cache: Any, graph_path: Path | str | None = None, *,
                 mirror: str | None = None, offline: bool = False) -> GraphSource:
    """The driver's side: the bytes of ``graph_path`` (``--graph``) put in the object store, else what a worker
    needs to get and verify ``ckpt``'s install (the driver's manifest hashes, ``cache``'s home, the mirror and
    offline settings)."""
    from zoo_cli.constants import FROZEN_GRAPH
    from zoo_cli.hub.transfer import sha256_file

    if graph_path is not None:
        graph_path = Path(graph_path)
        data = graph_path.read_bytes()
        return GraphSource(path=str(graph_path), graph_sha256=hashlib.sha256(data).hexdigest(),
                           data=ray.put(data))
    graph_path = Path(cache.frozen_graph_path(ckpt))
    manifest = cache.manifest(ckpt.name) or {}
    files = manifest.get("files")
    entry = files.get(FROZEN_GRAPH) if isinstance(files, dict) else None
    sha = entry.get("sha256") if isinstance(entry, dict) and entry.get("sha256") else None
    return GraphSource(path=str(graph_path), graph_sha256=sha or sha256_file(graph_path).hexdigest(), ckpt=ckpt,
                       archive_sha256=manifest.get("sha256"), home=str(cache.home), mirror=mirror,
                       offline=offline)


def node_graph(source: GraphSource, *, get_object: Callable[[Any], bytes] | None = None,
               log: Log | None = None) -> tuple[Path, Callable[[], None]]:
    """The worker's side: a path to the verified graph on this node and a cleanup to call once it is loaded.

    A node whose cache holds the checkpoint with the driver's graph hash runs it; a node without it installs
    it through :func:`zoo_cli.hub.install.install_checkpoint` pinned to the driver's archive sha256, so nothing
    unverified is ever installed. A node holding a *different* install is an error, not overwritten.
    """
    from zoo_cli.constants import FROZEN_GRAPH
    from zoo_cli.hub.cache import Cache
    from zoo_cli.hub.install import install_checkpoint
    from zoo_cli.hub.transfer import sha256_file

    host = socket.gethostname()
    if source.ckpt is None:
        data = get_object(source.data) if get_object is not None else source.data
        tmp = tempfile.mkdtemp(prefix="zoo-graph-")
        path = Path(tmp) / Path(source.path).name
        path.write_bytes(data)
        return path, lambda: shutil.rmtree(tmp, ignore_errors=True)
    ckpt, cache = source.ckpt, Cache(Path(source.home))
    path = cache.model_dir(ckpt.name) / FROZEN_GRAPH
    if cache.is_installed(ckpt.name) and path.is_file():
        if sha256_file(path).hexdigest() == source.graph_sha256:
            return path, lambda: None
        raise CacheError(f"'{ckpt.name}' on Ray node {host} ({path}) is not the driver's install (its "
                         f"{FROZEN_GRAPH} hashes differently); run 'zoo download {ckpt.name} --force' on that node")
    if not source.archive_sha256:
        raise CacheError(f"the driver's install of '{ckpt.name}' records no archive sha256 to verify node {host}'s "
                         f"download against; run 'zoo download {ckpt.name} --force' on the driver")
    if log is not None:
        log(f"installing '{ckpt.name}' on Ray node {host}")
    pinned = dataclasses.replace(ckpt, sha256=source.archive_sha256)
    install_checkpoint(pinned, cache, mirror=source.mirror, offline=source.offline, progress=False)
    if sha256_file(path).hexdigest() != source.graph_sha256:
        raise ChecksumError(f"'{ckpt.name}' installed on Ray node {host} verifies against the archive sha256 but "
                            f"its {FROZEN_GRAPH} differs from the driver's; run 'zoo download {ckpt.name} --force' "
                            "on the driver and on that node")
    return path, lambda: None


def _renamed(exc: ZooError, tmp: Path, original: str) -> ZooError:
    """``exc`` with the worker's temporary copy of a ``--graph`` file named as the user's path."""
    text = str(exc)
    return type(exc)(text.replace(str(tmp), original)) if str(tmp) in text else exc


def _check_visible(paths: Sequence[Path], root: Path, host: str) -> None:
    for path in paths:
        if not Path(path).exists():
            raise DatasetError(f"{path} is not visible on Ray node {host}; workers read the dataset at the driver's "
                               f"path, so mount it at {root} on every node (a shared file system, see docs/scale.md)")


def _driver_threads_env(value: str | None) -> None:
    """Give this worker the driver's OMP_NUM_THREADS (or none), before TensorFlow is imported.

    Ray sets OMP_NUM_THREADS in its workers; with it set, TensorFlow's CPU kernels round differently (measured:
    a few pixels' ArgMax flip on a random-weight MobileNet-v2), so the worker mirrors the driver to compute
    exactly what the single-process run computes.
    """
    if value is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = value


def _die_once(marker: str) -> None:
    """Test hook (ZOO_TEST_RAY_DIE_ONCE): the first caller creates ``marker`` and exits its process hard."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)


# ---------------------------------------------------------------------------------------- actors


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

    def __init__(self, ckpt: Any, options: dict[str, Any], die_once: str | None = None) -> None:
        self.ckpt, self.options, self.die_once = ckpt, options, die_once
        self.runner = self.dataset = None
        self.host = socket.gethostname()

    def _ensure(self, source: GraphSource, dataset: Any) -> Any:
        if self.runner is None:
            import ray

            from zoo_cli.evaluation.dataset_job import load_eval_runner
            from zoo_cli.evaluation.settings import EvalOptions

            self.dataset = dataset
            _driver_threads_env(self.options["omp_num_threads"])
            _check_visible([dataset.root], dataset.root, self.host)
            path, cleanup = node_graph(source, get_object=ray.get)
            o = self.options
            try:
                self.runner = load_eval_runner(path, self.ckpt, dataset, EvalOptions(
                    threads=o["threads"], inter_threads=o["inter_threads"], scales=o["scales"], flip=o["flip"],
                    crop=o["crop"], row=o["row"], output_stride=o["output_stride"]))
            except ZooError as exc:
                raise _renamed(exc, path, source.path) from None
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
        samples = select(self.dataset.samples, limit=o["limit"], shard=(k, n))
        _check_visible([p for s in samples for p in (s.image_path, s.label_path)], self.dataset.root, self.host)
        counter.start.remote(k)
        predictor = runner.predictor
        before = predictor.fitted, predictor.enlarged
        cpu = time.process_time()

        def on_image(done: int, _matrix: Any) -> None:
            counter.add.remote(k)
            if self.die_once and done == 1:
                _die_once(self.die_once)  # mid-shard: one image in, the matrix not yet returned

        matrix, count, seconds = evaluate_dataset(
            self.dataset, predictor, limit=o["limit"], shard=(k, n), jobs=o["jobs"], progress=False,
            on_image=on_image, num_classes=runner.num_classes, ignore_label=runner.ignore_label)
        return {"shard": k, "matrix": matrix.matrix, "images": count, "seconds": seconds, "host": self.host,
                "cpu_seconds": time.process_time() - cpu,
                "fitted": predictor.fitted - before[0],
                "enlarged": predictor.enlarged - before[1]}


def _unwrap(ray: Any, exc: BaseException, what: str) -> BaseException:
    """The user-facing error behind a Ray exception: a worker's ZooError as it was raised, else a ClusterError."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ZooError):
        return cause
    if isinstance(exc, ray.exceptions.RayActorError):
        return ClusterError(f"a Ray worker died {RETRIES + 1} times while {what}; see the worker logs under "
                            "/tmp/ray/session_latest/logs on its node (out of memory? fewer --workers use less)")
    inner = cause if cause is not None else exc
    first = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return ClusterError(f"a Ray worker failed while {what}: {type(inner).__name__}: {first}")


def _get(ray: Any, ref: Any, what: str) -> Any:
    try:
        return ray.get(ref)
    except (ray.exceptions.RayError, ZooError) as exc:
        raise _unwrap(ray, exc, what) from None


# ---------------------------------------------------------------------------------------- eval


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _finished_shards(folder: Path, plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Shards of ``plan`` already saved in ``folder`` (matrix and metrics.json of this plan): K -> metrics."""
    from zoo_cli.evaluation.results import CONFUSION_FILE, METRICS_FILE

    done = {}
    n = plan["shards"]
    for k in range(n):
        d = folder / f"shard-{k}of{n}"
        meta = _read_json(d / METRICS_FILE)
        if meta is not None and (d / CONFUSION_FILE).is_file() and meta.get("ray_run") == plan:
            done[k] = meta
    return done


def _prepare_shards(out_dir: Path, identity: dict[str, Any], default_n: int, resume: bool,
                    log: Log) -> tuple[Path, dict[str, Any], dict[int, dict[str, Any]]]:
    """The shard folder, the plan (identity + shard count) and the shards already done (``resume``)."""
    from zoo_cli.atomic import write_json_atomic

    folder = out_dir / SHARDS_DIR
    old = _read_json(folder / PLAN_FILE) if folder.is_dir() else None
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


def evaluate_checkpoint_ray(ckpt: Any | None, data_dir: Path | str, *, graph_path: Path | str | None = None,
                            cache: Any | None = None, dataset: str | None = None, split: str = "val",
                            limit: int | None = None, out_dir: Path | str | None = None, threads: int = 0,
                            inter_threads: int = 0, jobs: int | None = None,
                            scales: str | Sequence[float] | None = None, flip: bool | None = None,
                            crop: str | Sequence[int] | None = None, row: int | None = None,
                            output_stride: int | None = None,
                            progress: bool | None = None, workers: int | None = None, address: str | None = None,
                            resume: bool = False, mirror: str | None = None, offline: bool = False,
                            shards: int | None = None, die_once: str | None = None,
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
    user_graph = graph_path
    graph_path = resolve_graph(ckpt, cache, graph_path)
    ds = open_eval_dataset(data_dir, ckpt, kind=dataset, split=split)
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
        n_workers, per = plan_workers([c for _, _, c in nodes], workers, threads, len(selected), large)
        # --threads is the worker's CPU share here; its images at once split it (never TensorFlow's default of
        # all the node's cores, which several workers on one node would oversubscribe).
        run_jobs, tf_threads = plan_parallelism(jobs, 0, eval_crop, cpus=per)
        tf_threads = tf_threads or per
        options = dict(threads=tf_threads, inter_threads=inter_threads or per, scales=scales, flip=flip,
                       crop=crop, row=row, output_stride=output_stride, limit=limit, jobs=run_jobs,
                       omp_num_threads=os.environ.get("OMP_NUM_THREADS"))  # see _driver_threads_env
        log(f"Ray: {sum(c for _, _, c in nodes)} CPUs on {len(nodes)} node(s); {n_workers} worker(s) x {per} CPU(s), "
            f"{run_jobs} image(s) at once with {tf_threads} TensorFlow thread(s) each")
        source = graph_source(ray, ckpt, cache, user_graph, mirror=mirror, offline=offline)
        counter = ray.remote(num_cpus=0)(ProgressCounter).remote()
        worker_cls = ray.remote(num_cpus=per, max_restarts=RETRIES, max_task_retries=RETRIES)(EvalWorker)
        ds_ref = ray.put(ds)
        actors = [worker_cls.remote(ckpt, options, die_once) for _ in range(n_workers)]
        try:
            infos = _get(ray, [a.ready.remote(source, ds_ref) for a in actors], "loading the graph")
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
                        out = _get(ray, ref, f"scoring shard {k}/{n}")
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
                    counted = resumed + _get(ray, counter.total.remote(), "counting progress")
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


# ---------------------------------------------------------------------------------------- bench


class BenchNode:
    """One Ray actor per node holding all of its CPUs: bench tasks on a node run one at a time."""

    def __init__(self, cpus: int, omp_num_threads: str | None) -> None:
        self.cpus = cpus
        _driver_threads_env(omp_num_threads)  # before TensorFlow: latency as the single process measures it

    def bench(self, source: GraphSource, ckpt: Any, scales: tuple[float, ...], flip: bool,
              options: dict[str, Any]) -> list[Any]:
        """:func:`zoo_cli.bench.measure.bench_graph` of one setting; results carry how they were isolated."""
        import ray

        from zoo_cli.bench import measure as bench
        from zoo_cli.graph.model import load_graph_def

        host = socket.gethostname()
        for ds in (options.get("datasets") or {}).values():
            _check_visible([ds.root], ds.root, host)
        path, cleanup = node_graph(source, get_object=ray.get)
        try:
            graph_def = load_graph_def(path)
        except ZooError as exc:
            raise _renamed(exc, path, source.path) from None
        finally:
            cleanup()
        results = bench.bench_graph(graph_def, name=ckpt.name, ckpt=ckpt, scales=scales, flip=flip, store=None,
                                    progress=False, **options)
        for result in results:
            result.conditions["ray"] = {
                "node": host, "node_id": ray.get_runtime_context().get_node_id(), "cpus_reserved": self.cpus,
                "isolation": "one bench task per node at a time (all of its CPUs reserved)"}
        return results


def bench_all_ray(registry: Any, cache: Any, *, address: str | None = None, mirror: str | None = None,
                  offline: bool = False, on_model: Callable[[str], None] | None = None,
                  on_result: Callable[[Any], None] | None = None, store: Path | None = None,
                  **options: Any) -> Any:
    """``zoo bench --all --ray``: :func:`zoo_cli.bench.measure.bench_all` with one Ray task per checkpoint x setting.

    Each node runs one task at a time on an actor that reserves all its CPUs; results are stored by the driver
    under ``store`` (where ``zoo report`` reads them) as they arrive. ``options`` are
    :func:`zoo_cli.bench.measure.bench_graph`'s (``runs``, ``warmup``, ``threads``, ``input_size``, ``scales``,
    ``flip``, ``data_dir``, ``limit``). A failing checkpoint is recorded in the outcome, not fatal.
    """
    from zoo_cli.bench import measure as bench

    options.pop("progress", None)
    bench.check_options(options.get("data_dir"), options.get("limit"))
    outcome = bench.SweepOutcome()
    tasks: deque[tuple[Any, Any, Any, dict[str, Any]]] = deque()
    with ray_cluster(address) as ray:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for ckpt in bench.sweep_checkpoints(registry, cache, outcome):
            try:
                per_model = dict(options)
                bench._open_datasets_first(ckpt, per_model)
                source = graph_source(ray, ckpt, cache, mirror=mirror, offline=offline)
                settings = bench.bench_settings(ckpt, per_model.pop("scales", None), per_model.pop("flip", None))
            except ZooError as exc:
                outcome.failures[ckpt.name] = str(exc)
                continue
            tasks.extend((ckpt, source, setting, per_model) for setting in settings)
        nodes = node_cpus(ray)
        if not nodes:
            raise ClusterError("the Ray cluster has no node with CPUs; start one with 'ray start --head'")
        node_cls = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(BenchNode)
        omp = os.environ.get("OMP_NUM_THREADS")  # see _driver_threads_env
        actors = [node_cls.options(num_cpus=cpus,
                                   scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
                                   ).remote(cpus, omp) for node_id, _host, cpus in nodes]
        order = {id(t[2]): i for i, t in enumerate(tasks)}
        inflight: dict[Any, tuple[Any, Any, Any]] = {}
        found: list[tuple[int, Any]] = []

        def submit(actor: Any) -> None:
            while tasks:
                ckpt, source, setting, opts = tasks.popleft()
                if ckpt.name in outcome.failures:
                    continue  # an earlier setting of this checkpoint failed: the graph itself is the problem
                if on_model is not None:
                    on_model(f"{ckpt.name} ({setting.describe()})")
                ref = actor.bench.remote(source, ckpt, setting.scales, setting.flip, opts)
                inflight[ref] = (actor, ckpt, setting)
                return

        try:
            for actor in actors:
                submit(actor)
            while inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    actor, ckpt, setting = inflight.pop(ref)
                    try:
                        results = _get(ray, ref, f"benching {ckpt.name} ({setting.describe()})")
                    except ZooError as exc:
                        outcome.failures.setdefault(ckpt.name, str(exc).strip().splitlines()[0])
                        results = []
                    for result in results:
                        if store is not None and result.measured:
                            bench.save_result(result, store)
                        found.append((order[id(setting)], result))
                        if on_result is not None:
                            on_result(result)
                    submit(actor)
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
    outcome.results = [r for _, r in sorted(found, key=lambda item: item[0])]
    return outcome
