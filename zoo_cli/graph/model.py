"""The frozen-graph runner: the only module that imports TensorFlow for inference.

A DeepLab ``frozen_inference_graph.pb`` (export_model.py of research/deeplab) takes ``ImageTensor:0``, a uint8
``[1, H, W, 3]`` image, pads it to a crop baked into the graph (e.g. 513x513) with the mean pixel, runs the
network on the padded crop, resizes the logits to the full crop (``ResizeBilinear``), takes the ``ArgMax``,
slices the prediction back to the input size and returns ``SemanticPredictions:0`` (int32, or int64 in early
exports). Newer exports also return ``SemanticProbabilities:0``.

:func:`inspect_graph` finds all of this structurally (class scores are the float tensor feeding the final
ArgMax, found by walking back from the prediction, not by name); :class:`FrozenGraphModel` loads the graph
once and runs every image through one reused session.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo_cli.constants import INPUT_TENSOR, PREDICTION_TENSOR, PROBABILITY_TENSOR
from zoo_cli.errors import ModelError, special_file_kind
from zoo_cli.graph.geometry import stride_ratio
from zoo_cli.graph.graphdef import RESIZE_OPS, GraphIndex, data_inputs, spatial_size, tensor_name
from zoo_cli.graph.tf_import import import_tf, new_session

# ---------------------------------------------------------------------------------------------- GraphInfo


@dataclass(frozen=True)
class GraphInfo:
    """What a frozen DeepLab graph takes and returns, and the geometry baked into it."""

    path: str | None
    num_nodes: int
    input_tensor: str
    input_dtype: str
    input_shape: tuple[int | None, ...] | None
    prediction_tensor: str
    prediction_dtype: str
    scores_tensor: str | None
    scores_kind: str | None  # "probabilities" (already at input size) | "logits" (full crop, pad included)
    num_classes: int | None
    crop_size: tuple[int, int] | None  # the static crop the graph pads every input to
    logits_size: tuple[int, int] | None  # spatial size of the logits before the final upsampling
    output_stride: int | None  # effective: crop / logits size (4 for decoder models)
    image_pooling_kernel: tuple[int, int] | None
    encoder_output_stride: int | None  # the encoder's: the "Eval OS" of the zoo tables
    has_probabilities: bool
    argmax_node: str | None = None
    decoder_output_stride: int | None = None  # the logits' stride when a decoder refines the encoder's output
    retargetable: bool = False  # the crop pattern was found: other crops/scales can be run
    retarget_problem: str | None = None  # why not, when not
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def max_input_size(self) -> tuple[int, int] | None:
        """Largest image (H, W) the graph accepts; None when it has no static crop."""
        return self.crop_size

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("input_shape", "crop_size", "logits_size", "image_pooling_kernel"):
            if data[key] is not None:
                data[key] = list(data[key])
        data["notes"] = list(self.notes)
        return data


def _fix_hint(path: Path | str) -> str:
    """How to replace a bad graph file: re-download it when it sits in a zoo install, else (a ``--graph`` of
    the user's) pass a real frozen graph; 'zoo download' cannot repair a file it did not install."""
    from zoo_cli.constants import META_DIR
    from zoo_cli.hub.cache import MANIFEST

    try:
        for parent in list(Path(path).resolve().parents)[:3]:
            if (parent / META_DIR / MANIFEST).is_file():
                return f"re-download it with 'zoo download {parent.name} --force'"
    except OSError:
        pass
    return "pass a frozen_inference_graph.pb (a DeepLab export_model.py frozen graph)"


_CHECKPOINT_FILE = re.compile(r"(\.ckpt(-\d+)?(\.index|\.meta|\.data-\d+-of-\d+)?|\.index|\.meta|"
                              r"\.data-\d+-of-\d+)$")


def load_graph_def(path: Path | str):
    """Parse a frozen ``GraphDef`` file; an unreadable or non-GraphDef file is a ModelError."""
    path = Path(path)
    kind = special_file_kind(path)
    if kind is not None:  # reading a FIFO blocks, /dev/zero never ends
        raise ModelError(f"{path} is {kind}, not a regular file; pass a frozen_inference_graph.pb")
    if _CHECKPOINT_FILE.search(path.name):
        raise ModelError(f"{path} is a TensorFlow training checkpoint file (model.ckpt.*), not a frozen graph; "
                         "pass the frozen_inference_graph.pb from the same archive")
    tf = import_tf()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"frozen graph {path} does not exist; download the model or check --graph") from None
    except OSError as exc:
        raise ModelError(f"cannot read frozen graph {path}: {exc}") from None
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, which is not exported under one stable name
        raise ModelError(f"{path} is not a frozen TensorFlow GraphDef (.pb) ({exc}); {_fix_hint(path)}") from None
    if not graph_def.node:
        raise ModelError(f"{path} holds an empty graph; {_fix_hint(path)}")
    return graph_def


