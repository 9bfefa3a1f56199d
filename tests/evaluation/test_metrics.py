"""Confusion-matrix metrics against an independent per-class computation (masks and sums, no bincount)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.datasets import naive_metrics as naive
from zoo_cli.errors import UsageError
from zoo_cli.evaluation.metrics import ConfusionMatrix, LabelRangeError, merge_matrices


def random_pairs(rng, n, num_classes, ignore, shape=(17, 23), low=0):
    pairs = []
    for _ in range(n):
        gt = rng.integers(low, num_classes, size=shape)
        gt[rng.random(shape) < 0.15] = ignore
        pred = np.where(rng.random(shape) < 0.6, np.where(gt == ignore, 0, gt), rng.integers(0, num_classes, shape))
        pairs.append((gt, pred))
    return pairs


@pytest.mark.parametrize("num_classes,ignore,low", [(21, 255, 0), (19, 255, 0), (151, 0, 1), (3, 255, 0)])
def test_matches_independent_computation(num_classes, ignore, low):
    rng = np.random.default_rng(num_classes)
    pairs = random_pairs(rng, 5, num_classes, ignore, low=low)
    cm = ConfusionMatrix(num_classes, ignore)
    for gt, pred in pairs:
        cm.update(gt, pred)
    miou, iou, acc = naive(pairs, num_classes, ignore)
    assert cm.mean_iou() == pytest.approx(miou, abs=1e-12)
    assert cm.pixel_accuracy() == pytest.approx(acc, abs=1e-12)
    got = cm.iou_per_class()
    for c in range(num_classes):
        if iou[c] is None:
            assert np.isnan(got[c])
        else:
            assert got[c] == pytest.approx(iou[c], abs=1e-12)


def test_ignore_pixels_never_count():
    gt = np.array([[0, 1], [255, 255]])
    cm = ConfusionMatrix(2, 255)
    cm.update(gt, np.array([[0, 1], [1, 0]]))  # the two ignored pixels are "wrong" but must not matter
    assert cm.total == 2
    assert cm.mean_iou() == 1.0
    assert cm.pixel_accuracy() == 1.0


def test_classes_absent_from_gt_and_prediction_leave_the_mean():
    cm = ConfusionMatrix(5, 255)
    cm.update(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    # class 0: 1/(1+0+1); class 1: 2/(2+1+0); classes 2-4 undefined → mean over two classes only
    assert cm.mean_iou() == pytest.approx((0.5 + 2 / 3) / 2)
    summary = cm.summary(["a", "b", "c", "d", "e"])
    assert summary.per_class_iou["c"] is None
    assert summary.miou == pytest.approx(round((0.5 + 2 / 3) / 2 * 100, 4))


def test_ade20k_predicted_zero_counts_as_false_positive():
    # ADE20K: gt 0 is ignored, but a prediction of class 0 is a miss and class 0 enters the mean with IoU 0.
    gt = np.array([0, 0, 5, 5])
    pred = np.array([5, 0, 0, 5])
    cm = ConfusionMatrix(151, 0)
    cm.update(gt, pred)
    assert cm.total == 2
    iou = cm.iou_per_class()
    assert iou[0] == 0.0 and iou[5] == pytest.approx(1 / 2)
    assert cm.mean_iou() == pytest.approx(0.25)


def test_out_of_range_values_are_errors():
    cm = ConfusionMatrix(3, 255)
    with pytest.raises(LabelRangeError, match="label value 7"):
        cm.update(np.array([7]), np.array([0]))
    with pytest.raises(LabelRangeError, match="predicted class 4"):
        cm.update(np.array([1]), np.array([4]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_save_load_merge_equals_single_pass(tmp_path):
    rng = np.random.default_rng(3)
    pairs = random_pairs(rng, 6, 21, 255)
    full = ConfusionMatrix(21, 255)
    shards = [ConfusionMatrix(21, 255) for _ in range(3)]
    for i, (gt, pred) in enumerate(pairs):
        full.update(gt, pred)
        shards[i % 3].update(gt, pred)
    paths = [m.save(tmp_path / f"s{i}.npy") for i, m in enumerate(shards)]
    assert not list(tmp_path.glob(".*"))  # no temp files left behind
    merged = merge_matrices(ConfusionMatrix.load(p) for p in paths)
    assert np.array_equal(merged.matrix, full.matrix)
    assert merged.mean_iou() == full.mean_iou()


def test_load_and_merge_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        ConfusionMatrix.load(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(UsageError, match="not a confusion matrix"):
        ConfusionMatrix.load(tmp_path / "junk.npy")
    np.save(tmp_path / "rect.npy", np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(UsageError, match="square"):
        ConfusionMatrix.load(tmp_path / "rect.npy")
    with pytest.raises(UsageError, match="cannot merge"):
        merge_matrices([ConfusionMatrix(3), ConfusionMatrix(4)])
    with pytest.raises(UsageError, match="nothing to merge"):
        merge_matrices([])
