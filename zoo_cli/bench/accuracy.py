"""mIOU and pixel accuracy of a bench setting, measured by the eval engine (:mod:`zoo_cli.evaluation`)
exactly as ``zoo eval --data-dir`` measures them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from zoo_cli.bench.settings import BenchOptions, BenchSetting
from zoo_cli.errors import UsageError
from zoo_cli.registry.types import Checkpoint


def open_bench_datasets(data_dir: Path | str, ckpt: Checkpoint | None,
                        settings: Sequence[BenchSetting]) -> dict[str, Any]:
    """Open (list and check) the split of ``data_dir`` each setting is evaluated on, keyed by split.

    Done before a graph is loaded, so a wrong ``--data-dir`` fails in a second, as ``zoo eval``'s does.
    """
    from zoo_cli.evaluation.datasets import open_eval_dataset

    return {split: open_eval_dataset(data_dir, ckpt, split=split)
            for split in dict.fromkeys(s.split for s in settings)}


def evaluate_setting(model: Any, setting: BenchSetting, options: BenchOptions, ckpt: Checkpoint | None,
                     notes: list[str], datasets: dict[str, Any] | None = None
                     ) -> tuple[float | None, float | None, dict[str, Any] | None]:
    """mIOU / pixel accuracy of the setting on ``options.data_dir`` (its split from ``datasets`` when opened
    already) and the eval facts; (None, None, why) with a note when the setting cannot be evaluated."""
    from zoo_cli.evaluation.classes import check_graph_classes, scored_ignore_label
    from zoo_cli.evaluation.dataset_job import evaluate_dataset
    from zoo_cli.evaluation.datasets import open_eval_dataset
    from zoo_cli.evaluation.predictors import make_predictor

    split = setting.split
    dataset = (datasets or {}).get(split)
    if dataset is None:
        dataset = open_eval_dataset(options.data_dir, ckpt, split=split, graph_crop=model.crop_size)
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
    matrix, count, seconds = evaluate_dataset(dataset, predictor, limit=options.limit, progress=options.progress,
                                              num_classes=num_classes, ignore_label=scored_ignore_label(dataset, ckpt))
    summary = matrix.summary()
    return summary.miou, summary.pixel_accuracy, {"dataset": dataset.kind, "split": split, "images": count,
                                                  "split_images": len(dataset.samples), "limit": options.limit,
                                                  "seconds": round(seconds, 3), "data_dir": str(options.data_dir)}
