"""Multiply-Adds of the full-width Xception reference exports vs the model zoo's published numbers.

Builds each single-scale Xception row of tests.support.deeplab_ref.xception.FULL_WIDTH with the reference
export (real widths, random weights), counts it with zoo_cli.flops.count_madds at the row's input size, and
prints measured vs seed, plus where the Multiply-Adds are (per part of the network, per op type) so a gap
can be traced to ops.

    python benchmarks/bench_xception_madds.py [--only NAME ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def part_of(op_name: str) -> str:
    """The part of a DeepLab graph an op belongs to (backbone flow, ASPP/DPC, decoder, logits)."""
    head, _, rest = op_name.partition("/")
    if head.startswith("xception_"):
        flow = rest.split("/", 1)[0]
        if flow == "entry_flow" and rest.startswith("entry_flow/conv1"):
            return "backbone: entry_flow/conv1_x"
        return f"backbone: {flow}"
    if head.startswith("aspp") or head in ("image_pooling", "concat_projection"):
        return "ASPP"
    if head == "meta_architecture":
        return "dense prediction cell"
    return head


def measure(name: str) -> dict[str, Any]:
    from tests.support.deeplab_ref import export_graph
    from tests.support.deeplab_ref.xception import FULL_WIDTH
    from zoo_cli.flops import count_madds

    config, size, seed, row = FULL_WIDTH[name]
    t0 = time.perf_counter()
    graph_def = export_graph(config)
    t1 = time.perf_counter()
    report = count_madds(graph_def, size)
    t2 = time.perf_counter()
    parts: Counter[str] = Counter()
    for op in report.ops:
        parts[part_of(op.name)] += op.madds
    return {
        "name": name, "row": row, "input_size": list(size), "seed_billion": seed,
        "measured_billion": report.madds_billion, "tfprof_over_2_billion": report.tfprof_madds_billion,
        "error_percent": None if seed is None else 100.0 * (report.madds_billion - seed) / seed,
        "params_million": report.params_million, "by_op_type": report.by_op_type(), "by_part": dict(parts),
        "export_seconds": round(t1 - t0, 1), "count_seconds": round(t2 - t1, 1),
    }


def main(argv: list[str] | None = None) -> int:
    from tests.support.deeplab_ref.xception import FULL_WIDTH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(FULL_WIDTH), help="rows to measure (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    for name in args.only or list(FULL_WIDTH):
        res = measure(name)
        results.append(res)
        seed = "-" if res["seed_billion"] is None else f"{res['seed_billion']:.2f}B"
        err = "" if res["error_percent"] is None else f" ({res['error_percent']:+.2f} %)"
        print(f"{name}: {res['input_size'][0]}x{res['input_size'][1]} measured {res['measured_billion']:.2f}B "
              f"vs seed {seed}{err}; tfprof/2 {res['tfprof_over_2_billion']}; params {res['params_million']:.2f}M "
              f"(export {res['export_seconds']} s, count {res['count_seconds']} s)", flush=True)
        for part, madds in sorted(res["by_part"].items(), key=lambda kv: -kv[1]):
            print(f"    {part:32s} {madds / 1e9:9.2f}B")
        for op, madds in sorted(res["by_op_type"].items(), key=lambda kv: -kv[1]):
            print(f"    {op:32s} {madds / 1e9:9.2f}B")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
