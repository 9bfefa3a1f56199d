"""What the multi-scale runtime guard costs per graph load, side by side with what it protects.

The guard (zoo_cli.evaluation.multiscale.MultiScalePredictor._guard) runs the scale-1 unflipped branch and the graph's
own SemanticPredictions once on a crop-sized probe. Measured here on a frozen graph, in one process:

* guard: seconds of the check (from ``predictor.guard``), per predictor build;
* build: the whole MultiScalePredictor construction (analysis, re-targeting, imports, the guard);
* image: one 500x375 image through the 6-scale + flip plan (median of ``--repeats``).

    python benchmarks/bench_guard.py [--graph PATH] [--repeats 5]

Default graph: tests/data/deeplab_export_mnv2_dm05_os16_513.pb (written by the reference export code).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", default=str(ROOT / "tests" / "data" / "deeplab_export_mnv2_dm05_os16_513.pb"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from zoo_cli.evaluation.multiscale import MultiScalePredictor
    from zoo_cli.graph.runner import FrozenGraphModel

    image = (np.random.default_rng(0).random((375, 500, 3)) * 255).astype(np.uint8)
    guards, builds, images, singles = [], [], [], []
    with FrozenGraphModel(args.graph) as model:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ms = MultiScalePredictor(model, scales=SCALES, flip=True)
            builds.append(time.perf_counter() - t0)
            guards.append(ms.guard["seconds"])
            ms.predict(image)  # warm-up
            t0 = time.perf_counter()
            ms.predict(image)
            images.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model.predict(image)
            singles.append(time.perf_counter() - t0)
            ms.close()
    med = statistics.median
    print(f"graph: {args.graph}")
    print(f"guard  {med(guards):.3f} s   build {med(builds):.3f} s   (guard = {med(guards) / med(builds):.0%} of build)")
    print(f"one image, 6 scales + flip {med(images):.3f} s  -> guard = {med(guards) / med(images):.2f} images")
    print(f"one image, single scale    {med(singles):.3f} s  -> guard = {med(guards) / med(singles):.2f} images")


if __name__ == "__main__":
    main()
