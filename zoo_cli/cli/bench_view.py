"""How ``zoo bench`` results look on a terminal (used by ``zoo bench`` and ``zoo demo``).

A result prints as a title line, two condition lines (where the reported numbers come from, and under which
conditions ours were measured) and a compact table: metric | reported | measured | Δ | note.
Light module: rich only, no TensorFlow.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from zoo_cli.bench.compare import Comparison
from zoo_cli.bench.store import BenchResult
from zoo_cli.registry.scales import flip_label, scales_label
from zoo_cli.units import fmt_madds


def fmt_value(value: Any, unit: str = "") -> str:
    """A table cell: percentages with 2 decimals, Multiply-Adds (unit "B") as ``zoo list`` prints them
    (:func:`zoo_cli.units.fmt_madds`), other numbers with 4 significant digits, '-' for unknown."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)) and unit == "B":
        return fmt_madds(float(value))
    if isinstance(value, float):
        if unit == "%":
            return f"{value:.2f}"
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def fmt_delta(line: Comparison, short: bool = False) -> str:
    """Δ cell: absolute (points for percentages) and relative difference, or why there is none (``short``: only
    'not comparable', when the reason is printed above the table anyway and the long cell would not fit)."""
    if line.comparable and line.delta is not None:
        if line.unit == "%":
            points = line.delta if abs(line.delta) >= 0.005 else 0.0  # no "-0.00" for a rounding-level difference
            return f"{points:+.2f} pt"
        text = f"{line.delta:+.{3 if abs(line.delta) < 0.1 else 2}f} {line.unit}"
        return text + (f" ({line.delta_pct:+.1f}%)" if line.delta_pct is not None else "")
    if line.reported is not None and not line.comparable:
        return f"not comparable ({line.why})" if line.why and not short else "not comparable"
    return "-"


def _threads(threads: Any) -> str:
    return f"{threads} threads" if isinstance(threads, int) else "all threads"


def reported_conditions(result: BenchResult) -> str:
    """One line: output stride, scales, flip, split and machine of the reported row (or that there is none)."""
    rep = result.reported
    if not rep:
        return "no reported row for this setting"
    text = (f"OS {rep['output_stride']}, {scales_label(rep['scales'])}, {flip_label(rep['flip'])}, "
            f"{rep['split']} split; {rep.get('reported_on', '?')}")
    others = [f"OS {r['output_stride']}" for r in rep.get("other_rows") or []]
    if others:
        text += f" (also reported at {', '.join(others)}: not compared)"
    return text


def measured_conditions(result: BenchResult) -> str:
    """One line: OS from the graph, scales, flip, input size, CPU, threads, images used for each measurement."""
    c = result.conditions
    size = "x".join(map(str, c["input_size"]))
    text = (f"OS {c.get('output_stride') or '?'} (from graph), {scales_label(c['scales'])}, "
            f"{flip_label(c['flip'])}, {size} input ({c.get('input_size_source', '?')}); "
            f"{c.get('cpu', '?')}, {_threads(c.get('threads'))}; timing on 1 random image")
    sizes = [tuple(s) for s in c.get("scaled_sizes") or []]
    if len(sizes) > 1:
        text += f" (run at {', '.join(f'{h}x{w}' for h, w in sizes)})"
    ev = c.get("eval")
    if ev and "images" in ev:
        text += f"; mIOU on {ev['images']} {ev.get('dataset', '')} {ev.get('split', '')} images"
    elif ev and ev.get("skipped"):
        text += "; mIOU not measured"
    return text


def print_labelled(out: Console, label: str, text: str, style: str = "") -> None:
    """``label text`` on one line, or wrapped with the continuation lines indented under ``text``."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold", style=style or None)
    grid.add_row(label, text)
    out.print(grid)


def _rows(result: BenchResult, short: bool = False) -> list[tuple[str, str, str, str, str]]:
    """(metric, reported, measured, Δ, note) for every line of the comparison table."""
    m = result.measured
    lat = m["latency_ms"]
    rows = []
    for line in result.comparison:
        note = "" if line.note.startswith("not comparable") else line.note.removeprefix("measured: ")
        measured = line.measured
        if line.metric == "Multiply-Adds" and m.get("madds") is not None:
            measured = m["madds"] / 1e9  # the exact count: madds_billion is rounded to 4 decimals (0.0003)
        rows.append((f"{line.metric} ({line.unit})", fmt_value(line.reported, line.unit),
                     fmt_value(measured, line.unit), fmt_delta(line, short), note))
        if line.metric == "Multiply-Adds" and m.get("tfprof_madds_billion") is not None:
            rows.append(("  tfprof count (B)", "-", fmt_value(m["tfprof_madds_billion"], "B"), "-",
                         "float_ops/2: + elementwise, pooling, ArgMax"))
        if line.metric == "CPU runtime":
            rows.append(("latency p50/p90 (ms)", "-", f"{lat['p50']:.4g}/{lat['p90']:.4g}", "-",
                         f"{lat['runs']} runs after {lat['warmup']} warm-up, std {lat['std']:.2g}"))
    return rows


def _table(rows: list[tuple[str, ...]], with_notes: bool) -> Table:
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("metric", no_wrap=True)
    table.add_column("reported", justify="right", no_wrap=True)
    table.add_column("measured", justify="right", no_wrap=True)
    table.add_column("Δ", justify="right", no_wrap=True)
    if with_notes:
        table.add_column("note", no_wrap=True)
    for row in rows:
        table.add_row(*(row if with_notes else row[:4]))
    return table


def render_result(out: Console, result: BenchResult) -> None:
    """Print one bench result: title, reported/measured conditions, and the comparison table.

    When the notes do not fit beside the table (e.g. 80 columns) they follow it, one indented line per metric,
    instead of wrapping each cell over several lines.
    """
    from rich.measure import Measurement

    out.print(f"[bold]{result.name}[/bold] — {result.setting.describe()}")
    for note in result.notes:
        print_labelled(out, " ", note, "yellow")
    if not result.measured:
        return
    conditions = Table.grid(padding=(0, 1))
    conditions.add_column(style="bold", no_wrap=True)
    conditions.add_column(overflow="fold")
    conditions.add_row("  reported:", reported_conditions(result))
    conditions.add_row("  measured:", measured_conditions(result))
    out.print(conditions)
    for reason in sorted({line.note for line in result.comparison if line.note.startswith("not comparable")}):
        print_labelled(out, " ", reason, "yellow")

    unbounded = out.options.update_width(10_000)  # the width the table wants, not clamped to the terminal's
    rows = _rows(result)
    narrow = Measurement.get(out, unbounded, _table(rows, with_notes=False)).maximum
    if narrow > out.width:  # e.g. "not comparable (input 65x65 vs 513x513)" at 80 columns: the line above says why
        rows = _rows(result, short=True)
        narrow = Measurement.get(out, unbounded, _table(rows, with_notes=False)).maximum
    longest = max((len(r[4]) for r in rows), default=0)
    inline = narrow + 3 + longest <= out.width  # 3 = the column separator and its padding
    out.print(_table(rows, with_notes=inline))
    if not inline:
        notes = Table.grid(padding=(0, 1))
        notes.add_column(no_wrap=True, style="dim")
        notes.add_column(overflow="fold")
        for metric, *_, note in rows:
            if note:
                notes.add_row(f"  {metric.strip()}:", note)
        out.print(notes)
    if result.path:
        print_labelled(out, "  saved", str(result.path))


def render_results(out: Console, results: list[BenchResult]) -> None:
    """Print several bench results, one block each."""
    for result in results:
        render_result(out, result)
