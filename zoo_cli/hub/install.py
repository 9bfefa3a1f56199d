"""Fetch path: download → verify → unpack → record, for one checkpoint, safely and atomically.

``download_checkpoint(ckpt, cache)`` is the function other code calls; it returns the model directory.
What it guarantees:

* One file lock per checkpoint (``locks/<name>.lock``): concurrent callers make one transfer; the waiting
  one says who holds the lock, then re-checks the cache and finds the model installed.
* Nothing is installed before the archive is verified: byte count, sha256 against the registry pin — or,
  without a pin, against the hash recorded on the first download (trust on first use) — gzip+tar
  integrity, expected members, and safe member paths (see ``archive.py``).
* Unpacking goes to a temporary directory beside the target; the manifest and the completion marker are
  written there; one rename puts it in place. A failure leaves nothing at the final path, and a previous
  good install stays until the new one is ready.
* ``ZOO_MIRROR``/``mirror`` rewrites scheme+host of the URL; ``ZOO_OFFLINE``/``offline`` forbids the
  network and names the URL and the path to fetch it to by hand.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from zoo_cli import __version__
from zoo_cli.atomic import write_json_atomic
from zoo_cli.config import MAX_DOWNLOAD_JOBS
from zoo_cli.constants import META_DIR
from zoo_cli.errors import ArchiveError, CacheError, ChecksumError, DownloadError, FileSystemError, UsageError, ZooError
from zoo_cli.hub.archive import ArchiveLimits, contents_missing, extract_archive, gzip_isize
from zoo_cli.hub.cache import COMPLETE, MANIFEST, PARTIAL_SUFFIX, Cache, is_installed_at, manifest_at
from zoo_cli.hub.transfer import (
    ProgressCallback,
    TransferPolicy,
    claim_is_abandoned,
    claim_owner,
    fetch_file,
    make_session,
    sha256_file,
    write_error,
)
from zoo_cli.registry.catalog import Checkpoint, Registry, is_pattern, name_matches
from zoo_cli.units import mb
from zoo_cli.urls import mirror_url, redact

LogCallback = Callable[[str], None]
UNPACK_FACTOR = 1.25           # unpacked/archive size assumed before the archive is here (weights barely compress)
SPACE_MARGIN = 64 << 20        # keep this much free beyond what the download and unpack need
TEMP_PREFIXES = (".tmp-", ".old-", ".rm-")


# ---------------------------------------------------------------- mirror / offline


def _offline_error(ckpt: Checkpoint, url: str, cache: Cache) -> DownloadError:
    return DownloadError(
        f"offline mode (ZOO_OFFLINE=1): '{ckpt.name}' is not downloaded and the network may not be used; fetch "
        f"{redact(url)} by hand to {cache.archive_path(ckpt)} and run the command again (it is verified and unpacked "
        "from there), or unset ZOO_OFFLINE")


# ---------------------------------------------------------------- results


@dataclass
class InstallResult:
    """Outcome of one ``install_checkpoint`` call."""

    name: str
    path: Path
    status: str                    # "installed" | "present"
    url: str
    size: int
    sha256: str
    sha256_check: str              # how the hash was checked: pinned / recorded / matches-record
    bytes_transferred: int = 0
    resumed_from: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass
class VerifyReport:
    """Outcome of ``verify_checkpoint``: ok only when ``problems`` is empty."""

    name: str
    path: Path
    installed: bool
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    bytes_checked: int = 0
    archive_checked: bool = False
    extra_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.installed and not self.problems

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["ok"] = self.ok
        return d


# ---------------------------------------------------------------- locking


def _owner_path(cache: Cache, name: str) -> Path:
    return cache.locks_dir / f"{name}.owner"


def describe_lock_owner(cache: Cache, name: str) -> str:
    """Who holds the lock of ``name``, as far as its owner file says."""
    try:
        info = json.loads(_owner_path(cache, name).read_text(encoding="utf-8"))
        return (f"held by pid {info.get('pid')} on {info.get('host')} ({info.get('command')}) "
                f"since {info.get('since')}")
    except (OSError, ValueError):
        return "held by another process"


@contextmanager
def checkpoint_lock(cache: Cache, name: str, *, log: LogCallback | None = None,
                    timeout: float = 3600.0) -> Iterator[None]:
    """Hold the per-checkpoint file lock; if another process has it, say who and wait up to ``timeout`` s."""
    from filelock import FileLock, Timeout

    cache.locks_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache.lock_path(name)))
    try:
        # A short first wait: a lock held only for a moment needs no message, and a fresh holder gets time
        # to write its owner file, so the message can say who it is.
        lock.acquire(timeout=0.3)
    except Timeout:
        if log:
            log(f"waiting for '{name}': {describe_lock_owner(cache, name)}")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise DownloadError(
                f"'{name}' is still locked after {timeout:.0f}s ({describe_lock_owner(cache, name)}); wait for "
                f"that process, or if none is running delete {cache.lock_path(name)}") from None
    try:
        # The lock file itself is truncated by every waiter, so who-holds-it lives in a separate file.
        write_json_atomic(_owner_path(cache, name), {
            "pid": os.getpid(), "host": socket.gethostname(), "command": redact(" ".join(sys.argv))[:200] or "python",
            "since": datetime.now().isoformat(timespec="seconds")})
        yield
    finally:
        _owner_path(cache, name).unlink(missing_ok=True)
        lock.release()


def _lock_is_free(cache: Cache, name: str) -> bool:
    from filelock import FileLock, Timeout

    if not cache.lock_path(name).exists():
        return True
    lock = FileLock(str(cache.lock_path(name)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


# ---------------------------------------------------------------- checks


def check_free_space(path: Path, needed: int, what: str) -> None:
    """Fail (not warn) when the filesystem holding ``path`` has less than ``needed`` bytes free."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DownloadError(f"not enough disk space for {what}: needs {mb(needed)} on {probe}, only {mb(free)} "
                            "free; free some space or point ZOO_HOME at a larger disk")



