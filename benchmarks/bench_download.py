"""Benchmark the fetch path on loopback: `zoo download` vs `curl -o`, and zoo's unpack vs `tar -xzf`.

    python benchmarks/bench_download.py [--size-mb 256] [--repeat 3] [--workdir /tmp/zoo-bench]

Builds a ~256 MB zoo-like archive once (float32 "weights", gzip level 6 like the zoo's archives), serves
it from tests/support/http_server.py in a separate process on 127.0.0.1, then times, side by side in one run
(median of --repeat interleaved rounds, dirty pages synced before each run, source archive in
the page cache, files written to --workdir):

    transfer   curl -s -o FILE URL         vs  zoo_cli.hub.transfer.fetch_file (stream + sha256 in the same pass)
    unpack     tar -xzf FILE -C DIR        vs  zoo_cli.hub.archive.extract_archive (checked, data filter, CRC)
    end to end curl -o && tar -xzf         vs  zoo download NAME (transfer, verify, unpack, per-file hashes,
                                               manifest, atomic rename)

and the peak RSS of each process (os.wait4). Prints a Markdown table; --json prints JSON.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.archives import registry_yaml  # noqa: E402


def build_archive(path: Path, size_mb: int) -> None:
    """A zoo-like archive of about ``size_mb`` MB: float32 normal 'weights' compress ~8% like real ones."""
    import numpy as np

    rng = np.random.default_rng(0)
    raw_bytes = int(size_mb * 1e6 * 1.09)
    graph = rng.normal(0, 0.05, size=int(raw_bytes * 0.4) // 4).astype(np.float32).tobytes()
    data = rng.normal(0, 0.05, size=int(raw_bytes * 0.6) // 4).astype(np.float32).tobytes()
    members = {"frozen_inference_graph.pb": graph, "model.ckpt.index": b"index" * 1000,
               "model.ckpt.data-00000-of-00001": data}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=6, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|") as tar:
        top = tarfile.TarInfo("bench_model")
        top.type = tarfile.DIRTYPE
        top.mode = 0o755
        tar.addfile(top)
        for name, blob in members.items():
            info = tarfile.TarInfo(f"bench_model/{name}")
            info.size = len(blob)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(blob))
    os.replace(tmp, path)


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return seconds, usage.ru_maxrss / 1024


def interleaved(cases: dict, cleanup, repeat: int) -> dict[str, tuple[float, float]]:
    """Median seconds and max peak RSS per case; cases alternate within each round, so drift in the
    machine's state (page cache, disk writeback) hits every case alike. Dirty pages are synced
    (untimed) before every run."""
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, (make_cmd, env) in cases.items():
            cleanup()
            os.sync()
            runs[name].append(timed(make_cmd(), env=env, cwd=REPO))
    cleanup()
    return {k: (statistics.median(r[0] for r in v), max(r[1] for r in v)) for k, v in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/zoo-bench"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not shutil.which("curl") or not shutil.which("tar"):
        raise SystemExit("needs curl and tar on PATH (apt-get install curl)")

    work = args.workdir
    served = work / "served"
    served.mkdir(parents=True, exist_ok=True)
    archive = served / f"bench_{args.size_mb}mb.tar.gz"
    if args.build_only:
        build_archive(archive, args.size_mb)
        return
    if not archive.exists():
        # In a child process: a parent grown by the build would inflate every child's peak RSS (fork).
        print(f"building {archive} ...", file=sys.stderr)
        subprocess.run([sys.executable, __file__, "--build-only", "--size-mb", str(args.size_mb),
                        "--workdir", str(work)], check=True)
    size = archive.stat().st_size
    out = work / "out"
    load_before = os.getloadavg()
    server = subprocess.Popen([sys.executable, "-m", "tests.support.http_server", str(served)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().strip()
        url = f"{base}/{archive.name}"
        registry = work / "registry.yaml"
        registry.write_text(registry_yaml([{"name": "bench", "url": url}]))
        env = {**os.environ, "ZOO_HOME": str(out / "home"), "ZOO_REGISTRY": str(registry),
               "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}

        def clean() -> None:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)

        py = sys.executable
        fetch_code = ("import sys; from pathlib import Path; from zoo_cli.hub.transfer import fetch_file; "
                      "fetch_file(sys.argv[1], Path(sys.argv[2]), progress=False)")
        extract_code = ("import sys; from pathlib import Path; from zoo_cli.hub.archive import extract_archive; "
                        "extract_archive(Path(sys.argv[1]), Path(sys.argv[2]))")
        results = interleaved({
            "curl -o": (lambda: ["curl", "-s", "-o", str(out / "a.tar.gz"), url], None),
            "zoo fetch_file": (lambda: [py, "-c", fetch_code, url, str(out / "a.tar.gz.incomplete")], None),
            "tar -xzf": (lambda: ["tar", "-xzf", str(archive), "-C", str(out)], None),
            "zoo extract_archive": (lambda: [py, "-c", extract_code, str(archive), str(out / "x")], None),
            "curl -o && tar -xzf": (lambda: ["sh", "-c", f"curl -s -o {out}/a.tar.gz {url} && "
                                                         f"tar -xzf {out}/a.tar.gz -C {out}"], None),
            "zoo download": (lambda: [py, "-m", "zoo_cli", "download", "bench", "--quiet"], env),
        }, clean, args.repeat)
    finally:
        server.terminate()
        server.wait(timeout=10)
    report = {
        "archive_bytes": size, "repeat": args.repeat,
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release(), "curl": _first_line(["curl", "--version"]),
                    "tar": _first_line(["tar", "--version"]), "workdir": str(work),
                    "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "results": {k: {"seconds": round(s, 3), "mb_per_s": round(size / s / 1e6, 1), "peak_rss_mb": round(r, 1)}
                    for k, (s, r) in results.items()},
        "ratios": {
            "transfer zoo/curl (time)": round(results["zoo fetch_file"][0] / results["curl -o"][0], 2),
            "unpack zoo/tar (time)": round(results["zoo extract_archive"][0] / results["tar -xzf"][0], 2),
            "end-to-end zoo download / (curl && tar)": round(
                results["zoo download"][0] / results["curl -o && tar -xzf"][0], 2),
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"archive: {size / 1e6:.1f} MB, median of {args.repeat} runs, loopback, {report['machine']['cpu']}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, workdir {work}, load average "
          f"{report['machine']['loadavg_1min_before_after']} (1 min, before/after)")
    print("| what | seconds | MB/s (archive) | peak RSS MB |\n|---|---:|---:|---:|")
    for k, v in report["results"].items():
        print(f"| {k} | {v['seconds']:.2f} | {v['mb_per_s']:.0f} | {v['peak_rss_mb']:.0f} |")
    for k, v in report["ratios"].items():
        print(f"- {k}: {v:.2f}x")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _first_line(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "?"


if __name__ == "__main__":
    main()
