"""The result of a dataset evaluation: :class:`EvalResult`, its files, and merging shards.

:func:`build_eval_result` turns a scored split into the result (metrics, the run's settings, the registry's
reported rows); :func:`save_result` writes ``confusion.npy`` + ``metrics.json`` (their names and keys are
what ``zoo eval merge``, ``zoo report`` and ``--resume`` read back); :func:`merge_results` sums shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from zoo_cli.atomic import write_json_atomic
from zoo_cli.constants import DATASETS
from zoo_cli.errors import UsageError
from zoo_cli.evaluation.classes import class_palette
from zoo_cli.evaluation.datasets import Dataset
from zoo_cli.evaluation.metrics import ConfusionMatrix, MetricSummary, merge_matrices
from zoo_cli.evaluation.predictors import Predictor
from zoo_cli.evaluation.settings import EvalSettings, setting_slug

if TYPE_CHECKING:
    from zoo_cli.graph.info import GraphInfo
    from zoo_cli.registry.types import Checkpoint

CONFUSION_FILE = "confusion.npy"
METRICS_FILE = "metrics.json"


@dataclass
class EvalResult:
    """The outcome of one dataset evaluation (or of merging shards)."""

    summary: MetricSummary
    num_images: int
    dataset: str
    split: str
    num_classes: int
    ignore_label: int
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    checkpoint: str | None = None
    graph: str | None = None
    shard: tuple[int, int] | None = None
    seconds: float = 0.0
    fitted: int = 0
    confusion_path: Path | None = None
    metrics_path: Path | None = None
    graph_info: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "miou": self.summary.miou,
            "pixel_accuracy": self.summary.pixel_accuracy,
            "per_class_iou": self.summary.per_class_iou,
            "num_images": self.num_images,
            "scales": list(self.scales),
            "flip": self.flip,
            "checkpoint": self.checkpoint,
            "graph": self.graph,
            "dataset": self.dataset,
            "split": self.split,
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
            "pixels": self.summary.pixels,
            "shard": list(self.shard) if self.shard else None,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 3),
            "shrunk_to_fit": self.fitted,
            "confusion_matrix": str(self.confusion_path) if self.confusion_path else None,
            **self.extra,
        }


def save_result(result: EvalResult, matrix: ConfusionMatrix, out_dir: Path | str) -> EvalResult:
    """Write ``confusion.npy`` and ``metrics.json`` into ``out_dir`` (atomically) and record the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.confusion_path = matrix.save(out_dir / CONFUSION_FILE)
    result.metrics_path = out_dir / METRICS_FILE
    data = result.to_json()
    data["metrics_file_version"] = 1
    write_json_atomic(result.metrics_path, data)
    return result


def merge_results(paths: Sequence[Path | str]) -> tuple[EvalResult, ConfusionMatrix, list[str]]:
    """Sum shard confusion matrices into one result; returns it, the summed matrix and warnings.

    ``paths`` are ``confusion.npy`` files or the directories holding them; the ``metrics.json`` beside each
    supplies image counts, dataset, scales and class names when present.
    """
    from zoo_cli.evaluation.palettes import get_palette

    warnings: list[str] = []
    matrices: list[ConfusionMatrix] = []
    metas: list[dict[str, Any]] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            path = path / CONFUSION_FILE
        meta_path = path.with_name(METRICS_FILE)
        meta: dict[str, Any] = {}
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                warnings.append(f"{meta_path} is unreadable; its image count is unknown")
        else:
            warnings.append(f"no {METRICS_FILE} beside {path}; its image count is unknown")
        matrices.append(ConfusionMatrix.load(path, meta.get("ignore_label")))
        metas.append(meta)
    total = merge_matrices(matrices)
    for key in ("checkpoint", "dataset", "split", "scales", "flip"):
        values = {json.dumps(m.get(key)) for m in metas if key in m}
        if len(values) > 1:
            raise UsageError(f"the shards disagree on {key} ({', '.join(sorted(values))}); merge only shards of "
                             "one evaluation")
    shards = [tuple(m["shard"]) for m in metas if m.get("shard")]
    if shards:
        counts = {n for _, n in shards}
        if len(counts) > 1:
            raise UsageError(f"the shards were cut with different N ({sorted(counts)}); merge one run's shards")
        n = counts.pop()
        seen = [k for k, _ in shards]
        dupes = sorted({k for k in seen if seen.count(k) > 1})
        missing = sorted(set(range(n)) - set(seen))
        if dupes:
            raise UsageError(f"shard(s) {', '.join(f'{k}/{n}' for k in dupes)} given twice; each pixel would "
                             "count twice")
        if missing:
            warnings.append(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing; the result covers part "
                            "of the split")
    first = next((m for m in metas if m), {})
    dataset = first.get("dataset") or "unknown"
    names = None
    if isinstance(first.get("per_class_iou"), dict) and len(first["per_class_iou"]) == total.num_classes:
        names = list(first["per_class_iou"])
    if names is None and dataset in DATASETS:
        names = get_palette(dataset).class_names
    result = EvalResult(
        summary=total.summary(names),
        num_images=sum(int(m.get("num_images", 0)) for m in metas),
        dataset=dataset,
        split=first.get("split") or "unknown",
        num_classes=total.num_classes,
        ignore_label=first.get("ignore_label", total.ignore_label if total.ignore_label is not None else -1),
        scales=tuple(first.get("scales") or (1.0,)),
        flip=bool(first.get("flip", False)),
        checkpoint=first.get("checkpoint"),
        graph=first.get("graph"),
        seconds=sum(float(m.get("seconds", 0.0)) for m in metas),
        fitted=sum(int(m.get("shrunk_to_fit", 0)) for m in metas),
    )
    result.extra["merged_from"] = [str(Path(p)) for p in paths]
    return result, total, warnings


