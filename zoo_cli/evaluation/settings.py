"""What an evaluation runs, as the options say it: one definition of each run option and eval setting.

Parsers and validators of ``zoo eval``'s options (``--scales``, ``--crop``, ``--shard``, ``--split``, thread and
job counts; ``zoo bench`` shares the scales and crop parsers), the setting a run uses (:class:`EvalSettings`,
picked by :func:`choose_settings` from the checkpoint's eval rows and the options) and where its results go
(:func:`setting_slug`, :func:`default_results_dir`). Nothing here loads a graph or reads a dataset.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from zoo_cli.errors import UsageError
from zoo_cli.registry.scales import SINGLE_SLUG, flip_label, scales_label
from zoo_cli.registry.scales import setting_slug as scales_slug

if TYPE_CHECKING:
    from zoo_cli.registry.types import Checkpoint, EvalRow

MAX_SCALES = 16  # the seed's longest list has 6; more only multiplies the run time
MAX_SCALE = 4.0  # scale 4 of a 1025x2049 Cityscapes crop is already a 4097x8193 network input
MAX_SIDE = 1_000_000  # pixels a side of --crop / --input-size; the memory check refuses far smaller ones


def parse_scales(text: str | Sequence[float] | None) -> tuple[float, ...] | None:
    """``--scales`` text -> a sorted tuple of floats: a list ``"0.5,0.75,1"`` or a range ``"0.5:0.25:1.75"`` /
    ``"[0.5:0.25:1.75]"`` (the seed's notation; start:step:end, end inclusive); brackets are optional for
    both forms. The one parser and validator ``zoo eval`` and ``zoo bench`` share.

    Each scale must be finite and in (0, 4], at most 16 of them, each given once (a repeat is refused rather
    than silently merged: it is most likely a typo, and both commands then agree). Bad input is a
    UsageError raised before anything is loaded; a range is counted before its values are built.
    """
    if text is None:
        return None
    shown = text if isinstance(text, str) else ",".join(str(v) for v in text)
    if not isinstance(text, str):
        try:
            values = [float(v) for v in text]
        except (TypeError, ValueError):
            raise UsageError(f"--scales {shown!r}: scales must be numbers") from None
    else:
        s = text.strip()
        if s.startswith("[") and s.endswith("]"):
            s = s[1:-1].strip()
        try:
            if "[" in s or "]" in s:
                raise ValueError
            if ":" in s:
                start, step, end = (float(p) for p in s.split(":"))
                _check_finite(shown, (start, step, end))
                if step <= 0 or end < start:
                    raise ValueError
                # floor with a tolerance: 0.5:0.25:1.75 includes 1.75 despite float rounding, never overshoots
                count = int((end - start) / step + 1e-9) + 1
                if count > MAX_SCALES:  # before building: 1:1e-9:2 would be a billion scales
                    raise UsageError(f"--scales {text!r} gives {count:,} scales; at most {MAX_SCALES} are allowed "
                                     "(the seed uses 0.5:0.25:1.75, six scales)")
                values = [round(start + i * step, 6) for i in range(count)]
            else:
                values = [float(p) for p in s.split(",") if p.strip()]
        except ValueError:
            raise UsageError(f"--scales {text!r} is not a list like 0.5,0.75,1.0 or a range start:step:end like "
                             "0.5:0.25:1.75") from None
    if not values:
        raise UsageError(f"--scales {shown!r}: give at least one scale, e.g. 1 or 0.5,0.75,1.0")
    _check_finite(shown, values)
    bad = [v for v in values if not 0 < v <= MAX_SCALE]
    if bad:
        raise UsageError(f"--scales {shown!r}: {bad[0]:g} is out of range; each scale must be above 0 and at most "
                         f"{MAX_SCALE:g}")
    if len(values) > MAX_SCALES:
        raise UsageError(f"--scales {shown!r} lists {len(values)} scales; at most {MAX_SCALES} are allowed")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"--scales {shown!r} gives scale {repeated[0]:g} more than once; list each scale once"
                         + (" (the range's step is too small to give distinct scales)" if ":" in shown else ""))
    return tuple(sorted(values))


def _check_finite(shown: str, values: Iterable[float]) -> None:
    for v in values:
        if not math.isfinite(v):
            raise UsageError(f"--scales {shown!r}: {v} is not a finite number; use scales like 0.5,0.75,1.0")


def parse_crop(text: str | Sequence[int] | None, option: str = "--crop") -> tuple[int, int] | None:
    """``"513,513"`` / ``"513x513"`` / ``"513"`` -> (H, W): the one parser of ``zoo eval --crop`` and
    ``zoo bench --input-size`` (both accept both spellings). Each side must be 1..MAX_SIDE; whether the
    tensors of a crop fit in memory is :func:`zoo_cli.memory.check_crop_memory`'s question."""
    if text is None:
        return None
    if not isinstance(text, str):
        h, w = (int(v) for v in text)
        values = [h, w]
    else:
        m = re.fullmatch(r"\s*\[?\s*(\d+)\s*(?:[xX,*]\s*(\d+))?\s*\]?\s*", text)
        values = [int(m.group(1)), int(m.group(2) or m.group(1))] if m else []
    if len(values) != 2 or min(values) < 1:
        raise UsageError(f"{option} {text!r} is not H,W or HxW with positive integers (e.g. 513,513 or 1025x2049)")
    if max(values) > MAX_SIDE:
        raise UsageError(f"{option} {text!r}: {max(values)} pixels is above the {MAX_SIDE} a side this tool "
                         "accepts; use a smaller size")
    return values[0], values[1]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` → (K, N) with 0 <= K < N; None stays None."""
    if text is None:
        return None
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard '{text}' is not K/N (e.g. 0/4 = every 4th image from the first)") from None
    if n < 1 or not 0 <= k < n:
        raise UsageError(f"--shard {text}: K must be in 0..N-1 and N at least 1")
    return k, n


def check_split(split: str) -> str:
    """UsageError unless ``split`` is a plain name: it becomes a folder of the results directory, so path
    separators, '..' or a leading '.' would let results land outside it."""
    if not split or split != split.strip() or "/" in split or "\\" in split or split.startswith(".") \
            or "\0" in split:
        raise UsageError(f"--split {split!r} is not a split name (val, train, test, ...); it may not contain path "
                         "separators or start with '.'")
    return split


@dataclass(frozen=True)
class EvalOptions:
    """The options of one ``zoo eval`` run, as the command line gives them (None / 0: the default).

    What runs: ``scales`` / ``flip`` / ``crop`` / ``row`` / ``output_stride`` (default: the checkpoint's eval
    row, see :func:`choose_settings`). On what: ``dataset`` (layout and palette; default the checkpoint's, else
    detected), and for ``--data-dir`` runs ``split``, ``limit`` and ``shard``. How fast: ``threads`` (intra-op),
    ``inter_threads``, ``jobs`` (images at once; :func:`zoo_cli.evaluation.predictors.plan_parallelism`) and
    ``progress`` (None: a bar on a terminal). ``scales`` / ``crop`` / ``shard`` may be the option text
    (``"0.5,1"``, ``"513x513"``, ``"1/4"``) or numbers; :func:`check_run_options` returns them parsed.
    """

    scales: str | Sequence[float] | None = None
    flip: bool | None = None
    crop: str | Sequence[int] | None = None
    row: int | None = None  # 1-based index into the checkpoint's eval rows
    output_stride: int | None = None
    dataset: str | None = None
    split: str = "val"
    limit: int | None = None
    shard: str | tuple[int, int] | None = None
    threads: int = 0
    inter_threads: int = 0
    jobs: int | None = None
    progress: bool | None = None


def check_run_options(ckpt: Checkpoint | None, options: EvalOptions) -> EvalOptions:
    """Validate ``options`` before anything loads; returns them with scales, crop and shard parsed.

    The shard through :func:`parse_shard`, thread and job counts through :func:`zoo_cli.config.check_count`,
    the split name through :func:`check_split`, scales and crop through the parsers ``zoo bench`` shares
    (above); a crop whose probability maps alone (the checkpoint's classes) cannot fit in memory is refused
    here, the full estimate follows once the graph is loaded
    (:func:`zoo_cli.evaluation.predictors.check_graph_memory`). Raises UsageError."""
    from zoo_cli.config import check_count
    from zoo_cli.graph.memory import check_crop_memory

    shard = parse_shard(options.shard) if isinstance(options.shard, str) else options.shard
    check_count(options.threads, "--threads")
    check_count(options.inter_threads, "--inter-threads")
    if options.jobs is not None:
        check_count(options.jobs, "--jobs", minimum=1)
    check_split(options.split)
    scales, crop = parse_scales(options.scales), parse_crop(options.crop)
    if crop is not None:
        classes = int((ckpt.num_classes if ckpt is not None else None) or 1)
        check_crop_memory(crop, per_pixel=classes, num_classes=classes, scales=scales or (1.0,),
                          flip=bool(options.flip))
    return replace(options, scales=scales, crop=crop, shard=shard)


@dataclass
class EvalSettings:
    """What ``zoo eval`` runs: scales, flip and eval crop, and the registry row they come from."""

    scales: tuple[float, ...]
    flip: bool
    crop: tuple[int, int] | None
    row_index: int | None  # 1-based index into the checkpoint's eval rows
    row: EvalRow | None
    graph_output_stride: int | None
    notes: list[str]
    source: str = ""  # where the settings come from, e.g. "eval row 2" or "the graph as exported"
    output_stride: int | None = None  # the OS the run uses (the graph is rewritten when not its own)

    def describe(self) -> str:
        """One line, e.g. ``scale 1, no flip, crop 513x513 (the graph as exported)``."""
        text = f"{scales_label(self.scales)}, {flip_label(self.flip)}"
        if self.crop:
            text += f", crop {self.crop[0]}x{self.crop[1]}"
        return f"{text} ({self.source})" if self.source else text

    def to_json(self) -> dict[str, Any]:
        return {
            "scales": list(self.scales), "flip": self.flip, "eval_crop": list(self.crop) if self.crop else None,
            "source": self.source,
            "row": self.row_index, "row_conditions": self.row.describe() if self.row is not None else None,
            "row_output_stride": self.row.output_stride if self.row is not None else None,
            "graph_output_stride": self.graph_output_stride,
            "output_stride": self.output_stride or self.graph_output_stride,
            "os_differs": bool(self.row is not None and (self.output_stride or self.graph_output_stride) is not None
                               and self.row.output_stride != (self.output_stride or self.graph_output_stride)),
            "notes": list(self.notes),
        }


def choose_settings(ckpt: Checkpoint | None, options: EvalOptions, *, graph_output_stride: int | None,
                    graph_crop: tuple[int, int] | None, as_exported: bool = False,
                    runnable_os: Sequence[int] | None = None) -> EvalSettings:
    """Defaults from the checkpoint's eval row the graph can reproduce (its output stride), overridden by
    the options' explicit ``scales`` / ``flip`` / ``crop``; their ``row`` (1-based) picks another row.

    ``as_exported`` (``zoo eval --images``): unless ``row`` is given, the defaults are the graph as exported
    (scale 1, no flip, the graph's own crop; what the reference vis.py runs), not an eval row's.

    ``runnable_os``: the output strides the graph can be rewritten to (zoo_cli.graph.output_stride); the default
    row is then the first row at any of them, and the run's ``output_stride`` is the row's. The options'
    ``output_stride`` (``--output-stride``) overrides it, and the default row is then the first row at that OS.
    Without either, only rows at the graph's own OS are default candidates.
    """
    scales, crop = parse_scales(options.scales), parse_crop(options.crop)
    flip, row, output_stride = options.flip, options.row, options.output_stride
    rows = ckpt.evals if ckpt is not None else ()
    notes: list[str] = []
    chosen = None
    index = None
    if row is not None:
        if not rows:
            raise UsageError("--row needs a registry checkpoint with reported eval rows (see 'zoo info NAME')")
        if not 1 <= row <= len(rows):
            listing = "; ".join(f"{i}: {r.describe()}" for i, r in enumerate(rows, 1))
            raise UsageError(f"--row {row} does not exist; the checkpoint's rows are {listing}")
        index, chosen = row, rows[row - 1]
    elif rows and not as_exported:
        can_run = {output_stride} if output_stride else (set(runnable_os) if runnable_os else {graph_output_stride})
        for i, r in enumerate(rows, 1):
            if graph_output_stride is not None and r.output_stride in can_run:
                index, chosen = i, r
                break
        if chosen is None:
            notes.append(f"no reported row is at the graph's output stride {graph_output_stride}; running single "
                         "scale without flip (pick a row with --row N)")
    if output_stride is not None:
        run_os = int(output_stride)
    elif chosen is not None and (runnable_os is not None or row is not None):
        run_os = chosen.output_stride  # the graph is rewritten to the row's OS (or refused)
    else:
        run_os = graph_output_stride
    if chosen is not None and run_os is not None and chosen.output_stride != run_os:
        notes.append(f"row {index} was measured at OS {chosen.output_stride} but this run is at OS "
                     f"{run_os}: the measured and reported numbers are not comparable")
    use_scales = tuple(scales) if scales else (tuple(chosen.scales) if chosen is not None else (1.0,))
    use_flip = bool(flip) if flip is not None else (bool(chosen.flip) if chosen is not None else False)
    registry_crop = ckpt.eval_crop if ckpt is not None and (chosen is not None or not as_exported) else None
    use_crop = tuple(crop) if crop else (tuple(registry_crop) if registry_crop else graph_crop)
    if chosen is not None:
        source = f"eval row {index}"
    elif as_exported:
        source = "the graph as exported"
    else:
        source = "no eval row at the graph's output stride" if rows else "no reported eval rows"
    given = [opt for opt, value in (("--scales", scales), ("--flip", flip is not None), ("--crop", crop),
                                    ("--output-stride", output_stride)) if value]
    if given:
        source += f", {'/'.join(given)} given"
    return EvalSettings(use_scales, use_flip, use_crop, index, chosen, graph_output_stride, notes, source,
                        run_os)


def setting_slug(scales: Sequence[float], flip: bool, crop: Sequence[int] | None = None,
                 reference_crop: Sequence[int] | None = None, output_stride: int | None = None,
                 graph_output_stride: int | None = None) -> str:
    """A directory name for an eval setting: ``single-scale``, ``scales-0.75-1-1.25-flip``, ``scales-1-flip``;
    ``-crop1000x1000`` is added when ``crop`` is not ``reference_crop`` (the registry's eval crop, else the
    graph's), so runs at different settings never overwrite each other's results."""
    slug = scales_slug(tuple(float(s) for s in scales) or (1.0,), flip)
    if crop is not None and (reference_crop is None or tuple(crop) != tuple(reference_crop)):
        slug += f"-crop{crop[0]}x{crop[1]}"
    if output_stride and graph_output_stride and output_stride != graph_output_stride:
        slug += f"-os{output_stride}"  # a rewritten graph (zoo_cli.graph.output_stride)
    return slug


def default_results_dir(results_root: Path | str, ckpt: Checkpoint | None, graph_path: Path | str, dataset: str,
                        split: str, shard: tuple[int, int] | None = None, setting: str = SINGLE_SLUG) -> Path:
    """Where a dataset evaluation is saved when no directory is given:
    ``<results_root>/<checkpoint or graph's folder>/<dataset>-<split>/<setting>[-shardKofN]``
    (``setting`` from :func:`setting_slug`)."""
    graph_path = Path(graph_path)
    label = ckpt.name if ckpt else graph_path.parent.name or graph_path.stem
    suffix = f"-shard{shard[0]}of{shard[1]}" if shard else ""
    return Path(results_root) / label / f"{dataset}-{split}" / f"{setting}{suffix}"


def progress_disable(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` for a ``progress`` option: None lets tqdm decide (shown on a terminal, hidden when
    stderr is redirected)."""
    return None if progress is None else not progress
