"""Benchmark ``zoo eval --ray`` on this machine: scaling, overhead and Ray's start-up (results: docs/scale.md).

Graph and data as benchmarks/bench_eval.py: MobileNet-v2 DeepLab-v3 (dm 1.0, OS 16, crop 513x513, random
weights, ~2.75 B Multiply-Adds) on a synthetic VOC-layout split of 500x375 / 375x500 JPEGs. Measured:

1. scaling: images/s of ``evaluate_checkpoint_ray`` with 1 worker x 1 TensorFlow thread vs 2 workers x 1
   thread each (goal: >= 1.8x);
2. overhead: Ray with 1 worker holding all CPUs (2 images at once, 1 thread each, as the single-process
   default) vs the plain single-process ``evaluate_checkpoint`` (goal: >= 0.95x);
3. start-up: a new local Ray instance (``ray.init`` + a first task), a second node joining a running head, and
   a driver connecting to a running head (``ray.init(address=...)``), with ``ray.cluster_utils.Cluster``;
   plus what a run pays before its first image (actors starting, TensorFlow import, graph load).

CPU s per image is the workers' CPU time on their shards (all threads; for the single process the whole call,
model loading included): unlike images/s it hardly depends on how many cores other programs leave free.
images/s counts the evaluation phase of each run (the result's ``seconds``: first shard sent to last matrix
in, for Ray; the dataset loop, for the single process); ``wall`` adds connecting and loading the workers.
The four configurations alternate within each round so a change in the machine's load hits all alike.

Run:  python benchmarks/bench_ray.py [--images 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RAY_INIT = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


def local_startup(cpus: int) -> float:
    """Seconds for ``ray.init`` of a new local instance plus a first (trivial) task; Ray stays up."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=cpus, **RAY_INIT)
    ray.get(ray.remote(lambda: 1).remote())
    return time.perf_counter() - start


def cluster_startup() -> dict[str, float]:
    """A one-CPU head, then: a second node joining it, and a driver connecting to it (each timed)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        start = time.perf_counter()
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        join = time.perf_counter() - start
        start = time.perf_counter()
        ray.init(address=cluster.address, **RAY_INIT)
        ray.get(ray.remote(lambda: 1).remote())
        connect = time.perf_counter() - start
        ray.shutdown()
    finally:
        cluster.shutdown()
    return {"node_join_s": join, "driver_connect_s": connect}


def run_single(graph: Path, root: Path, out: Path):
    from zoo_cli.config import Settings
    from zoo_cli.evaluation.dataset_job import evaluate_checkpoint
    from zoo_cli.evaluation.settings import EvalOptions
    from zoo_cli.hub.cache import Cache

    start = time.perf_counter()
    cache = Cache(Settings.from_env().home)
    result = evaluate_checkpoint(None, root, cache, EvalOptions(dataset="voc", progress=False), graph_path=graph,
                                 out_dir=out)
    return result, time.perf_counter() - start


def run_ray(graph: Path, root: Path, out: Path, workers: int, threads: int):
    from zoo_cli.cluster.eval import evaluate_checkpoint_ray

    start = time.perf_counter()
    result = evaluate_checkpoint_ray(None, root, graph_path=graph, dataset="voc", out_dir=out, progress=False,
                                     workers=workers, threads=threads)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import ray

    from benchmarks.bench_eval import make_split

    cpus = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="zoo-bench-ray-"))
    graph = tmp / "frozen_inference_graph.pb"
    # In a process of its own: building a graph with TensorFlow here changes how this process's later sessions
    # round (measured), and the single-process run must compute as a fresh 'zoo eval' process does.
    what = subprocess.run([sys.executable, "-c", "import sys; from benchmarks.bench_eval import build_graph; "
                           "print(build_graph(__import__('pathlib').Path(sys.argv[1])))", str(graph)],
                          check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip().splitlines()[-1]
    root = tmp / "voc"
    make_split(root, args.images)
    print(f"graph: {what}; {args.images} images; {cpus} CPUs; load average {os.getloadavg()}")

    local = local_startup(cpus)
    print(f"start-up: new local Ray instance + first task {local:.2f} s")
    configs = {
        "single process (default: 2 images at once x 1 thread)": lambda o: run_single(graph, root, o),
        "ray 1 worker x 1 thread": lambda o: run_ray(graph, root, o, 1, 1),
        "ray 2 workers x 1 thread": lambda o: run_ray(graph, root, o, 2, 0),
        f"ray 1 worker x {cpus} CPUs": lambda o: run_ray(graph, root, o, 1, 0),
    }
    rates: dict[str, list[float]] = {name: [] for name in configs}
    walls: dict[str, list[float]] = {name: [] for name in configs}
    ready: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}  # CPU seconds per image
    reference = None  # the first run's matrix: every run must give exactly this one
    differing: list[str] = []
    for r in range(args.rounds):
        names = list(configs) if r % 2 == 0 else list(reversed(configs))
        for name in names:
            cpu0 = time.process_time()
            result, wall = configs[name](tmp / f"out-{r}-{len(rates[name])}-{abs(hash(name))}")
            used = result.extra["ray"]["worker_cpu_seconds"] if "ray" in result.extra else time.process_time() - cpu0
            cpu[name].append(used / result.num_images)
            rates[name].append(result.images_per_second)
            walls[name].append(wall)
            if "ray" in result.extra:
                ready[name].append(result.extra["ray"]["ready_seconds"])
            matrix = np.load(result.confusion_path)
            reference = matrix if reference is None else reference
            if not np.array_equal(matrix, reference):
                differing.append(f"round {r + 1} {name}")
            print(f"round {r + 1}: {name}: {result.images_per_second:.2f} img/s, wall {wall:.1f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    ray.shutdown()
    runs = sum(len(v) for v in rates.values())
    print(f"all {runs} runs gave the same matrix" if not differing else f"DIFFERENT MATRICES: {differing}")

    med = {name: statistics.median(v) for name, v in rates.items()}
    names = list(configs)
    print("\n| configuration | images/s (median) | per round | CPU s per image (median) | wall (median) | "
          "before the first image (median) |")
    print("|---|---:|---|---:|---:|---:|")
    for name in names:
        per = ", ".join(f"{v:.2f}" for v in rates[name])
        before = f"{statistics.median(ready[name]):.1f} s" if ready[name] else "-"
        print(f"| {name} | {med[name]:.2f} | {per} | {statistics.median(cpu[name]):.3f} | "
              f"{statistics.median(walls[name]):.1f} s | {before} |")
    print("(CPU: the workers' CPU time on their shards; for the single process, the whole call incl. loading)")
    print(f"\nscaling 2 workers / 1 worker (1 thread each): {med[names[2]] / med[names[1]]:.2f}x (goal >= 1.8x); "
          f"per round {[round(b / a, 2) for a, b in zip(rates[names[1]], rates[names[2]])]}")
    print(f"overhead ray 1 worker x all CPUs / single process: {med[names[3]] / med[names[0]]:.2f}x (goal >= 0.95x); "
          f"per round {[round(b / a, 2) for a, b in zip(rates[names[0]], rates[names[3]])]}")
    joined = cluster_startup()
    print(f"start-up: a node joining a running head {joined['node_join_s']:.2f} s; a driver connecting to it "
          f"{joined['driver_connect_s']:.2f} s")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
