"""Bench results and where they are stored: one JSON file per model x setting x conditions under
``<cache>/results/bench``, the files ``zoo report`` reads back.

File names are keys (a new run replaces only a run under the same conditions): never change how they are built.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_cli.atomic import write_json_atomic
from zoo_cli.bench.compare import Comparison
from zoo_cli.bench.settings import BenchSetting, size_text

SCHEMA_VERSION = 1


@dataclass
class BenchResult:
    """Everything measured for one model x setting on this machine, plus what was reported."""

    name: str
    setting: BenchSetting
    reported: dict[str, Any]
    measured: dict[str, Any]
    conditions: dict[str, Any]
    comparison: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION, "name": self.name, "setting": self.setting.key,
            "reported": self.reported, "measured": self.measured, "conditions": self.conditions,
            "comparison": [c.to_json() for c in self.comparison], "notes": list(self.notes),
            "path": str(self.path) if self.path else None,
        }


def eval_subset(eval_info: dict[str, Any] | None) -> int | None:
    """The image count when a result's mIOU covers only part of its split (``--limit``), else None."""
    ev = eval_info or {}
    if "images" not in ev:
        return None
    total = ev.get("split_images")
    if total is not None:
        return ev["images"] if ev["images"] < total else None
    return ev["images"] if ev.get("limit") is not None else None  # older files: no split size stored


def results_dir(cache: Any) -> Path:
    """Where bench results live: ``<cache>/results/bench``."""
    return Path(cache.results_dir) / "bench"


def result_file_name(result: BenchResult) -> str:
    """``<name>__<setting>__<HxW>__<machine+threads>[__miou|__miou-limitN].json``: one file per set of conditions
    that change the numbers, so a run at another input size or thread count never replaces one at the reference
    size, a run without ``--data-dir`` never replaces one that measured mIOU, and a ``--limit N`` run that covered
    only part of the split never replaces a full-split one."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.name)
    size = size_text(result.conditions["input_size"])
    miou = ""
    if result.measured.get("miou") is not None:
        subset = eval_subset(result.conditions.get("eval"))
        miou = "__miou" if subset is None else f"__miou-limit{result.conditions['eval'].get('limit') or subset}"
    rewrite = result.conditions.get("output_stride_rewrite") or {}
    stride = f"-os{rewrite['to']}" if rewrite and "failed" not in rewrite else ""  # never over the graph's own OS
    return f"{safe}__{result.setting.key}{stride}__{size}__{result.conditions['machine_key']}{miou}.json"


def save_result(result: BenchResult, directory: Path) -> Path:
    """Write the result as :func:`result_file_name` under ``directory`` atomically; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / result_file_name(result)
    result.path = path
    return write_json_atomic(path, result.to_json())


def load_results(directory: Path, skipped: list[tuple[Path, str]] | None = None) -> list[dict[str, Any]]:
    """Every stored bench result (JSON dicts) under ``directory``; a file that cannot be read, is not JSON or is
    not a bench result is skipped, and recorded in ``skipped`` as (path, why) when a list is given."""
    out: list[dict[str, Any]] = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            why = f"cannot be read ({exc.strerror or exc})"
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            why = f"is not valid JSON ({str(exc).splitlines()[0][:80]})"
        else:
            if isinstance(data, dict) and "name" in data and isinstance(data.get("measured"), dict):
                data["path"] = str(path)
                out.append(data)
                continue
            why = "is not a zoo bench result (no 'name' and 'measured')"
        if skipped is not None:
            skipped.append((path, why))
    return out
