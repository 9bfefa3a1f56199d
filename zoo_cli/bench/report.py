"""``zoo report`` logic: the seed's results tables regenerated with measured columns beside the reported ones,
from the results ``zoo bench`` stored, and a Pareto plot of mIOU against Multiply-Adds.

Reads only JSON files and the registry; never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from zoo_cli.atomic import atomic_path, write_text_atomic
from zoo_cli.cli.output import fmt_madds
from zoo_cli.constants import DATASETS
from zoo_cli.registry.catalog import SEED_MACHINE, Checkpoint, EvalRow, Registry
from zoo_cli.registry.scales import scales_notation, setting_key

MIOU_TITLES = {"voc": "PASCAL mIOU", "cityscapes": "Cityscapes mIOU", "ade20k": "mIOU"}  # the seed's column names
NOT_COMPARABLE = "†"
OTHER = "other"  # plot panel of graphs that are not registry checkpoints


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


def _subset_mark(result: dict[str, Any] | None) -> str:
    """`` (5 img)`` when the result's mIOU covers only part of its split, else ''."""
    from zoo_cli.bench.store import eval_subset

    n = eval_subset(((result or {}).get("conditions") or {}).get("eval"))
    return "" if n is None else f" ({n} img)"


def reference_size(ckpt: Checkpoint | None, result: dict[str, Any]) -> tuple[int, int] | None:
    """The input size the reported numbers refer to (as ``zoo bench`` picks it by default), None if unknown."""
    from zoo_cli.bench.settings import default_input_size
    from zoo_cli.errors import UsageError

    crop = (result.get("conditions") or {}).get("graph_crop")
    try:
        return tuple(default_input_size(ckpt, tuple(crop) if crop else None)[0])  # type: ignore[return-value]
    except UsageError:
        return None


def _input_size(result: dict[str, Any]) -> tuple[int, ...] | None:
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
            groups.setdefault((r["name"], r.get("setting", "single")), []).append(r)
    picked: dict[tuple[str, str], Picked] = {}
    others: list[dict[str, Any]] = []
    for key, group in groups.items():
        ckpt = registry.get(key[0]) if key[0] in known else None
        at_ref = [r for r in group if _input_size(r) == reference_size(ckpt, r)]
        perf = _newest(at_ref)
        miou = _best_miou(r for r in group if r["measured"].get("miou") is not None)
        if perf is not None or miou is not None:
            picked[key] = Picked(perf, miou)
        by_size: dict[Any, list[dict[str, Any]]] = {}
        for r in group:
            if r not in at_ref:
                by_size.setdefault(_input_size(r), []).append(r)
        others += [_newest(rs) for rs in by_size.values()]
    return picked, sorted(others, key=lambda r: (r["name"], r.get("setting", ""), _input_size(r) or ()))


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
    size = _input_size(result)
    return "x".join(map(str, size)) if size else "?"


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
    rows += [(r["name"], r.get("setting", "single"), r) for r in others]
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


