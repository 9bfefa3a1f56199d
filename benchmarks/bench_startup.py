"""Start-up cost of the light commands against the bare imports they need.

Runs each command N times, interleaved so both see the same machine load, and prints medians and ratios.
Usage: python benchmarks/bench_startup.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "python -c 'import click, yaml, rich'": [sys.executable, "-c", "import click, yaml, rich"],
    "zoo --help": [sys.executable, "-m", "zoo_cli", "--help"],
    "zoo list": [sys.executable, "-m", "zoo_cli", "list"],
    "zoo list --json": [sys.executable, "-m", "zoo_cli", "list", "--json"],
    "zoo info xception65_coco_voc_trainval": [sys.executable, "-m", "zoo_cli", "info", "xception65_coco_voc_trainval"],
    "python -c 'import tensorflow'": [sys.executable, "-c", "import tensorflow"],
}


def main(n: int) -> None:
    env = {**os.environ, "ZOO_HOME": tempfile.mkdtemp(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(n):
        for label, argv in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[label].append(time.perf_counter() - start)
    base = statistics.median(times["python -c 'import click, yaml, rich'"])
    print(f"{'command':<42} {'median ms':>10} {'x imports':>10}   (n={n}, {os.cpu_count()} cores)")
    for label, values in times.items():
        med = statistics.median(values)
        print(f"{label:<42} {med * 1000:>10.0f} {med / base:>10.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
