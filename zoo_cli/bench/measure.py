"""``zoo bench`` logic: measure latency, Multiply-Adds, params, memory (and mIOU) of a frozen graph and put
them beside what the seed reports for the same setting.

A *setting* is one way of evaluating a checkpoint: its scales and flip (single scale, or an eval row's
multi-scale/flip). For a multi-scale setting every number is the total over all scales and flips actually run:
latency is the time of one image through every scaled graph (and its flipped copy), Multiply-Adds the sum
of each run's count at its scaled crop ``int((crop - 1) * s + 1)``.

Light module: TensorFlow is imported only inside the functions that build or run graphs.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from zoo_cli.atomic import write_json_atomic
from zoo_cli.constants import DATASETS
from zoo_cli.errors import ModelError, UsageError
from zoo_cli.registry.catalog import SEED_MACHINE, Checkpoint, EvalRow
from zoo_cli.registry.scales import describe_scales, setting_key

SCHEMA_VERSION = 1
# Default input sizes the seed's numbers refer to, when the registry has no eval crop for a checkpoint.

GraphForSize = Callable[[tuple[int, int]], Any]


# ---------------------------------------------------------------- statistics & machine


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


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform module says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    except (ImportError, OSError):
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / (1024 * 1024)


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)


def machine_info(threads: int = 0) -> dict[str, Any]:
    """Where the measurement ran: CPU, cores, threads asked for, OS, Python, TensorFlow."""
    import psutil

    info = {
        "cpu": cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "threads": threads or "all (TensorFlow default)",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "host": socket.gethostname(),
    }
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        info["tensorflow"] = getattr(tf, "__version__", "?")
    return info


def machine_key(info: dict[str, Any]) -> str:
    """Short stable id of a machine + thread setting, for result file names."""
    text = f"{info.get('host')}|{info.get('cpu')}|{info.get('threads')}"
    slug = re.sub(r"[^a-z0-9]+", "-", str(info.get("host", "host")).lower()).strip("-")[:24] or "host"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class BenchSetting:
    """Scales and flip of one measurement, with the reported eval rows that use the same setting."""

    scales: tuple[float, ...]
    flip: bool
    rows: tuple[EvalRow, ...] = ()

    @property
    def key(self) -> str:
        return setting_key(self.scales, self.flip)

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


def parse_scales(text: str | Sequence[float] | None) -> tuple[float, ...] | None:
    """``--scales`` exactly as ``zoo eval`` reads it (:func:`zoo_cli.evaluation.settings.parse_scales`: validated, sorted,
    repeats refused), so it matches the registry rows' scales."""
    from zoo_cli.evaluation.settings import parse_scales as parse  # the one parser eval and bench share

    return parse(text)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``--input-size``: ``"513x513"`` / ``"513,513"`` / ``"513"`` -> (H, W), the parser of ``zoo eval --crop``."""
    from zoo_cli.evaluation.settings import parse_crop

    return parse_crop(text, "--input-size")


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


# ---------------------------------------------------------------- comparison


@dataclass
class Comparison:
    """One line of the reported-vs-measured table."""

    metric: str
    unit: str
    reported: float | None
    measured: float | None
    comparable: bool
    note: str = ""
    why: str = ""  # short reason shown in the Δ cell, e.g. "input 10x10 vs 129x129"

    @property
    def delta(self) -> float | None:
        if not self.comparable or self.reported is None or self.measured is None:
            return None
        return self.measured - self.reported

    @property
    def delta_pct(self) -> float | None:
        d = self.delta
        if d is None or not self.reported:
            return None
        return 100.0 * d / self.reported

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "unit": self.unit, "reported": self.reported, "measured": self.measured,
                "comparable": self.comparable, "delta": self.delta, "delta_pct": self.delta_pct,
                "note": self.note, "why": self.why}


def _size_text(size: Sequence[int]) -> str:
    return "x".join(str(v) for v in size)


def compare(row: EvalRow | None, measured: dict[str, Any], graph_os: int | None,
            input_size: Sequence[int] | None = None, reference_size: Sequence[int] | None = None,
            madds_note: str | None = None) -> list[Comparison]:
    """Reported-vs-measured lines for one setting; unlike conditions are not compared: another output stride
    (every metric), or an ``input_size`` other than the ``reference_size`` the reported numbers refer to
    (Multiply-Adds and runtime; mIOU is evaluated at the eval crop whatever the input size). ``madds_note``
    (the registry's) says what the reported Multiply-Adds figure counts when it is not what zoo counts."""
    lat = measured.get("latency_ms") or {}
    lines = []
    reasons = []
    if row is None:
        reasons.append("no reported row for this setting")
    elif graph_os is not None and graph_os != row.output_stride:
        reasons.append(f"not comparable: the graph runs at OS {graph_os}, the reported row is OS "
                       f"{row.output_stride}")
    ok = not reasons
    note = reasons[0] if reasons else ""
    size_ok, size_note, size_why = ok, note, ""
    if ok and input_size is not None and reference_size is not None and tuple(input_size) != tuple(reference_size):
        size_ok, size_why = False, f"input {_size_text(input_size)} vs {_size_text(reference_size)}"
        size_note = (f"not comparable: measured at input {_size_text(input_size)}, the reported Multiply-Adds and "
                     f"runtime are at {_size_text(reference_size)}; drop --input-size to compare")

    def rep(attr: str) -> float | None:
        return getattr(row, attr) if row is not None else None

    madds_text = size_note or "measured: convs + MatMul"
    if madds_note and size_ok:
        madds_text = f"{madds_text}; {madds_note}"
    lines.append(Comparison("Multiply-Adds", "B", rep("madds_billion"), measured.get("madds_billion"), size_ok,
                            madds_text, size_why))
    runtime = rep("runtime_s")
    lines.append(Comparison("CPU runtime", "ms", runtime * 1000.0 if runtime is not None else None,
                            lat.get("mean"), size_ok, size_note or "measured: mean wall time per image", size_why))
    lines.append(Comparison("mIOU", "%", rep("miou"), measured.get("miou"), ok,
                            note or ("" if measured.get("miou") is not None else "not measured (pass --data-dir)")))
    lines.append(Comparison("pixel accuracy", "%", rep("pixel_accuracy"), measured.get("pixel_accuracy"), ok, note))
    lines.append(Comparison("params", "M", None, measured.get("params_million"), False, "not reported"))
    lines.append(Comparison("peak RSS", "MiB", None, measured.get("peak_rss_mb"), False, "not reported"))
    lines.append(Comparison("throughput", "GFLOP/s", None, measured.get("gflops_per_s"), False,
                            "2 x Multiply-Adds / p50"))
    return lines


# ---------------------------------------------------------------- results


@dataclass
class BenchResult:
    """Everything measured for one model x setting on this machine, plus what was reported."""

    name: str
    setting: BenchSetting
    reported: dict[str, Any]
    measured: dict[str, Any]
    conditions: dict[str, Any]
    comparison: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION, "name": self.name, "setting": self.setting.key,
            "reported": self.reported, "measured": self.measured, "conditions": self.conditions,
            "comparison": [c.to_json() for c in self.comparison], "notes": list(self.notes),
            "path": str(self.path) if self.path else None,
        }