def reported_rows(ckpt: Checkpoint, scales: Sequence[float], flip: bool, crop: Sequence[int] | None = None,
                  reference_crop: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The registry's reported results for a checkpoint, each with ``matches_run`` (scales, flip AND eval crop
    equal the run's) and ``crop_differs`` (scales/flip match but the run's ``crop`` is not the rows'
    ``reference_crop``: the registry's eval crop, else the graph's). ``crop=None`` compares scales/flip only."""
    rows = []
    reported_on = ckpt.reported_on  # None: the seed's numbers
    crop_differs = crop is not None and reference_crop is not None and tuple(crop) != tuple(reference_crop)
    for row in ckpt.evals:
        # Order does not matter: the scales' probabilities are averaged.
        same = sorted(row.scales) == sorted(float(s) for s in scales) and row.flip == flip
        rows.append({**row.to_json(), "conditions": row.describe() + f", {row.split}",
                     "matches_run": same and not crop_differs, "crop_differs": same and crop_differs,
                     "reported_on": reported_on})
    return rows


def predictor_facts(predictor: Predictor) -> dict[str, Any]:
    """What a predictor reports into a result: scales/flip run, images shrunk to fit, its ``describe()``."""
    return {"scales": tuple(predictor.scales), "flip": bool(predictor.flip), "fitted": int(predictor.fitted),
            "multiscale": predictor.describe(), "output_stride_rewrite": predictor.output_stride_rewrite}


def build_eval_result(matrix: ConfusionMatrix, num_images: int, seconds: float, *, dataset: Dataset,
                      ckpt: Checkpoint | None, graph_path: Path | str, shard: tuple[int, int] | None,
                      num_classes: int, info: GraphInfo, settings: EvalSettings, facts: dict[str, Any],
                      ignore_label: int | None = None) -> EvalResult:
    """The :class:`EvalResult` of a scored split: metrics, the run's settings, the registry's reported rows.

    ``info`` is the graph's GraphInfo, ``facts`` :func:`predictor_facts` (summed over workers by a
    distributed run), so a single-process and a distributed run of the same images give the same result.
    """
    palette = class_palette(dataset.kind, ckpt)
    scales_run, flip_run = tuple(facts["scales"]), bool(facts["flip"])
    result = EvalResult(
        summary=matrix.summary(palette.class_names), num_images=num_images, dataset=dataset.kind,
        split=dataset.split, num_classes=num_classes,
        ignore_label=dataset.ignore_label if ignore_label is None else ignore_label, scales=scales_run,
        flip=flip_run, checkpoint=ckpt.name if ckpt else None, graph=str(graph_path), shard=shard,
        seconds=seconds, fitted=int(facts["fitted"]), graph_info=info.to_json())
    result.extra["graph_output_stride"] = info.encoder_output_stride or info.output_stride
    result.extra["long_side"] = dataset.long_side
    result.extra["reported"] = (reported_rows(ckpt, scales_run, flip_run, settings.crop, _reference_crop(ckpt, info))
                                if ckpt else [])
    result.extra["eval_settings"] = settings.to_json()
    run_os = settings.output_stride or settings.graph_output_stride
    for rep_row in result.extra["reported"]:
        rep_row["eval_crop"] = list(ckpt.eval_crop) if ckpt is not None and ckpt.eval_crop else None
        rep_row["os_differs_from_graph"] = run_os is not None and rep_row["output_stride"] != run_os
    if facts.get("multiscale") is not None:
        result.extra["multiscale"] = facts["multiscale"]
    if facts.get("output_stride_rewrite"):
        result.extra["output_stride_rewrite"] = facts["output_stride_rewrite"]
    result.extra["setting"] = run_setting(ckpt, info, settings, facts)
    return result


def run_setting(ckpt: Checkpoint | None, info: GraphInfo, settings: EvalSettings, facts: dict[str, Any]) -> str:
    """The :func:`setting_slug` naming a run's results folder (as :func:`build_eval_result` records it)."""
    return setting_slug(tuple(facts["scales"]), bool(facts["flip"]), settings.crop, _reference_crop(ckpt, info),
                        settings.output_stride, settings.graph_output_stride)


def _reference_crop(ckpt: Checkpoint | None, info: GraphInfo) -> tuple[int, int] | None:
    """The crop the registry's rows were measured at: the registry's eval crop, else the graph's."""
    return (ckpt.eval_crop if ckpt is not None and ckpt.eval_crop else None) or info.crop_size


