"""Output-stride rewriting on full-width faithful exports (run by hand; results in docs/bench.md):
Multiply-Adds of the OS 8 export rewritten to OS 16 at 513x513 vs the seed's numbers, and the rewrite's time
per graph load (median of 3).

    PYTHONPATH=. python benchmarks/bench_output_stride.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.deeplab_ref import ExportConfig, export_graph  # noqa: E402
from zoo_cli.graph.crop_pattern import analyse  # noqa: E402
from zoo_cli.graph.flops import count_madds  # noqa: E402
from zoo_cli.graph.output_stride import rewrite_output_stride  # noqa: E402

CASES = [
    ("MobileNet-v2 (dm 1.0) VOC", ExportConfig("mobilenet_v2", crop_size=(513, 513), output_stride=8), 2.75),
    ("Xception-65 + decoder VOC", ExportConfig("xception_65", crop_size=(513, 513), output_stride=8,
                                               atrous_rates=(12, 24, 36), decoder_output_stride=(4,)), 54.17),
]


def main() -> None:
    for label, cfg, seed_b in CASES:
        gd = export_graph(cfg)
        pattern = analyse(gd)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            rewritten = rewrite_output_stride(gd, 16, pattern)
            times.append(time.perf_counter() - started)
        madds = count_madds(rewritten, cfg.crop_size).madds / 1e9
        own = count_madds(gd, cfg.crop_size).madds / 1e9
        print(f"{label}: OS 8 export {own:.2f} B; rewritten to OS 16 {madds:.2f} B vs seed {seed_b} B "
              f"({(madds / seed_b - 1) * 100:+.1f} %); rewrite {statistics.median(times):.2f} s "
              f"(nodes {len(gd.node)})")


if __name__ == "__main__":
    main()
