"""``zoo demo``: the whole main job, offline, on a small trained model shipped with the package."""

from __future__ import annotations

from pathlib import Path

import click

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.options import ThreadCount
from zoo_cli.cli.output import console, emit_json


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where the registry copy, eval metrics and overlays go (default: $ZOO_HOME/results/demo).")
@click.option("--runs", default=5, show_default=True, type=click.IntRange(min=1), help="Timed bench runs per setting.")
@click.option("--threads", default=0, show_default=True, type=ThreadCount(),
              help="TensorFlow intra-op threads (0 = all cores).")
@click.option("--progress/--no-progress", default=None, help="Progress bars on stderr (default: on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, out_dir: Path | None, runs: int, threads: int, progress: bool | None,
            as_json: bool) -> None:
    """Download -> verify -> untar -> eval (multi-scale + flip) -> bench, on a local server.

    Serves the shipped demo archive on 127.0.0.1, downloads it into ZOO_HOME, evaluates it on the shipped
    val set with the registry's scales and flip (writing overlays), benches it, and compares the measured
    mIOU with the recorded one. Exit status 0 only when they match. No network access is needed.
    """
    from zoo_cli.demo_run import MIOU_TOLERANCE, run_demo  # imports TensorFlow when it runs

    out = console()
    log = None if as_json else out.print
    if as_json and progress is None:
        progress = False
    result = run_demo(app.cache, out_dir, progress=progress, bench_runs=runs, threads=threads, log=log)
    if as_json:
        emit_json(result.to_json())
    else:
        _render_bench(out, result)
        _summary(out, result, MIOU_TOLERANCE)
    if not result.ok:
        bad = [c for c in result.checks if not c.ok]
        click.echo(f"Error: {len(bad)} measured mIOU value(s) differ from the recorded ones by more than "
                   f"{MIOU_TOLERANCE:g} points; rerun with --json to see them, or rebuild the demo with "
                   "'python tools/build_demo_model.py' if the shipped model changed", err=True)
        raise click.exceptions.Exit(1)


def _render_bench(out, result) -> None:
    from zoo_cli.cli.bench_view import render_results  # the same tables 'zoo bench' prints

    render_results(out, result.bench)


def _summary(out, result, tolerance: float) -> None:
    from rich.table import Table

    table = Table(title="mIOU: measured vs recorded (registry)", show_edge=False, header_style="bold")
    for col, justify in (("step", "left"), ("setting", "left"), ("recorded", "right"), ("measured", "right"),
                         ("Δ", "right"), ("", "center")):
        table.add_column(col, justify=justify)
    for c in result.checks:
        table.add_row(c.step, c.setting, f"{c.recorded:.2f}%", "-" if c.measured is None else f"{c.measured:.2f}%",
                      "-" if c.delta is None else f"{c.delta:+.2f}", "✓" if c.ok else "✗")
    out.print(table)
    s = result.seconds
    out.print(f"model        {result.model_dir}")
    out.print(f"registry     {result.registry_path}  (zoo --registry {result.registry_path} info {result.name})")
    out.print(f"eval         {result.out_dir / 'eval'}  (metrics.json + confusion.npy per setting)")
    out.print(f"overlays     {result.overlays_dir}  ({len(result.overlays)} images)")
    if result.bench and result.bench[0].path:
        out.print(f"bench        {result.bench[0].path.parent}")
    out.print(f"time         download {s.get('download', 0):.1f} s, eval {s.get('eval', 0):.1f} s, "
              f"bench {s.get('bench', 0):.1f} s, total {s.get('total', 0):.1f} s")
    if result.ok:
        out.print(f"[bold green]demo OK[/bold green]: every measured mIOU is within {tolerance:g} points of the recorded one")
    else:
        bad = [c for c in result.checks if not c.ok]
        out.print(f"[bold red]demo FAILED[/bold red]: {len(bad)} of {len(result.checks)} mIOU checks differ from the "
                  f"recorded value by more than {tolerance:g} points (or were not measured)")
