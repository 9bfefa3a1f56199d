"""Files a process owns by name in the cache, and whether that process still runs.

A partial download (``downloads/<file>.incomplete``) carries a sidecar (``<partial>.json``: url, ETag,
Last-Modified, total length, checkpoint, host). Before appending to it, a transfer *claims* it by an atomic
rename to ``<partial>.<pid>-<hex>``, so two processes can never append to the same file even where file
locks do not work (network filesystems); when the process is gone (a crash, ``kill -9``) its claim is
abandoned and the next transfer takes the bytes over. Temporary folders beside an install
(``.tmp-/.old-/.rm-<name>-<pid>-<hex>``) carry the same ``<pid>-<hex>`` token, so ``zoo cache prune`` can
tell whether their process still runs.
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_cli.atomic import read_json_object, write_text_atomic
from zoo_cli.errors import ZooError
from zoo_cli.hub.cache import PARTIAL_SUFFIX
from zoo_cli.hub.disk import write_error

# Folders beside an install: being unpacked, a replaced install, an install being removed.
TEMP_PREFIXES = (".tmp-", ".old-", ".rm-")
_TOKEN = r"(\d+)-[0-9a-f]{6,8}"
_CLAIM_TOKEN = re.compile(r"\." + _TOKEN + "$")


def process_token(nbytes: int = 3) -> str:
    """``<pid>-<hex>``: the part of a name that says which process made the file (read back by the pid checks)."""
    return f"{os.getpid()}-{os.urandom(nbytes).hex()}"


def token_process_runs(name: str) -> bool:
    """Whether the process whose pid is embedded in a ``...<pid>-<hex>`` name still runs."""
    import psutil

    found = re.findall(_TOKEN, name)
    return bool(found) and psutil.pid_exists(int(found[-1]))


def sidecar_path(path: Path) -> Path:
    """The sidecar of a partial download (or of a claim of it): ``<path>.json``."""
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar of ``path`` as a dict; {} when it is missing, unreadable or not a JSON object."""
    return read_json_object(sidecar_path(path)) or {}


def pid_alive(pid: int, not_after: float | None = None) -> bool:
    """Whether process ``pid`` runs (a zombie does not). With ``not_after`` (a timestamp), a process started
    later than that is another one that reused the pid, so the original counts as gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if not_after is not None and proc.create_time() > not_after + 1.0:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell (access denied): assume it runs, the safe side
    return True


def claim_owner(path: Path) -> int | None:
    """The pid in a claimed partial's name (``<file>.incomplete.<pid>-<hex>``), or None."""
    m = _CLAIM_TOKEN.search(path.name)
    return int(m.group(1)) if m and PARTIAL_SUFFIX + "." in path.name else None


def claim_is_abandoned(path: Path) -> bool:
    """True for a claimed partial whose process is gone (killed by a signal, ``kill -9``, a crash, a reboot).

    Such bytes are resumable: the next transfer of the file takes them over. A claim made on another host
    (its sidecar names the host) is never judged from here, where that host's pids mean nothing.
    """
    pid = claim_owner(path)
    if pid is None:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    meta = read_sidecar(path)
    if meta.get("host") not in (None, socket.gethostname()):
        return False
    # A rename (which is how a claim is made) updates ctime: the owner existed at max(mtime, ctime).
    return not pid_alive(pid, not_after=max(st.st_mtime, st.st_ctime))


def abandoned_claims(partial: Path) -> list[Path]:
    """Claims of ``partial`` (``<partial>.<pid>-<hex>``) whose process is gone."""
    return [p for p in partial.parent.glob(glob.escape(partial.name) + ".*")
            if not p.name.endswith((".json", ".tmp")) and claim_is_abandoned(p)]


def resumable_bytes(partial: Path) -> int:
    """Bytes the next transfer would resume from: the shared partial or the largest one a dead process left."""
    sizes = [partial.stat().st_size] if partial.is_file() else []
    if partial.parent.is_dir():
        sizes.extend(p.stat().st_size for p in abandoned_claims(partial))
    return max(sizes, default=0)


def is_resumable(partial: Path) -> bool:
    """A partial can be resumed when its sidecar says where it came from (else the next run starts over)."""
    return bool(read_sidecar(partial).get("url"))


@dataclass
class Claim:
    """A partial download owned by this process under a private name (``<partial>.<pid>-<random>``)."""

    partial: Path
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    taken_from: int | None = None   # pid of the dead process whose partial this claim took over

    @classmethod
    def take(cls, partial: Path) -> "Claim":
        """Claim the bytes already downloaded — the shared partial, or the largest one a dead process left
        under its private name — or start an empty file."""
        path = partial.with_name(f"{partial.name}.{process_token(4)}")
        partial.parent.mkdir(parents=True, exist_ok=True)
        abandoned = abandoned_claims(partial)
        candidates = ([partial] if partial.exists() else []) + abandoned

        def rank(p: Path) -> tuple[bool, int]:
            try:
                return sidecar_path(p).exists(), p.stat().st_size
            except OSError:
                return False, -1

        for source in sorted(candidates, key=rank, reverse=True):
            try:
                # The atomic rename is the claim: if two processes race, exactly one gets the bytes.
                os.rename(source, path)
            except FileNotFoundError:
                continue
            side = sidecar_path(source)
            if not side.exists() and not partial.exists():
                # Killed between the two renames of a claim: its sidecar is still under the shared name.
                side = sidecar_path(partial)
            meta: dict[str, Any] = {}
            try:
                os.rename(side, sidecar_path(path))
            except OSError:
                pass
            else:
                meta = read_sidecar(path)
            for other in abandoned:
                if other != source:  # older copies of the same bytes whose owners are gone
                    other.unlink(missing_ok=True)
                    sidecar_path(other).unlink(missing_ok=True)
            return cls(partial, path, meta, taken_from=claim_owner(source))
        path.touch()
        return cls(partial, path, {})

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def save_meta(self) -> None:
        # The host lets another machine sharing this cache (network FS) tell that pids here are not its own.
        self.meta["host"] = socket.gethostname()
        try:
            write_text_atomic(sidecar_path(self.path), json.dumps(self.meta))
        except OSError as exc:
            raise write_error(exc, sidecar_path(self.path)) from None

    def release(self) -> None:
        """Give the bytes back under the shared partial name so the next run resumes from them."""
        if not self.path.exists():
            return
        if self.size == 0:
            self.discard()
            return
        try:
            self.save_meta()
        except ZooError:
            # A full disk cannot take the sidecar either; the copy written when the body started holds
            # the same validators, so the bytes stay resumable without it (without any, the next run
            # starts over, which is still better than leaving them under this process's private name).
            pass
        # Renames need no free space, so this works on a full disk too.
        os.replace(self.path, self.partial)
        if sidecar_path(self.path).exists():
            os.replace(sidecar_path(self.path), sidecar_path(self.partial))
        else:
            sidecar_path(self.partial).unlink(missing_ok=True)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        sidecar_path(self.path).unlink(missing_ok=True)

    def finish(self, final: Path) -> None:
        # No fsync: the archive is re-verified (hash, gzip CRC) before anything is built from it, and a
        # flush of hundreds of MB would double the time of a download on loopback.
        os.replace(self.path, final)
        sidecar_path(self.path).unlink(missing_ok=True)
