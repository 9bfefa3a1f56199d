"""Latency of repeated runs: warm-up, timing with ``time.perf_counter`` and the statistics ``zoo bench`` reports."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from zoo_cli.errors import UsageError


@dataclass(frozen=True)
class LatencyStats:
    """Latency of timed runs in milliseconds (percentiles by linear interpolation, std is the population std)."""

    runs: int
    warmup: int
    p50: float
    p90: float
    mean: float
    std: float
    min: float
    max: float

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def latency_stats(samples_s: Sequence[float], warmup: int = 0) -> LatencyStats:
    """Statistics of per-run durations given in seconds, reported in milliseconds."""
    import numpy as np

    if not samples_s:
        raise UsageError("no timed runs; --runs must be at least 1")
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return LatencyStats(runs=int(ms.size), warmup=int(warmup), p50=float(np.percentile(ms, 50)),
                        p90=float(np.percentile(ms, 90)), mean=float(ms.mean()), std=float(ms.std()),
                        min=float(ms.min()), max=float(ms.max()))


def time_runs(fn: Callable[[], Any], runs: int, warmup: int) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed with ``time.perf_counter``."""
    if runs < 1:
        raise UsageError("--runs must be at least 1")
    if warmup < 0:
        raise UsageError("--warmup cannot be negative")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return latency_stats(samples, warmup)
