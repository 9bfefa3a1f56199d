"""``zoo info``: everything the registry knows about one checkpoint, and its cache state."""

from __future__ import annotations

import click
from rich.table import Table

from zoo_cli.cli import AppContext, pass_app
from zoo_cli.output import console, emit_json, fmt_num


@click.command("info")
@click.argument("name")
@click.option("--inspect", is_flag=True, help="Load the downloaded frozen graph and show its tensors, "
              "classes, crop and output stride (imports TensorFlow).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, name: str, inspect: bool, as_json: bool) -> None:
    """Show a checkpoint's metadata, eval rows, extra flags and local cache state."""
    ckpt = app.registry.get(name)
    cache = app.cache
    manifest = cache.manifest(ckpt.name)
    graph_info = None
    if inspect:
        from zoo_cli.model import inspect_graph  # imports TensorFlow; only here

        graph_info = inspect_graph(cache.frozen_graph_path(ckpt)).to_json()
    if as_json:
        data = {**ckpt.to_json(), "downloaded": manifest is not None,
                "path": str(cache.model_dir(ckpt.name)) if manifest else None, "manifest": manifest}
        if inspect:
            data["graph"] = graph_info
        emit_json(data)
        return
    out = console()
    out.print(f"[bold]{ckpt.name}[/bold]")
    fields = [
        ("dataset", ckpt.dataset), ("backbone", ckpt.backbone),
        ("depth multiplier", fmt_num(ckpt.depth_multiplier)),
        ("pretrained on", ", ".join(ckpt.pretrained_on)), ("ASPP", ckpt.aspp or "N/A"),
        ("decoder", ckpt.decoder or "N/A"),
        ("input size", "x".join(map(str, ckpt.input_size)) if ckpt.input_size else "-"),
        ("eval crop", "x".join(map(str, ckpt.eval_crop)) if ckpt.eval_crop else "-"),
        ("classes", fmt_num(ckpt.num_classes)), ("ignore label", fmt_num(ckpt.ignore_label)),
        ("url", ckpt.url), ("size (reported)", fmt_num(ckpt.size_mb, " MB", 1)),
        ("sha256", ckpt.sha256 or "not pinned (recorded on first download)"),
        ("archive contents", ", ".join(ckpt.contents)),
    ]
    for key, value in fields:
        out.print(f"  {key:<17} {value}")
    if ckpt.model_flags:
        out.print("  model flags")
        for flag, value in ckpt.model_flags.items():
            out.print(f"    --{flag}={value}")
    if ckpt.evals:
        table = Table(title="reported results (seed)", show_edge=False, header_style="bold")
        for col in ("#", "OS", "scales", "flip", "MAdds (B)", "CPU s", "EdgeTPU ms", "mIOU", "pixel acc", "split"):
            table.add_column(col, justify="right")
        for i, row in enumerate(ckpt.evals):
            table.add_row(str(i), str(row.output_stride), ",".join(f"{s:g}" for s in row.scales),
                          "yes" if row.flip else "no", fmt_num(row.madds_billion), fmt_num(row.runtime_s),
                          fmt_num(row.latency_ms, digits=1), fmt_num(row.miou, "%"), fmt_num(row.pixel_accuracy, "%"),
                          row.split)
        out.print(table)
        out.print(f"  reported on: {ckpt.reported_machine}; EdgeTPU ms: Pixel 4 EdgeTPU simulator.")
    else:
        out.print("  no reported results (backbone checkpoint for training)")
    if manifest:
        out.print(f"  downloaded        yes → {cache.model_dir(ckpt.name)}")
        out.print(f"  archive sha256    {manifest.get('sha256', '-')}")
    else:
        out.print(f"  downloaded        no (run 'zoo download {ckpt.name}')")
    if graph_info:
        out.print("  graph")
        for key, value in graph_info.items():
            out.print(f"    {key:<20} {value}")
