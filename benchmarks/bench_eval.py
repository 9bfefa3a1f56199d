"""Benchmark the frozen-graph runner and ``zoo eval``'s dataset loop on a realistic-size graph.

Two measurements, side by side in one process, on a MobileNet-v2 DeepLab-v3 graph with random weights
(benchmarks/mobilenetv2_deeplab.py: depth multiplier 1.0, OS 16, crop 513x513, ~2.75 B Multiply-Adds),
exported zoo-style (pad to 513 with 127.5, static image pooling, ResizeBilinear, ArgMax, int32 slice):

1. per-image overhead of ``FrozenGraphModel.predict`` vs a bare ``Session.run`` on the same graph, same
   thread settings and the same 375x500 uint8 image (goal: <= 3 %); A/B blocks are interleaved so drift
   of the machine hits both alike;
2. dataset throughput of ``zoo_cli.evaluation.dataset_job.evaluate_dataset`` vs a straightforward demo-notebook-style loop
   on a synthetic VOC-layout split (JPEG images 500x375 / 375x500, palette label PNGs): the loop opens the
   image with Pillow, resizes it so its longer side is 513 (LANCZOS, as the demo notebook does), runs
   ``sess.run(..., feed_dict={'ImageTensor:0': [np.asarray(image)]})``, resizes the label map back to the
   label's size (nearest) and accumulates per-class intersection/union with boolean masks; our loop decodes
   the next images in a background thread while the model runs, feeds images at native size and
   accumulates one confusion matrix with np.bincount (goal: >= 1.3x).

Run:  python benchmarks/bench_eval.py [--images 40] [--runs 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_graph(path: Path) -> str:
    """Write the benchmark graph; the bench engineer's faithful builder when present, else a rough one."""
    try:
        from benchmarks.mobilenetv2_deeplab import build_mobilenetv2_deeplab

        gd = build_mobilenetv2_deeplab(1.0, 16, crop=(513, 513))
        what = "benchmarks/mobilenetv2_deeplab.py MobileNet-v2 dm1.0 OS16 crop 513"
    except ImportError:  # pragma: no cover - fallback when the builder is not in the tree
        from tests.support.export import tiny_deeplab

        gd = tiny_deeplab(num_classes=21, crop=513, output_stride=16, width=96)
        what = "tests.support.export.tiny_deeplab width 96 OS16 crop 513"
    path.write_bytes(gd.SerializeToString())
    return what