def results_dir(cache: Any) -> Path:
    """Where bench results live: ``<cache>/results/bench``."""
    return Path(cache.results_dir) / "bench"


def result_file_name(result: BenchResult) -> str:
    """``<name>__<setting>__<HxW>__<machine+threads>[__miou|__miou-limitN].json``: one file per set of conditions
    that change the numbers, so a run at another input size or thread count never replaces one at the reference
    size, a run without ``--data-dir`` never replaces one that measured mIOU, and a ``--limit N`` run that covered
    only part of the split never replaces a full-split one."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.name)
    size = "x".join(str(v) for v in result.conditions["input_size"])
    miou = ""
    if result.measured.get("miou") is not None:
        subset = eval_subset(result.conditions.get("eval"))
        miou = "__miou" if subset is None else f"__miou-limit{result.conditions['eval'].get('limit') or subset}"
    rewrite = result.conditions.get("output_stride_rewrite") or {}
    stride = f"-os{rewrite['to']}" if rewrite and "failed" not in rewrite else ""  # never over the graph's own OS
    return f"{safe}__{result.setting.key}{stride}__{size}__{result.conditions['machine_key']}{miou}.json"


def save_result(result: BenchResult, directory: Path) -> Path:
    """Write the result as :func:`result_file_name` under ``directory`` atomically; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / result_file_name(result)
    result.path = path
    return write_json_atomic(path, result.to_json())