def check_archive_hash(ckpt: Checkpoint, cache: Cache, sha256: str, size: int, where: Path,
                       fix: str | None = None) -> str:
    """Compare an archive's hash with the registry pin or the recorded first-download hash; say which.

    ``fix`` replaces the advice of the error (an archive placed by hand needs replacing, not a new download)."""
    if ckpt.sha256:
        if sha256 != ckpt.sha256:
            raise ChecksumError(
                f"sha256 of {where.name} is {sha256} but the registry pins {ckpt.sha256}; " + (fix or
                "the download is corrupt or the server's file changed — nothing was installed; run the command "
                "again, or check ZOO_MIRROR"))
        return "pinned"
    record = cache.known_hash(ckpt.url)
    if record:
        if record.get("sha256") != sha256:
            raise ChecksumError(
                f"sha256 of {where.name} is {sha256}, not the {record.get('sha256')} recorded on the first download "
                f"({record.get('recorded')}); " + (fix or
                "the server's file changed or this copy is corrupt — nothing was installed; if the change is "
                f"expected, run 'zoo rm {ckpt.name} --forget-hash' and download again"))
        return "matches-record"
    return "recorded"


def quick_check(ckpt: Checkpoint, cache: Cache, target: Path | None = None) -> list[str]:
    """Cheap install check (marker, manifest, file sizes, pin) of ``ckpt`` in the cache (or at ``target``):
    the problems found, [] when fine."""
    root = target or cache.model_dir(ckpt.name)
    if not is_installed_at(root):
        return ["not installed"]
    try:
        manifest = manifest_at(root, ckpt.name) or {}
    except Exception as exc:  # an unreadable manifest is a broken install, not a crash
        return [str(exc)]
    problems = []
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return ["manifest lists no files"]
    for rel, info in files.items():
        try:
            if (root / rel).stat().st_size != info.get("size"):
                problems.append(f"{rel} has the wrong size")
        except OSError:
            problems.append(f"{rel} is missing")
    if ckpt.sha256 and manifest.get("sha256") != ckpt.sha256:
        problems.append("installed archive does not match the registry's sha256 pin")
    return problems


# ---------------------------------------------------------------- install


