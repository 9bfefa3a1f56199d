"""The classes a checkpoint is scored on: their count, the label left unscored, their names and colours.

The registry entry rules when the checkpoint was trained on the dataset's layout (e.g. the 4-class demo in
the VOC layout); otherwise the dataset's own facts (:data:`zoo_cli.constants.DATASETS`) do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo_cli.constants import DATASETS
from zoo_cli.errors import UsageError
from zoo_cli.evaluation.datasets import Dataset
from zoo_cli.evaluation.palettes import Palette

if TYPE_CHECKING:
    from zoo_cli.registry.types import Checkpoint


def check_graph_classes(kind: str, ckpt: Checkpoint | None, graph_classes: int | None) -> int:
    """The classes ``ckpt`` is scored on in dataset layout ``kind`` (the size of the confusion matrix): the
    registry's ``num_classes`` when the checkpoint was trained on that layout (the demo: 4 classes in the VOC
    layout), else the layout's own count. UsageError when the graph predicts another count; called right
    after the model loads, before any graph is re-targeted."""
    trained_here = ckpt is not None and ckpt.dataset == kind
    num_classes = int(ckpt.num_classes) if trained_here and ckpt.num_classes else DATASETS[kind].num_classes
    if graph_classes is not None and graph_classes != num_classes:
        if ckpt is not None and ckpt.num_classes == num_classes:
            raise UsageError(f"the graph predicts {graph_classes} classes but the registry entry {ckpt.name} "
                             f"says num_classes {ckpt.num_classes}; fix the registry entry or pass the right --graph")
        raise UsageError(f"the graph predicts {graph_classes} classes but {kind} has "
                         f"{DATASETS[kind].num_classes}; pass the --dataset the checkpoint was trained on")
    return num_classes


def scored_ignore_label(dataset: Dataset, ckpt: Checkpoint | None) -> int:
    """The label id left out of the scores: the registry's ``ignore_label`` when the checkpoint was trained on
    this dataset's layout (it says how its label files mark unlabelled pixels), else the layout's own
    (255 VOC/Cityscapes, 0 ADE20K)."""
    if ckpt is not None and ckpt.ignore_label is not None and ckpt.dataset == dataset.kind:
        return int(ckpt.ignore_label)
    return dataset.ignore_label


def class_palette(dataset: str | None, ckpt: Checkpoint | None = None, num_classes: int | None = None) -> Palette:
    """Colours of the dataset (or guessed from ``num_classes``: :func:`zoo_cli.evaluation.palettes.palette_for_classes`,
    ``class 0..N-1`` for counts no dataset has; VOC's without either) with the checkpoint's ``class_names``
    when the registry sets them (e.g. the demo's background/circle/square/triangle), else the dataset's names."""
    from zoo_cli.evaluation.palettes import get_palette, palette_for_classes

    base = get_palette(dataset) if dataset else palette_for_classes(num_classes or DATASETS["voc"].num_classes)
    names = ckpt.class_names if ckpt is not None else None
    if not names or (dataset and ckpt.dataset != dataset):
        return base
    return Palette(base.dataset, tuple(names), base.colors, base.ignore_label)
