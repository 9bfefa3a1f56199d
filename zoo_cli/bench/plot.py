"""The Pareto plot of ``zoo report --plot``: mIOU against Multiply-Adds, one panel per dataset, reported and
measured points, each panel's reported Pareto front, and short labels placed so that none overlaps another.

Reads only result dicts and the registry; matplotlib (Agg backend) is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from zoo_cli.atomic import atomic_path
from zoo_cli.bench.picking import pick_results
from zoo_cli.constants import DATASETS
from zoo_cli.registry.catalog import Registry
from zoo_cli.registry.scales import SINGLE_KEY, setting_key

OTHER = "other"  # plot panel of graphs that are not registry checkpoints


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
    if setting != SINGLE_KEY:
        text += " MS" + ("+F" if setting.endswith("-flip") else "")
    return text


# Offsets (points) tried for a label, nearest first: beside, above, below, then further out with a leader line.
_LABEL_OFFSETS = [(4, 3), (4, -9), (-4, 3), (-4, -9), (0, 9), (0, -15)] + \
    [(dx * r, dy * r) for r in (2, 3, 4, 5) for dx, dy in ((4, 3), (4, -5), (-4, 3), (-4, -5), (0, 5), (0, -6))]


def place_labels(ax: Any, points: Sequence[tuple[float, float]], labels: Sequence[str]) -> list[Any]:
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
            text = ax.annotate(labels[i], points[i], xytext=(dx, dy), textcoords="offset points", fontsize=7,
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

