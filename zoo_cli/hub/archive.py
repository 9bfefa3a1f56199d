"""Safe, single-pass unpacking of a checkpoint ``.tar.gz``.

Every member is checked *before* it is written: no absolute paths, no ``..`` components, no links that
leave the archive's tree (symlink or hardlink), no paths through a symlink, no devices or FIFOs, no sparse
members, nothing named ``.zoo`` (our metadata folder), and caps on member count, unpacked size and
compression ratio (tar bombs). Extraction itself then runs through tarfile's ``data`` filter as a second
line of defence. The gzip CRC and length are checked by reading the stream to its end, and the unpacked
files must match the registry's ``contents`` globs.
"""

from __future__ import annotations

import errno
import fnmatch
import gzip
import os
import posixpath
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from zoo_cli.constants import META_DIR
from zoo_cli.errors import ArchiveError, CacheError, DownloadError
from zoo_cli.hub.content import GZIP_MAGIC, describe_non_archive, not_gzip_reason

_BUF = 1 << 20
_CKPT_STEP = re.compile(r"^model\.ckpt-\d+")


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps against tar bombs (defaults leave room for the zoo's largest, ~480 MB, archives)."""

    max_members: int = 10_000
    max_total_bytes: int = 16 << 30
    max_ratio: float = 100.0          # unpacked bytes per compressed byte; weights compress ~1.1x
    ratio_slack_bytes: int = 64 << 20  # tiny archives may legitimately exceed the ratio


@dataclass
class ExtractResult:
    """What was unpacked: the folder that holds the checkpoint and the files in it."""

    root: Path                          # dest/<top> when the archive has one top folder, else dest
    top: str | None
    files: dict[str, int] = field(default_factory=dict)  # path relative to root (posix) → size
    total_bytes: int = 0
    members: int = 0


REDOWNLOAD = "delete it and download again"


def check_gzip_file(path: Path, fix: str = REDOWNLOAD) -> None:
    """Fail with a clear message unless ``path`` starts like a gzip file (an HTML page, an uncompressed tar
    or another format says what it is). ``fix`` is what the message tells the user to do about it."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head.startswith(GZIP_MAGIC):
        what, quote, _fix = not_gzip_reason(head, None)
        page = describe_non_archive(head, None) is not None
        note = " (if it keeps happening, a proxy or the mirror is answering with an error page)" if page else ""
        raise ArchiveError(f"{path.name} is {what}{quote}, not a .tar.gz archive; {fix}{note}")


def gzip_isize(path: Path) -> int:
    """Uncompressed size from the gzip trailer (modulo 2**32); used only to estimate disk space."""
    with open(path, "rb") as fh:
        if fh.seek(0, os.SEEK_END) < 18:  # smaller than an empty gzip member: not gzip at all
            return 0
        fh.seek(-4, os.SEEK_END)
        return struct.unpack("<I", fh.read(4))[0]


def contents_missing(names: Iterable[str], contents: Iterable[str]) -> list[str]:
    """The ``contents`` globs that match none of ``names`` (basenames).

    TensorFlow names a checkpoint ``model.ckpt-<global step>`` as often as ``model.ckpt``, so a
    ``model.ckpt*`` pattern also accepts the step-suffixed form.
    """
    names = list(names)
    normalised = [_CKPT_STEP.sub("model.ckpt", n) for n in names]
    return [p for p in contents
            if not any(fnmatch.fnmatchcase(n, p) for n in names)
            and not any(fnmatch.fnmatchcase(n, p) for n in normalised)]


def _unsafe(member: tarfile.TarInfo, seen_files: set[str], symlinks: set[str]) -> str | None:
    """Why ``member`` must not be extracted, or None when it is safe."""
    name = member.name
    if not member.isdir():
        norm = posixpath.normpath(name) if name else name
        if norm in seen_files or norm in symlinks:
            # A second copy would silently replace the first (a real graph by 12 bytes of something else).
            return "appears twice (a later copy would overwrite the first)"
    if not name or "\x00" in name:
        return "has an empty name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        return "names the archive root"
    if ".." in parts:
        return "has a '..' component"
    if META_DIR in parts[:2]:
        return f"uses the reserved name '{META_DIR}'"
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in symlinks:
            return "is written through a symlink"
    if member.issparse():
        return "is a sparse file"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    if member.issym():
        target = member.linkname
        if target.startswith("/"):
            return f"is a symlink to the absolute path {target}"
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname("/".join(parts)), target))
        if resolved == ".." or resolved.startswith("../"):
            return f"is a symlink pointing outside the archive ({target})"
        return None
    if member.islnk():
        target = member.linkname
        if target.startswith("/") or ".." in target.split("/"):
            return f"is a hardlink pointing outside the archive ({target})"
        if posixpath.normpath(target) not in seen_files:
            return f"is a hardlink to {target}, which is not an earlier file of the archive"
        return None
    if not (member.isreg() or member.isdir()):
        return f"has an unsupported type ({member.type!r})"
    return None


def extract_archive(archive: Path, dest: Path, contents: Iterable[str] = (),
                    limits: ArchiveLimits | None = None, fix: str = REDOWNLOAD) -> ExtractResult:
    """Unpack ``archive`` into the (new, empty) directory ``dest``; raise ArchiveError on anything unsafe.

    On error ``dest`` may hold a partial tree: the caller owns it and removes it (it is a temporary
    directory beside the install target, never the target itself). ``fix`` ends the message about a corrupt,
    truncated or empty archive (a caller that deletes the file says what to do instead).
    """
    limits = limits or ArchiveLimits()
    check_gzip_file(archive, fix)
    compressed = archive.stat().st_size
    budget = min(limits.max_total_bytes, int(compressed * limits.max_ratio) + limits.ratio_slack_bytes)
    dest.mkdir(parents=True, exist_ok=True)
    seen_files: set[str] = set()
    symlinks: set[str] = set()
    sizes: dict[str, int] = {}
    total = members = 0
    try:
        with gzip.open(archive, "rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|", bufsize=_BUF) as tar:
                tar.copybufsize = _BUF
                for member in tar:
                    members += 1
                    if members > limits.max_members:
                        raise ArchiveError(f"{archive.name} has more than {limits.max_members} members; "
                                           "refusing it as a possible tar bomb")
                    why = _unsafe(member, seen_files, symlinks)
                    if why:
                        raise ArchiveError(f"{archive.name}: member '{member.name}' {why}; refusing to unpack "
                                           "this archive (nothing was installed)")
                    if member.isreg():
                        total += member.size
                        if total > budget:
                            raise ArchiveError(
                                f"{archive.name} unpacks to more than {budget} bytes ({compressed} compressed); "
                                "refusing it as a possible tar bomb")
                    tar.extract(member, dest, set_attrs=True, filter="data")
                    norm = posixpath.normpath(member.name)
                    if member.isreg() or member.islnk():
                        seen_files.add(norm)
                        sizes[norm] = member.size if member.isreg() else sizes.get(posixpath.normpath(
                            member.linkname), 0)
                    elif member.issym():
                        symlinks.add(norm)
            # Read to the end so gzip checks its CRC and length trailer (tar stops at its end blocks).
            while gz.read(_BUF):
                pass
    except ArchiveError:
        raise
    except tarfile.FilterError as exc:
        raise ArchiveError(f"{archive.name}: {exc}; refusing to unpack this archive") from None
    except OSError as exc:
        if isinstance(exc, gzip.BadGzipFile) or exc.errno is None:
            raise ArchiveError(f"{archive.name} is corrupt or truncated ({exc}); {fix}") \
                from None
        if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
            raise ArchiveError(f"{archive.name} is malformed ({exc.strerror}: {exc.filename}); refusing to unpack "
                               "it — check the URL/ZOO_MIRROR") from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError(f"disk full while unpacking {archive.name} into {dest.parent}; free some space "
                                "or point ZOO_HOME at a larger disk") from None
        raise CacheError(f"cannot unpack {archive.name} into {dest}: {exc.strerror} ({exc.filename}); check the "
                         "permissions of ZOO_HOME") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"{archive.name} is corrupt or truncated ({exc}); {fix}") \
            from None
    if members == 0:
        raise ArchiveError(f"{archive.name} is an empty archive; {fix}")

    entries = list(dest.iterdir())
    top = entries[0].name if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() else None
    root = dest / top if top else dest
    prefix = f"{top}/" if top else ""
    files = {name[len(prefix):]: size for name, size in sizes.items() if name.startswith(prefix)}
    missing = contents_missing([n for n in files if "/" not in n], contents)
    folders = sorted(e.name for e in entries if e.is_dir() and not e.is_symlink())
    if missing and top is None and len(folders) > 1:
        raise ArchiveError(f"{archive.name} has {len(folders)} top-level folders ({', '.join(folders[:4])}"
                           f"{', ...' if len(folders) > 4 else ''}) where a checkpoint archive has one; it is not "
                           "a checkpoint archive the zoo can install — check the URL/ZOO_MIRROR or the registry")
    if missing:
        present = ", ".join(sorted(files)[:8]) or "nothing"
        raise ArchiveError(f"{archive.name} lacks {', '.join(missing)} (holds {present}); it is not the expected "
                           "checkpoint — check the URL/ZOO_MIRROR or the registry's 'contents'")
    return ExtractResult(root=root, top=top, files=files, total_bytes=total, members=members)
