"""Streaming segmentation metrics, computed the way the reference DeepLab ``eval.py`` computes them.

One confusion matrix is accumulated over the whole split (rows = ground truth, columns = prediction); pixels
whose label is the dataset's ignore label are left out. From it, as ``tf.metrics.mean_iou`` does:

* per-class IoU = tp / (tp + fp + fn), undefined (None) when tp + fp + fn = 0;
* mean IoU = mean of the per-class IoUs over the classes whose denominator is non-zero;
* pixel accuracy = trace / total.

For ADE20K (ignore label 0 with 151 classes) class 0 can never be a ground-truth pixel, but a prediction of
0 still counts as a false positive and makes class 0 enter the mean with IoU 0 — exactly as the reference.
Numbers are reported in percent (0-100), like the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from zoo_cli.atomic import atomic_path
from zoo_cli.errors import UsageError


class LabelRangeError(ValueError):
    """A label or prediction value lies outside ``[0, num_classes)`` (and is not the ignore label)."""


class ConfusionMatrix:
    """A ``num_classes`` x ``num_classes`` int64 matrix accumulated image by image with ``np.bincount``."""

    def __init__(self, num_classes: int, ignore_label: int | None = None, matrix: np.ndarray | None = None) -> None:
        if num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        if matrix is None:
            matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        elif matrix.shape != (num_classes, num_classes):
            raise ValueError(f"matrix shape {matrix.shape} does not fit {num_classes} classes")
        self.matrix = matrix.astype(np.int64, copy=False)

    def update(self, labels: np.ndarray, predictions: np.ndarray) -> None:
        """Add one image: ``labels`` and ``predictions`` are integer arrays of the same shape."""
        labels = np.asarray(labels)
        predictions = np.asarray(predictions)
        if labels.shape != predictions.shape:
            raise ValueError(f"label shape {labels.shape} differs from prediction shape {predictions.shape}")
        gt = labels.reshape(-1).astype(np.int64, copy=False)
        pred = predictions.reshape(-1).astype(np.int64, copy=False)
        if self.ignore_label is not None:
            keep = gt != self.ignore_label
            if not keep.all():
                gt, pred = gt[keep], pred[keep]
        n = self.num_classes
        if gt.size:
            if gt.min() < 0 or gt.max() >= n:
                bad = gt[(gt < 0) | (gt >= n)][0]
                raise LabelRangeError(f"label value {bad} is outside 0..{n - 1} and is not the ignore label "
                                      f"{self.ignore_label}")
            if pred.min() < 0 or pred.max() >= n:
                bad = pred[(pred < 0) | (pred >= n)][0]
                raise LabelRangeError(f"predicted class {bad} is outside 0..{n - 1}; the model has more classes "
                                      f"than the dataset")
            self.matrix += np.bincount(gt * n + pred, minlength=n * n).reshape(n, n)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix of the same size (e.g. another shard) into this one; returns self."""
        if other.num_classes != self.num_classes:
            raise UsageError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.matrix += other.matrix
        return self

    # ------------------------------------------------------------ metrics

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def iou_per_class(self) -> np.ndarray:
        """IoU of every class in [0, 1]; NaN where tp + fp + fn = 0."""
        tp = np.diag(self.matrix).astype(np.float64)
        denom = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - np.diag(self.matrix)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def mean_iou(self) -> float:
        """Mean IoU in [0, 1] over classes with a non-zero denominator (0.0 when there are none)."""
        iou = self.iou_per_class()
        valid = ~np.isnan(iou)
        return float(iou[valid].mean()) if valid.any() else 0.0

    def pixel_accuracy(self) -> float:
        """Correct pixels / evaluated pixels, in [0, 1] (0.0 when nothing was evaluated)."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else 0.0

    def summary(self, class_names: Sequence[str] | None = None) -> "MetricSummary":
        """The numbers a report shows, in percent, with per-class IoU keyed by class name."""
        names = list(class_names or [])
        iou = self.iou_per_class()
        per_class = {}
        for i, value in enumerate(iou):
            key = names[i] if i < len(names) else f"class {i}"
            per_class[key] = None if np.isnan(value) else round(float(value) * 100.0, 4)
        return MetricSummary(
            miou=round(self.mean_iou() * 100.0, 4),
            pixel_accuracy=round(self.pixel_accuracy() * 100.0, 4),
            per_class_iou=per_class,
            pixels=self.total,
        )

    # ------------------------------------------------------------ persistence

    def save(self, path: Path | str) -> Path:
        """Write the matrix as ``.npy`` atomically (temp file beside it, then rename)."""
        path = Path(path)
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, self.matrix)
        return path

    @classmethod
    def load(cls, path: Path | str, ignore_label: int | None = None) -> "ConfusionMatrix":
        """Read a matrix saved by :meth:`save`; anything else is a UsageError naming the file."""
        path = Path(path)
        try:
            matrix = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise UsageError(f"confusion matrix {path} does not exist; pass the .npy files 'zoo eval' saved") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path} is not a confusion matrix saved by 'zoo eval' ({exc})") from None
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not np.issubdtype(matrix.dtype, np.integer):
            raise UsageError(f"{path} holds a {matrix.dtype} array of shape {matrix.shape}, "
                             "not a square integer confusion matrix")
        if (matrix < 0).any():
            raise UsageError(f"{path} holds negative counts; it is not a confusion matrix")
        return cls(matrix.shape[0], ignore_label, matrix.astype(np.int64))


def merge_matrices(matrices: Iterable[ConfusionMatrix]) -> ConfusionMatrix:
    """Sum confusion matrices (shards of one evaluation); fails on an empty list or mixed class counts."""
    items = list(matrices)
    if not items:
        raise UsageError("nothing to merge; pass at least one confusion matrix")
    total = ConfusionMatrix(items[0].num_classes, items[0].ignore_label)
    for item in items:
        total.merge(item)
    return total


@dataclass(frozen=True)
class MetricSummary:
    """mIOU and pixel accuracy in percent, per-class IoU in percent (None = class absent), pixel count."""

    miou: float
    pixel_accuracy: float
    per_class_iou: dict[str, float | None]
    pixels: int
