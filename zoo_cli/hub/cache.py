"""Layout of the local cache (``ZOO_HOME``) and queries on what is installed there.

    $ZOO_HOME/
      models/<name>/                unpacked checkpoint (the archive's single top folder stripped)
      models/<name>/.zoo/manifest.json   url, size, sha256, etag, date, zoo version, files
      models/<name>/.zoo/complete        written last: an install counts only when both exist
      downloads/<archive>.incomplete     partial download (+ .incomplete.json sidecar)
      downloads/<archive>                complete archive awaiting install (or kept with --keep-archive)
      locks/<name>.lock                  one lock per checkpoint (+ <name>.owner: who holds it)
      known_hashes.json                  sha256 recorded on first download of an unpinned URL (trust on first use)
      results/                           eval / bench results
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zoo_cli.atomic import write_json_atomic
from zoo_cli.constants import FROZEN_GRAPH, META_DIR
from zoo_cli.errors import CacheError
from zoo_cli.registry.types import Checkpoint
from zoo_cli.urls import redact

MANIFEST = "manifest.json"
COMPLETE = "complete"
KNOWN_HASHES = "known_hashes.json"
PARTIAL_SUFFIX = ".incomplete"


def is_installed_at(root: Path) -> bool:
    """Whether ``root`` holds a complete install (manifest and completion marker), in the cache or not."""
    meta = Path(root) / META_DIR
    return (meta / MANIFEST).is_file() and (meta / COMPLETE).is_file()


def manifest_at(root: Path, name: str) -> dict[str, Any] | None:
    """The manifest of the install at ``root`` (None when not installed); unreadable → CacheError."""
    if not is_installed_at(root):
        return None
    try:
        return json.loads((Path(root) / META_DIR / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CacheError(f"manifest of '{name}' is unreadable ({exc}); run 'zoo download {name} --force'") from None


class Cache:
    """Paths inside one cache root; creates nothing until asked to write."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def downloads_dir(self) -> Path:
        return self.home / "downloads"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    @property
    def results_dir(self) -> Path:
        return self.home / "results"

    def model_dir(self, name: str) -> Path:
        return self.models_dir / name

    def archive_path(self, ckpt: Checkpoint) -> Path:
        """Where a complete archive of ``ckpt`` lives between download and install."""
        return self.downloads_dir / ckpt.archive_filename

    def partial_path(self, ckpt: Checkpoint) -> Path:
        """The resumable partial download of ``ckpt`` (its sidecar is this path + '.json')."""
        return self.downloads_dir / (ckpt.archive_filename + PARTIAL_SUFFIX)

    def lock_path(self, name: str) -> Path:
        return self.locks_dir / f"{name}.lock"

    @property
    def known_hashes_path(self) -> Path:
        return self.home / KNOWN_HASHES

    def is_installed(self, name: str) -> bool:
        """True only when the manifest and the completion marker both exist (never 'dir is non-empty')."""
        return is_installed_at(self.model_dir(name))

    def manifest(self, name: str) -> dict[str, Any] | None:
        return manifest_at(self.model_dir(name), name)

    def frozen_graph_path(self, ckpt: Checkpoint) -> Path:
        """Path of the installed ``frozen_inference_graph.pb``; fails with the command that fixes it."""
        if not ckpt.has_frozen_graph:
            raise CacheError(f"'{ckpt.name}' is a checkpoint-only archive (no {FROZEN_GRAPH}); it cannot be run")
        if not self.is_installed(ckpt.name):
            raise CacheError(f"'{ckpt.name}' is not downloaded; run 'zoo download {ckpt.name}'")
        path = self.model_dir(ckpt.name) / FROZEN_GRAPH
        if not path.is_file():
            raise CacheError(f"{path} is missing from the install; run 'zoo download {ckpt.name} --force'")
        return path

    # ------------------------------------------------------------ trust-on-first-use hash records

    def known_hashes(self) -> dict[str, dict[str, Any]]:
        """All recorded archive hashes, keyed by the registry URL."""
        try:
            data = json.loads(self.known_hashes_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CacheError(f"{self.known_hashes_path} is unreadable ({exc}); delete it to start recording "
                             "hashes afresh") from None
        return data if isinstance(data, dict) else {}

    def known_hash(self, url: str) -> dict[str, Any] | None:
        """The record {sha256, size, recorded} of ``url`` made on its first download, if any."""
        return self.known_hashes().get(redact(url))

    def record_hash(self, url: str, sha256: str, size: int) -> None:
        """Remember the hash of an unpinned archive so later downloads are compared against it."""
        self._update_known(url, {"sha256": sha256, "size": size,
                                 "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def forget_hash(self, url: str) -> bool:
        """Drop the recorded hash of ``url``; True when there was one."""
        return self._update_known(url, None)

    def _update_known(self, url: str, record: dict[str, Any] | None) -> bool:
        from filelock import FileLock  # light; imported here so read-only commands never touch it

        self.locks_dir.mkdir(parents=True, exist_ok=True)
        url = redact(url)  # the record is keyed by the URL without credentials: nothing secret on disk
        with FileLock(str(self.locks_dir / "known_hashes.lock")):
            data = self.known_hashes()
            existed = url in data
            if record is None:
                data.pop(url, None)
            else:
                data[url] = record
            write_json_atomic(self.known_hashes_path, data, fsync=True)
        return existed
