"""Generators of tiny datasets in the raw VOC, Cityscapes and ADE20K layouts.

Every image's red channel is made of blocks whose values the test graph (tests.support.eval_graphs, OS 1)
maps to known classes; the ground truth is that class map with some pixels changed to other classes and
some set to the ignore label, so the expected confusion matrix is known and non-trivial.
Each generator returns ``{sample name: (image path, ground truth in the evaluated id space)}``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.eval_graphs import quantize_red, red_for_class
from zoo_cli.evaluation.datasets import CITYSCAPES_ID_TO_TRAINID
from zoo_cli.evaluation.palettes import get_palette

TRAINID_TO_ID = {train: label_id for label_id, train in CITYSCAPES_ID_TO_TRAINID.items()}


def block_image(rng: np.random.Generator, size: tuple[int, int], classes: int, block: int = 8) -> np.ndarray:
    """A uint8 RGB image of ``block``-sized squares, each red value at the centre of a random class."""
    h, w = size
    gh, gw = -(-h // block), -(-w // block)
    ids = rng.integers(0, classes, size=(gh, gw))
    red = np.vectorize(red_for_class)(ids).astype(np.uint8)
    red = np.kron(red, np.ones((block, block), dtype=np.uint8))[:h, :w]
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    image[..., 0] = red
    return image


def _ground_truth(rng: np.random.Generator, image: np.ndarray, classes: int, ignore: int, low: int = 0) -> np.ndarray:
    """The class map of ``image`` with ~10% of pixels relabelled and a 2-pixel ignore border."""
    gt = quantize_red(image, classes).astype(np.int64)
    flip = rng.random(gt.shape) < 0.1
    gt[flip] = rng.integers(low, classes, size=int(flip.sum()))
    gt[:2, :] = ignore
    gt[:, -2:] = ignore
    return gt


def decoded(path: Path) -> np.ndarray:
    """The RGB pixels a decoder gives for ``path`` (JPEG is lossy, so tests predict from these)."""
    return np.asarray(Image.open(path).convert("RGB"))


def make_voc(root: Path, n: int = 4, size: tuple[int, int] = (24, 32), seed: int = 0, split: str = "val",
             extra_listed: list[str] | None = None) -> dict[str, tuple[Path, np.ndarray]]:
    """VOC2012 layout under ``root``: JPEGImages/*.jpg, SegmentationClass/*.png (palette), ImageSets list."""
    rng = np.random.default_rng(seed)
    base = Path(root)
    (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (base / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    palette = get_palette("voc").png_palette()
    out = {}
    for i in range(n):
        name = f"2007_{i:06d}"
        h, w = size if i % 2 == 0 else (size[1], size[0])  # portrait and landscape
        image = block_image(rng, (h, w), 21)
        path = base / "JPEGImages" / f"{name}.jpg"
        Image.fromarray(image).save(path, quality=95)
        gt = _ground_truth(rng, decoded(path), 21, 255)
        label = Image.fromarray(gt.astype(np.uint8), mode="P")
        label.putpalette(palette)
        label.save(base / "SegmentationClass" / f"{name}.png")
        out[name] = (path, gt)
    names = list(out) + list(extra_listed or [])
    (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return out


def make_cityscapes(root: Path, n: int = 4, size: tuple[int, int] = (24, 40), seed: int = 1, split: str = "val",
                    label_kind: str = "labelIds") -> dict[str, tuple[Path, np.ndarray]]:
    """Cityscapes layout: leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/... labelIds or labelTrainIds.

    With ``labelIds`` the ground truth is written as raw ids, including ids that are not evaluated (0
    unlabeled, 4 static, 9 parking, 15 bridge) which must come back as 255.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    out = {}
    for i in range(n):
        city = ("aachen", "bremen")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        img_dir = root / "leftImg8bit" / split / city
        gt_dir = root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        image = block_image(rng, size, 19)
        path = img_dir / f"{stem}_leftImg8bit.png"
        Image.fromarray(image).save(path)
        gt = _ground_truth(rng, image, 19, 255)
        if label_kind == "labelIds":
            ids = np.zeros_like(gt)
            for train, label_id in TRAINID_TO_ID.items():
                ids[gt == train] = label_id
            ignored = gt == 255
            ids[ignored] = rng.choice([0, 4, 9, 15], size=int(ignored.sum()))
            Image.fromarray(ids.astype(np.uint8), mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
        else:
            Image.fromarray(gt.astype(np.uint8), mode="L").save(gt_dir / f"{stem}_gtFine_labelTrainIds.png")
        out[stem] = (path, gt)
    return out


def make_ade20k(root: Path, n: int = 3, size: tuple[int, int] = (20, 33), seed: int = 2
                ) -> dict[str, tuple[Path, np.ndarray]]:
    """ADE20K layout: ADEChallengeData2016/images/validation/*.jpg, annotations/validation/*.png (0 = ignore)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "ADEChallengeData2016"
    (base / "images" / "validation").mkdir(parents=True, exist_ok=True)
    (base / "annotations" / "validation").mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        name = f"ADE_val_{i + 1:08d}"
        image = block_image(rng, size, 21)
        path = base / "images" / "validation" / f"{name}.jpg"
        Image.fromarray(image).save(path, quality=95)
        gt = _ground_truth(rng, decoded(path), 21, 0, low=1)
        gt[gt == 0] = 0  # class 0 is "other": the ignore label
        gt[4:6, 4:10] = rng.integers(100, 151, size=(2, 6))  # classes the graph never predicts
        Image.fromarray(gt.astype(np.uint8), mode="L").save(base / "annotations" / "validation" / f"{name}.png")
        out[name] = (path, gt)
    return out


def naive_metrics(pairs, num_classes: int, ignore: int) -> tuple[float, list[float | None], float]:
    """(mIOU, per-class IoU, pixel accuracy) in [0, 1] the slow obvious way: per-class masks and sums."""
    tp = np.zeros(num_classes)
    fp = np.zeros(num_classes)
    fn = np.zeros(num_classes)
    correct = total = 0
    for gt, pred in pairs:
        valid = gt != ignore
        for c in range(num_classes):
            tp[c] += np.sum(valid & (gt == c) & (pred == c))
            fp[c] += np.sum(valid & (gt != c) & (pred == c))
            fn[c] += np.sum(valid & (gt == c) & (pred != c))
        correct += np.sum(valid & (gt == pred))
        total += np.sum(valid)
    iou = [tp[c] / (tp[c] + fp[c] + fn[c]) if tp[c] + fp[c] + fn[c] else None for c in range(num_classes)]
    defined = [v for v in iou if v is not None]
    return sum(defined) / len(defined), iou, correct / total
