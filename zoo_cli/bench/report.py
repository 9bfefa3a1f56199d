"""``zoo report`` logic: the seed's results tables regenerated with measured columns beside the reported ones,
from the results ``zoo bench`` stored (picked by :mod:`zoo_cli.bench.picking`), and the Pareto plot
(:mod:`zoo_cli.bench.plot`).

Reads only JSON files and the registry; never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from zoo_cli.atomic import write_text_atomic
from zoo_cli.bench.picking import Picked, input_size, pick_results
from zoo_cli.bench.plot import pareto_plot, plot_format, plot_points
from zoo_cli.bench.settings import size_text
from zoo_cli.bench.store import eval_subset, load_results, results_dir
from zoo_cli.constants import DATASETS
from zoo_cli.registry.catalog import Registry
from zoo_cli.registry.scales import SINGLE_KEY, scales_notation, setting_key
from zoo_cli.registry.types import SEED_MACHINE, Checkpoint, EvalRow
from zoo_cli.units import fmt_madds

MIOU_TITLES = {"voc": "PASCAL mIOU", "cityscapes": "Cityscapes mIOU", "ade20k": "mIOU"}  # the seed's column names
NOT_COMPARABLE = "†"


def _subset_mark(result: dict[str, Any] | None) -> str:
    """`` (5 img)`` when the result's mIOU covers only part of its split, else ''."""
    n = eval_subset(((result or {}).get("conditions") or {}).get("eval"))
    return "" if n is None else f" ({n} img)"


def _num(value: float | None, suffix: str = "", digits: int = 2) -> str:
    if value is None:
        return "-"
    if value and abs(value) < 10 ** -(digits - 1):
        return f"{value:.3g}{suffix}"  # tiny graphs: keep significant digits instead of printing 0.00
    return f"{value:.{digits}f}{suffix}"


def _madds(value: float | None) -> str:
    """Multiply-Adds as ``zoo list`` prints them: the seed's 2 decimals, 3 significant digits below 1 B."""
    return "-" if value is None else fmt_madds(value) + "B"


def _billions(measured: dict[str, Any]) -> float | None:
    """Measured Multiply-Adds in billions, from the exact count when stored (tiny graphs keep their digits)."""
    if measured.get("madds") is not None:
        return measured["madds"] / 1e9
    return measured.get("madds_billion")


def _measured_cells(row: EvalRow, picked: Picked | None) -> tuple[str, str, str]:
    """(MAdds, runtime, mIOU) measured for an eval row; a dagger marks values at another output stride."""
    if picked is None:
        return "-", "-", "-"

    def mark(result: dict[str, Any] | None) -> str:
        graph_os = ((result or {}).get("conditions") or {}).get("output_stride")
        return f" {NOT_COMPARABLE} (OS {graph_os})" if graph_os is not None and graph_os != row.output_stride else ""

    m = (picked.perf or {}).get("measured") or {}
    lat = (m.get("latency_ms") or {}).get("mean")
    madds = _madds(_billions(m)) + (mark(picked.perf) if _billions(m) is not None else "")
    runtime = _num(lat / 1000.0 if lat is not None else None, digits=3) + (mark(picked.perf) if lat is not None else "")
    value = (picked.miou or {}).get("measured", {}).get("miou") if picked.miou else None
    miou = _num(value, "%") + (_subset_mark(picked.miou) + mark(picked.miou) if value is not None else "")
    return madds, runtime, miou


HEADER = ("Checkpoint name", "Eval OS", "Eval scales", "Left-right Flip", "Multiply-Adds", "Multiply-Adds (measured)",
          "Runtime (sec)", "Runtime (measured, sec)", "{miou}", "{miou} (measured)", "File Size")


