"""``zoo report``: the seed's tables with measured columns, and a Pareto plot, from stored bench results."""

from __future__ import annotations

from pathlib import Path

import click

from zoo_cli.atomic import write_text_atomic
from zoo_cli.cli import AppContext, pass_app
from zoo_cli.output import emit_json


@click.command("report")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the markdown report here (default: print it).")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write a PNG of mIOU vs Multiply-Adds (reported and measured).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only (paths, counts and the plot points).")
@pass_app
def command(app: AppContext, out_path: Path | None, plot_path: Path | None, as_json: bool) -> None:
    """Regenerate the model-zoo tables with measured columns beside the reported ones."""
    from zoo_cli import bench, report

    results = bench.load_results(bench.results_dir(app.cache))
    text = report.build_report(app.registry, results)
    if out_path is not None:
        write_text_atomic(out_path, text)
    if plot_path is not None:
        report.pareto_plot(app.registry, results, plot_path)
    if as_json:
        reported, measured = report.plot_points(app.registry, results)
        emit_json({"results": len(results), "models": sorted({r["name"] for r in results}),
                   "report": str(out_path) if out_path else None, "plot": str(plot_path) if plot_path else None,
                   "markdown": None if out_path else text,
                   "points": {"reported": reported, "measured": measured}})
        return
    if out_path is None:
        click.echo(text)
    else:
        click.echo(f"wrote {out_path} ({len(results)} stored results)")
    if plot_path is not None:
        click.echo(f"wrote {plot_path}")
