"""Multi-scale + flip evaluation cost vs the bare Session.run calls it consists of.

One 500x375 (W x H) image, eval crop 513x513, scales 0.5..1.75 (6) with flips = 12 network runs, on a
MobileNet-v2 DeepLab-v3 graph at OS 8 (random weights, realistic size; benchmarks/mobilenetv2_deeplab.py)
exported at crop 513 and re-targeted by zoo_cli.multiscale to every scaled crop.

* full: ``MultiScalePredictor(image)`` end to end (pad, 5 image resizes, 12 runs, logits resizes, softmax,
  accumulation, argmax);
* bare: the same 12 ``Session.run`` calls (same callables, inputs prepared beforehand), summed.

Runs alternate (full, bare, full, bare, ...) after a warm-up so both see the same machine state; the report
gives medians, efficiency = bare / full, and the peak memory: process RSS above the pre-call level (sampled
every 5 ms) and the peak of Python/numpy allocations (tracemalloc) during one full call.

    python benchmarks/bench_multiscale.py [--repeats 3] [--threads 0] [--small]
    python benchmarks/bench_multiscale.py --cityscapes   # memory at Cityscapes size (see cityscapes_memory)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


class PeakRSS:
    """Peak resident set size of this process while the block runs (sampled)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.proc = psutil.Process()
        self.interval = interval

    def __enter__(self) -> "PeakRSS":
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def image(h: int = 375, w: int = 500) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 100 * np.sin(0.03 * yy + c) * np.cos(0.02 * xx) for c in range(3)], -1)
    return np.clip(img + rng.normal(0, 15, img.shape), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = all cores)")
    ap.add_argument("--small", action="store_true", help="depth multiplier 0.5 instead of 1.0 (quicker)")
    ap.add_argument("--cityscapes", action="store_true", help="only the Cityscapes-size memory measurement")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.cityscapes:
        cityscapes_memory(args.threads)
        return

    from mobilenetv2_deeplab import build_mobilenetv2_deeplab

    from zoo_cli.multiscale import MultiScalePredictor, resize_bilinear, scaled_crop

    dm = 0.5 if args.small else 1.0
    t0 = time.perf_counter()
    graph = build_mobilenetv2_deeplab(depth_multiplier=dm, output_stride=8, crop=(513, 513), num_classes=21)
    build_s = time.perf_counter() - t0
    size_mb = graph.ByteSize() / 1e6
    t0 = time.perf_counter()
    pred = MultiScalePredictor(graph, scales=SCALES, flip=True, crop=(513, 513), threads=args.threads)
    setup_s = time.perf_counter() - t0
    img = image()
    h, w = img.shape[:2]

    # The 12 bare runs' inputs, prepared outside the timed region.
    padded = np.full((513, 513, 3), 127.5, np.float32)
    padded[:h, :w] = img
    bare_inputs = []
    for s in SCALES:
        c = scaled_crop((513, 513), s)
        x = padded if c == (513, 513) else resize_bilinear(padded, c)
        net = pred._net(c)
        for flipped in (False, True):
            feed = np.ascontiguousarray(x[:, ::-1] if flipped else x)[None]
            bare_inputs.append((net.run_logits, feed))

    # Second baseline: the re-targeted graph run as exported (uint8 image at the scaled crop ->
    # SemanticPredictions, i.e. its own logits upsampling + ArgMax), 12 times.
    graph_inputs = []
    for s in SCALES:
        c = scaled_crop((513, 513), s)
        x = np.clip(np.rint(padded if c == (513, 513) else resize_bilinear(padded, c)), 0, 255).astype(np.uint8)
        net = pred._net(c)
        for flipped in (False, True):
            graph_inputs.append((net.run_labels, np.ascontiguousarray(x[:, ::-1] if flipped else x)[None]))

    def as_exported() -> float:
        start, cpu = time.perf_counter(), time.process_time()
        for fn, feed in graph_inputs:
            fn(feed)
        return time.perf_counter() - start, time.process_time() - cpu

    def bare() -> float:
        start, cpu = time.perf_counter(), time.process_time()
        for fn, feed in bare_inputs:
            fn(feed)
        return time.perf_counter() - start, time.process_time() - cpu

    def full() -> float:
        start, cpu = time.perf_counter(), time.process_time()
        pred(img)
        return time.perf_counter() - start, time.process_time() - cpu

    full(), bare(), as_exported()  # warm-up: executors for every crop
    fulls, bares, exported = [], [], []
    for _ in range(args.repeats):
        fulls.append(full())
        bares.append(bare())
        exported.append(as_exported())
    with PeakRSS() as rss:
        tracemalloc.start()
        full()
        _, heap_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    # Minimum over the alternating repeats: the least disturbed run of each (other processes share the
    # cores); the individual runs are printed too.
    f, b, e = (min(x[0] for x in runs) for runs in (fulls, bares, exported))
    fc, bc, ec = (min(x[1] for x in runs) for runs in (fulls, bares, exported))
    print(f"graph: MobileNet-v2 DeepLab-v3 dm{dm:g} OS 8, crop 513x513, {size_mb:.1f} MB GraphDef "
          f"(built in {build_s:.1f} s; {len(SCALES)} crops imported in {setup_s:.1f} s)")
    print(f"image {w}x{h}, scales {','.join(f'{s:g}' for s in SCALES)} + flip = {len(bare_inputs)} runs, "
          f"{os.cpu_count()} cores, threads={args.threads}, {args.repeats} alternating repeats (min)")
    def show(runs):
        return ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs)

    print("times: wall s / process CPU s (CPU time is what other processes on the machine disturb least)")
    print(f"full multi-scale+flip : {f:.3f} / {fc:.3f}   (runs: {show(fulls)})")
    print(f"12 bare Session.run   : {b:.3f} / {bc:.3f}   (feature logits only; runs: {show(bares)})")
    print(f"12 runs as exported   : {e:.3f} / {ec:.3f}   (uint8 -> SemanticPredictions at each scaled crop; "
          f"runs: {show(exported)})")
    print(f"efficiency bare/full  : wall {b / f:.3f}, CPU {bc / fc:.3f}  (overhead {f - b:.3f} s wall, "
          f"{fc - bc:.3f} s CPU per image)")
    print(f"efficiency exported/full: wall {e / f:.3f}, CPU {ec / fc:.3f}")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"peak RSS above start  : {(rss.peak - rss.base) / 1e6:.1f} MB during one full call "
          f"(process RSS {rss.peak / 1e6:.0f} MB)")
    print(f"peak numpy/Python heap: {heap_peak / 1e6:.1f} MB (tracemalloc; accumulator "
          f"{h * w * 21 * 4 / 1e6:.1f} MB = {h}x{w}x21 float32)")