def _table(checkpoints: list[Checkpoint], best: dict[tuple[str, str], Picked], miou_title: str) -> list[str]:
    header = [h.format(miou=miou_title) for h in HEADER]
    lines = [" | ".join(header), " | ".join(["---"] + [":---:"] * (len(header) - 1))]
    for ckpt in checkpoints:
        cells: list[list[str]] = [[] for _ in range(len(header) - 2)]
        for row in ckpt.evals:
            result = best.get((ckpt.name, setting_key(row.scales, row.flip)))
            madds, runtime, miou = _measured_cells(row, result)
            values = [str(row.output_stride), f"[{scales_notation(row.scales)}]", "Yes" if row.flip else "No",
                      _madds(row.madds_billion), madds, _num(row.runtime_s, digits=1), runtime,
                      _num(row.miou, "%") + f" ({row.split})", miou]
            for i, v in enumerate(values):
                cells[i].append(v)
        size = "-" if ckpt.size_mb is None else f"{ckpt.size_mb:g}MB"
        lines.append(" | ".join([f"[{ckpt.name}]({ckpt.url})"] + [" <br> ".join(c) for c in cells] + [size]))
    return lines


def reported_machines(registry: Registry) -> list[str]:
    """One line per machine the registry's reported numbers come from, naming its checkpoints.

    The seed's machine is the default for every entry without ``reported_on``; when other machines appear too,
    its line counts its checkpoints instead of listing dozens of names.
    """
    by_machine: dict[str, list[str]] = {}
    for ckpt in registry:
        if ckpt.evals:
            by_machine.setdefault(ckpt.reported_machine, []).append(ckpt.name)
    lines = []
    for machine, names in sorted(by_machine.items(), key=lambda kv: (kv[0] == SEED_MACHINE, kv[0])):
        if machine == SEED_MACHINE and len(by_machine) > 1:
            lines.append(f"{machine}: the other {len(names)} checkpoints (the seed's numbers)")
        elif machine == SEED_MACHINE:
            lines.append(f"{machine}: all {len(names)} checkpoints (the seed's numbers)")
        else:
            lines.append(f"{machine}: {', '.join(names)}")
    return lines


def _threads(threads: Any) -> str:
    if isinstance(threads, int):
        return f"{threads} thread{'s' if threads != 1 else ''}"
    return "all threads"


def _size(result: dict[str, Any]) -> str:
    size = input_size(result)
    return size_text(size) if size else "?"


def perf_conditions(result: dict[str, Any]) -> str:
    """Where and how a result's Multiply-Adds and latency were measured: input size, CPU, threads, when."""
    c = result.get("conditions") or {}
    host = (c.get("machine") or {}).get("host")
    return (f"{_size(result)} input, {c.get('cpu', '?')}{f' ({host})' if host else ''}, "
            f"{_threads(c.get('threads'))}, {c.get('timestamp', '?')}")


def miou_conditions(result: dict[str, Any]) -> str:
    """Which images a result's mIOU was measured on, and when."""
    c = result.get("conditions") or {}
    ev = c.get("eval") or {}
    of = f" of {ev['split_images']}" if ev.get("split_images") and ev.get("images", 0) < ev["split_images"] else ""
    images = f"{ev['images']}{of} {ev.get('dataset', '')} {ev.get('split', '')} images" if "images" in ev else "?"
    return f"{' '.join(images.split())}, {c.get('timestamp', '?')}"


def _measured_on(picked: dict[tuple[str, str], Picked]) -> list[str]:
    lines = []
    for (name, setting), p in sorted(picked.items()):
        parts = []
        if p.perf is not None:
            parts.append(f"Multiply-Adds and runtime at {perf_conditions(p.perf)}")
        if p.miou is not None:
            parts.append(f"mIOU on {miou_conditions(p.miou)}")
        lines.append(f"* {name} ({setting}): " + "; ".join(parts))
    return lines