def download_checkpoint(ckpt: Checkpoint, cache: Cache, *, progress: bool | None = None,
                        **kwargs: Any) -> Path:
    """Make sure ``ckpt`` is installed in ``cache`` (downloading it if needed); return its model directory.

    ``progress``: progress bar on/off (None → only on a TTY). Other keyword arguments are those of
    ``install_checkpoint``.
    """
    return install_checkpoint(ckpt, cache, progress=progress, **kwargs).path


def install_checkpoint(
    ckpt: Checkpoint,
    cache: Cache,
    *,
    mirror: str | None = None,
    offline: bool = False,
    force: bool = False,
    keep_archive: bool = False,
    progress: bool | None = None,
    log: LogCallback | None = None,
    on_progress: ProgressCallback | None = None,
    policy: TransferPolicy | None = None,
    limits: ArchiveLimits | None = None,
    session: Any = None,
    lock_timeout: float = 3600.0,
    target: Path | None = None,
    progress_position: int | None = None,
) -> InstallResult:
    """Download, verify, unpack and record ``ckpt``; see the module docstring for the guarantees.

    ``force`` re-downloads even when installed (the old install stays until the new one is in place).
    ``keep_archive`` keeps ``downloads/<archive>`` after unpacking (``zoo verify`` then re-hashes it).
    ``target``: install into this directory instead of ``models/<name>/`` (``--local-dir``); it must be new,
    empty, or an earlier install of the same kind. Partial downloads and locks stay in the cache.
    """
    log = log or (lambda _msg: None)
    url = mirror_url(ckpt.url, mirror)
    if target is not None:
        target = check_local_dir(target)
    if not force and not quick_check(ckpt, cache, target):
        return _present(ckpt, cache, url, target)
    if offline and not cache.archive_path(ckpt).is_file():
        raise _offline_error(ckpt, url, cache)
    with cache_writes(cache):
        return _install(ckpt, cache, url, offline, force, keep_archive, progress, log, on_progress, policy,
                        limits, session, lock_timeout, target, progress_position)


def check_local_dir(path: Path) -> Path:
    """``path`` made absolute, if it can take an install: new, an empty directory, or an earlier install."""
    path = Path(path).expanduser().absolute()
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UsageError(f"--local-dir {path} is not a directory; give a new or empty directory")
        if any(path.iterdir()) and not (path / META_DIR).is_dir():
            raise UsageError(f"--local-dir {path} already holds other files; give a new or empty directory (the "
                             "install replaces the whole directory)")
    return path


@contextmanager
def cache_writes(cache: Cache) -> Iterator[None]:
    """Turn an OSError from writing in the cache (disk full, read-only, a file in the way) into a one-line
    FileSystemError (exit 8, like every write failure) that names the path and the fix."""
    try:
        yield
    except OSError as exc:
        if type(exc).__module__.startswith(("requests", "urllib3")):
            raise  # a network error, not the cache's
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            where = f" ({exc.strerror}: {exc.filename})" if exc.filename else f" ({exc.strerror})"
            raise FileSystemError(f"ZOO_HOME {cache.home} is not writable{where}; point ZOO_HOME at a writable "
                                  "directory") from None
        raise write_error(exc, cache.home) from None


