"""Layout of the local cache (``ZOO_HOME``) and queries on what is installed there.

    $ZOO_HOME/
      models/<name>/                unpacked checkpoint (the archive's single top folder stripped)
      models/<name>/.zoo/manifest.json   url, size, sha256, etag, date, zoo version, files
      models/<name>/.zoo/complete        written last: an install counts only when both exist
      downloads/<archive>.incomplete     partial download (+ .incomplete.json sidecar)
      locks/<name>.lock                  one lock per checkpoint
      results/                           eval / bench results
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo_cli.errors import CacheError
from zoo_cli.registry import FROZEN_GRAPH, Checkpoint

META_DIR = ".zoo"
MANIFEST = "manifest.json"
COMPLETE = "complete"


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

    def manifest_path(self, name: str) -> Path:
        return self.model_dir(name) / META_DIR / MANIFEST

    def is_installed(self, name: str) -> bool:
        """True only when the manifest and the completion marker both exist (never 'dir is non-empty')."""
        meta = self.model_dir(name) / META_DIR
        return (meta / MANIFEST).is_file() and (meta / COMPLETE).is_file()

    def manifest(self, name: str) -> dict[str, Any] | None:
        if not self.is_installed(name):
            return None
        try:
            return json.loads(self.manifest_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CacheError(
                f"manifest of '{name}' is unreadable ({exc}); run 'zoo download {name} --force'"
            ) from None

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
