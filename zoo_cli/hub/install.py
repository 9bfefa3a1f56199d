"""Install path: download → verify → unpack → record, for one checkpoint, safely and atomically.

``download_checkpoint(ckpt, cache)`` is the function other code calls; it returns the model directory.
What it guarantees:

* One file lock per checkpoint (``locks.py``): concurrent callers make one transfer; the waiting one says
  who holds the lock, then re-checks the cache and finds the model installed.
* Nothing is installed before the archive is verified: byte count, sha256 against the registry pin — or,
  without a pin, against the hash recorded on the first download (trust on first use) — gzip+tar
  integrity, expected members, and safe member paths (``verify.py``, ``archive.py``). Free space is checked
  before the transfer and before unpacking.
* Unpacking goes to a temporary directory beside the target; the manifest and the completion marker are
  written there; one rename puts it in place. A failure leaves nothing at the final path, and a previous
  good install stays until the new one is ready.
* ``ZOO_MIRROR``/``mirror`` rewrites scheme+host of the URL; ``ZOO_OFFLINE``/``offline`` forbids the
  network and names the URL and the path to fetch it to by hand.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from zoo_cli import __version__
from zoo_cli.atomic import write_json_atomic
from zoo_cli.constants import META_DIR
from zoo_cli.errors import ArchiveError, ChecksumError, DownloadError, UsageError
from zoo_cli.hub.archive import ArchiveLimits, extract_archive, gzip_isize
from zoo_cli.hub.attempt import ProgressCallback
from zoo_cli.hub.cache import COMPLETE, MANIFEST, Cache, manifest_at
from zoo_cli.hub.claims import process_token
from zoo_cli.hub.content import sha256_file
from zoo_cli.hub.disk import cache_writes, check_free_space
from zoo_cli.hub.locks import checkpoint_lock
from zoo_cli.hub.session import TransferPolicy
from zoo_cli.hub.transfer import fetch_file
from zoo_cli.hub.verify import check_archive_hash, quick_check
from zoo_cli.registry.types import Checkpoint
from zoo_cli.units import mb
from zoo_cli.urls import mirror_url, redact

UNPACK_FACTOR = 1.25           # unpacked/archive size assumed before the archive is here (weights barely compress)
SPACE_MARGIN = 64 << 20        # keep this much free beyond what the download and unpack need


def _offline_error(ckpt: Checkpoint, url: str, cache: Cache) -> DownloadError:
    return DownloadError(
        f"offline mode (ZOO_OFFLINE=1): '{ckpt.name}' is not downloaded and the network may not be used; fetch "
        f"{redact(url)} by hand to {cache.archive_path(ckpt)} and run the command again (it is verified and unpacked "
        "from there), or unset ZOO_OFFLINE")


@dataclass(frozen=True)
class _Run:
    """The settings of one :func:`install_checkpoint` call, handed to the steps that use them."""

    offline: bool
    force: bool
    keep_archive: bool
    progress: bool | None
    log: Callable[[str], None]
    on_progress: ProgressCallback | None
    policy: TransferPolicy | None
    limits: ArchiveLimits | None
    session: Any
    lock_timeout: float
    target: Path | None
    progress_position: int | None


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
    log: Callable[[str], None] | None = None,
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
    url = mirror_url(ckpt.url, mirror)
    if target is not None:
        target = check_local_dir(target)
    if not force and not quick_check(ckpt, cache, target):
        return _present(ckpt, cache, url, target)
    if offline and not cache.archive_path(ckpt).is_file():
        raise _offline_error(ckpt, url, cache)
    run = _Run(offline=offline, force=force, keep_archive=keep_archive, progress=progress,
               log=log or (lambda _msg: None), on_progress=on_progress, policy=policy, limits=limits,
               session=session, lock_timeout=lock_timeout, target=target, progress_position=progress_position)
    with cache_writes(cache):
        return _install(ckpt, cache, url, run)


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


def _install(ckpt: Checkpoint, cache: Cache, url: str, run: _Run) -> InstallResult:
    started = time.monotonic()
    offline, force, log, target = run.offline, run.force, run.log, run.target
    with checkpoint_lock(cache, ckpt.name, log=log, timeout=run.lock_timeout):
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
                check_archive_hash(ckpt, cache, sha, archive, fix=by_hand)
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

            fetched = fetch_file(url, cache.partial_path(ckpt), policy=run.policy, progress=run.progress,
                                 progress_position=run.progress_position,
                                 on_progress=run.on_progress, log=log, check_space=space_for_body, session=run.session,
                                 can_resume_without_validator=bool(ckpt.sha256), meta={"checkpoint": ckpt.name})
            sha, size = fetched.sha256, fetched.size
        try:
            how = check_archive_hash(ckpt, cache, sha, archive)
        except ChecksumError:
            archive.unlink(missing_ok=True)
            raise
        path = _unpack_and_install(ckpt, archive, url, sha, size, how, fetched, run,
                                   target or cache.model_dir(ckpt.name))
        if how == "recorded":
            cache.record_hash(ckpt.url, sha, size)
        if not run.keep_archive:
            archive.unlink(missing_ok=True)
    return InstallResult(
        name=ckpt.name, path=path, status="installed", url=redact(url), size=size, sha256=sha, sha256_check=how,
        bytes_transferred=fetched.bytes_transferred if fetched else 0,
        resumed_from=fetched.resumed_from if fetched else 0, seconds=time.monotonic() - started)


def _present(ckpt: Checkpoint, cache: Cache, url: str, target: Path | None) -> InstallResult:
    root = target or cache.model_dir(ckpt.name)
    manifest = manifest_at(root, ckpt.name) or {}
    return InstallResult(name=ckpt.name, path=root, status="present",
                         url=redact(manifest.get("url", url)), size=manifest.get("size", 0),
                         sha256=manifest.get("sha256", ""), sha256_check=manifest.get("sha256_check", ""))


def _unpack_and_install(ckpt: Checkpoint, archive: Path, url: str, sha: str, size: int, how: str, fetched: Any,
                        run: _Run, target: Path) -> Path:
    check_free_space(target.parent, max(gzip_isize(archive), size) + SPACE_MARGIN, f"unpacking '{ckpt.name}'")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, so that one rename (same filesystem) puts the finished install in place.
    tmp = target.parent / f".tmp-{ckpt.name}-{process_token()}"
    try:
        try:
            # A damaged archive is deleted below, so the message must not tell the user to delete it.
            fix = (f"it was deleted — fetch {redact(url)} by hand to {archive} again, or unset ZOO_OFFLINE"
                   if run.offline else "it was deleted — run the command again to download it afresh")
            result = extract_archive(archive, tmp, ckpt.contents, run.limits, fix=fix)
        except ArchiveError:
            archive.unlink(missing_ok=True)  # a bad archive is never worth resuming or reusing
            raise
        files = {}
        for rel, _size in sorted(result.files.items()):
            p = result.root / rel
            files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p).hexdigest()}
        manifest = {
            "name": ckpt.name, "url": redact(url), "registry_url": redact(ckpt.url), "archive": archive.name,
            "size": size,
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
        old = target.with_name(f".old-{name}-{process_token()}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
