"""What a DeepLab frozen graph takes and returns, found structurally: :class:`GraphInfo`, :func:`inspect_graph`.

A DeepLab ``frozen_inference_graph.pb`` (export_model.py of research/deeplab) takes ``ImageTensor:0``, a uint8
``[1, H, W, 3]`` image, pads it to a crop baked into the graph (e.g. 513x513) with the mean pixel, runs the
network on the padded crop, resizes the logits to the full crop (``ResizeBilinear``), takes the ``ArgMax``,
slices the prediction back to the input size and returns ``SemanticPredictions:0`` (int32, or int64 in early
exports). Newer exports also return ``SemanticProbabilities:0``.

:func:`describe_graph` finds all of this by structure (class scores are the float tensor feeding the final
ArgMax, found by walking back from the prediction, not by name); the crop, logits size and strides come from
static shapes, constant subgraphs or, failing both, a run on a tiny image. ``zoo info --inspect`` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo_cli.constants import INPUT_TENSOR, PREDICTION_TENSOR, PROBABILITY_TENSOR
from zoo_cli.errors import ModelError
from zoo_cli.graph.crop_pattern import CropPattern, analyse_or_none
from zoo_cli.graph.geometry import stride_ratio
from zoo_cli.graph.graphdef import RESIZE_OPS, GraphIndex, data_inputs, spatial_size, tensor_name
from zoo_cli.graph.loading import import_graph, load_graph_def
from zoo_cli.graph.tf_import import import_tf, new_session


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

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (tuples as lists), as ``zoo info --inspect --json`` prints them."""
        data = asdict(self)
        for key in ("input_shape", "crop_size", "logits_size", "image_pooling_kernel"):
            if data[key] is not None:
                data[key] = list(data[key])
        data["notes"] = list(self.notes)
        return data


def _static_hw(shape) -> tuple[int, int] | None:
    """(H, W) of a static rank-4 TensorShape, else None."""
    dims = shape.as_list() if shape.rank is not None else None
    return spatial_size(dims) if dims is not None and len(dims) == 4 else None


def describe_graph(graph_def: Any, graph: Any, source: str | None, input_name: str | None = None,
                   prediction_name: str | None = None, *, session: Any = None, probe: bool = True,
                   pattern: CropPattern | None = None, pattern_problem: str | None = None) -> GraphInfo:
    """The :class:`GraphInfo` of ``graph_def`` imported as ``graph``: tensors found by name (default the
    export's), the rest by structure. ``session`` (on ``graph``) is reused for the runs that read sizes;
    ``probe`` allows a run on a tiny image when the logits size is not static; ``pattern`` /
    ``pattern_problem`` are :func:`~zoo_cli.graph.crop_pattern.analyse_or_none`'s result."""
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


def _image_pooling_kernel(walker: GraphIndex) -> tuple[int, int] | None:
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


def _probe_hw(graph: Any, inp: Any, target: Any, session: Any) -> tuple[int, int] | None:
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
    graph = import_graph(graph_def, str(path))
    pattern, problem = analyse_or_none(graph_def)
    return describe_graph(graph_def, graph, str(path), input_tensor, prediction_tensor, pattern=pattern,
                          pattern_problem=problem)
