"""Multi-scale + flip evaluation cost vs the bare Session.run calls it consists of.

One 500x375 (W x H) image, eval crop 513x513, scales 0.5..1.75 (6) with flips = 12 network runs, on a
MobileNet-v2 DeepLab-v3 graph at OS 8 (random weights, realistic size; benchmarks/mobilenetv2_deeplab.py)
exported at crop 513 and re-targeted by zoo_cli.evaluation.multiscale to every scaled crop.

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
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

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


# The implementation before the procedure moved into the graph (numpy image resizes and flips, 12
# Session.run calls per image, numpy accumulation): loaded from git so both run side by side in one process.
BEFORE_REV = "ab70dbb"


def load_before(rev: str = BEFORE_REV) -> Any:
    """``zoo_cli/multiscale.py`` as of git revision ``rev``, as a module (it imports today's zoo_cli.graph.retarget)."""
    import importlib.util
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:zoo_cli/multiscale.py"], check=True,
                         capture_output=True, text=True).stdout
    name = f"zoo_multiscale_{rev}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(src, f"<{rev}:zoo_cli/multiscale.py>", "exec"), module.__dict__)
    return module


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def memory(fn: Callable[[], Any]) -> tuple[float, float, float]:
    """(peak RSS above start, process peak RSS, peak numpy/Python heap) in MB during one call."""
    with PeakRSS() as rss:
        tracemalloc.start()
        fn()
        _, heap_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return (rss.peak - rss.base) / 1e6, rss.peak / 1e6, heap_peak / 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = all cores)")
    ap.add_argument("--windows", default="1,2,4",
                    help="in-graph variants to time: runs TensorFlow may have in flight at once (comma list)")
    ap.add_argument("--before", default=BEFORE_REV, help="git revision of the per-run implementation ('' = skip)")
    ap.add_argument("--small", action="store_true", help="depth multiplier 0.5 instead of 1.0 (quicker)")
    ap.add_argument("--cityscapes", action="store_true", help="only the Cityscapes-size memory measurement")
    ap.add_argument("--window", type=int, default=2, help="--cityscapes: the window of the in-graph run")
    ap.add_argument("--impl", default="", choices=["", "before", "after"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.cityscapes:
        cityscapes_memory(args.threads, args.before, args.window, args.impl)
        return

    from mobilenetv2_deeplab import build_mobilenetv2_deeplab

    from zoo_cli.evaluation.multiscale import MultiScalePredictor
    from zoo_cli.evaluation.resize import resize_bilinear
    from zoo_cli.graph.geometry import scaled_crop

    dm = 0.5 if args.small else 1.0
    t0 = time.perf_counter()
    graph = build_mobilenetv2_deeplab(depth_multiplier=dm, output_stride=8, crop=(513, 513), num_classes=21)
    build_s = time.perf_counter() - t0
    size_mb = graph.ByteSize() / 1e6
    windows = [int(w) for w in args.windows.split(",") if w.strip()]
    fulls: dict[str, Callable[[], Any]] = {}
    setup: dict[str, float] = {}
    img = image()
    h, w = img.shape[:2]
    if args.before:
        old = load_before(args.before)
        t0 = time.perf_counter()
        before = old.MultiScalePredictor(graph, scales=SCALES, flip=True, crop=(513, 513), threads=args.threads)
        setup["before"] = time.perf_counter() - t0
        fulls["before (per run)"] = lambda: before(img)
    preds = {}
    for win in windows:
        t0 = time.perf_counter()
        preds[win] = MultiScalePredictor(graph, scales=SCALES, flip=True, crop=(513, 513), threads=args.threads,
                                         window=win)
        setup[f"window {win}"] = time.perf_counter() - t0
        fulls[f"in-graph, window {win}"] = (lambda p: lambda: p(img))(preds[win])
    pred = preds[windows[0]]

    # The 12 bare runs' inputs, prepared outside the timed region (the network imported as exported, fed at
    # its padded image: the same callables the per-run implementation uses).
    padded = np.full((513, 513, 3), 127.5, np.float32)
    padded[:h, :w] = img
    bare_inputs, graph_inputs = [], []
    for s in SCALES:
        c = scaled_crop((513, 513), s)
        x = padded if c == (513, 513) else resize_bilinear(padded, c)
        x8 = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        net = pred._net(c)
        for flipped in (False, True):
            bare_inputs.append((net.run_logits, np.ascontiguousarray(x[:, ::-1] if flipped else x)[None]))
            # Second baseline: the re-targeted graph run as exported (uint8 image at the scaled crop ->
            # SemanticPredictions, i.e. its own logits upsampling + ArgMax).
            graph_inputs.append((net.run_labels, np.ascontiguousarray(x8[:, ::-1] if flipped else x8)[None]))

    def runs(inputs):
        return lambda: [fn(feed) for fn, feed in inputs]

    cases = dict(fulls)
    cases["12 bare Session.run"] = runs(bare_inputs)
    cases["12 runs as exported"] = runs(graph_inputs)
    labels = {name: fn() for name, fn in fulls.items()}  # warm-up (executors for every crop), and the answers
    for fn in cases.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(args.repeats):  # alternating, so every case sees the same machine state
        for name, fn in cases.items():
            times[name].append(timed(fn))
    mem = {name: memory(fn) for name, fn in fulls.items()}
    load = os.getloadavg()[0]
    # Minimum over the alternating repeats: the least disturbed run of each (other processes share the
    # cores); the individual runs are printed too.
    best = {name: (min(t[0] for t in ts), min(t[1] for t in ts)) for name, ts in times.items()}
    print(f"graph: MobileNet-v2 DeepLab-v3 dm{dm:g} OS 8, crop 513x513, {size_mb:.1f} MB GraphDef "
          f"(built in {build_s:.1f} s; predictor set-up "
          + ", ".join(f"{k} {v:.1f} s" for k, v in setup.items()) + ")")
    print(f"image {w}x{h}, scales {','.join(f'{s:g}' for s in SCALES)} + flip = {len(bare_inputs)} runs, "
          f"{os.cpu_count()} cores, threads={args.threads}, {args.repeats} alternating repeats (min)")
    print("times: wall s / process CPU s (CPU time is what other processes on the machine disturb least)")
    width = max(map(len, cases))
    for name, ts in times.items():
        print(f"{name:<{width}} : {best[name][0]:.3f} / {best[name][1]:.3f}   (runs: "
              + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in ts) + ")")
    bw, bc = best["12 bare Session.run"]
    ew, ec = best["12 runs as exported"]
    for name in fulls:
        fw, fc = best[name]
        print(f"efficiency bare/full, {name}: wall {bw / fw:.3f}, CPU {bc / fc:.3f}  (overhead "
              f"{fw - bw:+.3f} s wall, {fc - bc:+.3f} s CPU per image; exported/full: wall {ew / fw:.3f}, "
              f"CPU {ec / fc:.3f})")
    ref = next(iter(labels.values()))
    for name, got in labels.items():
        print(f"labels of {name}: {int((np.asarray(got) != ref).sum())} of {ref.size} pixels differ from "
              f"{next(iter(labels))}")
    print(f"load average during the run: {load:.2f} on {os.cpu_count()} cores")
    for name, (above, peak, heap) in mem.items():
        print(f"memory, {name}: peak RSS above start {above:.1f} MB (process {peak:.0f} MB), peak numpy/Python "
              f"heap {heap:.1f} MB (tracemalloc; a {h}x{w}x21 float32 map is {h * w * 21 * 4 / 1e6:.1f} MB)")


def cityscapes_memory(threads: int = 0, before: str = BEFORE_REV, window: int = 2, impl: str = "") -> None:
    """Peak memory of scales 0.75..2.0 + flip on a 1024x2048 image at eval crop 1025x2049 (19 classes),
    with a small DeepLab-shaped network so that the network's own activations stay modest: the 2.0 scale
    runs at 2049x4097. Each implementation runs in its own process (``impl`` = before / after: this one)
    so their RSS peaks do not mix."""
    if not impl:
        import subprocess

        for which in (["before"] if before else []) + ["after"]:
            subprocess.run([sys.executable, __file__, "--cityscapes", "--threads", str(threads), "--before", before,
                            "--window", str(window), "--impl", which], check=True)
        return
    from tests.support.export import tiny_deeplab

    if impl == "before":
        MultiScalePredictor = load_before(before).MultiScalePredictor
        kwargs = {}
        what = f"before ({before}, per run)"
    else:
        from zoo_cli.evaluation.multiscale import MultiScalePredictor

        kwargs = {"window": window}
        what = f"in-graph, window {window}"
    scales = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    graph = tiny_deeplab(seed=0, num_classes=19, crop=(1025, 2049), width=16)
    pred = MultiScalePredictor(graph, scales=scales, flip=True, crop=(1025, 2049), threads=threads, **kwargs)
    img = image(1024, 2048)
    with PeakRSS() as rss:
        tracemalloc.start()
        start = time.perf_counter()
        labels = pred(img)  # the first call (TensorFlow's executors are set up in it)
        seconds = time.perf_counter() - start
        _, heap_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    start = time.perf_counter()
    pred(img)
    again = time.perf_counter() - start
    acc = 1024 * 2048 * 19 * 4
    print(f"{what}: Cityscapes size 1024x2048 image, crop 1025x2049, scales "
          f"{','.join(f'{s:g}' for s in scales)} + flip (12 runs, largest 2049x4097), 19 classes, "
          f"tiny_deeplab(width=16): first call {seconds:.1f} s, second {again:.1f} s")
    print(f"  peak RSS above start  : {(rss.peak - rss.base) / 1e6:.0f} MB (process {rss.peak / 1e6:.0f} MB)")
    print(f"  peak numpy/Python heap: {heap_peak / 1e6:.0f} MB; one probability map {acc / 1e6:.0f} MB; "
          f"all 12 maps held at once would be {12 * acc / 1e6:.0f} MB")
    assert labels.shape == (1024, 2048)


if __name__ == "__main__":
    main()
