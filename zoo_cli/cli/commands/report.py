"""``zoo report``: the seed's tables with measured columns, and a Pareto plot, from stored bench results."""

from __future__ import annotations

from pathlib import Path

import click

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.output import emit_json


@click.command("report")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the markdown report here (default: print it).")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write a plot of mIOU vs Multiply-Adds (reported and measured); the suffix picks the format: "
              ".png, .svg, .pdf, .jpg, ...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only (paths, counts and the plot points).")
@pass_app
def command(app: AppContext, out_path: Path | None, plot_path: Path | None, as_json: bool) -> None:
    """Regenerate the model-zoo tables with measured columns beside the reported ones."""
    from zoo_cli.bench.report import make_report

    run = make_report(app.registry, app.cache, out_path=out_path, plot_path=plot_path)
    for warning in run.warnings():  # on stderr: stdout stays the markdown (or JSON, which lists them too)
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        emit_json(run.to_json())
        return
    if out_path is None:
        click.echo(run.markdown)
    else:
        click.echo(f"wrote {out_path} ({len(run.results)} stored results)")
    if plot_path is not None:
        click.echo(f"wrote {plot_path}")