def build_report(registry: Registry, results: Iterable[dict[str, Any]]) -> str:
    """Markdown: per dataset, the seed's results table with measured columns; then other runs and conditions."""
    results = list(results)
    picked, others = pick_results(registry, results)
    out = ["# DeepLab model zoo: reported vs measured", "",
           "Reported numbers are the registry's; where each checkpoint's were measured is listed under "
           "*Reported on*. "
           "Measured (by `zoo bench`): Multiply-Adds of convolutions + MatMul counted from the frozen graph and "
           "mean wall-clock latency per image, both summed over scales and flips and taken only from runs at the "
           "input size the reported numbers refer to (the registry's eval crop, else the dataset's usual size); "
           "mIOU from the `zoo bench --data-dir` run over the most images (a full split beats a `--limit` "
           "subset, which is marked e.g. `93.64% (5 img)`), newest among equals. The input size, CPU, threads and images behind every "
           "measured cell are listed under *Measured on*; runs at other input sizes only under "
           f"*Other measurements*. {NOT_COMPARABLE} = measured at another output stride than the row (the "
           "frozen graph's), so not comparable.", ""]
    for dataset, miou_title in MIOU_TITLES.items():
        title = f"DeepLab models trained on {DATASETS[dataset].title}"
        ckpts = [c for c in registry if c.dataset == dataset and c.evals]
        if not ckpts:
            continue
        out += [f"## {title}", ""] + _table(ckpts, picked, miou_title) + [""]
    known = set(registry.names)
    rows = [(name, setting, p.perf or p.miou) for (name, setting), p in sorted(picked.items()) if name not in known]
    rows += [(r["name"], r.get("setting", SINGLE_KEY), r) for r in others]
    if rows:
        out += ["## Other measurements", "",
                "Graphs not in the registry, and runs at another input size than the reported numbers' "
                "(not comparable with them).", "",
                "Graph | Setting | Input size | Output stride | Multiply-Adds (measured) | Latency p50 (ms) | "
                "mIOU (measured) | Measured on", "--- | :---: | :---: | :---: | :---: | :---: | :---: | ---"]
        for name, setting, r in rows:
            m, c = r["measured"], r.get("conditions") or {}
            p = picked.get((name, setting)) if name not in known else None
            miou = (p.miou if p is not None and p.miou is not None else r)["measured"].get("miou")
            miou_from = p.miou if p is not None and p.miou is not None else r
            out.append(f"{name} | {setting} | {_size(r)} | {c.get('output_stride', '-')} | "
                       f"{_madds(_billions(m))} | {_num((m.get('latency_ms') or {}).get('p50'))} | "
                       f"{_num(miou, '%')}{_subset_mark(miou_from) if miou is not None else ''} | "
                       f"{perf_conditions(r)}")
        out.append("")
    out += ["## Reported on", ""] + [f"* {line}" for line in reported_machines(registry)] + [""]
    if picked:
        out += ["## Measured on", ""] + _measured_on(picked) + [""]
    elif not rows:
        out += ["No measurements stored yet: run `zoo bench NAME` (or `zoo bench --all`) first.", ""]
    return "\n".join(out)


@dataclass
class ReportRun:
    """What :func:`make_report` built: the markdown, the stored bench results it used, and the files written."""

    registry: Registry
    results: list[dict[str, Any]]
    markdown: str
    out_path: Path | None = None
    plot_path: Path | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # stored files that are not readable results

    def warnings(self) -> list[str]:
        """One line per stored result file left out, naming it and why (a corrupt file is never silently lost)."""
        return [f"skipped {path}: it {why}; delete or re-measure it" for path, why in self.skipped]

    def to_json(self) -> dict[str, Any]:
        """What ``zoo report --json`` prints: paths, counts, the markdown when not written, the plot points."""
        reported, measured = plot_points(self.registry, self.results)
        return {"results": len(self.results), "models": sorted({r["name"] for r in self.results}),
                "report": str(self.out_path) if self.out_path else None,
                "plot": str(self.plot_path) if self.plot_path else None,
                "markdown": None if self.out_path else self.markdown,
                "points": {"reported": reported, "measured": measured},
                "skipped": [{"path": str(path), "reason": why} for path, why in self.skipped]}


def make_report(registry: Registry, cache: Any, *, out_path: Path | str | None = None,
                plot_path: Path | str | None = None) -> ReportRun:
    """``zoo report``: :func:`build_report` from the bench results stored in ``cache``; with ``out_path`` the
    markdown is written there (atomically), with ``plot_path`` the :func:`pareto_plot` image (format from its
    suffix)."""
    if plot_path is not None:
        plot_format(plot_path)  # refuse a bad suffix before writing anything
    skipped: list[tuple[Path, str]] = []
    results = load_results(results_dir(cache), skipped)
    text = build_report(registry, results)
    if out_path is not None:
        write_text_atomic(out_path, text)
    if plot_path is not None:
        pareto_plot(registry, results, plot_path)
    return ReportRun(registry, results, text, Path(out_path) if out_path is not None else None,
                     Path(plot_path) if plot_path is not None else None, skipped)

