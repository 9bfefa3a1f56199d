"""``zoo list``: browse and filter the registry, and show what is downloaded."""

from __future__ import annotations

import click
from rich.table import Table

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.output import console, emit_json
from zoo_cli.constants import REGISTRY_DATASETS
from zoo_cli.registry.catalog import SORT_FIELDS, sort_checkpoints
from zoo_cli.units import fmt_madds, fmt_num


@click.command("list")
@click.argument("patterns", nargs=-1)
@click.option("--dataset", type=click.Choice(REGISTRY_DATASETS), help="Only checkpoints trained on this dataset.")
@click.option("--backbone", help="Backbone substring or wildcard, e.g. xception or 'mobilenet*'.")
@click.option("--downloaded", is_flag=True, help="Only checkpoints installed in the cache.")
@click.option("--min-miou", type=float, help="Best reported mIOU at least this (percent).")
@click.option("--max-size", type=float, help="Archive size at most this many MB.")
@click.option("--sort", "sort_by", type=click.Choice(SORT_FIELDS), default=None, help="Sort field.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, patterns: tuple[str, ...], dataset: str | None, backbone: str | None,
            downloaded: bool, min_miou: float | None, max_size: float | None, sort_by: str | None,
            as_json: bool) -> None:
    """List checkpoints, optionally matching wildcard PATTERNS such as '*xception*'."""
    cache = app.cache
    rows = app.registry.filter(
        patterns, dataset=dataset, backbone=backbone, min_miou=min_miou, max_size_mb=max_size,
        predicate=(lambda c: cache.is_installed(c.name)) if downloaded else None,
    )
    if sort_by:
        rows = sort_checkpoints(rows, sort_by)
    if as_json:
        emit_json([{**c.to_json(), "downloaded": cache.is_installed(c.name)} for c in rows])
        return
    out = console()
    name_width = max((len(c.name) for c in rows), default=4)
    # Names are what users copy into the next command: never cut them. A narrow terminal drops the
    # descriptive columns instead (all of it stays in --json and 'zoo info').
    wide = out.width >= name_width + 75
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("name", no_wrap=True, min_width=name_width)
    if wide:
        table.add_column("dataset", no_wrap=True)
        table.add_column("backbone", overflow="fold")
    for col in ("mIOU", "MAdds B", "size MB"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("local", justify="center", no_wrap=True)
    n_installed = 0
    for c in rows:
        installed = cache.is_installed(c.name)
        n_installed += installed
        described = [c.dataset, c.backbone + (f" (dm {c.depth_multiplier:g})" if c.depth_multiplier
                                              and c.depth_multiplier != 1.0 else "")] if wide else []
        table.add_row(c.name, *described, fmt_num(c.best_miou, "%"), fmt_madds(c.min_madds), fmt_num(c.size_mb, "", 1),
                      "✓" if installed else "")
    if rows:
        out.print(table)
    out.print(f"{len(rows)} of {len(app.registry)} checkpoints shown, {n_installed} downloaded "
              f"(cache: {cache.home}). MAdds: cheapest reported setting; mIOU: best reported row.")
    if rows and not wide:
        out.print(f"dataset and backbone columns hidden at {out.width} columns (need {name_width + 75}); "
                  "widen the terminal, or see them with 'zoo info NAME' or --json")
