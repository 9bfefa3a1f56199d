"""Which stored bench results a report shows for each (model, setting): Multiply-Adds and latency only from runs
at the input size the reported numbers refer to, mIOU from the run over the most images.

Reads only result dicts (as :func:`zoo_cli.bench.store.load_results` returns them) and the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from zoo_cli.bench.settings import default_input_size
from zoo_cli.errors import UsageError
from zoo_cli.registry.catalog import Registry
from zoo_cli.registry.scales import SINGLE_KEY
from zoo_cli.registry.types import Checkpoint


def _stamp(result: dict[str, Any]) -> str:
    return (result.get("conditions") or {}).get("timestamp", "")


def _newest(results: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    return max(results, key=_stamp, default=None)


def _eval_images(result: dict[str, Any]) -> int:
    return int(((result.get("conditions") or {}).get("eval") or {}).get("images") or 0)


def _best_miou(results: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The mIOU run to report: the one over the most images (a full split beats a ``--limit`` subset), then the
    newest."""
    return max(results, key=lambda r: (_eval_images(r), _stamp(r)), default=None)


def reference_size(ckpt: Checkpoint | None, result: dict[str, Any]) -> tuple[int, int] | None:
    """The input size the reported numbers refer to (as ``zoo bench`` picks it by default), None if unknown."""
    crop = (result.get("conditions") or {}).get("graph_crop")
    try:
        return tuple(default_input_size(ckpt, tuple(crop) if crop else None)[0])  # type: ignore[return-value]
    except UsageError:
        return None


def input_size(result: dict[str, Any]) -> tuple[int, ...] | None:
    """The input size a stored result was measured at."""
    size = (result.get("conditions") or {}).get("input_size")
    return tuple(size) if size else None


@dataclass
class Picked:
    """The stored results one (model, setting) is reported with.

    ``perf`` (Multiply-Adds, latency) is the newest run at the reference input size; ``miou`` the run that
    measured mIOU over the most images (a full split beats a ``--limit`` subset), newest first among equals (mIOU is evaluated at the eval crop whatever ``--input-size`` was, so any run counts).
    """

    perf: dict[str, Any] | None = None
    miou: dict[str, Any] | None = None


def pick_results(registry: Registry, results: Iterable[dict[str, Any]]
                 ) -> tuple[dict[tuple[str, str], Picked], list[dict[str, Any]]]:
    """Per (model, setting) the results the tables use (:class:`Picked`), and the newest run per other input
    size (reported apart, never mixed into the tables)."""
    known = set(registry.names)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        if r.get("measured"):
            groups.setdefault((r["name"], r.get("setting", SINGLE_KEY)), []).append(r)
    picked: dict[tuple[str, str], Picked] = {}
    others: list[dict[str, Any]] = []
    for key, group in groups.items():
        ckpt = registry.get(key[0]) if key[0] in known else None
        at_ref = [r for r in group if input_size(r) == reference_size(ckpt, r)]
        perf = _newest(at_ref)
        miou = _best_miou(r for r in group if r["measured"].get("miou") is not None)
        if perf is not None or miou is not None:
            picked[key] = Picked(perf, miou)
        by_size: dict[Any, list[dict[str, Any]]] = {}
        for r in group:
            if r not in at_ref:
                by_size.setdefault(input_size(r), []).append(r)
        others += [_newest(rs) for rs in by_size.values()]
    return picked, sorted(others, key=lambda r: (r["name"], r.get("setting", ""), input_size(r) or ()))
