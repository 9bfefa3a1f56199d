"""What ``zoo bench`` measures: its options, the settings (scales + flip) of a checkpoint, and the input size.

A *setting* is one way of evaluating a checkpoint: its scales and flip (single scale, or an eval row's
multi-scale/flip). Its key and description come from :mod:`zoo_cli.registry.scales`. Options that cannot
work are refused here, before any graph is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from zoo_cli.constants import DATASETS
from zoo_cli.errors import UsageError
from zoo_cli.registry.scales import describe_scales, setting_key
from zoo_cli.registry.types import Checkpoint, EvalRow


@dataclass(frozen=True)
class BenchOptions:
    """How to measure, as ``zoo bench`` was asked: passed unchanged from the command line through a sweep (and
    a Ray worker) to :func:`zoo_cli.bench.measure.bench_graph`."""

    runs: int = 10  # timed runs
    warmup: int = 2  # untimed runs before them
    threads: int = 0  # TensorFlow intra-op threads; 0 = TensorFlow's default (all cores)
    input_size: tuple[int, int] | None = None  # None: the size the reported numbers refer to
    scales: tuple[float, ...] | None = None  # scales/flip given: only that setting; both None: every reported one
    flip: bool | None = None
    data_dir: Path | None = None  # also measure mIOU / pixel accuracy on this dataset root
    limit: int | None = None  # with data_dir: only the first N images of the split
    output_stride: int | None = None  # run every setting at this stride (default: each reported row's)
    progress: bool | None = False  # eval progress bar; None = on a terminal


def check_eval_options(options: BenchOptions) -> None:
    """``--limit`` only with ``--data-dir``, and at least 1; UsageError otherwise."""
    if options.limit is not None and options.data_dir is None:
        raise UsageError("--limit only limits the --data-dir evaluation; add --data-dir DIR or drop --limit")
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"--limit {options.limit}: use at least 1")


def check_options(options: BenchOptions, ckpt: Checkpoint | None = None) -> None:
    """:func:`check_eval_options`, the thread count (:func:`zoo_cli.config.check_count`), and an input size whose
    probability maps alone cannot fit in memory; raises UsageError before anything is loaded (the estimate from
    the graph's own tensors follows in :func:`zoo_cli.bench.measure.measure_setting`)."""
    from zoo_cli.config import check_count
    from zoo_cli.graph.memory import check_crop_memory

    check_eval_options(options)
    check_count(options.threads, "--threads")
    if options.input_size is not None:
        classes = int(getattr(ckpt, "num_classes", None) or 1)
        check_crop_memory(tuple(options.input_size), per_pixel=classes, num_classes=classes, option="--input-size",
                          scales=tuple(options.scales or (1.0,)), flip=bool(options.flip), networks=1)


@dataclass(frozen=True)
class BenchSetting:
    """Scales and flip of one measurement, with the reported eval rows that use the same setting."""

    scales: tuple[float, ...]
    flip: bool
    rows: tuple[EvalRow, ...] = ()

    @property
    def key(self) -> str:
        return setting_key(self.scales, self.flip)

    @property
    def split(self) -> str:
        """The split its mIOU is measured on: the reported rows', else ``val``."""
        return self.rows[0].split if self.rows else "val"

    def describe(self) -> str:
        return describe_scales(self.scales, self.flip)


def bench_settings(ckpt: Checkpoint | None, scales: Sequence[float] | None = None,
                   flip: bool | None = None) -> list[BenchSetting]:
    """The settings to measure: the single-scale one plus each eval row's, or just the one asked for."""
    rows = list(ckpt.evals) if ckpt is not None else []
    if scales is not None or flip is not None:
        chosen = (tuple(float(s) for s in scales) if scales else (1.0,), bool(flip))
        if any(s <= 0 for s in chosen[0]):
            raise UsageError("--scales must be positive numbers, e.g. 0.5,0.75,1.0")
        return [BenchSetting(chosen[0], chosen[1], tuple(r for r in rows if (r.scales, r.flip) == chosen))]
    wanted: list[tuple[tuple[float, ...], bool]] = [((1.0,), False)]
    for row in rows:
        if (row.scales, row.flip) not in wanted:
            wanted.append((row.scales, row.flip))
    return [BenchSetting(sc, fl, tuple(r for r in rows if (r.scales, r.flip) == (sc, fl))) for sc, fl in wanted]


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``--input-size``: ``"513x513"`` / ``"513,513"`` / ``"513"`` -> (H, W), the parser of ``zoo eval --crop``."""
    from zoo_cli.evaluation.settings import parse_crop

    return parse_crop(text, "--input-size")


def size_text(size: Sequence[int]) -> str:
    """``513x513``: an input size as results name it (in file names, notes and tables)."""
    return "x".join(str(v) for v in size)


def default_input_size(ckpt: Checkpoint | None, graph_crop: tuple[int, int] | None) -> tuple[tuple[int, int], str]:
    """The input size the reported numbers refer to, and where that choice came from."""
    if ckpt is not None and ckpt.madds_input_size:
        return tuple(ckpt.madds_input_size), "registry madds_input_size"  # type: ignore[return-value]
    if ckpt is not None and ckpt.eval_crop:
        return tuple(ckpt.eval_crop), "registry eval_crop"  # type: ignore[return-value]
    if ckpt is not None and ckpt.dataset in DATASETS:
        return DATASETS[ckpt.dataset].input_size, f"{ckpt.dataset} default"
    if graph_crop:
        return tuple(graph_crop), "graph crop"  # type: ignore[return-value]
    raise UsageError("cannot tell which input size to use; pass --input-size HxW")
