"""One exception type per failure family; each carries a message fit for the user.

The CLI turns any ``ZooError`` into ``Error: <message>`` on one line and exits with ``exit_code``.
"""

from __future__ import annotations

import errno
import os
import stat


class ZooError(Exception):
    """Base of every error the tool reports to the user (no traceback unless ZOO_DEBUG=1)."""

    exit_code = 1


class UsageError(ZooError):
    """The command line asks for something that does not exist or does not fit."""

    exit_code = 2


class RegistryError(ZooError):
    """The registry file is missing, malformed, or does not name the checkpoint asked for."""

    exit_code = 2


class UnknownCheckpointError(RegistryError):
    """A checkpoint name is not in the registry."""


class ConfigError(ZooError):
    """An environment variable or global option has a value that cannot be used."""

    exit_code = 2


class DownloadError(ZooError):
    """The transfer failed (network, HTTP status, offline mode, disk space)."""

    exit_code = 3


class ChecksumError(ZooError):
    """Downloaded bytes do not match the pinned or recorded sha256 / length."""

    exit_code = 4


class ArchiveError(ZooError):
    """The archive is not a gzip tar, lacks expected members, or holds unsafe members."""

    exit_code = 4


class CacheError(ZooError):
    """The local cache is missing a model or holds an install that does not verify."""

    exit_code = 5


class ModelError(ZooError):
    """The frozen graph cannot be loaded, lacks the expected tensors, or cannot be re-targeted."""

    exit_code = 6


class DatasetError(ZooError):
    """A dataset directory, image or label file is missing, unreadable, or mismatched."""

    exit_code = 7


class FileSystemError(ZooError):
    """A file or directory could not be read or written (read-only disk, disk full, permissions)."""

    exit_code = 8


class ClusterError(ZooError):
    """The Ray cluster cannot be reached, or its workers died more often than the retries allow."""

    exit_code = 9


def describe_os_error(exc: OSError) -> str:
    """A one-line message for an OSError: what failed, on which path, and what fixes it."""
    path = exc.filename if exc.filename is not None else "a file"
    what = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        fix = "free some space, or point ZOO_HOME (or --out) at a larger disk"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "point ZOO_HOME (or --out) at a directory you can write to"
    elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
        fix = "check that the path exists"
    else:
        fix = "check the path and the disk"
    return f"{what}: {path}; {fix}"


def special_file_kind(path: os.PathLike | str) -> str | None:
    """``"a FIFO (named pipe)"``, ``"a character device"``, ... when ``path`` exists but is neither a regular file
    nor a directory (reading it would block or never end); None otherwise. Never opens the file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    for test, kind in kinds:
        if test(mode):
            return kind
    return None