def make_split(root: Path, n: int, seed: int = 0) -> None:
    """A VOC2012-layout split of ``n`` photo-like JPEGs (smooth regions + noise) with palette labels."""
    from PIL import Image, ImageFilter

    from zoo_cli.evaluation.palettes import get_palette

    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    palette = get_palette("voc").png_palette()
    for i in range(n):
        h, w = (375, 500) if i % 3 else (500, 375)
        coarse = rng.integers(0, 256, size=(h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
        arr = np.clip(np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, size=(h, w, 3)), 0, 255)
        name = f"2008_{i:06d}"
        Image.fromarray(arr.astype(np.uint8)).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        label = np.kron(rng.integers(0, 21, size=(h // 50 + 1, w // 50 + 1)), np.ones((50, 50), dtype=np.int64))
        label = label[:h, :w].astype(np.uint8)
        label[:4] = 255
        lab = Image.fromarray(label, mode="P")
        lab.putpalette(palette)
        lab.save(root / "SegmentationClass" / f"{name}.png")
        names.append(name)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(names) + "\n")


def host_overhead_us(tmp: Path, calls: int = 400) -> dict:
    """Absolute host-side cost per call (µs) of the runner vs a bare Session.run, on a tiny zoo-style graph.

    The model time is ~nothing here, so the difference is the runner's own work (checks, feed, fetch) and is
    not drowned by the noise of a busy machine; divided by the realistic graph's time it gives the overhead.
    """

    from tests.support.export import save_frozen_graph, tiny_deeplab
    from zoo_cli.graph.runner import FrozenGraphModel

    path = save_frozen_graph(tiny_deeplab(num_classes=21, crop=33, output_stride=16, width=8), tmp / "tiny.pb")
    image = np.random.default_rng(2).integers(0, 256, size=(30, 31, 3), dtype=np.uint8)
    bare = _bare_session(path)
    model = FrozenGraphModel(path)
    fns = {"bare": lambda: bare.run("SemanticPredictions:0", feed_dict={"ImageTensor:0": image[None]}),
           "runner": lambda: model.predict(image)}
    for fn in fns.values():
        for _ in range(20):
            fn()
    times: dict[str, list[float]] = {"bare": [], "runner": []}
    for i in range(calls):
        for label in (("bare", "runner") if i % 2 == 0 else ("runner", "bare")):
            t = time.perf_counter()
            fns[label]()
            times[label].append(time.perf_counter() - t)
    model.close()
    bare.close()
    return {k: statistics.median(v) * 1e6 for k, v in times.items()}


def _bare_session(path: Path):
    """A plain tf.compat.v1.Session on the graph file: the baseline the runner is measured against."""
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(Path(path).read_bytes())
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    return tf.compat.v1.Session(graph=g)


def overhead(graph: Path, runs: int, rounds: int) -> dict:
    """Median ms per image: bare Session.run vs FrozenGraphModel.predict, alternating calls."""

    from zoo_cli.graph.runner import FrozenGraphModel

    image = np.random.default_rng(1).integers(0, 256, size=(375, 500, 3), dtype=np.uint8)
    bare = _bare_session(graph)
    model = FrozenGraphModel(graph)

    def bare_run():
        return bare.run("SemanticPredictions:0", feed_dict={"ImageTensor:0": image[None]})

    for _ in range(3):  # warm up both
        bare_run()
        model.predict(image)
    times = {"bare": [], "runner": []}
    ratios = []
    # A and B alternate call by call (order flipped every pair) so load from other processes hits both alike.
    for i in range(runs * rounds):
        pair = {}
        order = (("bare", bare_run), ("runner", lambda: model.predict(image)))
        for label, fn in (order if i % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            fn()
            pair[label] = time.perf_counter() - t
            times[label].append(pair[label])
        ratios.append(pair["runner"] / pair["bare"])
    assert np.array_equal(bare_run()[0], model.predict(image))
    model.close()
    bare.close()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    mean = {k: statistics.fmean(v) * 1000 for k, v in times.items()}
    return {"median_ms": med, "mean_ms": mean, "overhead_pct_median": 100 * (med["runner"] / med["bare"] - 1),
            "overhead_pct_paired": 100 * (statistics.median(ratios) - 1),
            "overhead_pct_mean": 100 * (mean["runner"] / mean["bare"] - 1), "n": len(times["bare"])}


def notebook_loop(graph: Path, root: Path) -> tuple[float, float, int]:
    """The demo-notebook way: serial decode, resize to 513, sess.run with a feed_dict, mask-based IoU."""
    import tensorflow as tf
    from PIL import Image

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(graph.read_bytes())
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    sess = tf.compat.v1.Session(graph=g)
    names = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    inter = np.zeros(21)
    union = np.zeros(21)
    sess.run("SemanticPredictions:0", feed_dict={"ImageTensor:0": [np.zeros((513, 385, 3), np.uint8)]})
    parts = {"decode+resize": 0.0, "model": 0.0, "label+IoU": 0.0}
    start = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        image = Image.open(root / "JPEGImages" / f"{name}.jpg")
        width, height = image.size
        ratio = 513 / max(width, height)
        resized = image.convert("RGB").resize((int(ratio * width), int(ratio * height)), Image.LANCZOS)
        t1 = time.perf_counter()
        seg = sess.run("SemanticPredictions:0", feed_dict={"ImageTensor:0": [np.asarray(resized)]})[0]
        t2 = time.perf_counter()
        label = np.array(Image.open(root / "SegmentationClass" / f"{name}.png"))
        seg = np.array(Image.fromarray(seg.astype(np.uint8)).resize((label.shape[1], label.shape[0]), Image.NEAREST))
        valid = label != 255
        for c in range(21):
            p, t = (seg == c) & valid, (label == c) & valid
            inter[c] += np.sum(p & t)
            union[c] += np.sum(p | t)
        t3 = time.perf_counter()
        parts["decode+resize"] += t1 - t0
        parts["model"] += t2 - t1
        parts["label+IoU"] += t3 - t2
    seconds = time.perf_counter() - start
    sess.close()
    present = union > 0
    notebook_loop.parts = {k: v / len(names) * 1000 for k, v in parts.items()}  # ms per image, last run
    return seconds, float(np.mean(inter[present] / union[present])), len(names)


def zoo_loop(graph: Path, root: Path, jobs: int | None) -> tuple[float, float, int]:
    """zoo eval's dataset loop (the same functions the CLI calls); ``jobs=None`` = the CLI's automatic plan."""
    from zoo_cli.evaluation.dataset_job import evaluate_dataset
    from zoo_cli.evaluation.datasets import open_dataset
    from zoo_cli.evaluation.predictors import SingleScale, plan_parallelism
    from zoo_cli.graph.runner import FrozenGraphModel

    jobs, threads = plan_parallelism(jobs, 0, (513, 513))
    with FrozenGraphModel(graph, intra_op_threads=threads) as model:
        model.predict(np.zeros((375, 500, 3), np.uint8))
        ds = open_dataset(root, "voc")
        matrix, n, seconds = evaluate_dataset(ds, SingleScale(model), jobs=jobs, progress=False)
    return seconds, matrix.mean_iou(), n


def main() -> None:
    parser = argparse.ArgumentParser(description="runner overhead and dataset throughput")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--runs", type=int, default=30, help="timed A/B pairs per round (overhead)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each measurement")
    args = parser.parse_args()
    import psutil
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        what = build_graph(tmp / "g.pb")
        make_split(tmp / "voc", args.images)
        print(f"graph: {what}; TF {tf.__version__}; {psutil.cpu_count()} logical CPUs "
              f"({psutil.cpu_count(logical=False)} physical); load average {os.getloadavg()[0]:.1f}")
        o = overhead(tmp / "g.pb", args.runs, args.rounds)
        print(f"\n1. per-image overhead, 375x500 input, {o['n']} runs each (alternating call by call):")
        print(f"   bare Session.run      median {o['median_ms']['bare']:.2f} ms  mean {o['mean_ms']['bare']:.2f} ms")
        print(f"   FrozenGraphModel      median {o['median_ms']['runner']:.2f} ms  mean {o['mean_ms']['runner']:.2f} ms")
        print(f"   overhead              of medians {o['overhead_pct_median']:+.2f} %, of means "
              f"{o['overhead_pct_mean']:+.2f} %, median of paired ratios {o['overhead_pct_paired']:+.2f} %")
        h = host_overhead_us(tmp)
        diff = h["runner"] - h["bare"]
        print(f"   tiny zoo-style graph (host-side cost, median of 400 alternating calls): bare {h['bare']:.0f} us, "
              f"runner {h['runner']:.0f} us -> runner adds {diff:+.0f} us = "
              f"{100 * diff / 1000 / o['median_ms']['bare']:+.3f} % of the realistic graph's median time")
        print(f"\n2. dataset throughput, {args.images} VOC-layout images (500x375 JPEG), {args.rounds} rounds:")
        from zoo_cli.evaluation.predictors import plan_parallelism

        auto = plan_parallelism(None, 0, (513, 513))
        auto_label = f"zoo auto (jobs={auto[0]}, threads={auto[1]})"
        results: dict[str, list[float]] = {"notebook": [], "zoo jobs=1": [], auto_label: []}
        for _ in range(args.rounds):
            s, miou_nb, n = notebook_loop(tmp / "g.pb", tmp / "voc")
            results["notebook"].append(n / s)
            for label, jobs in (("zoo jobs=1", 1), (auto_label, None)):
                s, miou, n = zoo_loop(tmp / "g.pb", tmp / "voc", jobs)
                results[label].append(n / s)
        parts = ", ".join(f"{k} {v:.1f} ms" for k, v in notebook_loop.parts.items())
        print(f"   notebook loop per image (last round): {parts}")
        print(f"   load average at the end: {os.getloadavg()[0]:.1f}")
        base = statistics.median(results["notebook"])
        for label, values in results.items():
            med = statistics.median(values)
            paired = [v / b for v, b in zip(values, results["notebook"])]
            print(f"   {label:<30} {med:6.2f} images/s  {med / base:.2f}x, median of per-round ratios "
                  f"{statistics.median(paired):.2f}x  (per round: "
                  f"{', '.join(f'{v:.2f}' for v in values)} images/s; ratio to that round's notebook: "
                  f"{', '.join(f'{r:.2f}x' for r in paired)})")


if __name__ == "__main__":
    main()
