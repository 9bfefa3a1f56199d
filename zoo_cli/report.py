"""``zoo report`` logic: the seed's results tables regenerated with measured columns beside the reported ones,
from the results ``zoo bench`` stored, and a Pareto plot of mIOU against Multiply-Adds.

Reads only JSON files and the registry; never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from zoo_cli.atomic import atomic_path, write_text_atomic
from zoo_cli.registry import SEED_MACHINE, Checkpoint, EvalRow, Registry

DATASET_TITLES = {
    "voc": ("DeepLab models trained on PASCAL VOC 2012", "PASCAL mIOU"),
    "cityscapes": ("DeepLab models trained on Cityscapes", "Cityscapes mIOU"),
    "ade20k": ("DeepLab models trained on ADE20K", "mIOU"),
}
NOT_COMPARABLE = "†"


def _setting_key(scales: Sequence[float], flip: bool) -> str:
    if tuple(scales) == (1.0,) and not flip:
        return "single"
    return "s" + "-".join(f"{s:g}" for s in scales) + ("-flip" if flip else "")


def latest_results(results: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest stored result per (model, setting) — across machines the latest run wins."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        if not r.get("measured"):
            continue
        key = (r["name"], r.get("setting", "single"))
        stamp = (r.get("conditions") or {}).get("timestamp", "")
        if key not in out or stamp >= (out[key].get("conditions") or {}).get("timestamp", ""):
            out[key] = r
    return out


def _scales_text(scales: Sequence[float]) -> str:
    if len(scales) == 1:
        return f"[{scales[0]:g}]"
    step = round(scales[1] - scales[0], 6)
    if all(abs((b - a) - step) < 1e-6 for a, b in zip(scales, scales[1:])):
        return f"[{scales[0]:g}:{step:g}:{scales[-1]:g}]"
    return "[" + ", ".join(f"{s:g}" for s in scales) + "]"


def _num(value: float | None, suffix: str = "", digits: int = 2) -> str:
    if value is None:
        return "-"
    if value and abs(value) < 10 ** -(digits - 1):
        return f"{value:.3g}{suffix}"  # tiny graphs: keep significant digits instead of printing 0.00
    return f"{value:.{digits}f}{suffix}"


def _measured_cells(row: EvalRow, result: dict[str, Any] | None) -> tuple[str, str, str]:
    """(MAdds, runtime, mIOU) measured for an eval row; a dagger marks values at another output stride."""
    if result is None:
        return "-", "-", "-"
    m = result["measured"]
    graph_os = (result.get("conditions") or {}).get("output_stride")
    mark = f"{NOT_COMPARABLE} (OS {graph_os})" if graph_os is not None and graph_os != row.output_stride else ""
    lat = (m.get("latency_ms") or {}).get("mean")
    madds = _num(m.get("madds_billion"), "B") + (f" {mark}" if mark and m.get("madds_billion") is not None else "")
    runtime = _num(lat / 1000.0 if lat is not None else None, digits=3) + (f" {mark}" if mark and lat is not None else "")
    miou = _num(m.get("miou"), "%") + (f" {mark}" if mark and m.get("miou") is not None else "")
    return madds, runtime, miou


HEADER = ("Checkpoint name", "Eval OS", "Eval scales", "Left-right Flip", "Multiply-Adds", "Multiply-Adds (measured)",
          "Runtime (sec)", "Runtime (measured, sec)", "{miou}", "{miou} (measured)", "File Size")


def _table(checkpoints: list[Checkpoint], best: dict[tuple[str, str], dict[str, Any]], miou_title: str) -> list[str]:
    header = [h.format(miou=miou_title) for h in HEADER]
    lines = [" | ".join(header), " | ".join(["---"] + [":---:"] * (len(header) - 1))]
    for ckpt in checkpoints:
        cells: list[list[str]] = [[] for _ in range(len(header) - 2)]
        for row in ckpt.evals:
            result = best.get((ckpt.name, _setting_key(row.scales, row.flip)))
            madds, runtime, miou = _measured_cells(row, result)
            values = [str(row.output_stride), _scales_text(row.scales), "Yes" if row.flip else "No",
                      _num(row.madds_billion, "B"), madds, _num(row.runtime_s, digits=1), runtime,
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


def build_report(registry: Registry, results: Iterable[dict[str, Any]]) -> str:
    """Markdown: per dataset, the seed's results table with measured columns; then any other benched graphs."""
    results = list(results)
    best = latest_results(results)
    out = ["# DeepLab model zoo: reported vs measured", "",
           "Reported numbers are the registry's; where each checkpoint's were measured is listed under "
           "*Reported on*. "
           "Measured: Multiply-Adds of convolutions + MatMul counted from the frozen graph at the eval input size "
           "(summed over scales and flips), mean wall-clock latency per image from `zoo bench`, mIOU from "
           f"`zoo bench --data-dir`. {NOT_COMPARABLE} = measured at another output stride than the row (the "
           "frozen graph's), so not comparable.", ""]
    for dataset, (title, miou_title) in DATASET_TITLES.items():
        ckpts = [c for c in registry if c.dataset == dataset and c.evals]
        if not ckpts:
            continue
        out += [f"## {title}", ""] + _table(ckpts, best, miou_title) + [""]
    known = set(registry.names)
    others = sorted({name for name, _ in best if name not in known})
    if others:
        out += ["## Other benched graphs", "", "Graph | Setting | Output stride | Multiply-Adds (measured) | "
                "Latency p50 (ms) | mIOU (measured)", "--- | :---: | :---: | :---: | :---: | :---:"]
        for (name, setting), r in sorted(best.items()):
            if name not in others:
                continue
            m, c = r["measured"], r.get("conditions") or {}
            out.append(f"{name} | {setting} | {c.get('output_stride', '-')} | {_num(m.get('madds_billion'), 'B')} | "
                       f"{_num((m.get('latency_ms') or {}).get('p50'))} | {_num(m.get('miou'), '%')}")
        out.append("")
    out += ["## Reported on", ""] + [f"* {line}" for line in reported_machines(registry)] + [""]
    machines = {}
    for r in best.values():
        c = r.get("conditions") or {}
        machines[c.get("machine_key", "?")] = f"{c.get('cpu', '?')}, threads {c.get('threads', '?')}"
    if machines:
        out += ["## Measured on", ""] + [f"* `{k}`: {v}" for k, v in sorted(machines.items())] + [""]
    else:
        out += ["No measurements stored yet: run `zoo bench NAME` (or `zoo bench --all`) first.", ""]
    return "\n".join(out)


