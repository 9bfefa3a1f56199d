"""The raw public layouts of PASCAL VOC 2012, Cityscapes and ADE20K, read directly (no TFRecord conversion).

| dataset    | images                                              | labels                                                   |
|------------|-----------------------------------------------------|----------------------------------------------------------|
| voc        | JPEGImages/<id>.jpg, ids from ImageSets/Segmentation/<split>.txt | SegmentationClass/<id>.png (palette indices, 255 = ignore) |
| cityscapes | leftImg8bit/<split>/<city>/<x>_leftImg8bit.png      | gtFine/<split>/<city>/<x>_gtFine_labelTrainIds.png, else _labelIds.png mapped to the 19 trainIds |
| ade20k     | ADEChallengeData2016/images/validation/<x>.jpg      | ADEChallengeData2016/annotations/validation/<x>.png (0 = ignore, 150 classes + 0) |

Images are decoded with Pillow into uint8 HxWx3 RGB whatever their mode (grayscale, palette, RGBA, CMYK,
16-bit); a file that cannot be decoded (truncated, damaged) is a :class:`DatasetError` naming it.
:func:`open_eval_dataset` opens a split the way the reference evaluates a given checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from zoo_cli.constants import DATASETS
from zoo_cli.errors import DatasetError, UsageError

if TYPE_CHECKING:
    from zoo_cli.registry.types import Checkpoint

_SPLIT_DIRS_ADE = {"val": "validation", "validation": "validation", "train": "training", "training": "training"}

# Cityscapes labelId → trainId (19 evaluated classes; every other id is ignored = 255).
CITYSCAPES_ID_TO_TRAINID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
_CITYSCAPES_LUT = np.full(256, 255, dtype=np.uint8)
for _id, _train in CITYSCAPES_ID_TO_TRAINID.items():
    _CITYSCAPES_LUT[_id] = _train


def cityscapes_trainids(label_ids: np.ndarray) -> np.ndarray:
    """Map a Cityscapes ``labelIds`` array to trainIds (unknown / non-evaluated ids → 255)."""
    label_ids = np.asarray(label_ids)
    if label_ids.dtype != np.uint8:
        # labelIds are 0..33 (license plate = -1); anything outside a byte is not evaluated.
        label_ids = np.where((label_ids >= 0) & (label_ids < 256), label_ids, 0).astype(np.uint8)
    return _CITYSCAPES_LUT[label_ids]


# ------------------------------------------------------------------------------------------- decoding


def _open(path: Path, dataset_file: bool = True):
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()  # decode now: a truncated file fails here, not later inside numpy
    except FileNotFoundError:
        where = "check the dataset directory" if dataset_file else "check the path"
        raise DatasetError(f"{path} does not exist; {where}") from None
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Only a dataset's file has an archive to restore it from; a user's photo is just not an image we read.
        fix = ("the file is damaged or truncated, re-extract it from the dataset archive" if dataset_file else
               "it is not an image Pillow can read, or it is damaged or truncated; re-save it as PNG or JPEG")
        raise DatasetError(f"{path} cannot be decoded ({exc}); {fix}") from None
    return img


def load_image(path: Path | str, *, dataset_file: bool = True) -> np.ndarray:
    """Decode an image file into uint8 HxWx3 RGB.

    Grayscale and palette images are expanded, alpha is dropped (as TensorFlow's 3-channel decode does),
    CMYK is converted, and 16-bit samples keep their 8 most significant bits (not clipped at 255).
    ``dataset_file=False`` (a user's photo) drops the "re-extract it from the dataset archive" hint.
    """
    path = Path(path)
    img = _open(path, dataset_file)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        # "I" from a 16-bit PNG still holds 0..65535; an 8-bit source would already be "L".
        gray = np.clip(arr >> 8, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.asarray(img), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise DatasetError(f"{path}: decoded to {arr.dtype} {arr.shape}, expected an 8-bit RGB image")
    return arr


def load_label(path: Path | str) -> np.ndarray:
    """Decode a label PNG into an HxW integer array of class ids (palette indices for VOC, not colours)."""
    path = Path(path)
    img = _open(path)
    if img.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img)
    if img.mode == "PA" or img.mode == "LA":
        return np.asarray(img)[..., 0]
    raise DatasetError(f"{path} is a {img.mode} image; labels must be single-channel class ids "
                       "(palette-indexed or grayscale PNG), not colours")


def resize_long_side(image: np.ndarray, label: np.ndarray | None, long_side: int
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize so the longer side equals ``long_side`` (image bilinear, labels nearest), as the ADE20K eval does."""
    from zoo_cli.graph.runner import resize_image, resize_labels

    h, w = image.shape[:2]
    if max(h, w) == long_side:
        return image, label
    if h >= w:
        size = (long_side, max(1, w * long_side // h))
    else:
        size = (max(1, h * long_side // w), long_side)
    image = resize_image(image, size)
    if label is not None:
        label = resize_labels(label, size)
    return image, label


# ------------------------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Sample:
    """One image of a split and its label file."""

    name: str
    image_path: Path
    label_path: Path


@dataclass
class Dataset:
    """A split of one dataset in its raw layout; ``load`` gives (image, labels) ready for the metrics."""

    kind: str
    root: Path
    split: str
    samples: list[Sample]
    long_side: int | None = None  # ADE20K: resize so the longer side is this (the model's input size)

    @property
    def num_classes(self) -> int:
        return DATASETS[self.kind].num_classes

    @property
    def ignore_label(self) -> int:
        return DATASETS[self.kind].ignore_label

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Decode one sample: uint8 HxWx3 image and HxW labels, same size, in the evaluated id space."""
        image = load_image(sample.image_path)
        label = load_label(sample.label_path)
        if label.shape != image.shape[:2]:
            raise DatasetError(
                f"{sample.label_path} is {label.shape[1]}x{label.shape[0]} but its image {sample.image_path.name} "
                f"is {image.shape[1]}x{image.shape[0]}; the label does not belong to this image")
        if self.kind == "cityscapes" and sample.label_path.name.endswith("_labelIds.png"):
            label = cityscapes_trainids(label)
        if self.long_side is not None:
            image, label = resize_long_side(image, label, self.long_side)
        return image, label


def detect_layout(root: Path) -> str:
    """Which dataset layout ``root`` holds (voc, cityscapes, ade20k); UsageError when none fits."""
    root = Path(root)
    if _voc_root(root) is not None:
        return "voc"
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if _ade_root(root) is not None:
        return "ade20k"
    raise UsageError(f"{root} holds no VOC (JPEGImages/), Cityscapes (leftImg8bit/) or ADE20K "
                     "(ADEChallengeData2016/) layout; point --data-dir at the dataset root or pass --dataset")


def _voc_root(root: Path) -> Path | None:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    return None


def _ade_root(root: Path) -> Path | None:
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    return None


def open_dataset(root: Path | str, kind: str | None = None, split: str = "val", *,
                 long_side: int | None = None) -> Dataset:
    """List a split of a dataset in its raw layout; missing directories or files are DatasetErrors."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist; pass the dataset root to --data-dir")
    kind = (kind or detect_layout(root)).lower()
    if kind not in DATASETS:
        raise UsageError(f"unknown dataset '{kind}'; choose one of {', '.join(DATASETS)}")
    if kind == "voc":
        return _open_voc(root, split)
    if kind == "cityscapes":
        return _open_cityscapes(root, split)
    return _open_ade20k(root, split, long_side)


def _open_voc(root: Path, split: str) -> Dataset:
    base = _voc_root(root)
    if base is None:
        raise DatasetError(f"{root / 'JPEGImages'} does not exist; point --data-dir at VOCdevkit/VOC2012")
    listing = base / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"{listing} does not exist; the VOC split '{split}' needs its image list")
    names = [line.split()[0] for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{listing} lists no images; it needs one image id per line (e.g. 2007_000033), "
                           "or pick another --split")
    samples = []
    for name in names:
        image = base / "JPEGImages" / f"{name}.jpg"
        label = base / "SegmentationClass" / f"{name}.png"
        if not image.is_file():
            raise DatasetError(f"{image} is listed in {listing.name} but does not exist")
        if not label.is_file():
            raise DatasetError(f"{label} (label of {name}, listed in {listing.name}) does not exist")
        samples.append(Sample(name, image, label))
    return Dataset("voc", base, split, samples)


def _open_cityscapes(root: Path, split: str) -> Dataset:
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir} does not exist; point --data-dir at the Cityscapes root")
    samples = []
    suffix = "_leftImg8bit.png"
    for image in sorted(image_dir.glob(f"*/*{suffix}")):
        stem = image.name[: -len(suffix)]
        label_dir = root / "gtFine" / split / image.parent.name
        train_ids = label_dir / f"{stem}_gtFine_labelTrainIds.png"
        label_ids = label_dir / f"{stem}_gtFine_labelIds.png"
        if train_ids.is_file():
            label = train_ids
        elif label_ids.is_file():
            label = label_ids
        else:
            raise DatasetError(f"{label_ids} (label of {image.name}) does not exist")
        samples.append(Sample(stem, image, label))
    if not samples:
        raise DatasetError(f"{image_dir} holds no */*{suffix} images")
    return Dataset("cityscapes", root, split, samples)


def _open_ade20k(root: Path, split: str, long_side: int | None) -> Dataset:
    base = _ade_root(root)
    if base is None:
        raise DatasetError(f"{root / 'ADEChallengeData2016'} does not exist; point --data-dir at its parent")
    sub = _SPLIT_DIRS_ADE.get(split)
    if sub is None:
        raise UsageError(f"ADE20K has splits val (validation) and train (training), not '{split}'")
    image_dir = base / "images" / sub
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir} does not exist")
    samples = []
    for image in sorted(image_dir.glob("*.jpg")):
        label = base / "annotations" / sub / f"{image.stem}.png"
        if not label.is_file():
            raise DatasetError(f"{label} (label of {image.name}) does not exist")
        samples.append(Sample(image.stem, image, label))
    if not samples:
        raise DatasetError(f"{image_dir} holds no .jpg images")
    return Dataset("ade20k", base, split, samples, long_side=long_side)


def open_eval_dataset(data_dir: Path | str, ckpt: Checkpoint | None = None, *, kind: str | None = None,
                      split: str = "val", graph_crop: tuple[int, int] | None = None) -> Dataset:
    """The ``split`` of ``data_dir`` prepared the way the reference evaluates ``ckpt``.

    The layout is ``kind``, else the checkpoint's dataset, else detected. ADE20K images are resized so their
    longer side is the model's input size (registry ``input_size``, else ``eval_crop``, else ``graph_crop``).
    Opening lists and checks every file, so a bad ``--data-dir`` fails before a model is loaded.
    """
    if kind is None and ckpt is not None and ckpt.dataset in DATASETS:  # not an ImageNet backbone
        kind = ckpt.dataset
    dataset = open_dataset(data_dir, kind, split)
    if dataset.kind == "ade20k":
        size = (ckpt.input_size or ckpt.eval_crop) if ckpt is not None else None
        size = size or graph_crop
        dataset.long_side = max(size) if size else None
    return dataset