def _import(graph_def, source: str):
    tf = import_tf()
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
    except (ValueError, tf.errors.OpError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fix = f" ({_fix_hint(source)})" if Path(source).is_file() else ""  # source may be "<GraphDef>"
        raise ModelError(f"cannot import the graph {source}: {first}; it may need a newer TensorFlow or be "
                         f"damaged{fix}") from None
    return graph


def _static_hw(shape) -> tuple[int, int] | None:
    """(H, W) of a static rank-4 TensorShape, else None."""
    dims = shape.as_list() if shape.rank is not None else None
    return spatial_size(dims) if dims is not None and len(dims) == 4 else None


def crop_pattern(graph_def) -> tuple[Any | None, str | None]:
    """``(CropPattern, None)`` when the graph has the export's crop pattern, else ``(None, why not)``."""
    from zoo_cli.graph import retarget

    try:
        return retarget.analyse(graph_def), None
    except ModelError as exc:
        return None, str(exc)


def _analyse(graph_def, graph, source: str | None, input_name: str | None, prediction_name: str | None,
             session=None, probe: bool = True, pattern: Any | None = None,
             pattern_problem: str | None = None) -> GraphInfo:
    tf = import_tf()
    walker = GraphIndex(graph_def)
    notes: list[str] = []

    def tensor(name: str):
        try:
            return graph.get_tensor_by_name(name)
        except (KeyError, ValueError):
            return None

    input_name = tensor_name(input_name or INPUT_TENSOR)
    inp = tensor(input_name)
    if inp is None:
        placeholders = [f"{n.name}:0" for n in walker.of_type("Placeholder")]
        hint = f"; its placeholders are {', '.join(placeholders[:5])}" if placeholders else ""
        raise ModelError(f"graph {source or ''} has no input tensor '{input_name}'{hint}; it is not a DeepLab "
                         "export, or pass the input name explicitly")
    prediction_name = tensor_name(prediction_name or PREDICTION_TENSOR)
    pred = tensor(prediction_name)
    if pred is None:
        raise ModelError(f"graph {source or ''} has no output tensor '{prediction_name}'; it is not a DeepLab "
                         "frozen_inference_graph.pb (export_model.py), or pass the output name explicitly")
    if inp.dtype != tf.uint8:
        notes.append(f"input dtype is {inp.dtype.name}, not uint8; images are cast before feeding")

    # Class scores: SemanticProbabilities when exported, else the float tensor feeding the final ArgMax.
    argmax = walker.find_back(pred.op.name, ["ArgMax"])
    logits_ref = tensor_name(data_inputs(argmax)[0]) if argmax is not None else None
    probs = tensor(PROBABILITY_TENSOR)
    if probs is not None:
        scores_name, scores_kind = PROBABILITY_TENSOR, "probabilities"
    elif logits_ref is not None:
        scores_name, scores_kind = logits_ref, "logits"
    else:
        scores_name = scores_kind = None
        notes.append("no ArgMax behind the prediction: class scores are not available (multi-scale impossible)")

    num_classes = None
    for candidate in (logits_ref, scores_name):
        t = tensor(candidate) if candidate else None
        if t is not None and t.shape.rank == 4 and t.shape[-1] is not None:
            num_classes = int(t.shape[-1])
            break

    def evaluate_const(ref: str):
        """Value of a tensor that depends on no placeholder (e.g. a resize target), else None."""
        if walker.depends_on_placeholder(ref):
            return None
        t = tensor(tensor_name(ref))
        if t is None:
            return None
        try:
            if session is not None:
                return np.asarray(session.run(t))
            with new_session(graph=graph) as s:
                return np.asarray(s.run(t))
        except tf.errors.OpError:
            return None

    # Crop: the static size the final resize upsamples the logits to (the padded image's size).
    crop = None
    lowres_ref = None
    producer = walker.producer(logits_ref) if logits_ref else None
    if producer is not None and producer.op in RESIZE_OPS:
        lowres_ref = tensor_name(data_inputs(producer)[0])
        size = evaluate_const(data_inputs(producer)[1])
        if size is not None and size.size == 2:
            crop = (int(size[0]), int(size[1]))
    if crop is None and logits_ref:
        crop = _static_hw(tensor(logits_ref).shape)
    if crop is None and logits_ref:
        # Shapes are dynamic (pad to max(crop, size)): a run on a tiny image shows the padded size.
        probed = _probe_hw(graph, inp, tensor(logits_ref), session)
        if probed is not None and probed != (_PROBE_SIZE, _PROBE_SIZE):
            crop = probed
            notes.append("crop found by running a tiny image (no static shape in the graph)")
    if crop is None:
        notes.append("no static crop found: the graph runs images at their own size")

    logits_size = None
    if lowres_ref is not None:
        logits_size = _static_hw(tensor(lowres_ref).shape)
        if logits_size is None and probe:
            # Shapes were not inferable statically; one run on a tiny image gives them (the graph pads anyway).
            logits_size = _probe_hw(graph, inp, tensor(lowres_ref), session)
    elif crop is not None and logits_ref is not None:
        logits_size = crop
    output_stride = stride_ratio(crop[0], logits_size[0]) if crop and logits_size else None

    # The encoder's output stride ("Eval OS") is the coarsest feature map between the image and the logits,
    # found on the crop pattern; the logits stride is the decoder's when there is one (e.g. 4 for Xception).
    pool_kernel = _image_pooling_kernel(walker)
    encoder_os = decoder_os = None
    if pattern is not None:
        encoder_os = pattern.encoder_stride
        decoder_os = pattern.decoder_stride
    elif crop and pool_kernel is not None:
        # No crop pattern (no static crop to infer shapes at): a whole-map image-pooling kernel,
        # (crop - 1) / OS + 1 per side, still tells the encoder stride.
        encoder_os = stride_ratio(crop[0], pool_kernel[0])
        notes.append("output stride read from the image-pooling kernel (the graph has no re-targetable crop)")

    return GraphInfo(
        path=source,
        num_nodes=len(graph_def.node),
        input_tensor=input_name,
        input_dtype=inp.dtype.name,
        input_shape=tuple(inp.shape.as_list()) if inp.shape.rank is not None else None,
        prediction_tensor=prediction_name,
        prediction_dtype=pred.dtype.name,
        scores_tensor=scores_name,
        scores_kind=scores_kind,
        num_classes=num_classes,
        crop_size=crop,
        logits_size=logits_size,
        output_stride=output_stride,
        image_pooling_kernel=pool_kernel,
        encoder_output_stride=encoder_os,
        has_probabilities=probs is not None,
        argmax_node=argmax.name if argmax is not None else None,
        decoder_output_stride=decoder_os,
        retargetable=pattern is not None,
        retarget_problem=pattern_problem,
        notes=tuple(notes),
    )


def _image_pooling_kernel(walker) -> tuple[int, int] | None:
    """The largest AvgPool kernel (image pooling pools the whole encoder feature map)."""
    best = None
    for node in walker.of_type("AvgPool"):
        ksize = list(node.attr["ksize"].list.i)
        fmt = node.attr["data_format"].s.decode() if "data_format" in node.attr else "NHWC"
        hw = (ksize[2], ksize[3]) if fmt == "NCHW" else (ksize[1], ksize[2])
        if min(hw) > 1 and (best is None or hw[0] * hw[1] > best[0] * best[1]):
            best = (int(hw[0]), int(hw[1]))
    return best


_PROBE_SIZE = 7


def _probe_hw(graph, inp, target, session) -> tuple[int, int] | None:
    """Spatial size of ``target`` when the graph runs on a tiny grey image (None if it fails)."""
    tf = import_tf()
    image = np.full((1, _PROBE_SIZE, _PROBE_SIZE, 3), 128, dtype=inp.dtype.as_numpy_dtype)
    try:
        if session is not None:
            value = session.run(target, {inp: image})
        else:
            with new_session(graph=graph) as s:
                value = s.run(target, {inp: image})
    except tf.errors.OpError:
        return None
    return (int(value.shape[1]), int(value.shape[2])) if value.ndim == 4 else None


def inspect_graph(path: Path | str, *, input_tensor: str | None = None,
                  prediction_tensor: str | None = None) -> GraphInfo:
    """Load a frozen graph and describe it (tensors, classes, crop, output strides)."""
    graph_def = load_graph_def(path)
    graph = _import(graph_def, str(path))
    pattern, problem = crop_pattern(graph_def)
    return _analyse(graph_def, graph, str(path), input_tensor, prediction_tensor, pattern=pattern,
                    pattern_problem=problem)


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Prediction:
    """One image's result: labels (HxW int32) at the image's size; class scores (HxWxC float32) when asked.

    ``fitted_from``/``fitted_to`` are set when the image was larger than the graph's crop and was shrunk to
    fit it (the labels are then scaled back to the original size by nearest neighbour).
    """

    labels: np.ndarray
    scores: np.ndarray | None = None
    fitted_from: tuple[int, int] | None = None
    fitted_to: tuple[int, int] | None = None

    @property
    def fitted(self) -> bool:
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

    def __init__(self, source: Path | str | Any, *, intra_op_threads: int = 0, inter_op_threads: int = 0,
                 input_tensor: str | None = None, prediction_tensor: str | None = None) -> None:
        tf = import_tf()
        if isinstance(source, (str, os.PathLike)):
            self.path: Path | None = Path(source)
            graph_def = load_graph_def(self.path)
        else:  # an in-memory GraphDef (e.g. a re-targeted copy)
            self.path = None
            graph_def = source
        label = str(self.path) if self.path else "<GraphDef>"
        self.graph = _import(graph_def, label)
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=int(intra_op_threads),
                                          inter_op_parallelism_threads=int(inter_op_threads))
        self.intra_op_threads = int(intra_op_threads)
        self.inter_op_threads = int(inter_op_threads)
        self.session = new_session(config, graph=self.graph)
        # Where the graph keeps its crop (for multi-scale runs and the encoder's output stride), found once.
        self.crop_pattern, problem = crop_pattern(graph_def)
        self.info = _analyse(graph_def, self.graph, str(self.path) if self.path else None, input_tensor,
                             prediction_tensor, session=self.session, probe=False, pattern=self.crop_pattern,
                             pattern_problem=problem)
        del graph_def  # the imported graph holds what it needs
        self.input_tensor = self.graph.get_tensor_by_name(self.info.input_tensor)
        self.prediction_tensor = self.graph.get_tensor_by_name(self.info.prediction_tensor)
        self.scores_tensor = (self.graph.get_tensor_by_name(self.info.scores_tensor)
                              if self.info.scores_tensor else None)
        self._input_dtype = self.input_tensor.dtype.as_numpy_dtype
        # make_callable skips Session.run's per-call feed/fetch parsing.
        self._run_labels = self.session.make_callable(self.prediction_tensor, feed_list=[self.input_tensor])
        self._run_both = None
        self._lock = threading.Lock()
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
        return self.info.num_classes

    @property
    def crop_size(self) -> tuple[int, int] | None:
        return self.info.crop_size

    # -- running

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Bare run: feed a ``[1, H, W, 3]`` array as is, return the raw prediction ``[1, H, W]``."""
        return self._call(self._run_labels, batch)

    def _call(self, fn, batch):
        try:
            return fn(batch)
        except self._errors.OpError as exc:
            from zoo_cli.graph.tf_errors import tf_model_error

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

    __call__ = predict

    def predict_full(self, image: np.ndarray, *, scores: bool = False) -> Prediction:
        """Labels, and class scores when ``scores`` is true, cropped to the image (padding removed).

        An image larger than the graph's crop would fail inside the graph; it is shrunk to fit and the
        labels/scores are scaled back to the original size (``Prediction.fitted``).
        """
        batch, original, fed = self._prepare(image)
        score_map = None
        if scores:
            if self.scores_tensor is None:
                raise ModelError("this graph exposes no class scores (no ArgMax behind its prediction and no "
                                 f"{PROBABILITY_TENSOR}); multi-scale evaluation needs them")
            if self._run_both is None:
                with self._lock:
                    if self._run_both is None:
                        self._run_both = self.session.make_callable(
                            [self.prediction_tensor, self.scores_tensor], feed_list=[self.input_tensor])
            raw, raw_scores = self._call(self._run_both, batch)
            score_map = self._crop_scores(raw_scores, fed)
        else:
            raw = self._call(self._run_labels, batch)
        labels = np.asarray(raw[0])
        if labels.dtype != np.int32:
            labels = labels.astype(np.int32)
        fitted_from = fitted_to = None
        if fed != original:
            labels = resize_labels(labels, original)
            if score_map is not None:
                score_map = _resize_scores(score_map, original)
            fitted_from, fitted_to = original, fed
        return Prediction(labels, score_map, fitted_from, fitted_to)

    def predict_scores(self, image: np.ndarray) -> np.ndarray:
        """Class scores (HxWxC float32) of an image at its own size: probabilities or logits."""
        return self.predict_full(image, scores=True).scores  # type: ignore[return-value]

    def _crop_scores(self, raw: np.ndarray, fed: tuple[int, int]) -> np.ndarray:
        scores = raw[0]
        # Logits cover the whole padded crop; the image sits in its top-left corner.
        return np.ascontiguousarray(scores[: fed[0], : fed[1], :], dtype=np.float32)


def _resize_scores(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Scores are only ever scaled back after shrinking to fit; nearest keeps them consistent with the labels.
    return resize_labels(scores, size)


def open_model(path: Path | str, *, threads: int = 0, inter_threads: int = 0) -> FrozenGraphModel:
    """Convenience: a :class:`FrozenGraphModel` with the given intra/inter-op thread counts."""
    return FrozenGraphModel(path, intra_op_threads=threads, inter_op_threads=inter_threads)
