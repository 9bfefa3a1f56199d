"""The disk under the cache: free space checked before a download or an unpack, and the one-line errors for a
full, read-only or blocked disk (``FileSystemError``, exit 8) instead of an OSError traceback."""

from __future__ import annotations

import errno
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from zoo_cli.errors import DownloadError, FileSystemError, ZooError
from zoo_cli.hub.cache import Cache
from zoo_cli.units import mb


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest parent that exists: where the filesystem a new file would land on can be asked."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds (or would hold) ``path``."""
    return shutil.disk_usage(existing_ancestor(path)).free


def check_free_space(path: Path, needed: int, what: str) -> None:
    """Fail (not warn) when the filesystem holding ``path`` has less than ``needed`` bytes free."""
    probe = existing_ancestor(path)
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise DownloadError(f"not enough disk space for {what}: needs {mb(needed)} on {probe}, only {mb(free)} "
                            "free; free some space or point ZOO_HOME at a larger disk")


def write_error(exc: OSError, path: Path | str) -> ZooError:
    """The user-facing error for an OSError raised while writing ``path`` in the cache (full, read-only...)."""
    where = exc.filename or path
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return FileSystemError(f"{what} while writing {where}; free some space or point ZOO_HOME at a larger disk")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return FileSystemError(f"{where} is not writable ({exc.strerror}); point ZOO_HOME at a writable directory")
    return FileSystemError(f"cannot write {where}: {exc.strerror or exc}; check that ZOO_HOME is a writable "
                           "directory with free space, or point ZOO_HOME elsewhere")


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
