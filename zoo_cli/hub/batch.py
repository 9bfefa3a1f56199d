"""Several checkpoints at once (``zoo download``): :func:`install_checkpoints` installs them ``jobs`` at a time,
:func:`plan_downloads` says what that would fetch (``--dry-run``, no network)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from zoo_cli.config import MAX_DOWNLOAD_JOBS
from zoo_cli.errors import UsageError, ZooError
from zoo_cli.hub.cache import Cache
from zoo_cli.hub.claims import resumable_bytes
from zoo_cli.hub.install import InstallResult, check_local_dir, install_checkpoint
from zoo_cli.hub.session import TransferPolicy, make_session
from zoo_cli.hub.verify import quick_check
from zoo_cli.registry.types import Checkpoint
from zoo_cli.urls import mirror_url, redact


@dataclass
class BatchInstall:
    """Outcome of :func:`install_checkpoints`: one JSON row per checkpoint, in order, failures included."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    results: list[InstallResult] = field(default_factory=list)
    failures: list[tuple[str, ZooError]] = field(default_factory=list)

    @property
    def first_error(self) -> ZooError | None:
        return self.failures[0][1] if self.failures else None


def install_checkpoints(
    ckpts: list[Checkpoint],
    cache: Cache,
    *,
    mirror: str | None = None,
    offline: bool = False,
    force: bool = False,
    keep_archive: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    stop_on_error: bool = False,
    on_installed: Callable[[InstallResult], None] | None = None,
    on_failed: Callable[[str, ZooError], None] | None = None,
    jobs: int = 1,
    policy: TransferPolicy | None = None,
    target: Path | None = None,
) -> BatchInstall:
    """``zoo download``: :func:`install_checkpoint` each of ``ckpts``, ``jobs`` at a time (1..MAX_DOWNLOAD_JOBS).

    A failing checkpoint is recorded (row ``{"name", "status": "failed", "error"}``, ``on_failed`` called)
    and the others carry on, unless ``stop_on_error``, which raises the first error. ``on_installed`` gets
    each success as it happens (callbacks always run in the calling thread). Rows stay in ``ckpts`` order.
    With several checkpoints, log messages start with the checkpoint's name. Ctrl-C (or SIGTERM) stops every
    running transfer at its next chunk; their bytes are kept for the next run.
    """
    if not 1 <= jobs <= MAX_DOWNLOAD_JOBS:
        raise UsageError(f"--jobs {jobs} is out of range; use 1 to {MAX_DOWNLOAD_JOBS}")
    if target is not None and len(ckpts) > 1:
        raise UsageError("--local-dir takes one checkpoint; name only one")
    outcome = BatchInstall()
    done: dict[int, InstallResult | ZooError] = {}
    several = len(ckpts) > 1

    def named_log(name: str) -> Callable[[str], None] | None:
        if log is None or not several:
            return log
        return lambda msg: log(f"{name}: {msg}")

    def report(i: int, item: InstallResult | ZooError) -> None:
        done[i] = item
        if isinstance(item, ZooError):
            if on_failed is not None:
                on_failed(ckpts[i].name, item)
        elif on_installed is not None:
            on_installed(item)

    def one(i: int, session: Any, slot: int | None, cancel: Any = None) -> InstallResult:
        def check_cancel(_done: int, _total: int | None) -> None:
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt  # unwinds like Ctrl-C: the partial is given back, resumable
        return install_checkpoint(ckpts[i], cache, mirror=mirror, offline=offline, force=force,
                                  keep_archive=keep_archive, progress=progress, log=named_log(ckpts[i].name),
                                  session=session, policy=policy, target=target, progress_position=slot,
                                  on_progress=check_cancel if cancel is not None else None)

    if jobs == 1 or len(ckpts) <= 1:
        session = make_session()
        try:
            for i in range(len(ckpts)):
                try:
                    result = one(i, session, None)
                except ZooError as exc:
                    if stop_on_error:
                        raise
                    report(i, exc)
                else:
                    report(i, result)
        finally:
            session.close()
    else:
        _run_parallel(len(ckpts), min(jobs, len(ckpts)), one, report)
    for i, ckpt in enumerate(ckpts):
        item = done[i]
        if isinstance(item, ZooError):
            outcome.rows.append({"name": ckpt.name, "status": "failed", "error": redact(str(item))})
            outcome.failures.append((ckpt.name, item))
        else:
            outcome.rows.append(item.to_json())
            outcome.results.append(item)
    return outcome