def plot_points(registry: Registry, results: Iterable[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(reported, measured) points of mIOU against Multiply-Adds, one per checkpoint/setting.

    A measured point takes its Multiply-Adds from the run at the reference input size and its mIOU from the
    run over the most images that measured one (see :func:`pick_results`).
    """
    reported = []
    for ckpt in registry:
        for row in ckpt.evals:
            if row.madds_billion is not None:
                reported.append({"name": ckpt.name, "setting": setting_key(row.scales, row.flip),
                                 "madds": row.madds_billion, "miou": row.miou, "dataset": ckpt.dataset,
                                 "split": row.split})
    rows = {(c.name, setting_key(r.scales, r.flip)): r for c in registry for r in c.evals}
    datasets = {c.name: c.dataset for c in registry}
    picked, _ = pick_results(registry, results)
    measured = []
    for (name, setting), p in sorted(picked.items()):
        if p.perf is None:
            continue
        madds = p.perf["measured"].get("madds_billion")
        miou = p.miou["measured"]["miou"] if p.miou is not None else None
        source = "measured"
        row = rows.get((name, setting))
        graph_os = (p.perf.get("conditions") or {}).get("output_stride")
        # Borrow the reported mIOU only for the same output stride; otherwise the point would mix settings.
        split = (((p.miou or {}).get("conditions") or {}).get("eval") or {}).get("split") or "val"
        if miou is None and row is not None and graph_os in (None, row.output_stride):
            miou, source, split = row.miou, "reported", row.split
        if madds and miou is not None:
            measured.append({"name": name, "setting": setting, "madds": madds, "miou": miou,
                             "miou_source": source, "dataset": datasets.get(name, OTHER), "split": split})
    return reported, measured


def pareto_front(points: Sequence[dict]) -> list[dict]:
    """Points no other point beats on both fewer Multiply-Adds and higher mIOU, by increasing MAdds."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p["madds"], -p["miou"])):
        if p["miou"] > best:
            front.append(p)
            best = p["miou"]
    return front


# Image formats matplotlib's Agg backend writes without optional extras, by file suffix.
PLOT_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "tif", "tiff", "webp", "eps", "ps")


def plot_format(path: Path | str) -> str:
    """The image format ``path``'s suffix names; UsageError for a suffix matplotlib cannot write."""
    from zoo_cli.errors import UsageError

    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        named = f"'.{fmt}'" if fmt else "no suffix"
        raise UsageError(f"--plot {path}: {named} is not an image format the plot can be written in; "
                         f"end the name with one of {', '.join('.' + f for f in PLOT_FORMATS)}")
    return fmt


PANEL_TITLES = {**{name: facts.title for name, facts in DATASETS.items()}, OTHER: "other graphs"}
_ABBREVIATIONS = (("mobilenetv3_large", "MNv3-L"), ("mobilenetv3_small", "MNv3-S"), ("mobilenetv2", "MNv2"),
                  ("xception", "X"), ("resnet_v1_", "R"), ("_dm05", " dm0.5"), ("EdgeTPU-DeepLab-slim", "EdgeTPU slim"),
                  ("EdgeTPU-DeepLab", "EdgeTPU"), ("_coco", ""), ("_voc", ""),
                  ("_cityscapes", ""), ("_ade20k", ""), ("_trainaug", " aug"), ("_trainval", " tv"),
                  ("_trainfine", " fine"), ("_beta", " beta"), ("_imagenet", ""), ("_dpc", " DPC"))


def short_label(name: str, setting: str) -> str:
    """A plot label a few characters long: ``X65 aug MS`` for xception65_coco_voc_trainaug multi-scale; the
    panel already names the dataset, the legend the marker."""
    text = name
    for long, short in _ABBREVIATIONS:
        text = text.replace(long, short)
    text = text.replace("_", " ").strip()
    if len(text) > 18:
        text = text[:17] + "…"
    if setting != "single":
        text += " MS" + ("+F" if setting.endswith("-flip") else "")
    return text


# Offsets (points) tried for a label, nearest first: beside, above, below, then further out with a leader line.
_LABEL_OFFSETS = [(4, 3), (4, -9), (-4, 3), (-4, -9), (0, 9), (0, -15)] + \
    [(dx * r, dy * r) for r in (2, 3, 4, 5) for dx, dy in ((4, 3), (4, -5), (-4, 3), (-4, -5), (0, 5), (0, -6))]


def place_labels(ax: Any, points: Sequence[tuple[float, float]], labels: Sequence[str],
                 fontsize: float = 7) -> list[Any]:
    """Annotate ``points`` with ``labels`` so that no two labels overlap (and none covers another point's
    marker): each label takes the first offset of :data:`_LABEL_OFFSETS` whose box is free and inside the
    axes; far offsets get a thin leader line. A label with no free place is left out rather than drawn over
    another. Returns the text artists placed. The axes' limits must be final (the figure laid out)."""
    renderer = ax.figure.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    markers = [ax.transData.transform(p) for p in points]
    legend = ax.get_legend()
    taken: list[Any] = [legend.get_window_extent(renderer)] if legend is not None else []
    placed = []
    order = sorted(range(len(points)), key=lambda i: (-points[i][1], points[i][0]))  # top first
    for i in order:
        for dx, dy in _LABEL_OFFSETS:
            far = abs(dx) > 4 or abs(dy) > 15
            text = ax.annotate(labels[i], points[i], xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx > 0 else "right" if dx < 0 else "center",
                               va="bottom" if dy >= 0 else "top",
                               arrowprops={"arrowstyle": "-", "lw": 0.4, "alpha": 0.5} if far else None)
            box = text.get_window_extent(renderer).expanded(1.04, 1.15)
            inside = (axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0
                      and box.y1 <= axes_box.y1)
            covers_marker = any(box.contains(mx, my) for j, (mx, my) in enumerate(markers) if j != i)
            if inside and not covers_marker and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                placed.append(text)
                break
            text.remove()
    return placed


def pareto_plot(registry: Registry, results: Iterable[dict[str, Any]], path: Path | str) -> Path:
    """Write mIOU vs Multiply-Adds (log x) in the image format ``path``'s suffix names (see :data:`PLOT_FORMATS`):
    one panel per dataset (VOC, Cityscapes, ADE20K mIOUs are not comparable with each other), reported and
    measured points, test-split points marked apart from val ones, each panel's reported Pareto front over its
    val points, and short labels placed so they do not overlap (:func:`place_labels`)."""
    fmt = plot_format(path)
    import matplotlib.pyplot as plt

    fig = pareto_figure(registry, results)
    try:
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt)
    finally:
        plt.close(fig)
    return Path(path)


