"""``zoo eval``: run a downloaded checkpoint on images or on a dataset split; ``zoo eval merge`` sums shards.

``zoo eval NAME ...`` is routed to the hidden ``run`` subcommand (``zoo eval run NAME ...`` is the same), so
that ``eval`` can take a checkpoint name and still offer ``zoo eval merge FILES...``. TensorFlow is imported
only inside the command bodies.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import click

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.options import ThreadCount
from zoo_cli.cli.output import console, emit_json
from zoo_cli.constants import EVAL_DATASETS
from zoo_cli.errors import UsageError
from zoo_cli.units import fmt_num

if TYPE_CHECKING:
    from zoo_cli.evaluation.image_job import ImagePredictions, PredictionInterrupted
    from zoo_cli.evaluation.results import EvalResult
    from zoo_cli.evaluation.settings import EvalOptions
    from zoo_cli.registry.types import Checkpoint


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


class _RunContext(click.Context):
    """``run`` is hidden: its usage and error lines name ``zoo eval``, the command the user typed."""

    @property
    def command_path(self) -> str:
        return self.parent.command_path if self.parent is not None else super().command_path


def spread_multi_values(args: list[str], option: str) -> list[str]:
    """``--images A B C`` → ``--images A --images B --images C``: the non-option words after ``option`` (up to
    the next option or ``--``) all belong to it; ``option`` itself stays repeatable."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        out.append(arg)
        i += 1
        if arg == "--":
            out.extend(args[i:])
            break
        if arg == option:
            if i >= len(args):
                break  # click says "Option '--images' requires an argument"
            # an option right after it means no path was given: say so, not "needs --out"
            if args[i].startswith("-") and args[i] != "-":
                raise UsageError(f"{option} needs at least one PATH (an image file or a directory of images)")
            out.append(args[i])
            i += 1
        elif not arg.startswith(option + "="):
            continue
        while i < len(args) and not args[i].startswith("-"):
            out += [option, args[i]]
            i += 1
    return out


class _RunCommand(click.Command):
    """``zoo eval NAME --images PATH... --out DIR``: ``--images`` takes every path up to the next option."""

    context_class = _RunContext

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_multi_values(args, "--images"))


_EXAMPLES = (
    "zoo eval mobilenetv2_coco_voc_trainaug --images photo.jpg more_photos/ --out preds/",
    "zoo eval mobilenetv2_coco_voc_trainaug --data-dir VOCdevkit/VOC2012 --limit 100",
    "zoo eval NAME --data-dir DIR --shard 0/4 --out s0   # ... shards 1/4, 2/4, 3/4",
    "zoo eval merge s0 s1 s2 s3",
    "zoo eval --graph frozen_inference_graph.pb --dataset voc --images photo.jpg --out preds/",
)


def _gather_eval_options(run_command: Callable[..., None]) -> Callable[..., None]:
    """Hand the options that say how the evaluation runs to ``run_command`` as one ``options``
    (:class:`zoo_cli.evaluation.settings.EvalOptions`), the value the library functions take."""

    @functools.wraps(run_command)
    def gathered(*args: Any, scales_text: str | None, flip: bool | None, crop_text: str | None, row: int | None,
                 output_stride: str | None, dataset: str | None, split: str, limit: int | None, shard: str | None,
                 threads: int, inter_threads: int, jobs: int | None, progress: bool | None, **rest: Any) -> None:
        from zoo_cli.evaluation.settings import EvalOptions

        options = EvalOptions(scales=scales_text, flip=flip, crop=crop_text, row=row,
                              output_stride=int(output_stride) if output_stride else None, dataset=dataset,
                              split=split, limit=limit, shard=shard, threads=threads, inter_threads=inter_threads,
                              jobs=jobs, progress=progress)
        return run_command(*args, options=options, **rest)

    return gathered


