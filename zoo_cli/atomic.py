"""Atomic file writes: the data goes to a temporary name beside the target, then one rename puts it in place.

A crash or Ctrl-C mid-write leaves at most a hidden ``.<name>.<pid>-<hex><suffix>`` file, never a half-written
file at the final path. :func:`read_json_object` reads back the small JSON records zoo keeps for itself.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds, else delete it.

    ``suffix`` lets writers that pick a format from the file name (Pillow, matplotlib) see the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would stick to the final file; a pid + random name is just as private.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None or os.fspath(exc.filename) == os.fspath(tmp):
            # Name the file the user asked for, not our hidden temporary one.
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_paths(paths: Sequence[Path | str], suffix: str = ".tmp") -> Iterator[list[Path]]:
    """:func:`atomic_path` for files that only make sense together (a label PNG and its overlay): yield one
    temporary per path; when the block succeeds rename them all into place. An error or Ctrl-C between the
    renames removes every file of the group (the ones already renamed and their older partners), so the
    group is either all new or absent, never half of it and never a half-written file."""
    finals = [Path(p) for p in paths]
    temps = [p.with_name(f".{p.name}.{os.getpid()}-{os.urandom(4).hex()}{suffix}") for p in finals]
    for path in finals:
        path.parent.mkdir(parents=True, exist_ok=True)
    renamed = 0
    try:
        yield temps
        for tmp, path in zip(temps, finals):
            os.replace(tmp, path)
            renamed += 1
    except BaseException as exc:
        if 0 < renamed < len(finals):
            for path in finals:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is not None and os.fspath(exc.filename) in map(os.fspath, temps):
            final = finals[[os.fspath(t) for t in temps].index(os.fspath(exc.filename))]
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(final)) from exc
        raise
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path | str, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; ``fsync`` also flushes it to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return Path(path)


def write_text_atomic(path: Path | str, text: str, *, fsync: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: Path | str, data: Any, *, fsync: bool = False) -> Path:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n", fsync=fsync)


def read_json_object(path: Path | str) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, unreadable, not JSON or not an object (for zoo's
    own bookkeeping files, where a damaged one only means "nothing recorded")."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
