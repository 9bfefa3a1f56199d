"""Ray itself for ``zoo eval --ray`` and ``zoo bench --all --ray``: importing and joining (or starting) a cluster,
its nodes' CPUs, how many workers of how many CPUs fit, a worker's thread environment, and Ray's errors turned
into zoo's.

Ray is the engine (scheduling, actor restarts, the object store); zoo only says what runs where
(:mod:`zoo_cli.cluster.eval`, :mod:`zoo_cli.cluster.bench`). Ray is imported only by these functions (never at
module import), so commands without ``--ray`` never load it.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager, redirect_stdout
from typing import Any, Callable, Iterator, Sequence

from zoo_cli.errors import ClusterError, UsageError, ZooError

RAY_HINT = "pip install 'zoo-cli[ray]' (or pip install 'ray>=2.40')"
RETRIES = 3  # Ray restarts of a dead worker, and re-runs of the task it held

Log = Callable[[str], None]


def import_ray() -> Any:
    """The ``ray`` module, or UsageError (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray needs Ray, which is not installed; install it with {RAY_HINT}") from None
    return ray


@contextmanager
def ray_cluster(address: str | None = None) -> Iterator[Any]:
    """Connected Ray: ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), else Ray's own ``RAY_ADDRESS``,
    else a new local instance on this machine (all its cores), shut down on exit.
    An already initialised Ray (a test session, a notebook) is used as is and left running."""
    ray = import_ray()
    # Ray prints its notices (e.g. "A worker died ...") on stdout; stdout is for the command's output (--json).
    with redirect_stdout(sys.stderr):
        if ray.is_initialized():
            yield ray
            return
        with _own_cluster(ray, address):
            yield ray


@contextmanager
def _own_cluster(ray: Any, address: str | None) -> Iterator[None]:
    import logging

    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
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


def driver_omp_threads() -> str | None:
    """This (the driver's) process's OMP_NUM_THREADS, for its workers' :func:`driver_threads_env`."""
    return os.environ.get("OMP_NUM_THREADS")


def driver_threads_env(value: str | None) -> None:
    """Give this worker the driver's OMP_NUM_THREADS (or none), before TensorFlow is imported.

    Ray sets OMP_NUM_THREADS in its workers; with it set, TensorFlow's CPU kernels round differently (measured:
    a few pixels' ArgMax flip on a random-weight MobileNet-v2), so the worker mirrors the driver to compute
    exactly what the single-process run computes.
    """
    if value is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = value


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


def ray_get(ray: Any, ref: Any, what: str) -> Any:
    """``ray.get(ref)``; a failure raised as the user-facing error behind it (:func:`_unwrap`)."""
    try:
        return ray.get(ref)
    except (ray.exceptions.RayError, ZooError) as exc:
        raise _unwrap(ray, exc, what) from None