@click.group("eval", cls=_EvalGroup, context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Evaluate a checkpoint: predictions for images, or mIOU on a dataset split."""


@command.command("run", cls=_RunCommand, hidden=True)
@click.argument("name", required=False)
@click.option("--graph", "graph_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Run this frozen_inference_graph.pb instead of an installed checkpoint.")
@click.option("--images", "images", multiple=True, type=click.Path(path_type=Path), metavar="PATH...",
              help="Image files or directories to predict (every path up to the next option; --images may also "
                   "be repeated); writes label + overlay PNGs to --out.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Dataset root in its raw layout (VOC, Cityscapes or ADE20K): measure mIOU on a split.")
@click.option("--dataset", type=click.Choice(EVAL_DATASETS),
              help="Dataset layout / palette (default: the checkpoint's dataset, else detected).")
@click.option("--split", default="val", show_default=True, help="Split to evaluate.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N images of the split.")
@click.option("--shard", help="K/N: evaluate every N-th image starting at K (0-based); merge with 'zoo eval merge'.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Output directory (required with --images; default for datasets: $ZOO_HOME/results/...).")
@click.option("--threads", type=ThreadCount(), default=0, show_default=True,
              help="TensorFlow intra-op threads per image (0 = all CPUs / --jobs; at most 4 per CPU).")
@click.option("--inter-threads", type=ThreadCount(), default=0, show_default=True,
              help="TensorFlow inter-op threads (0 = TensorFlow's choice; at most 4 per CPU).")
@click.option("--jobs", type=ThreadCount(minimum=1), default=None,
              help="Images run through the model at once (default: 2 with 2+ CPUs, 1 for crops above 600k "
                   "pixels); decoding always runs ahead.")
@click.option("--scales", "scales_text",
              help="Eval scales: a list 0.5,0.75,1.0 or a range 0.5:0.25:1.75 (end inclusive; '[0.5:0.25:1.75]' "
                   "quoted also works) (default: --data-dir the eval row's; --images 1).")
@click.option("--flip/--no-flip", default=None,
              help="Also run left-right flipped images (default: --data-dir the eval row's; --images no flip).")
@click.option("--crop", "crop_text", metavar="H,W",
              help="Eval crop H,W (or HxW, as bench --input-size) the image is padded to (default: --data-dir the "
                   "registry's, e.g. 513,513 VOC/ADE20K, 1025,2049 Cityscapes; --images the graph's own); the graph "
                   "is re-targeted to it.")
@click.option("--row", type=int,
              help="Take scales/flip/output stride from the checkpoint's N-th eval row (1-based, see 'zoo info "
                   "NAME'); default: --data-dir the first row whose output stride the graph can be rewritten to, "
                   "--images none (the graph as exported: scale 1, no flip).")
@click.option("--output-stride", "output_stride", type=click.Choice(["8", "16", "32"]),
              help="Run at this output stride: the graph is rewritten to it in memory (default: the row's).")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Weight of the class colours in the overlay PNGs.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: on a terminal).")
@click.option("--ray", "use_ray", is_flag=True, help="Spread --data-dir over a Ray cluster's workers (pip install "
              "'zoo-cli[ray]'); the same result as without. See docs/scale.md.")
@click.option("--workers", type=click.IntRange(min=1), help="With --ray: worker processes (default: one per CPU "
              "of the cluster; --threads is then each worker's CPU share).")
@click.option("--ray-address", metavar="ADDR", help="With --ray: the cluster to join (auto, HOST:6379, "
              "ray://HOST:10001; default RAY_ADDRESS, else a local instance on this machine's cores).")
@click.option("--resume", is_flag=True, help="With --ray: keep the shards an interrupted run saved; run the rest.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
@_gather_eval_options
def run(app: AppContext, name: str | None, graph_path: Path | None, images: tuple[Path, ...],
        data_dir: Path | None, out_dir: Path | None, alpha: float, use_ray: bool, workers: int | None,
        ray_address: str | None, resume: bool, as_json: bool, options: EvalOptions) -> None:
    """Predict images (--images PATH... --out DIR) or measure mIOU on a dataset split (--data-dir DIR).

    NAME is a registry checkpoint installed with 'zoo download NAME'; --graph PATH runs a frozen graph file
    directly (NAME, when also given, supplies the dataset and the reported numbers).
    """
    if bool(images) == bool(data_dir):
        raise UsageError("pass either --images PATH... (predictions) or --data-dir DIR (mIOU on a split)")
    if images and out_dir is None:
        raise UsageError("--images needs --out DIR, the directory for the label and overlay PNGs")
    if images and (options.shard or options.limit):
        raise UsageError("--shard and --limit apply to --data-dir evaluations only")
    if images and (use_ray or workers or ray_address or resume):
        raise UsageError("--ray, --workers, --ray-address and --resume apply to --data-dir evaluations only")
    # light: TensorFlow is imported when the model loads
    from zoo_cli.evaluation import dataset_job, image_job
    from zoo_cli.evaluation.settings import check_run_options

    if images:  # --split is for --data-dir runs: never read (nor checked) with --images
        options = replace(options, split="val")
    if options.progress is None and as_json:
        options = replace(options, progress=False)
    # every number and name first: a typo is reported before the registry or anything else is read
    options = check_run_options(None, options)
    ckpt = app.registry.get(name) if name else None
    if images:
        try:
            predictions = image_job.predict_checkpoint_images(ckpt, images, out_dir, app.cache, options,
                                                              graph_path=graph_path, alpha=alpha)
        except image_job.PredictionInterrupted as stop:
            _report_interrupted(stop, as_json)
            click.get_current_context().exit(130)
        if as_json:
            emit_json(predictions.to_json())
        else:
            _print_predictions(predictions)
        failure = predictions.failure_error()
        if failure is not None:  # after the written images are listed: exit 7 names how many failed
            raise failure
        return
    if use_ray or workers or ray_address or resume:
        if not use_ray:
            raise UsageError("--workers, --ray-address and --resume apply to --ray runs; add --ray")
        result = _run_on_ray(app, ckpt, data_dir, graph_path, out_dir, options, workers, ray_address, resume,
                             as_json)
    else:
        result = dataset_job.evaluate_checkpoint(ckpt, data_dir, app.cache, options, graph_path=graph_path,
                                                 out_dir=out_dir)
    if as_json:
        emit_json(result.to_json())
        return
    _print_result(result)


def _run_on_ray(app: AppContext, ckpt: Checkpoint | None, data_dir: Path, graph_path: Path | None,
                out_dir: Path | None, options: EvalOptions, workers: int | None, ray_address: str | None,
                resume: bool, as_json: bool) -> EvalResult:
    """``--data-dir ... --ray``: the same evaluation on Ray workers (zoo_cli.cluster.eval)."""
    import os

    if options.shard:
        raise UsageError("--ray cuts the split into shards itself; drop --shard")
    from zoo_cli.cluster.eval import evaluate_checkpoint_ray

    return evaluate_checkpoint_ray(
        ckpt, data_dir, app.cache, options, graph_path=graph_path, out_dir=out_dir, workers=workers,
        address=ray_address, resume=resume, mirror=app.settings.mirror,
        offline=app.settings.offline, die_once=os.environ.get("ZOO_TEST_RAY_DIE_ONCE") or None,  # test hook
        log=None if as_json else (lambda msg: click.echo(msg, err=True)))


def _print_predictions(predictions: ImagePredictions) -> None:
    out = console()
    settings = predictions.settings
    out.print(f"setting: {settings.describe()}")
    for r in predictions.images:
        top = ", ".join(f"{name} {_share(count, r.size[0] * r.size[1])}" for name, count in list(r.classes.items())[:4])
        out.print(f"{r.image} → {r.labels_png.name}, {r.overlay_png.name}  ({top})")
        if r.fitted:
            crop = predictions.graph_crop
            out.print(f"  note: {r.size[1]}x{r.size[0]} is larger than the graph's crop {crop[1]}x{crop[0]}; "
                      "it was shrunk to fit and the labels scaled back")
    if predictions.enlarged and settings.crop:
        out.print(enlarged_note(predictions.enlarged, settings.crop))
    for note in predictions.notes:
        out.print(f"note: {note}")
    for failure in predictions.failed:
        out.print(f"skipped: {failure.error}")
    out.print(f"{len(predictions.images)} image(s) → {predictions.out_dir} ({predictions.palette.dataset} palette)")


def _report_interrupted(stop: PredictionInterrupted, as_json: bool) -> None:
    """Ctrl-C during --images: list the pairs written (the unfinished image has no file), say what stopped."""
    written = stop.predictions.images if stop.predictions is not None else stop.written
    if as_json and stop.predictions is not None:
        emit_json({**stop.predictions.to_json(), "interrupted": True, "total_images": stop.total})
    elif stop.predictions is not None and written:
        _print_predictions(stop.predictions)
    click.echo(f"Interrupted after {len(written)} of {stop.total} images; "
               + ("the label/overlay pairs written are listed above" if written else "no image was written")
               + "; the unfinished image's pair was not written.", err=True)


def _share(count: int, total: int) -> str:
    """``37%``; a class present on under 0.5 % of the pixels is ``<1%`` (not a misleading ``0%``)."""
    percent = count * 100 / total
    return f"{percent:.0f}%" if percent >= 0.5 else "<1%"


def enlarged_note(count: int, crop: Sequence[int]) -> str:
    """The note for images the multi-scale runner ran at a crop grown to cover them."""
    return (f"note: {count} image(s) were larger than the eval crop {crop[0]}x{crop[1]}; they ran at a crop grown "
            "to cover them (max(crop, image) per side, as the reference's preprocessing pads)")


def _crop_text(crop: Sequence[int] | None) -> str:
    return f"crop {crop[0]}x{crop[1]}, " if crop else ""


def _print_result(result: EvalResult, warnings: list[str] | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    stride = result.extra.get("graph_output_stride")
    from zoo_cli.registry.scales import describe_scales

    # the same wording as the reported rows below ("scale 1, no flip", "scales 0.75-1.25 (3), flip")
    conditions = (f"{'graph OS ' + str(stride) + ', ' if stride else ''}"
                  f"{describe_scales(tuple(result.scales), result.flip)}, "
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
        if row.get("crop_differs"):  # same scales/flip, but measured at another crop than the run's
            flag += " [crop differs]"
        # escape: rich would take "[crop differs]" for a style tag and drop it
        table.add_row("reported" + mark, fmt_num(row["miou"], "%"), fmt_num(row["pixel_accuracy"], "%"),
                      escape(row["conditions"] + (f", {_crop_text(row.get('eval_crop'))[:-2]}" if row.get("eval_crop")
                                                  else "") + (" (registry)" if row.get("reported_on") else " (seed)")
                             + flag))
    out.print(table)
    sources = {row["reported_on"] for row in result.extra.get("reported", []) if row.get("reported_on")}
    for source in sorted(sources):
        out.print(f"reported (registry): {source}")
    items = list(result.summary.per_class_iou.items())
    groups = 1 if len(items) <= 25 else 4  # ADE20K's 151 classes: four class/IoU column pairs
    rows = -(-len(items) // groups)
    # a line of its own: as the table's title it wrapped to the narrow table's width
    out.print("per-class IoU (- = class absent)")
    per = Table(show_edge=False, header_style="bold")
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
        crop = (result.graph_info or {}).get("crop_size")
        where = f" {crop[1]}x{crop[0]}" if crop else ""
        out.print(f"note: {result.fitted} image(s) were larger than the graph's crop{where}; they were shrunk to "
                  "fit and their labels scaled back (the reference would fail on them)")
    enlarged = result.extra.get("multiscale", {}).get("enlarged_images", 0)
    eval_crop = result.extra.get("multiscale", {}).get("eval_crop")
    if enlarged and eval_crop:
        out.print(enlarged_note(enlarged, eval_crop))
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
    from zoo_cli.evaluation.results import merge_results, save_result

    result, matrix, warnings = merge_results(files)
    if out_dir is not None:
        save_result(result, matrix, out_dir)
    if as_json:
        emit_json({**result.to_json(), "warnings": warnings})
        return
    _print_result(result, warnings)
