"""``zoo bench``: latency, Multiply-Adds, params, memory (and mIOU) measured here, beside the seed's numbers."""

from __future__ import annotations

from pathlib import Path

import click

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.options import ThreadCount
from zoo_cli.cli.output import console, emit_json
from zoo_cli.errors import UsageError


@click.command("bench")
@click.argument("name", required=False)
@click.option("--all", "sweep", is_flag=True, help="Bench every downloaded checkpoint; failures are recorded and "
              "the sweep carries on.")
@click.option("--graph", "graph_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Bench this frozen graph file (with NAME: compared with NAME's reported numbers).")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(min=1), help="Timed runs.")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0), help="Untimed warm-up runs.")
@click.option("--input-size", "input_size", metavar="HxW",
              help="Input size HxW or H,W, as zoo eval --crop (default: the size the reported numbers refer to, "
                   "e.g. 513x513).")
@click.option("--scales", metavar="LIST", help="Measure only this setting: 0.5,0.75,1.0 or [0.5:0.25:1.75] (as zoo eval).")
@click.option("--flip/--no-flip", default=None, help="Add left-right flipped runs (with --scales).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Dataset root: also measure mIOU / pixel accuracy with each setting.")
@click.option("--limit", type=click.IntRange(min=1), help="With --data-dir: evaluate only the first N images of the split.")
@click.option("--threads", default=0, show_default=True, type=ThreadCount(),
              help="TensorFlow intra-op threads (0 = all cores; at most 4 per CPU).")
@click.option("--no-store", is_flag=True, help="Do not save results under the cache.")
@click.option("--ray", "use_ray", is_flag=True, help="With --all: one task per checkpoint x setting on a Ray cluster, "
              "one at a time per node (pip install 'zoo-cli[ray]'; see docs/scale.md).")
@click.option("--ray-address", metavar="ADDR", help="With --ray: the cluster to join (auto, HOST:6379, "
              "ray://HOST:10001; default RAY_ADDRESS, else a local instance).")
@click.option("--output-stride", "output_stride", type=click.Choice(["8", "16", "32"]),
              help="Run at this output stride: the graph is rewritten to it in memory (default: each reported "
                   "row's; docs/output_stride.md).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, name: str | None, sweep: bool, graph_path: Path | None, runs: int, warmup: int,
            input_size: str | None, scales: str | None, flip: bool | None, data_dir: Path | None,
            limit: int | None, threads: int, no_store: bool, use_ray: bool, ray_address: str | None,
            output_stride: str | None, as_json: bool) -> None:
    """Measure latency, Multiply-Adds, params, peak memory (and mIOU) and compare with the reported numbers."""
    # Light imports; TensorFlow is imported when a graph is loaded.
    from zoo_cli.bench.settings import BenchOptions, check_options, parse_size
    from zoo_cli.bench.store import BenchResult, results_dir
    from zoo_cli.bench.sweep import bench_all, bench_checkpoint, graph_file
    from zoo_cli.cli.bench_view import print_labelled, render_result
    from zoo_cli.evaluation.settings import parse_scales  # the one --scales parser eval and bench share

    if sweep and (name or graph_path):
        raise UsageError("--all benches every downloaded checkpoint; drop NAME/--graph or drop --all")
    if not sweep and not name and not graph_path:
        raise UsageError("name a checkpoint (see 'zoo list'), pass --graph PATH, or use --all")
    if (use_ray or ray_address) and not (sweep and use_ray):
        raise UsageError("--ray runs the --all sweep on a Ray cluster (--ray-address with it); use "
                         "'zoo bench --all --ray'")
    size, scale_list = parse_size(input_size), parse_scales(scales)
    options = BenchOptions(runs=runs, warmup=warmup, threads=threads, input_size=size, scales=scale_list, flip=flip,
                           data_dir=data_dir, limit=limit, output_stride=int(output_stride) if output_stride else None,
                           progress=None if not as_json else False)
    check_options(options, app.registry.get(name) if name else None)
    store = None if no_store else results_dir(app.cache)
    out = console()
    # Each setting's table (and its 'saved' line) is printed as soon as it is measured, so Ctrl-C during a
    # slow multi-scale setting loses only that setting.
    on_result = None if as_json else (lambda result: render_result(out, result))
    if sweep:
        on_model = None if as_json else (lambda n: console(stderr=True).print(f"benching {n} ..."))
        if use_ray:
            from zoo_cli.cluster.bench import bench_all_ray

            outcome = bench_all_ray(app.registry, app.cache, options, address=ray_address,
                                    mirror=app.settings.mirror, offline=app.settings.offline,
                                    on_model=on_model, on_result=on_result, store=store)
        else:
            outcome = bench_all(app.registry, app.cache, options, store=store, on_model=on_model,
                                on_result=on_result)
        if as_json:
            emit_json(outcome.to_json())
        else:
            for model, why in outcome.failures.items():
                print_labelled(out, "failed", f"{model}: {why}", "red")  # folded at the width, not one 400-char line
            if not outcome.results and not outcome.failures:
                out.print("no downloaded checkpoint with a frozen graph; run 'zoo download NAME' first")
        if outcome.failures:
            raise SystemExit(1)
        return

    ckpt = app.registry.get(name) if name else None
    if not as_json:
        path = graph_file(ckpt, app.cache, graph_path)
        shown: list[bool] = []

        def show(result: BenchResult) -> None:
            if not shown:  # the graph line comes with the first result, not before a failing load
                print_labelled(out, "graph", str(path))
                shown.append(True)
            render_result(out, result)

        on_result = show
    run = bench_checkpoint(ckpt, app.cache, options, graph_path=graph_path, store=store, on_result=on_result)
    if as_json:
        emit_json(run.to_json())