def load_results(directory: Path, skipped: list[tuple[Path, str]] | None = None) -> list[dict[str, Any]]:
    """Every stored bench result (JSON dicts) under ``directory``; a file that cannot be read, is not JSON or is
    not a bench result is skipped, and recorded in ``skipped`` as (path, why) when a list is given."""
    out: list[dict[str, Any]] = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            why = f"cannot be read ({exc.strerror or exc})"
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            why = f"is not valid JSON ({str(exc).splitlines()[0][:80]})"
        else:
            if isinstance(data, dict) and "name" in data and isinstance(data.get("measured"), dict):
                data["path"] = str(path)
                out.append(data)
                continue
            why = "is not a zoo bench result (no 'name' and 'measured')"
        if skipped is not None:
            skipped.append((path, why))
    return out


# ---------------------------------------------------------------- measuring


def _pick_row(setting: BenchSetting, graph_os: int | None) -> EvalRow | None:
    """The reported row to compare with: the one at the graph's output stride when several share the setting."""
    for row in setting.rows:
        if row.output_stride == graph_os:
            return row
    return setting.rows[0] if setting.rows else None


def _reported(setting: BenchSetting, graph_os: int | None = None,
              reported_on: str = SEED_MACHINE) -> dict[str, Any]:
    row = _pick_row(setting, graph_os)
    if row is None:
        return {}
    return {**row.to_json(), "reported_on": reported_on,
            "conditions": f"{row.describe()}, {row.split}, {reported_on}",
            "other_rows": [r.to_json() for r in setting.rows if r is not row]}


def _graph_for_size_default(graph_def: Any, crop: tuple[int, int] | None) -> GraphForSize:
    """How to get the graph for a scaled crop: the graph itself at its own crop, else crop re-targeting."""
    cache: dict[str, Any] = {}

    def for_size(size: tuple[int, int]) -> Any:
        if crop is None or tuple(size) == tuple(crop):
            return graph_def
        try:
            from zoo_cli.graph import retarget  # the issue-5 module
        except ImportError:
            raise ModelError(f"running at {size[0]}x{size[1]} needs the graph re-targeted from its "
                             f"{crop[0]}x{crop[1]} crop, which this build cannot do (no zoo_cli.graph.retarget)") from None
        if "pattern" not in cache:
            cache["pattern"] = retarget.analyse(graph_def)
        return retarget.retarget(graph_def, tuple(size), cache["pattern"])

    return for_size


