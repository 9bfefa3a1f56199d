"""The checkpoint registry: loading ``registry.yaml`` and looking up, filtering and sorting its checkpoints.

Names match exactly, by wildcard (``mobilenetv2_*``) or, failing both, with a did-you-mean suggestion (timm's
``_registry.py`` filters the same way).
"""

from __future__ import annotations

import difflib
import fnmatch
from pathlib import Path
from typing import Any, Callable, Iterable

from zoo_cli.errors import RegistryError, UnknownCheckpointError
from zoo_cli.registry.schema import parse_checkpoints
from zoo_cli.registry.types import Checkpoint

SORT_FIELDS = ("name", "dataset", "backbone", "miou", "madds", "size")


class Registry:
    """An ordered, validated collection of checkpoints, with lookup and filtering."""

    def __init__(self, checkpoints: Iterable[Checkpoint], source: str = "<memory>") -> None:
        self.source = source
        self._by_name: dict[str, Checkpoint] = {}
        for ckpt in checkpoints:
            if ckpt.name in self._by_name:
                raise RegistryError(f"{source}:{ckpt.line}: checkpoint '{ckpt.name}' is listed twice")
            self._by_name[ckpt.name] = ckpt

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> Checkpoint:
        """The checkpoint called ``name``; an unknown name suggests the closest one."""
        try:
            return self._by_name[name]
        except KeyError:
            pass
        lowered = {n.lower(): n for n in self._by_name}
        if name.lower() in lowered:
            return self._by_name[lowered[name.lower()]]
        hint = difflib.get_close_matches(name, self.names, n=1, cutoff=0.4)
        suffix = f"; did you mean '{hint[0]}'?" if hint else "; run 'zoo list' to see the names"
        raise UnknownCheckpointError(f"unknown checkpoint '{name}'{suffix}")

    def resolve(self, names_or_patterns: Iterable[str]) -> list[Checkpoint]:
        """Checkpoints for exact names or wildcard patterns, in registry order; unknown names fail."""
        chosen: dict[str, Checkpoint] = {}
        for item in names_or_patterns:
            if is_pattern(item):
                matched = self.filter([item])
                if not matched:
                    raise UnknownCheckpointError(f"pattern '{item}' matches no checkpoint; run 'zoo list'")
                for ckpt in matched:
                    chosen.setdefault(ckpt.name, ckpt)
            else:
                ckpt = self.get(item)
                chosen.setdefault(ckpt.name, ckpt)
        return list(chosen.values())

    def filter(
        self,
        patterns: Iterable[str] = (),
        *,
        dataset: str | None = None,
        backbone: str | None = None,
        min_miou: float | None = None,
        max_size_mb: float | None = None,
        predicate: Callable[[Checkpoint], bool] | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints matching any of the wildcard ``patterns`` (case-insensitive) and every filter."""
        patterns = list(patterns)
        out = []
        for ckpt in self:
            if patterns and not any(name_matches(p, ckpt.name) for p in patterns):
                continue
            if dataset and ckpt.dataset != dataset.lower():
                continue
            if backbone and not fnmatch.fnmatchcase(ckpt.backbone.lower(), _contains(backbone.lower())):
                continue
            if min_miou is not None and (ckpt.best_miou is None or ckpt.best_miou < min_miou):
                continue
            if max_size_mb is not None and (ckpt.size_mb is None or ckpt.size_mb > max_size_mb):
                continue
            if predicate is not None and not predicate(ckpt):
                continue
            out.append(ckpt)
        return out


def is_pattern(text: str) -> bool:
    """Whether a command-line name is a wildcard pattern (``*``, ``?``, ``[...]``) rather than a name."""
    return any(c in text for c in "*?[")


def name_matches(pattern: str, name: str) -> bool:
    """The one rule every command uses to match a checkpoint name: shell wildcards, case-insensitive."""
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())


def _contains(pattern: str) -> str:
    """A backbone filter matches as a substring unless it already has wildcards ('xception' → '*xception*')."""
    return pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"


def sort_checkpoints(checkpoints: list[Checkpoint], key: str) -> list[Checkpoint]:
    """Sort by one of SORT_FIELDS; unknown values (None) sort last; mIOU sorts best first."""
    if key not in SORT_FIELDS:
        raise RegistryError(f"cannot sort by '{key}'; choose one of {', '.join(SORT_FIELDS)}")
    getters: dict[str, Callable[[Checkpoint], Any]] = {
        "name": lambda c: c.name.lower(),
        "dataset": lambda c: c.dataset,
        "backbone": lambda c: c.backbone.lower(),
        "miou": lambda c: None if c.best_miou is None else -c.best_miou,
        "madds": lambda c: c.min_madds,
        "size": lambda c: c.size_mb,
    }
    get = getters[key]
    return sorted(checkpoints, key=lambda c: (get(c) is None, get(c) if get(c) is not None else 0))


def parse_registry(text: str, source: str = "<string>") -> Registry:
    """Parse and validate registry YAML text; errors read ``source:line: where: what``."""
    return Registry(parse_checkpoints(text, source), source)


def builtin_registry_path() -> Path:
    """The registry shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "registry.yaml"


def load_registry(path: Path | str | None = None) -> Registry:
    """Load and validate a registry file (the built-in one when ``path`` is None)."""
    path = Path(path) if path is not None else builtin_registry_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"registry file {path} does not exist; check ZOO_REGISTRY or --registry") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read registry file {path}: {exc}") from None
    return parse_registry(text, str(path))