def cityscapes_memory(threads: int = 0) -> None:
    """Peak memory of scales 0.75..2.0 + flip on a 1024x2048 image at eval crop 1025x2049 (19 classes),
    with a small DeepLab-shaped network so that the network's own activations stay modest: the 2.0 scale
    runs at 2049x4097."""
    from zoo_cli.export import tiny_deeplab
    from zoo_cli.multiscale import MultiScalePredictor

    scales = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    graph = tiny_deeplab(seed=0, num_classes=19, crop=(1025, 2049), width=16)
    pred = MultiScalePredictor(graph, scales=scales, flip=True, crop=(1025, 2049), threads=threads)
    img = image(1024, 2048)
    with PeakRSS() as rss:
        tracemalloc.start()
        start = time.perf_counter()
        labels = pred(img)
        seconds = time.perf_counter() - start
        _, heap_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    acc = 1024 * 2048 * 19 * 4
    print(f"Cityscapes size: 1024x2048 image, crop 1025x2049, scales {','.join(f'{s:g}' for s in scales)} + flip "
          f"(12 runs, largest 2049x4097), 19 classes, tiny_deeplab(width=16): {seconds:.1f} s")
    print(f"peak RSS above start  : {(rss.peak - rss.base) / 1e6:.0f} MB (process {rss.peak / 1e6:.0f} MB)")
    print(f"peak numpy/Python heap: {heap_peak / 1e6:.0f} MB; accumulator {acc / 1e6:.0f} MB; "
          f"all 12 maps held at once would be {12 * acc / 1e6:.0f} MB")
    assert labels.shape == (1024, 2048)


if __name__ == "__main__":
    main()
