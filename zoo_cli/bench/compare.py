"""Reported vs measured: which reported row a measurement is compared with, and the lines of that comparison.

Unlike conditions are never compared: another output stride (every metric), or another input size than the
reported numbers refer to (Multiply-Adds and runtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from zoo_cli.bench.settings import BenchSetting, size_text
from zoo_cli.registry.types import SEED_MACHINE, EvalRow


@dataclass
class Comparison:
    """One line of the reported-vs-measured table."""

    metric: str
    unit: str
    reported: float | None
    measured: float | None
    comparable: bool
    note: str = ""
    why: str = ""  # short reason shown in the Δ cell, e.g. "input 10x10 vs 129x129"

    @property
    def delta(self) -> float | None:
        if not self.comparable or self.reported is None or self.measured is None:
            return None
        return self.measured - self.reported

    @property
    def delta_pct(self) -> float | None:
        d = self.delta
        if d is None or not self.reported:
            return None
        return 100.0 * d / self.reported

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "unit": self.unit, "reported": self.reported, "measured": self.measured,
                "comparable": self.comparable, "delta": self.delta, "delta_pct": self.delta_pct,
                "note": self.note, "why": self.why}


def pick_row(setting: BenchSetting, graph_os: int | None) -> EvalRow | None:
    """The reported row to compare with: the one at the graph's output stride when several share the setting."""
    for row in setting.rows:
        if row.output_stride == graph_os:
            return row
    return setting.rows[0] if setting.rows else None


def reported_facts(setting: BenchSetting, graph_os: int | None = None,
                   reported_on: str = SEED_MACHINE) -> dict[str, Any]:
    """A result's ``reported`` part: the :func:`pick_row` row, where it was measured, and the setting's other
    rows (``{}`` when nothing is reported for the setting)."""
    row = pick_row(setting, graph_os)
    if row is None:
        return {}
    return {**row.to_json(), "reported_on": reported_on,
            "conditions": f"{row.describe()}, {row.split}, {reported_on}",
            "other_rows": [r.to_json() for r in setting.rows if r is not row]}


def compare(row: EvalRow | None, measured: dict[str, Any], graph_os: int | None,
            input_size: Sequence[int] | None = None, reference_size: Sequence[int] | None = None,
            madds_note: str | None = None) -> list[Comparison]:
    """Reported-vs-measured lines for one setting; unlike conditions are not compared: another output stride
    (every metric), or an ``input_size`` other than the ``reference_size`` the reported numbers refer to
    (Multiply-Adds and runtime; mIOU is evaluated at the eval crop whatever the input size). ``madds_note``
    (the registry's) says what the reported Multiply-Adds figure counts when it is not what zoo counts."""
    lat = measured.get("latency_ms") or {}
    lines = []
    reasons = []
    if row is None:
        reasons.append("no reported row for this setting")
    elif graph_os is not None and graph_os != row.output_stride:
        reasons.append(f"not comparable: the graph runs at OS {graph_os}, the reported row is OS "
                       f"{row.output_stride}")
    ok = not reasons
    note = reasons[0] if reasons else ""
    size_ok, size_note, size_why = ok, note, ""
    if ok and input_size is not None and reference_size is not None and tuple(input_size) != tuple(reference_size):
        size_ok, size_why = False, f"input {size_text(input_size)} vs {size_text(reference_size)}"
        size_note = (f"not comparable: measured at input {size_text(input_size)}, the reported Multiply-Adds and "
                     f"runtime are at {size_text(reference_size)}; drop --input-size to compare")

    def rep(attr: str) -> float | None:
        return getattr(row, attr) if row is not None else None

    madds_text = size_note or "measured: convs + MatMul"
    if madds_note and size_ok:
        madds_text = f"{madds_text}; {madds_note}"
    lines.append(Comparison("Multiply-Adds", "B", rep("madds_billion"), measured.get("madds_billion"), size_ok,
                            madds_text, size_why))
    runtime = rep("runtime_s")
    lines.append(Comparison("CPU runtime", "ms", runtime * 1000.0 if runtime is not None else None,
                            lat.get("mean"), size_ok, size_note or "measured: mean wall time per image", size_why))
    lines.append(Comparison("mIOU", "%", rep("miou"), measured.get("miou"), ok,
                            note or ("" if measured.get("miou") is not None else "not measured (pass --data-dir)")))
    lines.append(Comparison("pixel accuracy", "%", rep("pixel_accuracy"), measured.get("pixel_accuracy"), ok, note))
    lines.append(Comparison("params", "M", None, measured.get("params_million"), False, "not reported"))
    lines.append(Comparison("peak RSS", "MiB", None, measured.get("peak_rss_mb"), False, "not reported"))
    lines.append(Comparison("throughput", "GFLOP/s", None, measured.get("gflops_per_s"), False,
                            "2 x Multiply-Adds / p50"))
    return lines
