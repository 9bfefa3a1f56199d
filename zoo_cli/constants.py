"""Names and numbers shared across the package, each defined once (as huggingface_hub's ``constants.py``).

What the zoo's frozen graphs look like (research/deeplab ``export_model.py``), the datasets the checkpoints
were trained on, and the cache's reserved names. Modules import these; none keeps its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------- frozen graphs (export_model.py)
FROZEN_GRAPH = "frozen_inference_graph.pb"
INPUT_NAME = "ImageTensor"                   # uint8 [1, H, W, 3]
OUTPUT_NAME = "SemanticPredictions"          # int labels [1, H, W]
PROBABILITIES_NAME = "SemanticProbabilities"  # only in exports with --save_inference_graph probabilities
INPUT_TENSOR = f"{INPUT_NAME}:0"
PREDICTION_TENSOR = f"{OUTPUT_NAME}:0"
PROBABILITY_TENSOR = f"{PROBABILITIES_NAME}:0"
# The mean pixel DeepLab pads with (and subtracts before padding): input_preprocess.py / model.py.
MEAN_PIXEL = 127.5
# The output strides a frozen graph can be rewritten to (zoo_cli.graph.output_stride).
REWRITE_OUTPUT_STRIDES = (8, 16, 32)

# ---------------------------------------------------------------- cache
META_DIR = ".zoo"  # zoo's own files inside an installed checkpoint; an archive member may not use this name


# ---------------------------------------------------------------- datasets
@dataclass(frozen=True)
class DatasetFacts:
    """One evaluation dataset as the zoo's checkpoints and research/deeplab's eval.py see it."""

    name: str
    title: str                    # e.g. "PASCAL VOC 2012"
    num_classes: int
    ignore_label: int
    input_size: tuple[int, int]   # the eval crop / bench input size of the dataset's checkpoints


DATASETS: dict[str, DatasetFacts] = {
    "voc": DatasetFacts("voc", "PASCAL VOC 2012", 21, 255, (513, 513)),
    "cityscapes": DatasetFacts("cityscapes", "Cityscapes", 19, 255, (1025, 2049)),
    "ade20k": DatasetFacts("ade20k", "ADE20K", 151, 0, (513, 513)),
}
EVAL_DATASETS = tuple(DATASETS)  # the layouts 'zoo eval --data-dir' reads
# The registry's datasets: the evaluation ones plus the ImageNet-pretrained backbones (no eval rows).
REGISTRY_DATASETS = (*EVAL_DATASETS, "imagenet")
