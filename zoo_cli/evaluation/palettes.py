"""Class names and colour palettes of the three datasets the zoo's checkpoints were trained on.

The colours are the ones the DeepLab visualisation utilities use, so label PNGs written by ``zoo eval`` look
like the published figures: PASCAL VOC's bit-interleaved palette (255 = void in light grey), the Cityscapes
19 trainId colours, and the ADE20K benchmark palette (index 0 = "other", ignored in evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from zoo_cli.constants import DATASETS
from zoo_cli.errors import UsageError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
_CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# Index 0 is "other objects", the ignore label of the ADE20K scene-parsing benchmark; 1..150 are its classes.
ADE20K_CLASSES = (
    "other", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car",
    "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)
_ADE20K_COLORS = (
    "0,0,0 120,120,120 180,120,120 6,230,230 80,50,50 4,200,3 120,120,80 140,140,140 204,5,255 230,230,230 4,250,7 224,5,255 "
    "235,255,7 150,5,61 120,120,70 8,255,51 255,6,82 143,255,140 204,255,4 255,51,7 204,70,3 0,102,200 61,230,250 255,6,51 "
    "11,102,255 255,7,71 255,9,224 9,7,230 220,220,220 255,9,92 112,9,255 8,255,214 7,255,224 255,184,6 10,255,71 255,41,10 "
    "7,255,255 224,255,8 102,8,255 255,61,6 255,194,7 255,122,8 0,255,20 255,8,41 255,5,153 6,51,255 235,12,255 160,150,20 "
    "0,163,255 140,140,140 250,10,15 20,255,0 31,255,0 255,31,0 255,224,0 153,255,0 0,0,255 255,71,0 0,235,255 0,173,255 "
    "31,0,255 11,200,200 255,82,0 0,255,245 0,61,255 0,255,112 0,255,133 255,0,0 255,163,0 255,102,0 194,255,0 0,143,255 "
    "51,255,0 0,82,255 0,255,41 0,255,173 10,0,255 173,255,0 0,255,153 255,92,0 255,0,255 255,0,245 255,0,102 255,173,0 "
    "255,0,20 255,184,184 0,31,255 0,255,61 0,71,255 255,0,204 0,255,194 0,255,82 0,10,255 0,112,255 51,0,255 0,194,255 "
    "0,122,255 0,255,163 255,153,0 0,255,10 255,112,0 143,255,0 82,0,255 163,255,0 255,235,0 8,184,170 133,0,255 0,255,92 "
    "184,0,255 255,0,31 0,184,255 0,214,255 255,0,112 92,255,0 0,224,255 112,224,255 70,184,160 163,0,255 153,0,255 71,255,0 "
    "255,0,163 255,204,0 255,0,143 0,255,235 133,255,0 255,0,235 245,0,255 255,0,122 255,245,0 10,190,212 214,255,0 0,204,255 "
    "20,0,255 255,255,0 0,153,255 0,41,255 0,255,204 41,0,255 41,255,0 173,0,255 0,245,255 71,0,255 122,0,255 0,255,184 "
    "0,92,255 184,255,0 0,133,255 255,214,0 25,194,194 102,255,0 92,0,255"
)

@dataclass(frozen=True)
class Palette:
    """A dataset's class names, its 256-entry RGB colour table and the label the metrics ignore."""

    dataset: str
    class_names: tuple[str, ...]
    colors: np.ndarray  # uint8 [256, 3]; entries past the classes are black (VOC: its own table)
    ignore_label: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def name_of(self, class_id: int) -> str:
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else f"class {class_id}"

    def png_palette(self) -> list[int]:
        """The flat ``[r, g, b, ...]`` list that ``PIL.Image.putpalette`` takes."""
        return self.colors.reshape(-1).tolist()

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """RGB image (uint8 HxWx3) of a label map; ids above 255 wrap like an 8-bit PNG would."""
        return self.colors[np.asarray(labels).astype(np.int64) & 0xFF]

    def overlay(self, image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The image blended with the colourised labels (``alpha`` = weight of the colours)."""
        color = self.colorize(labels).astype(np.float32)
        blended = (1.0 - alpha) * np.asarray(image, dtype=np.float32) + alpha * color
        return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _voc_colors() -> np.ndarray:
    # The PASCAL palette spreads the bits of the class id over the high bits of R, G and B.
    ids = np.arange(256)
    colors = np.zeros((256, 3), dtype=np.int64)
    for shift in range(7, -1, -1):
        for channel in range(3):
            colors[:, channel] |= ((ids >> channel) & 1) << shift
        ids = ids >> 3
    return colors.astype(np.uint8)


def _table(rgb: list[tuple[int, int, int]]) -> np.ndarray:
    colors = np.zeros((256, 3), dtype=np.uint8)
    colors[: len(rgb)] = np.asarray(rgb, dtype=np.uint8)
    return colors


@lru_cache(maxsize=None)
def get_palette(dataset: str) -> Palette:
    """The palette of ``voc``, ``cityscapes`` or ``ade20k`` (the ignored label: :data:`zoo_cli.constants.DATASETS`)."""
    if dataset == "voc":
        names, colors = VOC_CLASSES, _voc_colors()
    elif dataset == "cityscapes":
        names, colors = CITYSCAPES_CLASSES, _table(list(_CITYSCAPES_COLORS))
    elif dataset == "ade20k":
        rgb = [tuple(int(v) for v in item.split(",")) for item in _ADE20K_COLORS.split()]
        names, colors = ADE20K_CLASSES, _table(rgb)  # type: ignore[arg-type]
    else:
        raise UsageError(f"no palette for dataset '{dataset}'; choose one of {', '.join(DATASETS)}")
    return Palette(dataset, names, colors, DATASETS[dataset].ignore_label)


GENERIC = "generic"
DATASET_CLASS_COUNTS = {facts.num_classes: name for name, facts in DATASETS.items()}


@lru_cache(maxsize=None)
def generic_palette(num_classes: int) -> Palette:
    """``class 0`` .. ``class N-1`` for a class set no known dataset has; colours from the bit-interleaved
    PASCAL table, which gives every id up to 255 a distinct colour (0 stays black)."""
    names = tuple(f"class {i}" for i in range(num_classes))
    return Palette(GENERIC, names, _voc_colors(), 255)


def palette_for_classes(num_classes: int) -> Palette:
    """The dataset guessed from a graph's class count (21 VOC, 19 Cityscapes, 151 ADE20K), else
    :func:`generic_palette` (VOC names on a 4-class graph would be wrong)."""
    dataset = DATASET_CLASS_COUNTS.get(num_classes)
    return get_palette(dataset) if dataset else generic_palette(num_classes)
