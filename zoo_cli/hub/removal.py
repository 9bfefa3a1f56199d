"""Removing what the cache holds: installs (``zoo rm``), stale partial downloads and leftover temporary folders
(``zoo cache prune``), and what everything takes on disk (``zoo cache``)."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from zoo_cli.errors import CacheError
from zoo_cli.hub.cache import PARTIAL_SUFFIX, Cache
from zoo_cli.hub.claims import (
    TEMP_PREFIXES,
    claim_is_abandoned,
    claim_owner,
    is_resumable,
    process_token,
    read_sidecar,
    sidecar_path,
    token_process_runs,
)
from zoo_cli.hub.disk import cache_writes, free_bytes
from zoo_cli.hub.locks import checkpoint_lock, lock_is_free
from zoo_cli.registry.catalog import Registry, is_pattern, name_matches
from zoo_cli.registry.types import Checkpoint


def remove_checkpoint(name: str, cache: Cache, *, archive_filename: str | None = None,
                      forget_url: str | None = None, lock_timeout: float = 60.0,
                      log: Callable[[str], None] | None = None) -> dict[str, Any]:
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
            aside = target.with_name(f".rm-{name}-{process_token()}")
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
                       forget_hash: bool = False, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
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


def _partial_owner_names(path: Path, registry: Registry | None) -> set[str]:
    archive_name = path.name.split(PARTIAL_SUFFIX, 1)[0]
    names = {c.name for c in registry if c.archive_filename == archive_name} if registry else set()
    for data in (path, path.with_name(archive_name + PARTIAL_SUFFIX)):
        try:
            names.add(read_sidecar(data)["checkpoint"])
        except (KeyError, TypeError):
            pass
    return names


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
                    partials.append({**entry, "resumable": is_resumable(f), "left_by_pid": claim_owner(f)})
                else:
                    partials.append({**entry, "in_progress": True})
            elif PARTIAL_SUFFIX in f.name:
                partials.append({**entry, "resumable": is_resumable(f)})
            else:
                archives.append(entry)
    total = sum(e["bytes"] for group in (models, leftovers, partials, archives) for e in group)
    return {"home": str(cache.home), "models": models, "partials": partials, "archives": archives,
            "leftovers": leftovers, "total_bytes": total, "free_bytes": free_bytes(cache.home)}


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
                if not data.exists() and not token_process_runs(data.name):
                    drop(f, "sidecar without its partial download")
                continue
            if not f.is_file():
                continue
            sidecar = sidecar_path(f)
            if f.name.endswith(PARTIAL_SUFFIX):
                owners = _partial_owner_names(f, registry)
                if all(lock_is_free(cache, n) for n in owners):
                    drop(f, "partial download, no process holds it")
                    if sidecar.exists():
                        drop(sidecar, "sidecar of a removed partial")
            elif PARTIAL_SUFFIX + "." in f.name:
                if claim_is_abandoned(f):
                    drop(f, "partial download left by a process that is gone")
                    if sidecar.exists():
                        drop(sidecar, "sidecar of a removed partial")
            elif f.name.endswith(".tmp"):
                if not token_process_runs(f.name.removesuffix(".tmp")):
                    drop(f, "temporary file")
            elif archives:
                owners = {c.name for c in registry if c.archive_filename == f.name} if registry else set()
                if all(lock_is_free(cache, n) for n in owners):
                    drop(f, "complete archive (kept or left over)")
    if cache.models_dir.is_dir():
        for d in sorted(cache.models_dir.iterdir()):
            if d.name.startswith(TEMP_PREFIXES) and not token_process_runs(d.name):
                drop(d, "leftover of an interrupted install/removal")
    return out