@dataclass
class BatchInstall:
    """Outcome of :func:`install_checkpoints`: one JSON row per checkpoint, in order, failures included."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    results: list[InstallResult] = field(default_factory=list)
    failures: list[tuple[str, ZooError]] = field(default_factory=list)

    @property
    def first_error(self) -> ZooError | None:
        return self.failures[0][1] if self.failures else None


MAX_JOBS = MAX_DOWNLOAD_JOBS


def install_checkpoints(
    ckpts: list[Checkpoint],
    cache: Cache,
    *,
    mirror: str | None = None,
    offline: bool = False,
    force: bool = False,
    keep_archive: bool = False,
    progress: bool | None = None,
    log: LogCallback | None = None,
    stop_on_error: bool = False,
    on_installed: Callable[[InstallResult], None] | None = None,
    on_failed: Callable[[str, ZooError], None] | None = None,
    jobs: int = 1,
    policy: TransferPolicy | None = None,
    target: Path | None = None,
) -> BatchInstall:
    """``zoo download``: :func:`install_checkpoint` each of ``ckpts``, ``jobs`` at a time (1..MAX_JOBS).

    A failing checkpoint is recorded (row ``{"name", "status": "failed", "error"}``, ``on_failed`` called)
    and the others carry on, unless ``stop_on_error``, which raises the first error. ``on_installed`` gets
    each success as it happens (callbacks always run in the calling thread). Rows stay in ``ckpts`` order.
    With several checkpoints, log messages start with the checkpoint's name. Ctrl-C (or SIGTERM) stops every
    running transfer at its next chunk; their bytes are kept for the next run.
    """
    if not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs {jobs} is out of range; use 1 to {MAX_JOBS}")
    if target is not None and len(ckpts) > 1:
        raise UsageError("--local-dir takes one checkpoint; name only one")
    outcome = BatchInstall()
    done: dict[int, InstallResult | ZooError] = {}
    several = len(ckpts) > 1

    def named_log(name: str) -> LogCallback | None:
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
            have = _partial_bytes(cache.partial_path(ckpt))
            row.update(action="resume" if have else "download", have=have,
                       to_fetch=max(size - have, 0) if size is not None else None)
        rows.append(row)
    return rows


def _partial_bytes(partial: Path) -> int:
    """Bytes the next transfer would resume from: the shared partial or the largest one a dead process left."""
    sizes = [partial.stat().st_size] if partial.is_file() else []
    if partial.parent.is_dir():
        for p in partial.parent.glob(glob.escape(partial.name) + ".*"):
            if not p.name.endswith((".json", ".tmp")) and claim_is_abandoned(p):
                sizes.append(p.stat().st_size)
    return max(sizes, default=0)


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


def _install(ckpt, cache, url, offline, force, keep_archive, progress, log, on_progress, policy, limits, session,
             lock_timeout, target=None, progress_position=None) -> InstallResult:
    started = time.monotonic()
    with checkpoint_lock(cache, ckpt.name, log=log, timeout=lock_timeout):
        if not force and not quick_check(ckpt, cache, target):
            log(f"'{ckpt.name}' was installed by another process meanwhile")
            return _present(ckpt, cache, url, target)
        archive = cache.archive_path(ckpt)
        fetched = None
        sha = size = None
        if archive.is_file() and force and not offline:
            archive.unlink()  # --force means a fresh transfer, not a reinstall from a kept archive
        if archive.is_file():
            # A complete archive from an earlier run (or fetched by hand) is verified like a fresh download.
            log(f"verifying existing archive {archive}")
            sha, size = sha256_file(archive).hexdigest(), archive.stat().st_size
            # Offline, the file was put there by hand: downloading again is not an option, replacing it is.
            by_hand = (f"{archive} is not the expected archive (nothing was installed) — replace it with a good "
                       f"copy of {redact(url)}, or unset ZOO_OFFLINE to download it") if offline else None
            try:
                check_archive_hash(ckpt, cache, sha, size, archive, fix=by_hand)
            except ChecksumError:
                if offline:
                    raise
                log(f"{archive.name} does not verify; downloading it again")
                archive.unlink()
        if not archive.is_file():
            if offline:
                raise _offline_error(ckpt, url, cache)
            cache.downloads_dir.mkdir(parents=True, exist_ok=True)
            if ckpt.size_mb:
                check_free_space(cache.downloads_dir, int(ckpt.size_mb * 1e6 * (1 + UNPACK_FACTOR)) + SPACE_MARGIN,
                                 f"'{ckpt.name}' (~{ckpt.size_mb:g} MB archive, reported)")

            def space_for_body(remaining: int) -> None:
                check_free_space(cache.downloads_dir, remaining + int(UNPACK_FACTOR * remaining) + SPACE_MARGIN,
                                 f"'{ckpt.name}' ({mb(remaining)} still to download, then unpacked)")

            fetched = fetch_file(url, cache.partial_path(ckpt), policy=policy, progress=progress,
                                 progress_position=progress_position,
                                 on_progress=on_progress, log=log, check_space=space_for_body, session=session,
                                 can_resume_without_validator=bool(ckpt.sha256), meta={"checkpoint": ckpt.name})
            sha, size = fetched.sha256, fetched.size
        try:
            how = check_archive_hash(ckpt, cache, sha, size, archive)
        except ChecksumError:
            archive.unlink(missing_ok=True)
            raise
        path = _unpack_and_install(ckpt, cache, archive, url, sha, size, how, fetched, limits, log, offline,
                                   target or cache.model_dir(ckpt.name))
        if how == "recorded":
            cache.record_hash(ckpt.url, sha, size)
        if not keep_archive:
            archive.unlink(missing_ok=True)
    return InstallResult(
        name=ckpt.name, path=path, status="installed", url=redact(url), size=size, sha256=sha, sha256_check=how,
        bytes_transferred=fetched.bytes_transferred if fetched else 0,
        resumed_from=fetched.resumed_from if fetched else 0, seconds=time.monotonic() - started)


def _present(ckpt: Checkpoint, cache: Cache, url: str, target: Path | None = None) -> InstallResult:
    root = target or cache.model_dir(ckpt.name)
    manifest = manifest_at(root, ckpt.name) or {}
    return InstallResult(name=ckpt.name, path=root, status="present",
                         url=redact(manifest.get("url", url)), size=manifest.get("size", 0),
                         sha256=manifest.get("sha256", ""), sha256_check=manifest.get("sha256_check", ""))


def _token() -> str:
    return f"{os.getpid()}-{os.urandom(3).hex()}"


def _unpack_and_install(ckpt, cache, archive, url, sha, size, how, fetched, limits, log, offline, target) -> Path:
    check_free_space(target.parent, max(gzip_isize(archive), size) + SPACE_MARGIN, f"unpacking '{ckpt.name}'")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, so that one rename (same filesystem) puts the finished install in place.
    tmp = target.parent / f".tmp-{ckpt.name}-{_token()}"
    try:
        try:
            # A damaged archive is deleted below, so the message must not tell the user to delete it.
            fix = (f"it was deleted — fetch {redact(url)} by hand to {archive} again, or unset ZOO_OFFLINE" if offline
                   else "it was deleted — run the command again to download it afresh")
            result = extract_archive(archive, tmp, ckpt.contents, limits, fix=fix)
        except ArchiveError:
            archive.unlink(missing_ok=True)  # a bad archive is never worth resuming or reusing
            raise
        files = {}
        for rel, _size in sorted(result.files.items()):
            p = result.root / rel
            files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p).hexdigest()}
        manifest = {
            "name": ckpt.name, "url": redact(url), "registry_url": redact(ckpt.url), "archive": archive.name, "size": size,
            "sha256": sha, "sha256_check": how,
            "etag": fetched.etag if fetched else None,
            "last_modified": fetched.last_modified if fetched else None,
            "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "zoo_version": __version__, "top_folder": result.top,
            "unpacked_bytes": result.total_bytes, "files": files,
        }
        meta = result.root / META_DIR
        meta.mkdir()
        write_json_atomic(meta / MANIFEST, manifest, fsync=True)
        (meta / COMPLETE).write_text(manifest["downloaded_at"] + "\n", encoding="utf-8")
        _swap_into_place(result.root, target, ckpt.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _swap_into_place(new: Path, target: Path, name: str) -> None:
    """Rename ``new`` to ``target``; an existing target is set aside first and restored if that fails."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".old-{name}-{_token()}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- verify / remove / usage / prune


