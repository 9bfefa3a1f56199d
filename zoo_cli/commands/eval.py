"""``zoo eval``: run a downloaded checkpoint on images or on a dataset split; ``zoo eval merge`` sums shards.

``zoo eval NAME ...`` is routed to the hidden ``run`` subcommand (``zoo eval run NAME ...`` is the same), so
that ``eval`` can take a checkpoint name and still offer ``zoo eval merge FILES...``. TensorFlow is imported
only inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path

import click

from zoo_cli.cli import AppContext, pass_app
from zoo_cli.errors import DatasetError, UsageError
from zoo_cli.output import console, emit_json, fmt_num


class _EvalGroup(click.Group):
    """A group whose first argument is either a subcommand (merge) or the start of ``run``'s arguments."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        run = self.commands["run"]
        run.format_usage(ctx, formatter)
        run.format_help_text(ctx, formatter)
        run.format_options(ctx, formatter)
        with formatter.section("Other commands"):
            formatter.write_dl([("merge FILES...", "Sum shard confusion matrices (zoo eval merge --help).")])
        with formatter.section("Examples"):
            for line in _EXAMPLES:
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


_EXAMPLES = (
    "zoo eval mobilenetv2_coco_voc_trainaug --images photo.jpg --out preds/",
    "zoo eval mobilenetv2_coco_voc_trainaug --data-dir VOCdevkit/VOC2012 --limit 100",
    "zoo eval NAME --data-dir DIR --shard 0/4 --out s0   # ... shards 1/4, 2/4, 3/4",
    "zoo eval merge s0 s1 s2 s3",
    "zoo eval --graph frozen_inference_graph.pb --dataset voc --images photo.jpg --out preds/",
)


