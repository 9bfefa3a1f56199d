"""``zoo info``: everything the registry knows about one checkpoint, and its cache state."""

from __future__ import annotations

import click
from rich.table import Table

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.output import console, emit_json
from zoo_cli.registry.catalog import is_pattern
from zoo_cli.registry.scales import scales_notation
from zoo_cli.units import fmt_madds, fmt_num
from zoo_cli.urls import redact


@click.command("info")
@click.argument("name")
@click.option("--inspect", is_flag=True, help="Load the downloaded frozen graph and show its tensors, "
              "classes, crop and output stride (imports TensorFlow).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, name: str, inspect: bool, as_json: bool) -> None:
    """Show a checkpoint's metadata, eval rows, extra flags and local cache state.

    NAME may be a wildcard ('*mnv2*'), matched as in 'zoo download': each match is shown in turn, and
    --json prints a list.
    """
    if not is_pattern(name):
        _show(app, app.registry.get(name), inspect, as_json)
        return
    ckpts = app.registry.resolve([name])
    if as_json:
        emit_json([_info_json(app, ckpt, inspect) for ckpt in ckpts])
        return
    for i, ckpt in enumerate(ckpts):
        if i:
            console().print()
        _show(app, ckpt, inspect, False)


def _info_json(app: AppContext, ckpt, inspect: bool) -> dict:
    cache = app.cache
    manifest = cache.manifest(ckpt.name)
    data = {**ckpt.to_json(), "downloaded": manifest is not None,
            "path": str(cache.model_dir(ckpt.name)) if manifest else None, "manifest": manifest}
    if data.get("url"):
        data["url"] = redact(data["url"])
    if inspect:
        data["graph"] = _inspect(cache, ckpt)
    return data


def _inspect(cache, ckpt) -> dict:
    """What --inspect shows: the loaded graph's structure and the output strides it can run at."""
    from zoo_cli.graph.info import inspect_graph  # imports TensorFlow; only here
    from zoo_cli.graph.output_stride import output_strides_of

    path = cache.frozen_graph_path(ckpt)
    return {**inspect_graph(path).to_json(), "output_strides": output_strides_of(path)}


def _show(app: AppContext, ckpt, inspect: bool, as_json: bool) -> None:
    if as_json:
        emit_json(_info_json(app, ckpt, inspect))
        return
    cache = app.cache
    manifest = cache.manifest(ckpt.name)
    graph_info = None
    if inspect:
        graph_info = _inspect(cache, ckpt)
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
        ("url", redact(ckpt.url)), ("size (reported)", fmt_num(ckpt.size_mb, " MB", 1)),
        ("sha256", ckpt.sha256 or "not pinned (recorded on first download)"),
        ("archive contents", ", ".join(ckpt.contents)),
    ]
    if ckpt.madds_input_size:  # the reported Multiply-Adds refer to another input than the eval crop
        fields.append(("MAdds input", "x".join(map(str, ckpt.madds_input_size))))
    if ckpt.madds_note:
        fields.append(("MAdds note", ckpt.madds_note))
    for key, value in fields:
        out.print(f"  {key:<17} {value}", soft_wrap=True)  # long URLs stay whole, copyable
    if ckpt.model_flags:
        out.print("  model flags")
        for flag, value in ckpt.model_flags.items():
            out.print(f"    --{flag}={value}")
    if ckpt.evals:
        source = "seed" if ckpt.reported_on is None else "registry"
        out.print(f"  reported results ({source}); # is what 'zoo eval --row' takes")
        table = Table(show_edge=False, header_style="bold")
        # Columns the seed leaves empty for this checkpoint are left out, so the numbers fit 80 columns.
        optional = [("MAdds (B)", lambda r: r.madds_billion, fmt_madds), ("CPU s", lambda r: r.runtime_s, fmt_num),
                    ("EdgeTPU ms", lambda r: r.latency_ms, lambda v: fmt_num(v, digits=1))]
        shown = [(name, get, fmt) for name, get, fmt in optional if any(get(r) is not None for r in ckpt.evals)]
        pixel = any(r.pixel_accuracy is not None for r in ckpt.evals)
        edgetpu = any(name == "EdgeTPU ms" for name, _, _ in shown)
        for col in ["#", "OS", "scales", "flip", *(n for n, _, _ in shown), "mIOU", *(["pix acc"] if pixel else []),
                    "split"]:
            table.add_column(col, justify="right", no_wrap=True)
        for i, row in enumerate(ckpt.evals, start=1):
            table.add_row(str(i), str(row.output_stride), scales_notation(row.scales), "yes" if row.flip else "no",
                          *(fmt(get(row)) for _, get, fmt in shown), fmt_num(row.miou, "%"),
                          *([fmt_num(row.pixel_accuracy, "%")] if pixel else []), row.split)
        out.print(table)
        out.print(f"  reported on: {ckpt.reported_machine}"
                  + ("; EdgeTPU ms: Pixel 4 EdgeTPU simulator." if edgetpu else ""))
    else:
        out.print("  no reported results (backbone checkpoint for training)")
    if manifest:
        out.print(f"  downloaded        yes → {cache.model_dir(ckpt.name)}")
        out.print(f"  archive sha256    {manifest.get('sha256', '-')}")
    else:
        out.print(f"  downloaded        no (run 'zoo download {ckpt.name}')")
    if graph_info:
        out.print("  graph")
        width = max(len(_GRAPH_LABELS.get(key, key)) for key in graph_info)
        for key, value in graph_info.items():
            out.print(f"    {_GRAPH_LABELS.get(key, key):<{width}} {value}")


# The graph's two strides mean different things; say which is which ('output_stride' alone misled users).
_GRAPH_LABELS = {
    "output_stride": "logits stride",          # crop / logits size: 4 for a decoder model
    "encoder_output_stride": "output stride",  # the encoder's, the seed tables' "Eval OS"
    "decoder_output_stride": "decoder stride",  # None without a decoder
    "retargetable": "other crops/scales",      # the crop pattern was found (multi-scale can run)
    "retarget_problem": "why not",
    "output_strides": "runs at OS",            # zoo_cli.graph.output_stride can rewrite it to these
}