def verify_checkpoint(ckpt: Checkpoint, cache: Cache) -> VerifyReport:
    """Re-hash every installed file (and a kept archive) against the manifest, the pin and the record."""
    root = cache.model_dir(ckpt.name)
    report = VerifyReport(ckpt.name, root, installed=cache.is_installed(ckpt.name))
    if not report.installed:
        if root.exists():
            report.problems.append(f"incomplete install at {root} (no manifest/completion marker); run "
                                   f"'zoo download {ckpt.name} --force'")
        else:
            report.problems.append(f"not downloaded; run 'zoo download {ckpt.name}'")
        return report
    try:
        manifest = cache.manifest(ckpt.name) or {}
    except Exception as exc:
        report.problems.append(str(exc))
        return report
    files = manifest.get("files") or {}
    if not isinstance(files, dict) or not files:
        report.problems.append("manifest lists no files")
    for rel, info in (files.items() if isinstance(files, dict) else ()):
        path = root / rel
        if not path.is_file():
            report.problems.append(f"{rel} is missing")
            continue
        size = path.stat().st_size
        if size != info.get("size"):
            report.problems.append(f"{rel} is {size} bytes, the manifest says {info.get('size')}")
            continue
        report.bytes_checked += size
        report.files_checked += 1
        if info.get("sha256") and sha256_file(path).hexdigest() != info["sha256"]:
            report.problems.append(f"{rel} does not match its sha256 in the manifest (modified or corrupt)")
    names = [n for n in files if "/" not in n] if isinstance(files, dict) else []
    missing = contents_missing(names, ckpt.contents)
    if missing:
        report.problems.append(f"install lacks {', '.join(missing)} that the registry expects")
    listed = set(files) if isinstance(files, dict) else set()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in listed and not rel.startswith(META_DIR + "/"):
            report.extra_files.append(rel)
    sha = manifest.get("sha256")
    if ckpt.sha256 and sha != ckpt.sha256:
        report.problems.append(f"installed archive sha256 {sha} differs from the registry pin {ckpt.sha256}")
    record = None if ckpt.sha256 else cache.known_hash(ckpt.url)
    if record and record.get("sha256") != sha:
        report.problems.append(f"installed archive sha256 {sha} differs from the one recorded on first download "
                               f"({record.get('sha256')})")
    archive = cache.archive_path(ckpt)
    if archive.is_file():
        report.archive_checked = True
        if sha256_file(archive).hexdigest() != sha:
            report.problems.append(f"kept archive {archive} does not match the manifest's sha256")
    return report