def measure_setting(graph_def: Any, setting: BenchSetting, *, name: str, input_size: tuple[int, int],
                    input_size_source: str, runs: int = 10, warmup: int = 2, threads: int = 0,
                    graph_for_size: GraphForSize | None = None, data_dir: Path | None = None,
                    limit: int | None = None, ckpt: Checkpoint | None = None, seed: int = 0,
                    progress: bool | None = False, datasets: dict[str, Any] | None = None) -> BenchResult:
    """Measure one setting of a graph: MAdds/params (static), latency, peak RSS, and mIOU with ``data_dir``."""
    import numpy as np

    from zoo_cli.graph.flops import count_madds_multiscale
    from zoo_cli.graph.geometry import scaled_crop
    from zoo_cli.graph.model import FrozenGraphModel

    notes: list[str] = []
    rss_before = current_rss_mb()
    main = FrozenGraphModel(graph_def, intra_op_threads=threads)
    info = main.info
    try:  # before a network is built at another size: a size whose tensors cannot fit is a usage error
        _check_memory(main, input_size, setting)
    except UsageError:
        main.close()
        raise
    graph_os = info.encoder_output_stride or info.output_stride
    crop = info.crop_size
    if graph_for_size is None:
        graph_for_size = _graph_for_size_default(graph_def, crop)
    sizes = [scaled_crop(input_size, s) for s in setting.scales]
    if crop is not None and tuple(input_size) != tuple(crop):
        notes.append(f"input {input_size[0]}x{input_size[1]} differs from the graph's crop {crop[0]}x{crop[1]}")

    madds = count_madds_multiscale(graph_for_size, input_size, setting.scales, setting.flip,
                                   input_name=info.input_tensor)
    # One model per distinct scaled size; single-scale reuses the already loaded graph.
    models: dict[tuple[int, int], Any] = {}
    try:
        for size in dict.fromkeys(sizes):
            gd = graph_for_size(size)
            models[size] = main if gd is graph_def else FrozenGraphModel(gd, intra_op_threads=threads)
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 256, size=(input_size[0], input_size[1], 3), dtype=np.uint8)
        feeds = []
        from zoo_cli.graph.model import resize_image

        for size in sizes:
            img = resize_image(base, size)[None]
            feeds.append((models[size], img))
            if setting.flip:
                feeds.append((models[size], np.ascontiguousarray(img[:, :, ::-1])))

        def one_image() -> None:
            for model, batch in feeds:
                model.run_batch(batch)

        stats = time_runs(one_image, runs, warmup)
        miou = pixel_accuracy = None
        eval_info: dict[str, Any] | None = None
        if data_dir is not None:
            miou, pixel_accuracy, eval_info = _evaluate(main, setting, data_dir, ckpt, limit, progress, notes,
                                                                datasets)
    finally:
        for model in {id(m): m for m in models.values()}.values():
            if model is not main:
                model.close()
        main.close()

    peak = peak_rss_mb()
    measured = {
        "madds": madds.madds,
        "madds_billion": round(madds.madds_billion, 4),
        "tfprof_madds_billion": round(madds.tfprof_madds_billion, 4) if madds.tfprof_madds_billion else None,
        "params_million": round(madds.params_million, 4),
        "latency_ms": stats.to_json(),
        "peak_rss_mb": round(peak, 1),
        "rss_before_mb": round(rss_before, 1),
        "gflops_per_s": round(2 * madds.madds / (stats.p50 / 1000.0) / 1e9, 3) if stats.p50 > 0 else None,
        "miou": miou,
        "pixel_accuracy": pixel_accuracy,
        "runs_per_image": madds.runs,
    }
    machine = machine_info(threads)
    conditions = {
        "output_stride": graph_os, "scales": list(setting.scales), "flip": setting.flip,
        "input_size": list(input_size), "input_size_source": input_size_source,
        "scaled_sizes": [list(s) for s in sizes], "graph_crop": list(crop) if crop else None,
        "num_classes": info.num_classes, "cpu": machine["cpu"], "threads": machine["threads"],
        "machine": machine, "machine_key": machine_key(machine),
        "image": f"random uint8 {input_size[0]}x{input_size[1]} (resized per scale)",
        "eval": eval_info, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    row = _pick_row(setting, graph_os)
    reported_on = ckpt.reported_machine if ckpt is not None else SEED_MACHINE
    try:
        reference = default_input_size(ckpt, crop)[0]
    except UsageError:
        reference = None  # no registry entry and no crop: nothing reported to compare with anyway
    conditions["reference_input_size"] = list(reference) if reference else None
    return BenchResult(name=name, setting=setting, reported=_reported(setting, graph_os, reported_on),
                       measured=measured, conditions=conditions,
                       comparison=compare(row, measured, graph_os, input_size, reference,
                                          ckpt.madds_note if ckpt is not None else None), notes=notes)


def _split(setting: BenchSetting) -> str:
    return setting.rows[0].split if setting.rows else "val"


def open_bench_datasets(data_dir: Path | str, ckpt: Checkpoint | None,
                        settings: Sequence[BenchSetting]) -> dict[str, Any]:
    """Open (list and check) the split of ``data_dir`` each setting is evaluated on, keyed by split.

    Done before a graph is loaded, so a wrong ``--data-dir`` fails in a second, as ``zoo eval``'s does.
    """
    from zoo_cli.evaluation.datasets import open_eval_dataset

    return {split: open_eval_dataset(data_dir, ckpt, split=split)
            for split in dict.fromkeys(_split(s) for s in settings)}


def check_options(data_dir: Path | str | None, limit: int | None, *, threads: int = 0,
                  input_size: Sequence[int] | None = None, scales: Sequence[float] | None = None,
                  flip: bool | None = None, ckpt: Checkpoint | None = None) -> None:
    """Options that only make sense together, thread counts (:func:`zoo_cli.limits.check_count`), and an
    ``input_size`` whose probability maps alone cannot fit in memory; raises UsageError before anything is
    loaded (the estimate from the graph's own tensors follows in :func:`measure_setting`)."""
    from zoo_cli.limits import check_count, check_crop_memory

    if limit is not None and data_dir is None:
        raise UsageError("--limit only limits the --data-dir evaluation; add --data-dir DIR or drop --limit")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: use at least 1")
    check_count(threads, "--threads")
    if input_size is not None:
        classes = int(getattr(ckpt, "num_classes", None) or 1)
        check_crop_memory(tuple(input_size), per_pixel=classes, num_classes=classes, option="--input-size",
                          scales=tuple(scales or (1.0,)), flip=bool(flip), networks=1)


def _evaluate(model: Any, setting: BenchSetting, data_dir: Path, ckpt: Checkpoint | None, limit: int | None,
              progress: bool | None, notes: list[str],
              datasets: dict[str, Any] | None = None) -> tuple[float | None, float | None, dict[str, Any] | None]:
    """mIOU / pixel accuracy of the setting on ``data_dir`` via the eval engine; (None, None, why) if impossible."""
    from zoo_cli.evaluation.classes import check_graph_classes, scored_ignore_label
    from zoo_cli.evaluation.dataset_job import evaluate_dataset
    from zoo_cli.evaluation.datasets import open_eval_dataset
    from zoo_cli.evaluation.predictors import make_predictor

    split = _split(setting)
    dataset = (datasets or {}).get(split)
    if dataset is None:
        dataset = open_eval_dataset(data_dir, ckpt, split=split, graph_crop=model.crop_size)
    elif dataset.kind == "ade20k" and dataset.long_side is None and model.crop_size:
        dataset.long_side = max(model.crop_size)  # opened before the graph was loaded: its crop is known now
    num_classes = check_graph_classes(dataset.kind, ckpt, model.num_classes)
    try:
        # The registry's eval crop, as 'zoo eval --data-dir' uses, so both commands measure the same mIOU.
        predictor = make_predictor(model, scales=setting.scales, flip=setting.flip,
                                   crop=ckpt.eval_crop if ckpt is not None else None)
    except UsageError as exc:
        notes.append(f"mIOU not measured for {setting.describe()}: {exc}")
        return None, None, {"skipped": str(exc)}
    matrix, count, seconds = evaluate_dataset(dataset, predictor, limit=limit, progress=progress,
                                              num_classes=num_classes,
                                              ignore_label=scored_ignore_label(dataset, ckpt))
    summary = matrix.summary()
    return summary.miou, summary.pixel_accuracy, {"dataset": dataset.kind, "split": split, "images": count,
                                                  "split_images": len(dataset.samples), "limit": limit,
                                                  "seconds": round(seconds, 3), "data_dir": str(data_dir)}


def _check_memory(model: Any, input_size: Sequence[int], setting: BenchSetting) -> None:
    from zoo_cli.limits import check_crop_memory, floats_per_pixel

    classes = int(model.num_classes or 1)
    per_pixel = floats_per_pixel(model.graph, model.crop_size) or float(classes)
    check_crop_memory(tuple(input_size), per_pixel=per_pixel, num_classes=classes, option="--input-size",
                      scales=setting.scales, flip=setting.flip, networks=1)


def eval_subset(eval_info: dict[str, Any] | None) -> int | None:
    """The image count when a result's mIOU covers only part of its split (``--limit``), else None."""
    ev = eval_info or {}
    if "images" not in ev:
        return None
    total = ev.get("split_images")
    if total is not None:
        return ev["images"] if ev["images"] < total else None
    return ev["images"] if ev.get("limit") is not None else None  # older files: no split size stored


def bench_graph(graph_def: Any, *, name: str, ckpt: Checkpoint | None = None,
                input_size: tuple[int, int] | None = None, scales: Sequence[float] | None = None,
                flip: bool | None = None, runs: int = 10, warmup: int = 2, threads: int = 0,
                graph_for_size: GraphForSize | None = None, data_dir: Path | None = None,
                limit: int | None = None, store: Path | None = None,
                progress: bool | None = False, datasets: dict[str, Any] | None = None,
                on_result: Callable[[BenchResult], None] | None = None,
                output_stride: int | None = None) -> list[BenchResult]:
    """Measure every setting of a graph (see :func:`bench_settings`); stores each result under ``store``.

    ``datasets`` are the eval splits :func:`open_bench_datasets` opened for ``data_dir`` (opened here if not given).
    ``on_result`` is called with each result as soon as it is measured (and stored), so a caller can show it
    before the next, slower setting starts and an interruption loses only the unfinished setting.
    ``output_stride`` runs every setting at that stride (the graph rewritten in memory; a graph that cannot be
    rewritten is a ModelError); by default a setting runs at its reported rows' stride.
    """
    from zoo_cli.graph.model import inspect_graph  # noqa: F401  (keeps the import error close to the cause)

    check_options(data_dir, limit, threads=threads, input_size=input_size, scales=scales, flip=flip, ckpt=ckpt)
    settings = bench_settings(ckpt, scales, flip)
    if data_dir is not None and datasets is None:
        datasets = open_bench_datasets(data_dir, ckpt, settings)
    if input_size is None:
        crop = _graph_crop(graph_def)
        input_size, source = default_input_size(ckpt, crop)
    else:
        source = "--input-size"
    results = []
    # --output-stride: every setting at that stride (refused here, in one line, when the graph cannot get there)
    forced = rewrite_to(graph_def, output_stride) if output_stride is not None else None
    for setting in settings:
        try:
            # A setting reported only at another output stride runs on the graph rewritten to it (in memory).
            run_graph, rewrite = forced or _graph_at_rows_os(graph_def, setting)
            rewritten = rewrite is not None and "failed" not in rewrite
            result = measure_setting(run_graph, setting, name=name, input_size=tuple(input_size),
                                     input_size_source=source, runs=runs, warmup=warmup, threads=threads,
                                     graph_for_size=None if rewritten else graph_for_size,
                                     data_dir=data_dir, limit=limit, ckpt=ckpt,
                                     progress=progress, datasets=datasets)
            if rewrite is not None:
                result.conditions["output_stride_rewrite"] = rewrite
                result.notes.append(
                    f"the graph (OS {rewrite['from']}) was rewritten in memory to OS {rewrite['to']}, the reported "
                    "row's (docs/output_stride.md)" if rewritten else
                    f"measured at the graph's own OS {rewrite['from']}: {rewrite['failed']}")
        except ModelError as exc:
            if setting.scales == (1.0,) and not setting.flip:
                raise
            # A multi-scale setting the graph cannot be run at (no re-targeting) is reported, not fatal.
            reported_on = ckpt.reported_machine if ckpt is not None else SEED_MACHINE
            results.append(BenchResult(name=name, setting=setting, reported=_reported(setting, None, reported_on),
                                       measured={},
                                       conditions={"scales": list(setting.scales), "flip": setting.flip,
                                                   "input_size": list(input_size)},
                                       notes=[f"not measured: {exc}"]))
            if on_result is not None:
                on_result(results[-1])
            continue
        if store is not None:
            save_result(result, store)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _graph_at_rows_os(graph_def: Any, setting: BenchSetting) -> tuple[Any, dict[str, Any] | None]:
    """``graph_def`` itself when a reported row of ``setting`` is at its output stride (or none is reported);
    else the graph rewritten to the first row's stride and the rewrite's facts. When it cannot be rewritten,
    the graph itself and why (it is then measured at its own stride and marked not comparable)."""
    if not setting.rows:
        return graph_def, None
    from zoo_cli.graph import retarget

    try:
        pattern = retarget.analyse(graph_def)
    except ModelError:
        return graph_def, None  # no crop pattern: the stride cannot be read either; compare() says so
    if any(row.output_stride == pattern.encoder_stride for row in setting.rows):
        return graph_def, None
    try:
        return rewrite_to(graph_def, setting.rows[0].output_stride, pattern)
    except ModelError as exc:  # measured at the graph's own stride; compare() marks the row not comparable
        return graph_def, {"from": pattern.encoder_stride, "to": setting.rows[0].output_stride, "failed": str(exc)}


def rewrite_to(graph_def: Any, target: int, pattern: Any | None = None) -> tuple[Any, dict[str, Any] | None]:
    """The graph at output stride ``target`` (rewritten in memory and guarded, zoo_cli.graph.output_stride) and the
    rewrite's facts, or the graph itself and None when it already runs there; a ModelError when it cannot."""
    from zoo_cli.graph import retarget
    from zoo_cli.graph.output_stride import guard_rewrite, timed_rewrite

    pattern = pattern or retarget.analyse(graph_def)
    if target == pattern.encoder_stride:
        return graph_def, None
    rewritten, seconds = timed_rewrite(graph_def, target, pattern)
    guard = guard_rewrite(graph_def, rewritten, pattern, target)
    return rewritten, {"from": pattern.encoder_stride, "to": target, "seconds": round(seconds, 3), "guard": guard}


@dataclass
class GraphBench:
    """Result of :func:`bench_checkpoint`: the graph file benched and one result per setting."""

    graph: Path
    results: list[BenchResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The first setting's result at the top level (as ``zoo bench --json`` prints it), plus every setting."""
        return {**self.results[0].to_json(), "graph": str(self.graph), "settings": [r.to_json() for r in self.results]}


def bench_checkpoint(ckpt: Checkpoint | None, cache: Any | None = None, *, graph_path: Path | str | None = None,
                     **options: Any) -> GraphBench:
    """``zoo bench NAME`` / ``--graph PATH``: bench ``graph_path`` if given, else ``ckpt``'s installed graph.

    With both, the graph is compared with ``ckpt``'s reported numbers. ``cache`` (for the installed graph)
    defaults to the one ZOO_HOME names; ``options`` are :func:`bench_graph`'s.
    """
    from zoo_cli.graph.model import load_graph_def

    path = graph_file(ckpt, cache, graph_path)
    _open_datasets_first(ckpt, options)
    graph_def = load_graph_def(path)
    label = ckpt.name if ckpt else Path(path).stem
    return GraphBench(Path(path), bench_graph(graph_def, name=label, ckpt=ckpt, **options))


def graph_file(ckpt: Checkpoint | None, cache: Any | None = None, graph_path: Path | str | None = None) -> Path:
    """The frozen graph :func:`bench_checkpoint` benches: ``graph_path`` if given, else ``ckpt``'s installed one."""
    if graph_path is not None:
        return Path(graph_path)
    if ckpt is None:
        raise UsageError("name a checkpoint (see 'zoo list') or pass --graph PATH")
    if cache is None:
        from zoo_cli.config import Settings
        from zoo_cli.hub.cache import Cache

        cache = Cache(Settings.from_env().home)
    return Path(cache.frozen_graph_path(ckpt))


def _open_datasets_first(ckpt: Checkpoint | None, options: dict[str, Any]) -> None:
    """Check the options and open ``options['data_dir']``'s splits into ``options['datasets']`` before any graph
    is loaded, so a bad ``--limit``/``--data-dir`` fails before the slow part."""
    check_options(options.get("data_dir"), options.get("limit"))
    if options.get("data_dir") is not None and options.get("datasets") is None:
        settings = bench_settings(ckpt, options.get("scales"), options.get("flip"))
        options["datasets"] = open_bench_datasets(options["data_dir"], ckpt, settings)


def _graph_crop(graph_def: Any) -> tuple[int, int] | None:
    from zoo_cli.graph.model import FrozenGraphModel

    with FrozenGraphModel(graph_def) as model:
        return model.info.crop_size


@dataclass
class SweepOutcome:
    """Result of ``zoo bench --all``: results per model and the failures met on the way."""

    results: list[BenchResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"results": [r.to_json() for r in self.results], "failures": self.failures, "skipped": self.skipped}


def sweep_checkpoints(registry: Iterable[Checkpoint], cache: Any, outcome: SweepOutcome) -> Iterator[Checkpoint]:
    """The checkpoints a sweep benches: those with a frozen graph that are installed; the others it records in
    ``outcome.skipped`` (the single-machine and the Ray sweep share this)."""
    for ckpt in registry:
        if not ckpt.has_frozen_graph:
            continue
        if not cache.is_installed(ckpt.name):
            outcome.skipped[ckpt.name] = "not downloaded"
            continue
        yield ckpt


def bench_all(registry: Iterable[Checkpoint], cache: Any, *, on_model: Callable[[str], None] | None = None,
              **options: Any) -> SweepOutcome:
    """Bench every downloaded checkpoint that has a frozen graph; a failing model is recorded, not fatal."""
    from zoo_cli.errors import ZooError
    from zoo_cli.graph.model import load_graph_def

    check_options(options.get("data_dir"), options.get("limit"))
    outcome = SweepOutcome()
    for ckpt in sweep_checkpoints(registry, cache, outcome):
        if on_model is not None:
            on_model(ckpt.name)
        try:
            per_model = dict(options)
            _open_datasets_first(ckpt, per_model)
            graph_def = load_graph_def(cache.frozen_graph_path(ckpt))
            outcome.results.extend(bench_graph(graph_def, name=ckpt.name, ckpt=ckpt, **per_model))
        except (ZooError, ValueError, RuntimeError, OSError, MemoryError) as exc:
            outcome.failures[ckpt.name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises many types; one bad model must not stop the sweep
            from zoo_cli.limits import describe_tf_error

            outcome.failures[ckpt.name] = f"{type(exc).__name__}: {describe_tf_error(exc)}"
    return outcome