@click.group("eval", cls=_EvalGroup, context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Evaluate a checkpoint: predictions for images, or mIOU on a dataset split."""


@command.command("run", hidden=True)
@click.argument("name", required=False)
@click.option("--graph", "graph_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Run this frozen_inference_graph.pb instead of an installed checkpoint.")
@click.option("--images", "images", multiple=True, type=click.Path(path_type=Path),
              help="Image file or directory to predict (repeatable); writes label + overlay PNGs to --out.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Dataset root in its raw layout (VOC, Cityscapes or ADE20K): measure mIOU on a split.")
@click.option("--dataset", type=click.Choice(["voc", "cityscapes", "ade20k"]),
              help="Dataset layout / palette (default: the checkpoint's dataset, else detected).")
@click.option("--split", default="val", show_default=True, help="Split to evaluate.")
@click.option("--limit", type=int, help="Evaluate only the first N images of the split.")
@click.option("--shard", help="K/N: evaluate every N-th image starting at K (0-based); merge with 'zoo eval merge'.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Output directory (required with --images; default for datasets: $ZOO_HOME/results/...).")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="TensorFlow intra-op threads per image (0 = all CPUs / --jobs).")
@click.option("--inter-threads", type=int, default=0, show_default=True,
              help="TensorFlow inter-op threads (0 = TensorFlow's choice).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Images run through the model at once (default: 2 with 2+ CPUs, 1 for crops above 600k "
                   "pixels); decoding always runs ahead.")
@click.option("--scales", "scales_text",
              help="Eval scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75 or [0.5:0.25:1.75] (default: --data-dir the eval "
                   "row's; --images 1).")
@click.option("--flip/--no-flip", default=None,
              help="Also run left-right flipped images (default: --data-dir the eval row's; --images no flip).")
@click.option("--crop", "crop_text", help="Eval crop H,W the image is padded to (default: --data-dir the "
              "registry's, e.g. 513,513 VOC/ADE20K, 1025,2049 Cityscapes; --images the graph's own); the graph is "
              "re-targeted to it.")
@click.option("--row", type=int, help="Take scales/flip from the checkpoint's N-th eval row (1-based, see "
              "'zoo info NAME'); default: --data-dir the first row at the graph's output stride, --images none "
              "(the graph as exported: scale 1, no flip).")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Weight of the class colours in the overlay PNGs.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def run(app: AppContext, name: str | None, graph_path: Path | None, images: tuple[Path, ...],
        data_dir: Path | None, dataset: str | None, split: str, limit: int | None, shard: str | None,
        out_dir: Path | None, threads: int, inter_threads: int, jobs: int | None, scales_text: str | None,
        flip: bool | None, crop_text: str | None, row: int | None, alpha: float,
        progress: bool | None, as_json: bool) -> None:
    """Predict images (--images PATH... --out DIR) or measure mIOU on a dataset split (--data-dir DIR).

    NAME is a registry checkpoint installed with 'zoo download NAME'; --graph PATH runs a frozen graph file
    directly (NAME, when also given, supplies the dataset and the reported numbers).
    """
    if bool(images) == bool(data_dir):
        raise UsageError("pass either --images PATH... (predictions) or --data-dir DIR (mIOU on a split)")
    if images and out_dir is None:
        raise UsageError("--images needs --out DIR, the directory for the label and overlay PNGs")
    if images and (shard or limit):
        raise UsageError("--shard and --limit apply to --data-dir evaluations only")
    shard_kn = None
    if shard is not None:
        from zoo_cli.evaluate import parse_shard

        shard_kn = parse_shard(shard)
    ckpt = app.registry.get(name) if name else None
    if graph_path is None:
        if ckpt is None:
            raise UsageError("name a checkpoint (see 'zoo list') or pass --graph PATH")
        graph_path = app.cache.frozen_graph_path(ckpt)
    elif not graph_path.is_file():
        raise UsageError(f"--graph {graph_path} does not exist")
    if progress is None and as_json:
        progress = False

    from zoo_cli.evaluate import make_predictor, open_eval_dataset, plan_parallelism

    ds = None
    if data_dir is not None:
        # Before the model: a wrong --data-dir fails at once, not after TensorFlow has loaded.
        ds = open_eval_dataset(data_dir, ckpt, kind=dataset, split=split)
        jobs, threads = plan_parallelism(jobs, threads, ckpt.eval_crop if ckpt is not None else None)

    from zoo_cli.model import FrozenGraphModel  # imports TensorFlow

    with FrozenGraphModel(graph_path, intra_op_threads=threads, inter_op_threads=inter_threads) as model:
        kind = dataset or (ckpt.dataset if ckpt is not None and ckpt.dataset != "imagenet" else None)
        from zoo_cli.multiscale import choose_settings, parse_crop, parse_scales

        info = model.info
        settings = choose_settings(ckpt, graph_output_stride=info.encoder_output_stride or info.output_stride,
                                   graph_crop=model.crop_size, scales=parse_scales(scales_text), flip=flip,
                                   crop=parse_crop(crop_text), row=row, as_exported=bool(images))
        predictor = make_predictor(model, scales=settings.scales, flip=settings.flip, crop=settings.crop)
        predictor.settings = settings  # type: ignore[attr-defined]
        if images:
            _run_images(model, predictor, ckpt, kind, images, out_dir, alpha, progress, as_json)  # type: ignore[arg-type]
        else:
            _run_dataset(app, ckpt, graph_path, model, predictor, ds, limit, shard_kn, out_dir, jobs, progress,
                         as_json)


def _run_images(model, predictor, ckpt, kind, images, out_dir: Path, alpha, progress, as_json) -> None:
    from zoo_cli.evaluate import class_palette, evaluate_images

    palette = class_palette(kind, ckpt, model.num_classes)
    results = evaluate_images(images, predictor, palette, out_dir, alpha=alpha, progress=progress)
    settings = getattr(predictor, "settings", None)
    if as_json:
        emit_json({"out": str(out_dir), "palette": palette.dataset, "class_names": list(palette.class_names),
                   "eval_settings": settings.to_json() if settings is not None else None,
                   "images": [r.to_json() for r in results]})
        return
    out = console()
    if settings is not None:
        out.print(f"setting: {settings.describe()}")
    for r in results:
        top = ", ".join(f"{name} {count * 100 / (r.size[0] * r.size[1]):.0f}%" for name, count in list(r.classes.items())[:4])
        out.print(f"{r.image} → {r.labels_png.name}, {r.overlay_png.name}  ({top})")
        if r.fitted:
            crop = model.crop_size
            out.print(f"  note: {r.size[1]}x{r.size[0]} is larger than the graph's crop {crop[1]}x{crop[0]}; "
                      "it was shrunk to fit and the labels scaled back")
    out.print(f"{len(results)} image(s) → {out_dir} ({palette.dataset} palette)")


def _run_dataset(app: AppContext, ckpt, graph_path: Path, model, predictor, ds, limit, shard, out_dir, jobs,
                 progress, as_json) -> None:
    from zoo_cli.evaluate import EvalResult, class_palette, evaluate_dataset, reported_rows, save_result, scored_classes

    if ds.kind == "ade20k" and ds.long_side is None:
        ds.long_side = max(model.crop_size) if model.crop_size else None  # --graph alone: the graph's own crop
    long_side = ds.long_side
    split, data_dir = ds.split, ds.root
    num_classes = scored_classes(ds, ckpt, model.num_classes)
    matrix, n, seconds = evaluate_dataset(ds, predictor, limit=limit, shard=shard, jobs=jobs, progress=progress,
                                          num_classes=num_classes)
    if n == 0:
        raise DatasetError(f"no images selected from {data_dir} ({ds.kind} {split}, limit {limit}, shard {shard})")
    palette = class_palette(ds.kind, ckpt)
    scales = tuple(getattr(predictor, "scales", (1.0,)))
    flip = bool(getattr(predictor, "flip", False))
    result = EvalResult(
        summary=matrix.summary(palette.class_names), num_images=n, dataset=ds.kind, split=split,
        num_classes=num_classes, ignore_label=ds.ignore_label, scales=scales, flip=flip,
        checkpoint=ckpt.name if ckpt else None, graph=str(graph_path), shard=shard, seconds=seconds,
        fitted=int(getattr(predictor, "fitted", 0)), graph_info=model.info.to_json())
    info = model.info
    result.extra["graph_output_stride"] = info.encoder_output_stride or info.output_stride
    result.extra["long_side"] = long_side
    result.extra["reported"] = reported_rows(ckpt, scales, flip) if ckpt else []
    settings = getattr(predictor, "settings", None)
    if settings is not None:
        result.extra["eval_settings"] = settings.to_json()
        for rep_row in result.extra["reported"]:
            rep_row["eval_crop"] = list(ckpt.eval_crop) if ckpt is not None and ckpt.eval_crop else None
            rep_row["os_differs_from_graph"] = (settings.graph_output_stride is not None
                                                and rep_row["output_stride"] != settings.graph_output_stride)
    if hasattr(predictor, "describe"):
        result.extra["multiscale"] = predictor.describe()
    if out_dir is None:
        label = ckpt.name if ckpt else graph_path.parent.name or graph_path.stem
        suffix = f"-shard{shard[0]}of{shard[1]}" if shard else ""
        out_dir = app.cache.results_dir / label / f"{ds.kind}-{split}{suffix}"
    save_result(result, matrix, out_dir)
    if as_json:
        emit_json(result.to_json())
        return
    _print_result(result, info)


def _crop_text(crop) -> str:
    return f"crop {crop[0]}x{crop[1]}, " if crop else ""


def _print_result(result, info=None, warnings: list[str] | None = None) -> None:
    from rich.table import Table

    out = console()
    stride = result.extra.get("graph_output_stride")
    conditions = (f"{'graph OS ' + str(stride) + ', ' if stride else ''}scales "
                  f"{','.join(f'{s:g}' for s in result.scales)}, {'flip' if result.flip else 'no flip'}, "
                  f"{_crop_text(result.extra.get('eval_settings', {}).get('eval_crop'))}"
                  f"{result.split}, {result.num_images} images")
    title = result.checkpoint or result.graph or "merged"
    out.print(f"[bold]{title}[/bold] on {result.dataset} {result.split}"
              + (f" — shard {result.shard[0]}/{result.shard[1]} (partial; combine with 'zoo eval merge')"
                 if result.shard else ""))
    table = Table(show_edge=False, header_style="bold")
    for col in ("", "mIOU", "pixel acc", "conditions"):
        table.add_column(col, justify="left" if col in ("", "conditions") else "right")
    table.add_row("measured", f"{result.summary.miou:.2f}%", f"{result.summary.pixel_accuracy:.2f}%", conditions)
    for row in result.extra.get("reported", []):
        mark = " ←" if row["matches_run"] else ""
        flag = (f" [OS differs from the graph's {stride}]" if row.get("os_differs_from_graph") else "")
        table.add_row("reported" + mark, fmt_num(row["miou"], "%"), fmt_num(row["pixel_accuracy"], "%"),
                      row["conditions"] + (f", {_crop_text(row.get('eval_crop'))[:-2]}" if row.get("eval_crop")
                                           else "") + (" (registry)" if row.get("reported_on") else " (seed)") + flag)
    out.print(table)
    sources = {row["reported_on"] for row in result.extra.get("reported", []) if row.get("reported_on")}
    for source in sorted(sources):
        out.print(f"reported (registry): {source}")
    items = list(result.summary.per_class_iou.items())
    groups = 1 if len(items) <= 25 else 4  # ADE20K's 151 classes: four class/IoU column pairs
    rows = -(-len(items) // groups)
    per = Table(title="per-class IoU (- = class absent)", show_edge=False, header_style="bold")
    for _ in range(groups):
        per.add_column("class")
        per.add_column("IoU", justify="right")
    for r in range(rows):
        cells: list[str] = []
        for g in range(groups):
            i = g * rows + r
            if i < len(items):
                name, value = items[i]
                cells += [name, "-" if value is None else f"{value:.2f}%"]
            else:
                cells += ["", ""]
        per.add_row(*cells)
    out.print(per)
    if result.seconds:
        out.print(f"{result.num_images} images in {result.seconds:.1f} s ({result.images_per_second:.2f} images/s)")
    if result.fitted:
        crop = info.crop_size if info else None
        where = f" {crop[1]}x{crop[0]}" if crop else ""
        out.print(f"note: {result.fitted} image(s) were larger than the graph's crop{where}; they were shrunk to "
                  "fit and their labels scaled back (the reference would fail on them)")
    for note in result.extra.get("eval_settings", {}).get("notes", []):
        out.print(f"note: {note}")
    for skipped in result.extra.get("multiscale", {}).get("skipped_scales", []):
        out.print(f"warning: scale {skipped['scale']:g} was skipped (crop {skipped['crop'][0]}x{skipped['crop'][1]}): "
                  f"{skipped['reason']}")
    for warning in warnings or []:
        out.print(f"warning: {warning}")
    if result.confusion_path:
        out.print(f"confusion matrix → {result.confusion_path}")
        out.print(f"metrics          → {result.metrics_path}")


@command.command("merge")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Also save the merged confusion.npy and metrics.json here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
def merge(files: tuple[Path, ...], out_dir: Path | None, as_json: bool) -> None:
    """Sum shard confusion matrices (confusion.npy files or their directories) into the final metrics.

    The result equals an unsharded run over the same images.
    """
    from zoo_cli.evaluate import merge_results, save_result

    result, matrix, warnings = merge_results(files)
    if out_dir is not None:
        save_result(result, matrix, out_dir)
    if as_json:
        emit_json({**result.to_json(), "warnings": warnings})
        return
    _print_result(result, None, warnings)
