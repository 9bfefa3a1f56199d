"""Measuring a frozen graph: latency, Multiply-Adds, params, memory (and mIOU) of each setting, beside what the
registry reports for it.

For a multi-scale setting every number is the total over all scales and flips actually run: latency is the
time of one image through every scaled graph (and its flipped copy), Multiply-Adds the sum of each run's count
at its scaled crop ``int((crop - 1) * s + 1)``. A setting reported only at another output stride runs on the
graph rewritten to that stride in memory.

Light module: TensorFlow is imported only inside the functions that build or run graphs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from zoo_cli.bench.accuracy import evaluate_setting, open_bench_datasets
from zoo_cli.bench.compare import compare, pick_row, reported_facts
from zoo_cli.bench.latency import time_runs
from zoo_cli.bench.machine import current_rss_mb, machine_info, machine_key, peak_rss_mb
from zoo_cli.bench.settings import BenchOptions, BenchSetting, bench_settings, check_options, default_input_size
from zoo_cli.bench.store import BenchResult, save_result
from zoo_cli.errors import ModelError, UsageError
from zoo_cli.registry.scales import is_single
from zoo_cli.registry.types import SEED_MACHINE, Checkpoint

GraphForSize = Callable[[tuple[int, int]], Any]
IMAGE_SEED = 0  # the random image latency is timed on: the same pixels on every run and machine


def _graph_for_size(graph_def: Any, crop: tuple[int, int] | None, pattern: Any | None) -> GraphForSize:
    """How to get the graph for a scaled crop: the graph itself at its own crop, else crop re-targeting with
    ``pattern`` (the loaded model's analysis, so the graph is analysed once per load)."""
    from zoo_cli.graph.crop_pattern import analyse
    from zoo_cli.graph.retarget import retarget

    cache: dict[str, Any] = {"pattern": pattern} if pattern is not None else {}

    def for_size(size: tuple[int, int]) -> Any:
        if crop is None or tuple(size) == tuple(crop):
            return graph_def
        if "pattern" not in cache:
            cache["pattern"] = analyse(graph_def)  # raises the ModelError that says why it cannot be re-targeted
        return retarget(graph_def, tuple(size), cache["pattern"])

    return for_size


def _check_memory(model: Any, input_size: tuple[int, int], setting: BenchSetting) -> None:
    """UsageError when the setting's tensors at ``input_size`` cannot fit (the estimate from the graph's own)."""
    from zoo_cli.graph.memory import check_crop_memory, floats_per_pixel

    classes = int(model.num_classes or 1)
    per_pixel = floats_per_pixel(model.graph, model.crop_size) or float(classes)
    check_crop_memory(tuple(input_size), per_pixel=per_pixel, num_classes=classes, option="--input-size",
                      scales=setting.scales, flip=setting.flip, networks=1)


def measure_setting(graph_def: Any, setting: BenchSetting, *, name: str, input_size: tuple[int, int],
                    input_size_source: str, options: BenchOptions, ckpt: Checkpoint | None = None,
                    datasets: dict[str, Any] | None = None) -> BenchResult:
    """Measure one setting of a graph: MAdds/params (static), latency, peak RSS, and mIOU with ``data_dir``."""
    import numpy as np

    from zoo_cli.graph.flops import count_madds_multiscale
    from zoo_cli.graph.geometry import scaled_crop
    from zoo_cli.graph.runner import FrozenGraphModel, resize_image

    threads = options.threads
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
    graph_for_size = _graph_for_size(graph_def, crop, main.crop_pattern)
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
        rng = np.random.default_rng(IMAGE_SEED)
        base = rng.integers(0, 256, size=(input_size[0], input_size[1], 3), dtype=np.uint8)
        feeds = []
        for size in sizes:
            img = resize_image(base, size)[None]
            feeds.append((models[size], img))
            if setting.flip:
                feeds.append((models[size], np.ascontiguousarray(img[:, :, ::-1])))

        def one_image() -> None:
            for model, batch in feeds:
                model.run_batch(batch)

        stats = time_runs(one_image, options.runs, options.warmup)
        miou = pixel_accuracy = None
        eval_info: dict[str, Any] | None = None
        if options.data_dir is not None:
            miou, pixel_accuracy, eval_info = evaluate_setting(main, setting, options, ckpt, notes, datasets)
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
    row = pick_row(setting, graph_os)
    reported_on = ckpt.reported_machine if ckpt is not None else SEED_MACHINE
    try:
        reference = default_input_size(ckpt, crop)[0]
    except UsageError:
        reference = None  # no registry entry and no crop: nothing reported to compare with anyway
    conditions["reference_input_size"] = list(reference) if reference else None
    return BenchResult(name=name, setting=setting, reported=reported_facts(setting, graph_os, reported_on),
                       measured=measured, conditions=conditions,
                       comparison=compare(row, measured, graph_os, input_size, reference,
                                          ckpt.madds_note if ckpt is not None else None), notes=notes)


def bench_graph(graph_def: Any, *, name: str, ckpt: Checkpoint | None = None,
                options: BenchOptions = BenchOptions(), store: Path | None = None,
                datasets: dict[str, Any] | None = None,
                on_result: Callable[[BenchResult], None] | None = None) -> list[BenchResult]:
    """Measure every setting of a graph (see :func:`zoo_cli.bench.settings.bench_settings`); stores each result
    under ``store``.

    ``datasets`` are the eval splits :func:`zoo_cli.bench.accuracy.open_bench_datasets` opened for
    ``options.data_dir`` (opened here if not given). ``on_result`` is called with each result as soon as it is
    measured (and stored), so a caller can show it before the next, slower setting starts and an interruption
    loses only the unfinished setting. ``options.output_stride`` runs every setting at that stride (the graph
    rewritten in memory; a graph that cannot be rewritten is a ModelError); by default a setting runs at its
    reported rows' stride.
    """
    check_options(options, ckpt)
    settings = bench_settings(ckpt, options.scales, options.flip)
    if options.data_dir is not None and datasets is None:
        datasets = open_bench_datasets(options.data_dir, ckpt, settings)
    if options.input_size is None:
        try:  # the registry names the size for its checkpoints: the graph is loaded only when it does not
            input_size, source = default_input_size(ckpt, None)
        except UsageError:
            input_size, source = default_input_size(ckpt, _graph_crop(graph_def))
    else:
        input_size, source = options.input_size, "--input-size"
    results = []
    # --output-stride: every setting at that stride (refused here, in one line, when the graph cannot get there)
    forced = rewrite_to(graph_def, options.output_stride) if options.output_stride is not None else None
    for setting in settings:
        try:
            # A setting reported only at another output stride runs on the graph rewritten to it (in memory).
            run_graph, rewrite = forced or _graph_at_rows_os(graph_def, setting)
            result = measure_setting(run_graph, setting, name=name, input_size=tuple(input_size),
                                     input_size_source=source, options=options, ckpt=ckpt, datasets=datasets)
            if rewrite is not None:
                result.conditions["output_stride_rewrite"] = rewrite
                result.notes.append(
                    f"the graph (OS {rewrite['from']}) was rewritten in memory to OS {rewrite['to']}, the reported "
                    "row's (docs/output_stride.md)" if "failed" not in rewrite else
                    f"measured at the graph's own OS {rewrite['from']}: {rewrite['failed']}")
        except ModelError as exc:
            if is_single(setting.scales, setting.flip):
                raise
            # A multi-scale setting the graph cannot be run at (no re-targeting) is reported, not fatal.
            reported_on = ckpt.reported_machine if ckpt is not None else SEED_MACHINE
            results.append(BenchResult(name=name, setting=setting,
                                       reported=reported_facts(setting, None, reported_on), measured={},
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


def _graph_crop(graph_def: Any) -> tuple[int, int] | None:
    from zoo_cli.graph.runner import FrozenGraphModel

    with FrozenGraphModel(graph_def) as model:
        return model.info.crop_size


def _graph_at_rows_os(graph_def: Any, setting: BenchSetting) -> tuple[Any, dict[str, Any] | None]:
    """``graph_def`` itself when a reported row of ``setting`` is at its output stride (or none is reported);
    else the graph rewritten to the first row's stride and the rewrite's facts. When it cannot be rewritten,
    the graph itself and why (it is then measured at its own stride and marked not comparable)."""
    if not setting.rows:
        return graph_def, None
    from zoo_cli.graph.crop_pattern import analyse

    try:
        pattern = analyse(graph_def)
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
    from zoo_cli.evaluation.rewritten import guard_rewrite
    from zoo_cli.graph.crop_pattern import analyse
    from zoo_cli.graph.output_stride import timed_rewrite

    pattern = pattern or analyse(graph_def)
    if target == pattern.encoder_stride:
        return graph_def, None
    rewritten, seconds = timed_rewrite(graph_def, target, pattern)
    guard = guard_rewrite(graph_def, rewritten, pattern, target)
    return rewritten, {"from": pattern.encoder_stride, "to": target, "seconds": round(seconds, 3), "guard": guard}
