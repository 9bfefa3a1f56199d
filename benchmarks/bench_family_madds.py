"""Multiply-Adds of faithful reference exports of every zoo family vs the seed's model-zoo table.

Each entry of ``tests.support.deeplab_ref.FULL_WIDTH`` (real widths: depth multiplier / width 1.0 unless the
zoo row says otherwise) is exported at run time exactly as research/deeplab's export_model.py would write it
(random weights) and counted by ``zoo_cli.graph.flops.count_madds`` at the row's input size. Multi-scale + flip
rows are in-graph multi-scale exports (export_model.py --inference_scales/--add_flipped_images), so one
count covers every scale and flip.

Columns: measured Multiply-Adds (convolutions and matmuls, see zoo_cli/flops.py), tfprof's float_ops / 2
for the same graph (the seed's tool), the seed's figure, and measured vs seed in %.

    python benchmarks/bench_family_madds.py [--only SUBSTRING ...] [--list]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="run only entries whose name contains one of these")
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    args = parser.parse_args(argv)

    from tests.support.deeplab_ref import FULL_WIDTH, export_graph
    from zoo_cli.graph.flops import count_madds

    entries = {name: entry for name, entry in FULL_WIDTH.items()
               if not args.only or any(part in name for part in args.only)}
    if args.list:
        for name, (config, size, seed, row) in entries.items():
            print(f"{name}: {size[0]}x{size[1]}, seed {seed if seed is not None else '-'}B, {row}\n    {config}")
        return 0

    header = f"| {'export':34} | input     | measured | tfprof/2 | seed    | vs seed | params | build s | seed row |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for name, (config, size, seed, row) in entries.items():
        start = time.perf_counter()
        graph_def = export_graph(config)
        built = time.perf_counter() - start
        report = count_madds(graph_def, size)
        tfprof = report.tfprof_madds_billion
        measured = report.madds_billion
        diff = f"{100.0 * (measured - seed) / seed:+.1f}%" if seed else "-"
        print(f"| {name:34} | {f'{size[0]}x{size[1]}':9} | {measured:7.2f}B | "
              f"{(f'{tfprof:7.2f}B' if tfprof is not None else '      -'):8} | "
              f"{(f'{seed:6.2f}B' if seed is not None else '      -'):7} | {diff:>7} | "
              f"{report.params / 1e6:5.2f}M | {built:7.1f} | {row} |", flush=True)
        del graph_def
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