def verify_checkpoints(registry: Registry, cache: Cache, names: Iterable[str] = ()) -> list[VerifyReport]:
    """``zoo verify``: :func:`verify_checkpoint` for ``names`` (names or wildcards), by default for every
    registry checkpoint with a model directory in the cache."""
    names = tuple(names)
    if names:
        ckpts = registry.resolve(names)
    else:
        ckpts = [c for c in registry if cache.model_dir(c.name).exists()]
    return [verify_checkpoint(c, cache) for c in ckpts]


def remove_checkpoint(name: str, cache: Cache, *, archive_filename: str | None = None,
                      forget_url: str | None = None, lock_timeout: float = 60.0,
                      log: LogCallback | None = None) -> dict[str, Any]:
    """Remove the install of ``name`` (and its partial/kept archive when ``archive_filename`` is given).

    The directory is first renamed aside, so the model disappears at once and a crash mid-delete leaves only
    a ``.rm-*`` folder that ``zoo cache prune`` removes. ``forget_url`` also drops its recorded hash.
    """
    removed: list[str] = []
    freed = 0
    # A download of it in progress holds the lock: wait for it (and say so), never pull files from under it.
    with checkpoint_lock(cache, name, log=log, timeout=lock_timeout):
        target = cache.model_dir(name)
        if target.exists() or target.is_symlink():
            freed += _tree_size(target)
            aside = target.with_name(f".rm-{name}-{_token()}")
            os.replace(target, aside)
            shutil.rmtree(aside, ignore_errors=True)
            removed.append(str(target))
        if archive_filename and cache.downloads_dir.is_dir():
            for path in sorted(cache.downloads_dir.glob(f"{archive_filename}*")):
                if path.name == archive_filename or PARTIAL_SUFFIX in path.name:
                    freed += path.stat().st_size
                    path.unlink(missing_ok=True)
                    removed.append(str(path))
    forgot = cache.forget_hash(forget_url) if forget_url else False
    return {"name": name, "removed": removed, "bytes_freed": freed, "forgot_hash": forgot}


