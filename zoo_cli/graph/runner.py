"""The frozen-graph runner: :class:`FrozenGraphModel` loads a graph once and runs every image through one
reused session; the image helpers (fit, resize, check) are the ones evaluation and bench feed it with.

An image larger than the graph's crop would fail inside the graph, so it is shrunk to fit and its labels are
scaled back (:class:`Prediction` says when); multi-scale runs re-target the crop instead
(:mod:`zoo_cli.evaluation.multiscale`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_cli.errors import ModelError
from zoo_cli.graph.crop_pattern import analyse_or_none
from zoo_cli.graph.info import describe_graph
from zoo_cli.graph.loading import import_graph, load_graph_def
from zoo_cli.graph.tf_errors import tf_model_error
from zoo_cli.graph.tf_import import import_tf, new_session


@dataclass
class Prediction:
    """One image's result: labels (HxW int32) at the image's size.

    ``fitted_from``/``fitted_to`` are set when the image was larger than the graph's crop and was shrunk to
    fit it (the labels are then scaled back to the original size by nearest neighbour).
    """

    labels: np.ndarray
    fitted_from: tuple[int, int] | None = None
    fitted_to: tuple[int, int] | None = None

    @property
    def fitted(self) -> bool:
        """True when the image was shrunk to fit the graph's crop."""
        return self.fitted_from is not None


def fit_size(height: int, width: int, limit: tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) scaled down, keeping the aspect ratio, to fit inside ``limit``; unchanged when it fits."""
    if limit is None or (height <= limit[0] and width <= limit[1]):
        return height, width
    scale = min(limit[0] / height, limit[1] / width)
    return max(1, min(limit[0], int(height * scale))), max(1, min(limit[1], int(width * scale)))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 HxWx3 image to ``size`` = (H, W) (as the reference resizes images)."""
    from PIL import Image

    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map to ``size`` = (H, W), never mixing class ids."""
    h, w = labels.shape[:2]
    if (h, w) == tuple(size):
        return labels
    rows = np.minimum((np.arange(size[0]) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum((np.arange(size[1]) * w / size[1]).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Check an image is uint8 HxWx3 (what the graphs take); anything else is a ModelError."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ModelError(f"expected a uint8 HxWx3 RGB image, got {image.dtype} of shape {image.shape}")
    return image


class FrozenGraphModel:
    """A loaded frozen graph and one TensorFlow session reused for every image.

    ``intra_op_threads`` / ``inter_op_threads`` = 0 let TensorFlow choose (all cores). Session.run is
    thread-safe, so several threads may call :meth:`predict` at once (pipelined evaluation does).
    """

    def __init__(self, source: Path | str | Any, *, intra_op_threads: int = 0, inter_op_threads: int = 0) -> None:
        tf = import_tf()
        if isinstance(source, (str, os.PathLike)):
            self.path: Path | None = Path(source)
            graph_def = load_graph_def(self.path)
        else:  # an in-memory GraphDef (e.g. a re-targeted copy)
            self.path = None
            graph_def = source
        label = str(self.path) if self.path else "<GraphDef>"
        self.graph = import_graph(graph_def, label)
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=int(intra_op_threads),
                                          inter_op_parallelism_threads=int(inter_op_threads))
        self.session = new_session(config, graph=self.graph)
        # Where the graph keeps its crop (for multi-scale runs and the encoder's output stride), found once.
        self.crop_pattern, problem = analyse_or_none(graph_def)
        self.info = describe_graph(graph_def, self.graph, str(self.path) if self.path else None,
                                   session=self.session, probe=False, pattern=self.crop_pattern,
                                   pattern_problem=problem)
        del graph_def  # the imported graph holds what it needs
        self.input_tensor = self.graph.get_tensor_by_name(self.info.input_tensor)
        self.prediction_tensor = self.graph.get_tensor_by_name(self.info.prediction_tensor)
        self._input_dtype = self.input_tensor.dtype.as_numpy_dtype
        # make_callable skips Session.run's per-call feed/fetch parsing.
        self._run_labels = self.session.make_callable(self.prediction_tensor, feed_list=[self.input_tensor])
        self._errors = tf.errors

    # -- lifecycle

    def close(self) -> None:
        """Release the session (idempotent)."""
        if self.session is not None:
            self.session.close()
            self.session = None

    def __enter__(self) -> "FrozenGraphModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def num_classes(self) -> int | None:
        """Classes the graph predicts (None when its scores have no static depth)."""
        return self.info.num_classes

    @property
    def crop_size(self) -> tuple[int, int] | None:
        """The static crop (H, W) the graph pads every input to, None when it has none."""
        return self.info.crop_size

    # -- running

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Bare run: feed a ``[1, H, W, 3]`` array as is, return the raw prediction ``[1, H, W]``."""
        try:
            return self._run_labels(batch)
        except self._errors.OpError as exc:
            h, w = batch.shape[1:3]
            raise tf_model_error(exc, f"the graph failed on a {h}x{w} image") from None

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        image = as_rgb_uint8(image)
        h, w = image.shape[:2]
        size = fit_size(h, w, self.info.crop_size)
        if size != (h, w):
            image = resize_image(image, size)
        batch = image[None]
        if self._input_dtype != np.uint8:
            batch = batch.astype(self._input_dtype)
        return batch, (h, w), size

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Labels (HxW int32) of a uint8 HxWx3 image, at the image's own size."""
        return self.predict_full(image).labels

    def predict_full(self, image: np.ndarray) -> Prediction:
        """Labels cropped to the image (padding removed), and whether the image was shrunk to fit.

        An image larger than the graph's crop would fail inside the graph; it is shrunk to fit and the
        labels are scaled back to the original size (``Prediction.fitted``).
        """
        batch, original, fed = self._prepare(image)
        labels = np.asarray(self.run_batch(batch)[0])
        if labels.dtype != np.int32:
            labels = labels.astype(np.int32)
        fitted_from = fitted_to = None
        if fed != original:
            labels = resize_labels(labels, original)
            fitted_from, fitted_to = original, fed
        return Prediction(labels, fitted_from, fitted_to)