def plot_points(registry: Registry, results: Iterable[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(reported, measured) points of mIOU against Multiply-Adds, one per checkpoint/setting."""
    reported = []
    for ckpt in registry:
        for row in ckpt.evals:
            if row.madds_billion is not None:
                reported.append({"name": ckpt.name, "setting": _setting_key(row.scales, row.flip),
                                 "madds": row.madds_billion, "miou": row.miou})
    rows = {(c.name, _setting_key(r.scales, r.flip)): r for c in registry for r in c.evals}
    measured = []
    for (name, setting), r in latest_results(results).items():
        m = r["measured"]
        miou = m.get("miou")
        source = "measured"
        row = rows.get((name, setting))
        graph_os = (r.get("conditions") or {}).get("output_stride")
        # Borrow the reported mIOU only for the same output stride; otherwise the point would mix settings.
        if miou is None and row is not None and graph_os in (None, row.output_stride):
            miou, source = row.miou, "reported"
        if m.get("madds_billion") and miou is not None:
            measured.append({"name": name, "setting": setting, "madds": m["madds_billion"], "miou": miou,
                             "miou_source": source})
    return reported, measured


def pareto_front(points: Sequence[dict]) -> list[dict]:
    """Points no other point beats on both fewer Multiply-Adds and higher mIOU, by increasing MAdds."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p["madds"], -p["miou"])):
        if p["miou"] > best:
            front.append(p)
            best = p["miou"]
    return front


def pareto_plot(registry: Registry, results: Iterable[dict[str, Any]], path: Path | str) -> Path:
    """Write a PNG of mIOU vs Multiply-Adds (log x), reported and measured, with the reported Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reported, measured = plot_points(registry, results)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=100)
    if reported:
        ax.scatter([p["madds"] for p in reported], [p["miou"] for p in reported], marker="o", s=36,
                   label="reported (seed)", color="tab:blue")
        front = pareto_front(reported)
        ax.plot([p["madds"] for p in front], [p["miou"] for p in front], "--", color="tab:blue", alpha=0.5,
                label="reported Pareto front")
    own = [p for p in measured if p["miou_source"] == "measured"]
    borrowed = [p for p in measured if p["miou_source"] == "reported"]
    if own:
        ax.scatter([p["madds"] for p in own], [p["miou"] for p in own], marker="x", s=60, color="tab:red",
                   label="measured MAdds + measured mIOU")
    if borrowed:
        ax.scatter([p["madds"] for p in borrowed], [p["miou"] for p in borrowed], marker="+", s=80,
                   color="tab:orange", label="measured MAdds, reported mIOU")
    for p in reported + measured:
        ax.annotate(f"{p['name']} ({p['setting']})", (p["madds"], p["miou"]), fontsize=6, alpha=0.7,
                    xytext=(3, 3), textcoords="offset points")
    if reported or measured:
        ax.set_xscale("log")
    ax.set_xlabel("Multiply-Adds (billions, log scale)")
    ax.set_ylabel("mIOU (%)")
    ax.set_title("DeepLab model zoo: mIOU vs Multiply-Adds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(path)


@dataclass
class ReportRun:
    """What :func:`make_report` built: the markdown, the stored bench results it used, and the files written."""

    registry: Registry
    results: list[dict[str, Any]]
    markdown: str
    out_path: Path | None = None
    plot_path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """What ``zoo report --json`` prints: paths, counts, the markdown when not written, the plot points."""
        reported, measured = plot_points(self.registry, self.results)
        return {"results": len(self.results), "models": sorted({r["name"] for r in self.results}),
                "report": str(self.out_path) if self.out_path else None,
                "plot": str(self.plot_path) if self.plot_path else None,
                "markdown": None if self.out_path else self.markdown,
                "points": {"reported": reported, "measured": measured}}


def make_report(registry: Registry, cache: Any, *, out_path: Path | str | None = None,
                plot_path: Path | str | None = None) -> ReportRun:
    """``zoo report``: :func:`build_report` from the bench results stored in ``cache``; with ``out_path`` the
    markdown is written there (atomically), with ``plot_path`` the :func:`pareto_plot` PNG."""
    from zoo_cli import bench

    results = bench.load_results(bench.results_dir(cache))
    text = build_report(registry, results)
    if out_path is not None:
        write_text_atomic(out_path, text)
    if plot_path is not None:
        pareto_plot(registry, results, plot_path)
    return ReportRun(registry, results, text, Path(out_path) if out_path is not None else None,
                     Path(plot_path) if plot_path is not None else None)