def removal_targets(registry: Registry, cache: Cache, names: Iterable[str] = (), *,
                    everything: bool = False) -> list[tuple[str, Checkpoint | None]]:
    """What ``zoo rm`` would remove: (name, its registry checkpoint or None) for exact names, wildcards
    (matched as in download/verify, against what the cache holds) or, with ``everything``, every model
    directory. An unknown exact name raises UnknownCheckpointError; a pattern matching nothing, CacheError."""
    installed = []
    if cache.models_dir.is_dir():
        installed = [d.name for d in sorted(cache.models_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    targets: dict[str, Checkpoint | None] = {}
    if everything:
        for name in installed:
            targets[name] = registry.get(name) if name in registry else None
        return list(targets.items())
    for item in names:
        if is_pattern(item):
            with_downloads = [c.name for c in registry if c.name not in installed and _has_downloads(cache, c)]
            matched = [n for n in installed + with_downloads if name_matches(item, n)]
            if not matched:
                raise CacheError(f"no downloaded checkpoint matches '{item}'; nothing to remove (see 'zoo cache')")
            for name in matched:
                targets.setdefault(name, registry.get(name) if name in registry else None)
        elif item not in registry and cache.model_dir(item).exists():
            targets.setdefault(item, None)  # installed from another registry: remove by name
        else:
            c = registry.get(item)
            targets.setdefault(c.name, c)
    return list(targets.items())


def _has_downloads(cache: Cache, ckpt: Checkpoint) -> bool:
    d = cache.downloads_dir
    return d.is_dir() and any(d.glob(glob.escape(ckpt.archive_filename) + "*"))


def remove_checkpoints(registry: Registry, cache: Cache, names: Iterable[str] = (), *, everything: bool = False,
                       forget_hash: bool = False, log: LogCallback | None = None) -> list[dict[str, Any]]:
    """``zoo rm``: :func:`remove_checkpoint` for each of :func:`removal_targets`; returns one row per model
    (``removed`` empty when nothing was installed).

    Registry checkpoints also lose their partial or kept archive, and with ``forget_hash`` the sha256
    recorded on first download. ``log`` hears about waiting for a download that holds a checkpoint's lock.
    """
    targets = removal_targets(registry, cache, names, everything=everything)
    with cache_writes(cache):
        return [remove_checkpoint(name, cache, archive_filename=c.archive_filename if c else None,
                                  forget_url=c.url if c and forget_hash else None, log=log)
                for name, c in targets]


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total


def _pid_alive(token_name: str) -> bool:
    """Whether the process whose pid is embedded in a ``...<pid>-<hex>`` name still runs."""
    import psutil

    found = re.findall(r"(\d+)-[0-9a-f]{6,8}", token_name)
    return bool(found) and psutil.pid_exists(int(found[-1]))


def _partial_owner_names(path: Path, registry: Registry | None) -> set[str]:
    archive_name = path.name.split(PARTIAL_SUFFIX, 1)[0]
    names = {c.name for c in registry if c.archive_filename == archive_name} if registry else set()
    base = path.name.split(PARTIAL_SUFFIX, 1)[0] + PARTIAL_SUFFIX
    for sidecar in (path.with_name(path.name + ".json"), path.with_name(base + ".json")):
        try:
            names.add(json.loads(sidecar.read_text(encoding="utf-8"))["checkpoint"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return names


def _resumable(partial: Path) -> bool:
    """A partial can be resumed when its sidecar says where it came from (else the next run starts over)."""
    try:
        return bool(json.loads(partial.with_name(partial.name + ".json").read_text(encoding="utf-8")).get("url"))
    except (OSError, ValueError, AttributeError):
        return False


def cache_usage(cache: Cache, registry: Registry | None = None) -> dict[str, Any]:
    """Sizes of installed models, partial downloads, kept archives and leftovers, plus free space."""
    models, leftovers, partials, archives = [], [], [], []
    if cache.models_dir.is_dir():
        for d in sorted(cache.models_dir.iterdir()):
            if d.name.startswith(TEMP_PREFIXES):
                leftovers.append({"path": str(d), "bytes": _tree_size(d)})
            elif d.is_dir():
                manifest = None
                try:
                    manifest = cache.manifest(d.name)
                except Exception:
                    pass
                models.append({"name": d.name, "bytes": _tree_size(d), "installed": cache.is_installed(d.name),
                               "sha256": (manifest or {}).get("sha256"),
                               "in_registry": registry is None or d.name in registry, "path": str(d)})
    if cache.downloads_dir.is_dir():
        for f in sorted(cache.downloads_dir.iterdir()):
            if not f.is_file() or f.name.endswith(".json") or f.name.endswith(".tmp"):
                continue
            entry = {"file": f.name, "bytes": f.stat().st_size, "path": str(f)}
            if PARTIAL_SUFFIX + "." in f.name:
                # Claimed by one process under a private name: a running one is downloading it now; one
                # that is gone (killed, even by kill -9) left bytes the next download takes over and resumes.
                if claim_is_abandoned(f):
                    partials.append({**entry, "resumable": _resumable(f), "left_by_pid": claim_owner(f)})
                else:
                    partials.append({**entry, "in_progress": True})
            elif PARTIAL_SUFFIX in f.name:
                partials.append({**entry, "resumable": _resumable(f)})
            else:
                archives.append(entry)
    total = sum(e["bytes"] for group in (models, leftovers, partials, archives) for e in group)
    probe = cache.home if cache.home.exists() else cache.home.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return {"home": str(cache.home), "models": models, "partials": partials, "archives": archives,
            "leftovers": leftovers, "total_bytes": total, "free_bytes": shutil.disk_usage(probe).free}


def prune(cache: Cache, registry: Registry | None = None, *, archives: bool = False,
          dry_run: bool = False) -> list[dict[str, Any]]:
    """Remove partial downloads and leftover temp folders that no running process holds.

    A shared partial (``<file>.incomplete``) is stale when no process holds its checkpoint's lock; a claimed
    one (``<file>.incomplete.<pid>-<hex>``) and a ``.tmp-/.old-/.rm-`` folder when their pid is gone.
    ``archives`` also removes complete archives kept in downloads/.
    """
    with cache_writes(cache):
        return _prune(cache, registry, archives, dry_run)


def _prune(cache: Cache, registry: Registry | None, archives: bool, dry_run: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def drop(path: Path, reason: str) -> None:
        size = _tree_size(path) if path.is_dir() else path.stat().st_size
        if not dry_run:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        out.append({"path": str(path), "bytes": size, "reason": reason, "removed": not dry_run})

    if cache.downloads_dir.is_dir():
        for f in sorted(cache.downloads_dir.iterdir()):
            if f.is_file() and f.name.endswith(".json") and PARTIAL_SUFFIX in f.name:
                data = f.with_name(f.name.removesuffix(".json"))
                if not data.exists() and not _pid_alive(data.name):
                    drop(f, "sidecar without its partial download")
                continue
            if not f.is_file():
                continue
            sidecar = f.with_name(f.name + ".json")
            if f.name.endswith(PARTIAL_SUFFIX):
                owners = _partial_owner_names(f, registry)
                if all(_lock_is_free(cache, n) for n in owners):
                    drop(f, "partial download, no process holds it")
                    if sidecar.exists():
                        drop(sidecar, "sidecar of a removed partial")
            elif PARTIAL_SUFFIX + "." in f.name:
                if claim_is_abandoned(f):
                    drop(f, "partial download left by a process that is gone")
                    if sidecar.exists():
                        drop(sidecar, "sidecar of a removed partial")
            elif f.name.endswith(".tmp"):
                if not _pid_alive(f.name.removesuffix(".tmp")):
                    drop(f, "temporary file")
            elif archives:
                owners = {c.name for c in registry if c.archive_filename == f.name} if registry else set()
                if all(_lock_is_free(cache, n) for n in owners):
                    drop(f, "complete archive (kept or left over)")
    if cache.models_dir.is_dir():
        for d in sorted(cache.models_dir.iterdir()):
            if d.name.startswith(TEMP_PREFIXES) and not _pid_alive(d.name):
                drop(d, "leftover of an interrupted install/removal")
    return out
