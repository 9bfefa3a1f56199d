"""One lock per checkpoint (``locks/<name>.lock``), and who holds it (``locks/<name>.owner``).

An install or a removal of a checkpoint holds its lock, so concurrent callers make one transfer and a removal
never pulls files from under a download; a waiting caller says who holds the lock.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from zoo_cli.atomic import write_json_atomic
from zoo_cli.errors import DownloadError
from zoo_cli.hub.cache import Cache
from zoo_cli.urls import redact


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
def checkpoint_lock(cache: Cache, name: str, *, log: Callable[[str], None] | None = None,
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


def lock_is_free(cache: Cache, name: str) -> bool:
    """Whether no process holds the lock of ``name`` now."""
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