def pareto_figure(registry: Registry, results: Iterable[dict[str, Any]]) -> Any:
    """The matplotlib figure :func:`pareto_plot` writes (Agg backend; the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reported, measured = plot_points(registry, results)
    panels = [d for d in PANEL_TITLES if any(p["dataset"] == d for p in reported + measured)] or ["voc"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 5.6), dpi=100, squeeze=False)
    labelled: list[tuple[Any, list[dict]]] = []
    for ax, dataset in zip(axes[0], panels):
        rep = [p for p in reported if p["dataset"] == dataset]
        mea = [p for p in measured if p["dataset"] == dataset]
        series = (
            ([p for p in rep if p["split"] != "test"], dict(marker="o", s=30, color="tab:blue", label="reported (val)")),
            ([p for p in rep if p["split"] == "test"], dict(marker="s", s=36, facecolors="none", edgecolors="tab:blue",
                                                           label="reported (test split)")),
            ([p for p in mea if p["miou_source"] == "measured"], dict(marker="x", s=50, color="tab:red",
                                                                      label="measured MAdds + mIOU")),
            ([p for p in mea if p["miou_source"] == "reported" and p["split"] != "test"],
             dict(marker="+", s=70, color="tab:orange", label="measured MAdds, reported mIOU")),
            ([p for p in mea if p["miou_source"] == "reported" and p["split"] == "test"],
             dict(marker="D", s=30, facecolors="none", edgecolors="tab:orange",
                  label="measured MAdds, reported test mIOU")),
        )
        for pts, style in series:
            if pts:
                ax.scatter([p["madds"] for p in pts], [p["miou"] for p in pts], **style)
        front = pareto_front([p for p in rep if p["split"] != "test"])
        if len(front) > 1:
            ax.plot([p["madds"] for p in front], [p["miou"] for p in front], "--", color="tab:blue", alpha=0.5,
                    label="reported Pareto front (val)")
        if rep or mea:
            ax.set_xscale("log")
            ax.margins(x=0.15, y=0.12)  # room for the labels of the outermost points
        ax.set_title(PANEL_TITLES[dataset])
        ax.set_xlabel("Multiply-Adds (billions, log scale)")
        ax.set_ylabel("mIOU (%)")
        ax.grid(True, which="both", alpha=0.3)
        if rep or mea:
            ax.legend(fontsize=7, loc="lower right")
        labelled.append((ax, rep + mea))
    fig.suptitle("DeepLab model zoo: mIOU vs Multiply-Adds, per dataset")
    fig.tight_layout()
    for ax, pts in labelled:  # after the layout: label places are measured on the final axes
        place_labels(ax, [(p["madds"], p["miou"]) for p in pts], [short_label(p["name"], p["setting"]) for p in pts])
    return fig


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
    from zoo_cli.bench import store as bench

    if plot_path is not None:
        plot_format(plot_path)  # refuse a bad suffix before writing anything
    skipped: list[tuple[Path, str]] = []
    results = bench.load_results(bench.results_dir(cache), skipped)
    text = build_report(registry, results)
    if out_path is not None:
        write_text_atomic(out_path, text)
    if plot_path is not None:
        pareto_plot(registry, results, plot_path)
    return ReportRun(registry, results, text, Path(out_path) if out_path is not None else None,
                     Path(plot_path) if plot_path is not None else None, skipped)