def plan_downloads(ckpts: list[Checkpoint], cache: Cache, *, mirror: str | None = None, offline: bool = False,
                   force: bool = False, target: Path | None = None) -> list[dict[str, Any]]:
    """``zoo download --dry-run``: what each checkpoint would need, without any network request.

    One row per checkpoint: ``action`` is present / download / resume / install-archive / unavailable
    (offline and not in the cache); ``url`` (no credentials), ``size`` (the registry's reported archive size
    in bytes, or None), ``have`` (bytes already in downloads/) and ``to_fetch`` (size - have, or None).
    """
    rows = []
    for ckpt in ckpts:
        url = redact(mirror_url(ckpt.url, mirror))
        root = check_local_dir(target) if target is not None else cache.model_dir(ckpt.name)
        size = int(ckpt.size_mb * 1e6) if ckpt.size_mb else None
        row: dict[str, Any] = {"name": ckpt.name, "url": url, "path": str(root), "size": size, "have": 0,
                               "to_fetch": None}
        archive = cache.archive_path(ckpt)
        if not force and not quick_check(ckpt, cache, target):
            row["action"] = "present"
            row["to_fetch"] = 0
        elif archive.is_file() and not (force and not offline):
            row.update(action="install-archive", have=archive.stat().st_size, to_fetch=0)
        elif offline:
            row["action"] = "unavailable"
        else:
            have = resumable_bytes(cache.partial_path(ckpt))
            row.update(action="resume" if have else "download", have=have,
                       to_fetch=max(size - have, 0) if size is not None else None)
        rows.append(row)
    return rows


def _run_parallel(count: int, jobs: int, one: Callable[..., InstallResult],
                  report: Callable[[int, Any], None]) -> None:
    """Run ``one(i, session, slot, cancel)`` for i in range(count) on ``jobs`` worker threads; ``report`` each
    outcome in this thread as it arrives. An interrupt here (Ctrl-C, SIGTERM) cancels the workers."""
    import queue
    import threading

    todo: "queue.Queue[int]" = queue.Queue()
    for i in range(count):
        todo.put(i)
    results: "queue.Queue[tuple[int, Any]]" = queue.Queue()
    cancel = threading.Event()

    def worker(slot: int) -> None:
        session = make_session()  # requests sessions are not thread-safe: one per worker
        try:
            while not cancel.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.put((i, one(i, session, slot, cancel)))
                except ZooError as exc:
                    results.put((i, exc))
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread, never lost
                    results.put((i, exc))
        finally:
            session.close()

    # Daemon threads: a worker stuck in a network read never keeps the process alive after an interrupt
    # (its partial is then left under its private name, which the next run takes over).
    threads = [threading.Thread(target=worker, args=(slot,), daemon=True, name=f"zoo-download-{slot}")
               for slot in range(jobs)]
    for t in threads:
        t.start()
    try:
        for _ in range(count):
            while True:
                try:
                    i, item = results.get(timeout=0.2)  # a timeout, so signals reach this thread promptly
                    break
                except queue.Empty:
                    if not any(t.is_alive() for t in threads) and results.empty():
                        raise RuntimeError("download workers stopped without reporting") from None
            if isinstance(item, BaseException) and not isinstance(item, ZooError):
                raise item
            report(i, item)
    except BaseException:
        cancel.set()
        for t in threads:
            t.join(timeout=10)
        raise
