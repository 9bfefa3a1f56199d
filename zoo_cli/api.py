"""The public Python face of zoo: the names the README's "From Python" section uses, stable while internals move.

Everything here is importable as ``from zoo_cli.api import NAME`` (or ``zoo_cli.api.NAME``). The table below is
the one place that says where each public name lives (as torchvision's ``models/_api.py`` is the public face of
its models); a module is imported only when one of its names is first used, so ``import zoo_cli.api`` stays light
and TensorFlow loads only when a graph does.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module, in the order data flows: registry -> hub -> graph -> evaluation -> bench/report -> cluster
_EXPORTS: dict[str, str] = {
    # configuration
    "Settings": "zoo_cli.config",
    # registry: what the zoo holds
    "load_registry": "zoo_cli.registry.catalog",
    "parse_registry": "zoo_cli.registry.catalog",
    "Registry": "zoo_cli.registry.catalog",
    "Checkpoint": "zoo_cli.registry.types",
    "EvalRow": "zoo_cli.registry.types",
    # hub: download, verify, unpack, cache
    "Cache": "zoo_cli.hub.cache",
    "download_checkpoint": "zoo_cli.hub.install",
    "install_checkpoint": "zoo_cli.hub.install",
    "install_checkpoints": "zoo_cli.hub.batch",
    "verify_checkpoint": "zoo_cli.hub.verify",
    "verify_checkpoints": "zoo_cli.hub.verify",
    "remove_checkpoints": "zoo_cli.hub.removal",
    "cache_usage": "zoo_cli.hub.removal",
    "prune": "zoo_cli.hub.removal",
    # graph: load, inspect, run, re-target, count
    "load_graph_def": "zoo_cli.graph.loading",
    "inspect_graph": "zoo_cli.graph.info",
    "GraphInfo": "zoo_cli.graph.info",
    "FrozenGraphModel": "zoo_cli.graph.runner",
    "analyse": "zoo_cli.graph.crop_pattern",
    "retarget": "zoo_cli.graph.retarget",
    "rewrite_output_stride": "zoo_cli.graph.output_stride",
    "supported_output_strides": "zoo_cli.graph.output_stride",
    "count_madds": "zoo_cli.graph.flops",
    "count_madds_multiscale": "zoo_cli.graph.flops",
    # evaluation: datasets, predictors, metrics, jobs
    "open_dataset": "zoo_cli.evaluation.datasets",
    "load_image": "zoo_cli.evaluation.datasets",
    "load_label": "zoo_cli.evaluation.datasets",
    "get_palette": "zoo_cli.evaluation.palettes",
    "EvalOptions": "zoo_cli.evaluation.settings",
    "Predictor": "zoo_cli.evaluation.predictors",
    "SingleScale": "zoo_cli.evaluation.predictors",
    "make_predictor": "zoo_cli.evaluation.predictors",
    "MultiScalePredictor": "zoo_cli.evaluation.multiscale",
    "ConfusionMatrix": "zoo_cli.evaluation.metrics",
    "evaluate_dataset": "zoo_cli.evaluation.dataset_job",
    "evaluate_checkpoint": "zoo_cli.evaluation.dataset_job",
    "predict_checkpoint_images": "zoo_cli.evaluation.image_job",
    "EvalResult": "zoo_cli.evaluation.results",
    "merge_results": "zoo_cli.evaluation.results",
    # bench and report
    "BenchOptions": "zoo_cli.bench.settings",
    "bench_graph": "zoo_cli.bench.measure",
    "bench_checkpoint": "zoo_cli.bench.sweep",
    "bench_all": "zoo_cli.bench.sweep",
    "BenchResult": "zoo_cli.bench.store",
    "results_dir": "zoo_cli.bench.store",
    "load_results": "zoo_cli.bench.store",
    "make_report": "zoo_cli.bench.report",
    # cluster: the same jobs on Ray (the optional [ray] extra)
    "evaluate_checkpoint_ray": "zoo_cli.cluster.eval",
    "bench_all_ray": "zoo_cli.cluster.bench",
    # the whole main job, offline
    "run_demo": "zoo_cli.demo_run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo_cli.api' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
