"""Multiply-Adds of faithful MobileNet-v3 / EdgeTPU reference exports vs the seed's model-zoo figures.

Each entry of ``tests.support.deeplab_ref.mobilenet_v3.FULL_WIDTH`` is exported as research/deeplab's
export_model.py would write it (random weights, real widths) and counted by ``zoo_cli.flops.count_madds``
at the entry's input size. Columns: measured Multiply-Adds (convolutions, see zoo_cli/flops.py), the
backbone's share, tfprof's float_ops for the same graph (FLOPs, i.e. about 2x Multiply-Adds) and its half,
the seed's figure and measured vs seed.

``--explain`` adds the counts that bear on the seed's MobileNet-v3 figures: the same exports at output
stride 16 and 8 (the seed evaluates at 32), and 2x Multiply-Adds (FLOPs).

    python benchmarks/bench_mnv3_madds.py [--only SUBSTRING ...] [--explain]

Results and their reading: docs/bench.md, "MobileNet-v3 and EdgeTPU Multiply-Adds".
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BACKBONE_SCOPES = ("MobilenetV3/", "MobilenetEdgeTPU/")


def _row(name: str, config, size, seed, export_graph, count_madds) -> str:
    start = time.perf_counter()
    report = count_madds(export_graph(config), size)
    seconds = time.perf_counter() - start
    madds = report.madds / 1e9
    backbone = sum(op.madds for op in report.ops if op.name.startswith(BACKBONE_SCOPES)) / 1e9
    tfprof = report.tfprof_float_ops / 1e9 if report.tfprof_float_ops is not None else float("nan")
    vs_seed = f"{100.0 * (madds - seed) / seed:+.1f}%" if seed else "-"
    seed_text = f"{seed:.2f}B" if seed else "-"
    return (f"| {name:32} | {f'{size[0]}x{size[1]}':9} | OS {config.output_stride:2} | {madds:7.3f}B | {backbone:7.3f}B | "
            f"{tfprof:7.3f}B | {tfprof / 2:7.3f}B | {seed_text:>7} | {vs_seed:>7} | {report.params / 1e6:5.3f}M | "
            f"{seconds:5.1f} |")


HEADER = ("| export                           | input     | OS    | measured | backbone | tfprof   | tfprof/2 "
          "| seed    | vs seed | params | s     |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="run only entries whose name contains one of these")
    parser.add_argument("--explain", action="store_true", help="also count the MobileNet-v3 rows at OS 16 and 8")
    args = parser.parse_args(argv)

    from tests.support.deeplab_ref import export_graph
    from tests.support.deeplab_ref.mobilenet_v3 import FULL_WIDTH
    from zoo_cli.flops import count_madds

    entries = {name: entry for name, entry in FULL_WIDTH.items()
               if not args.only or any(part in name for part in args.only)}
    print(HEADER)
    print("|" + "|".join("-" * len(cell) for cell in HEADER.split("|")[1:-1]) + "|")
    for name, (config, size, seed, _row_text) in entries.items():
        print(_row(name, config, size, seed, export_graph, count_madds), flush=True)
    if args.explain:
        print("\nMobileNet-v3 at other output strides (the seed's figure is for OS 32):\n")
        print(HEADER)
        print("|" + "|".join("-" * len(cell) for cell in HEADER.split("|")[1:-1]) + "|")
        for name, (config, size, seed, _row_text) in entries.items():
            if not name.startswith("mnv3"):
                continue
            for output_stride in (16, 8):
                other = dataclasses.replace(config, output_stride=output_stride)
                print(_row(name, other, size, seed, export_graph, count_madds), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
