"""Where a DeepLab frozen graph keeps its crop: :func:`analyse` finds it, :class:`CropPattern` holds it.

The zoo's ``frozen_inference_graph.pb`` files bake their eval crop (e.g. 513x513) into the graph: the pad
target scalars, the ``[1, 513, 513, 3]`` Const that sizes the final logits resize, the image-pooling
``AvgPool`` kernel (and strides in some exports), the Const sizes of the image-pooling / decoder / logits
resizes, and the ``SpaceToBatchND`` paddings / ``BatchToSpaceND`` crops of every atrous conv. An input larger
than the crop fails inside the graph, so scales above 1.0 cannot simply be fed.

:func:`analyse` finds those places structurally (op types and wiring, never node names): the Placeholder,
the ``ArgMax`` behind ``SemanticPredictions``, the resize feeding it (its input is the feature-resolution
logits), the ``Pad`` of the input and the scalar Consts that set its target (classified by probing the
padding subgraph), the float padded image (the feed point for already padded/scaled images), the global
``AvgPool`` nodes, the Const-size resizes and the SpaceToBatchND/BatchToSpaceND pairs, and the encoder's
output stride. A graph with no crop baked in but that runs any image size is described by
:func:`analyse_dynamic` instead. Anything that does not fit the pattern is a
:class:`~zoo_cli.errors.ModelError` that says what was not found.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from zoo_cli.constants import INPUT_NAME, MEAN_PIXEL, OUTPUT_NAME
from zoo_cli.errors import ModelError
from zoo_cli.graph.geometry import stride_between
from zoo_cli.graph.graphdef import (
    PAD_OPS,
    PLACEHOLDER_OPS,
    RESIZE_OPS,
    GraphIndex,
    copy_graph_def,
    data_inputs,
    node_of,
    run_subgraph,
    set_const,
    spatial_size,
    static_shapes,
    tensor_name,
)
from zoo_cli.graph.tf_import import import_tf


@dataclass(frozen=True)
class CropPattern:
    """Where a frozen graph keeps its crop, found by :func:`analyse`."""

    crop: tuple[int, int]
    input_tensor: str
    padded_image: str  # float padded image (pixel values 0..255, pad 127.5): feed scaled crops here
    padded_rank: int
    logits: str  # feature-resolution logits: input of the final resize that feeds ArgMax
    logits_size: tuple[int, int]
    logits_stride: tuple[int, int]  # (crop - 1) // stride + 1 == logits size, per side
    upsampled_logits: str
    argmax: str
    num_classes: int
    pad_height_const: str
    pad_width_const: str
    shape_const: str | None  # the [1, h, w, 3] (or [h, w]) Const sizing the final resize; None if dynamic
    avg_pools: tuple[str, ...]  # global image pooling (kernel = the feature map at the crop)
    resizes: tuple[str, ...]
    atrous: tuple[tuple[str, str], ...]  # (SpaceToBatchND, BatchToSpaceND) node names
    # Image pooling over a fixed window (image_pooling_crop_size), resized back to the feature size.
    image_pools: tuple[str, ...] = ()
    # The encoder's output stride (the seed's "Eval OS"): the coarsest feature map on the way from the image
    # to the logits, outside image pooling and atrous space-to-batch. With a decoder the logits stride is finer.
    encoder_stride: int = 0
    spatial: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def decoder_stride(self) -> int | None:
        """The decoder's output stride (the logits' stride when finer than the encoder's), else None."""
        stride = max(self.logits_stride)
        return stride if stride < self.encoder_stride else None

    def logits_size_at(self, crop: tuple[int, int], scale: float = 1.0) -> tuple[int, int]:
        """Feature-resolution logits size of ``crop`` scaled by ``scale`` (the reference's scale_dimension)."""
        return (int((crop[0] - 1) * scale / self.logits_stride[0] + 1),
                int((crop[1] - 1) * scale / self.logits_stride[1] + 1))


def not_retargetable(what: str) -> ModelError:
    """The ModelError for a graph without the crop pattern (or a part of it that cannot be re-targeted)."""
    return ModelError(f"cannot re-target this graph: {what}; it does not have the DeepLab export_model.py "
                      "pattern, so only its own crop can be used (single scale, images up to that crop)")


def analyse(graph_def: Any) -> CropPattern:
    """Find where ``graph_def`` keeps its crop; a graph without the DeepLab pattern is a ModelError."""
    tf = import_tf()
    g = GraphIndex(graph_def)
    placeholders = [n for n in graph_def.node if n.op in PLACEHOLDER_OPS]
    inp = g.nodes.get(INPUT_NAME) or (placeholders[0] if len(placeholders) == 1 else None)
    if inp is None or inp.op not in PLACEHOLDER_OPS:
        raise not_retargetable(f"no input placeholder '{INPUT_NAME}'")
    pred = g.nodes.get(OUTPUT_NAME)
    if pred is None:
        raise not_retargetable(f"no output '{OUTPUT_NAME}'")

    # The ArgMax behind the prediction, and the resize feeding it.
    argmax = None
    queue, seen = deque([pred.name]), set()
    while queue and len(seen) < 64:
        node = g.nodes[queue.popleft()]
        seen.add(node.name)
        if node.op == "ArgMax":
            argmax = node
            break
        queue.extend(node_of(r) for r in data_inputs(node) if node_of(r) not in seen)
    if argmax is None:
        raise not_retargetable(f"no ArgMax behind {OUTPUT_NAME}")
    final = g.producer(argmax.input[0])
    while final is not None and final.op == "Identity":
        final = g.producer(final.input[0])
    if final is None or final.op not in RESIZE_OPS:
        raise not_retargetable("the ArgMax is not fed by a resize of the logits")
    logits = tensor_name(final.input[0])
    size_ref = final.input[1]
    size_ancestors = g.ancestors([size_ref])
    dynamic_size = any(g.nodes[a].op in PLACEHOLDER_OPS for a in size_ancestors)

    # Pad of the input image and the scalar Consts that set its target.
    downstream = g.descendants(inp.name)
    logits_anc = g.ancestors([logits])
    pads = [n for n in graph_def.node if n.op in PAD_OPS and n.name in downstream and n.name in logits_anc]
    if not pads:
        raise not_retargetable("no Pad of the input image (pad to the crop)")
    pad = min(pads, key=lambda n: len(g.ancestors([n.input[0]])))
    pad_anc = g.ancestors([pad.input[1]])
    int_types = (tf.int32.as_datatype_enum, tf.int64.as_datatype_enum)
    candidates = [g.nodes[a] for a in pad_anc if g.nodes[a].op == "Const"
                  and g.nodes[a].attr["dtype"].type in int_types
                  and not g.nodes[a].attr["value"].tensor.tensor_shape.dim]
    candidates = [c for c in candidates if int(g.const_value(c.name)) > 1]
    pad_h, pad_w, _ = _classify_pad_consts(graph_def, g, inp, pad, candidates)
    crop = (int(g.const_value(pad_h)), int(g.const_value(pad_w)))

    # The float padded image (pixel values 0..255, padding 127.5): the feed point for scaled crops. The
    # exports wire it in several ways (tf.pad of x - mean on a 3-D image via ExpandDims -> Pad -> Squeeze ->
    # AddV2(mean) -> ExpandDims, or padding of a 4-D image, or Pad with the mean as constant value), so the
    # tensor is picked by its value, never by its shape in the wiring: the chain after the Pad is run on a
    # probe image and the last tensor holding exactly the padded image (before any normalisation) is taken.
    padded, rank = _padded_image_tensor(graph_def, g, inp, pad, crop)
    feed = g.producer(padded)

    # Static shapes of everything at the graph's own crop (feeding the padded image with a static shape).
    region = logits_anc & g.descendants(feed.name)
    avg = [g.nodes[n] for n in region if g.nodes[n].op in ("AvgPool",)]
    resizes = [g.nodes[n] for n in region if g.nodes[n].op in RESIZE_OPS and n != final.name]
    s2b = [g.nodes[n] for n in region if g.nodes[n].op == "SpaceToBatchND"]
    names = {logits, tensor_name(final.name)}
    names.update(tensor_name(n.input[0]) for n in avg + resizes + s2b)
    names.update(tensor_name(n.name) for n in resizes)
    concat_inputs = {}
    for r in resizes:
        for c in g.consumers.get(r.name, []):
            if c.op in ("ConcatV2", "Concat"):
                sibs = [tensor_name(x) for x in data_inputs(c) if node_of(x) != r.name
                        and g.producer(x) is not None and g.producer(x).op != "Const"]
                concat_inputs[r.name] = sibs
                names.update(sibs)
    main_path = _encoder_path(g, feed.name, logits_anc, s2b)
    names.update(tensor_name(n) for n in main_path)
    feed_shape = [1, crop[0], crop[1], 3] if rank == 4 else [crop[0], crop[1], 3]
    shapes = static_shapes(graph_def, padded, feed_shape, names)
    spatial = {k: spatial_size(v) for k, v in shapes.items() if spatial_size(v) is not None}
    encoder_stride = _coarsest_stride(crop, [shapes[tensor_name(n)] for n in main_path])

    logit_shape = shapes.get(logits)
    if not logit_shape or spatial_size(logit_shape) is None or logit_shape[-1] is None:
        raise not_retargetable("the logits have no static shape at the graph's own crop")
    logits_size = spatial_size(logit_shape)
    strides = (stride_between(crop[0], logits_size[0]), stride_between(crop[1], logits_size[1]))
    if None in strides:
        raise not_retargetable(f"logits of {logits_size} are not the crop {crop} at an output stride")

    global_pools = []
    image_pools = []
    for n in avg:
        ksize = list(n.attr["ksize"].list.i)
        if n.attr["data_format"].s not in (b"", b"NHWC"):
            raise not_retargetable(f"AvgPool {n.name} is not NHWC")
        src = spatial.get(tensor_name(n.input[0]))
        if src == (ksize[1], ksize[2]):
            global_pools.append(n.name)
        elif src is not None and min(ksize[1], ksize[2]) > 1 and any(
                spatial.get(tensor_name(r.name)) == src and n.name in g.ancestors([r.name]) for r in resizes):
            # Image pooling over a window set by image_pooling_crop_size (MobileNet-v3): pooled, then resized
            # back to the feature size. Its window follows the scale in multi-scale runs, not the crop.
            image_pools.append(n.name)

    shape_const = None
    if not dynamic_size:
        consts = [g.nodes[a] for a in size_ancestors if g.nodes[a].op == "Const"
                  and g.nodes[a].attr["dtype"].type in int_types]
        for c in consts:
            v = g.const_value(c.name).reshape(-1).tolist()
            if (len(v) == 4 and (v[1], v[2]) == crop) or (len(v) == 3 and (v[0], v[1]) == crop) or \
                    (len(v) == 2 and tuple(v) == crop):
                shape_const = c.name
        if shape_const is None:
            raise not_retargetable(f"the final logits resize is sized by no Const holding the crop {crop}")

    atrous = []
    for n in s2b:
        b2s = g.matching_batch_to_space(n)
        if b2s is None:
            raise not_retargetable(f"SpaceToBatchND {n.name} has no matching BatchToSpaceND")
        for ref in (n.input[1], n.input[2], b2s.input[1], b2s.input[2]):
            if g.const_value(ref) is None:
                raise not_retargetable(f"atrous conv {n.name} has non-constant block shape / paddings / crops")
        atrous.append((n.name, b2s.name))

    for r in resizes:
        if g.const_value(r.input[1]) is None:
            raise not_retargetable(f"resize {r.name} has a computed size")

    spatial = dict(spatial)
    for name, sibs in concat_inputs.items():
        spatial[f"siblings:{name}"] = next((spatial[s] for s in sibs if s in spatial), None)
    if encoder_stride is None or encoder_stride < max(strides):
        encoder_stride = max(strides)
    return CropPattern(
        crop=crop, input_tensor=tensor_name(inp.name), padded_image=padded, padded_rank=rank, logits=logits,
        logits_size=logits_size, logits_stride=(int(strides[0]), int(strides[1])),
        upsampled_logits=tensor_name(final.name), argmax=argmax.name, num_classes=int(logit_shape[-1]),
        pad_height_const=pad_h, pad_width_const=pad_w, shape_const=shape_const,
        avg_pools=tuple(sorted(global_pools)), image_pools=tuple(sorted(image_pools)), resizes=tuple(sorted(r.name for r in resizes)),
        atrous=tuple(sorted(atrous)), encoder_stride=int(encoder_stride), spatial=spatial,
    )


@dataclass(frozen=True)
class DynamicPattern:
    """A graph with no baked crop: it runs an image at its own size (no Pad to a constant crop)."""

    input_tensor: str
    float_input: str  # the image cast to float (pixel values): scaled float images are fed here
    float_rank: int
    logits: str  # the class scores the ArgMax reads, before any resize to the input's size
    num_classes: int
    crop: None = None


def analyse_dynamic(graph_def: Any) -> DynamicPattern:
    """The feed and logits of a graph that has no crop pattern but runs any image size as it is; a graph that
    has neither is a ModelError."""
    tf = import_tf()
    g = GraphIndex(graph_def)
    placeholders = [n for n in graph_def.node if n.op in PLACEHOLDER_OPS]
    inp = g.nodes.get(INPUT_NAME) or (placeholders[0] if len(placeholders) == 1 else None)
    pred = g.nodes.get(OUTPUT_NAME)
    if inp is None or inp.op not in PLACEHOLDER_OPS or pred is None:
        raise not_retargetable(f"no input placeholder '{INPUT_NAME}' or output '{OUTPUT_NAME}'")
    argmax = next((g.nodes[n] for n in sorted(g.ancestors([pred.name])) if g.nodes[n].op == "ArgMax"), None)
    if argmax is None:
        raise not_retargetable(f"no ArgMax behind {OUTPUT_NAME}")
    logits_node = g.producer(argmax.input[0])
    while logits_node is not None and logits_node.op == "Identity":
        logits_node = g.producer(logits_node.input[0])
    if logits_node is not None and logits_node.op in RESIZE_OPS:
        logits_node = g.producer(logits_node.input[0])
    logits = tensor_name(logits_node.name)
    # The float image: the first float tensor on the input's single-consumer chain, checked by value.
    cur, found = inp, None
    dtype = tf.dtypes.as_dtype(inp.attr["dtype"].type).as_numpy_dtype
    probe = (np.random.RandomState(1).rand(1, 5, 7, 3) * 255).astype(dtype)
    for _ in range(4):
        cons = [c for c in g.consumers.get(cur.name, []) if c.op in ("Cast", "Squeeze", "ExpandDims", "Identity",
                                                                      "Reshape")]
        if len(cons) != 1:
            break
        cur = cons[0]
        if cur.op == "Cast":
            value = run_subgraph(graph_def, tensor_name(cur.name), {tensor_name(inp.name): probe})
            image = value[0] if value.ndim == 4 else value
            if value.dtype.kind == "f" and image.shape == probe.shape[1:] and np.array_equal(image, probe[0]):
                found = (tensor_name(cur.name), value.ndim)
            break
    if found is None:
        raise not_retargetable("no Pad of the input image (pad to the crop), and no float cast of the input to feed")
    try:
        value = run_subgraph(graph_def, logits, {tensor_name(inp.name): probe})
    except Exception as exc:  # noqa: BLE001
        raise not_retargetable(f"the logits cannot be computed on a small image ({type(exc).__name__})") from None
    if value.ndim != 4:
        raise not_retargetable("the ArgMax does not read 4-D class scores")
    if value.shape[1] > probe.shape[1] or value.shape[2] > probe.shape[2]:
        raise not_retargetable("the graph pads its input to a crop, but the crop pattern was not found")
    return DynamicPattern(input_tensor=tensor_name(inp.name), float_input=found[0], float_rank=found[1],
                          logits=logits, num_classes=int(value.shape[-1]))


# Ops that end the encoder's main path: image pooling (global or strided) and squeeze-and-excitation pool
# the feature map; what they feed is reached again through the main path where it matters.
_POOL_OPS = ("AvgPool", "MaxPool", "Mean", "Max")


def _encoder_path(g: GraphIndex, start: str, logits_anc: set[str], s2b: list[Any]) -> list[str]:
    """Nodes from the padded image to the logits that carry the feature map at its own resolution: not
    behind a pooling op, not between a SpaceToBatchND and its BatchToSpaceND (which fold space into batch)."""
    inside: set[str] = set()
    for node in s2b:
        b2s = g.matching_batch_to_space(node)
        if b2s is not None:
            inside |= (g.descendants(node.name) & g.ancestors([b2s.name])) - {b2s.name}
    seen = g.descendants(start, within=logits_anc, stop_ops=_POOL_OPS)
    return sorted(n for n in seen - inside if g.nodes[n].op not in _POOL_OPS + ("Const",) and n in logits_anc)


def _coarsest_stride(crop: tuple[int, int], shapes: Iterable[list | None]) -> int | None:
    """The largest output stride among 4-D feature maps of ``crop`` (None when none has a static size)."""
    best = None
    for shape in shapes:
        if not shape or len(shape) != 4 or shape[1] is None or shape[2] is None or shape[1] < 2:
            continue
        k = stride_between(crop[0], int(shape[1])), stride_between(crop[1], int(shape[2]))
        if None in k or k[0] != k[1]:
            continue
        best = k[0] if best is None else max(best, k[0])
    return best


# Ops that may stand between the Pad of the input and the padded image the network reads (shape changes
# and the add-back of the mean).
_PAD_CHAIN_OPS = ("Squeeze", "ExpandDims", "Reshape", "Identity", "Add", "AddV2", "Sub", "Cast")


def _padded_image_tensor(graph_def: Any, g: GraphIndex, inp: Any, pad: Any, crop: tuple[int, int]) -> tuple[str, int]:
    """The tensor downstream of ``pad`` that holds the padded image in pixel units, and its rank.

    A probe image smaller than the crop is run through the preprocessing; a candidate must equal the image
    in its top-left corner and the mean pixel elsewhere. Graphs whose chain matches nowhere are refused:
    feeding the wrong tensor (e.g. ``x - 127.5``) would silently shift every pixel of every scaled run.
    """
    chain = [pad]
    cur = pad
    for _ in range(8):
        cons = g.consumers.get(cur.name, [])
        data_cons = [c for c in cons if any(node_of(r) == cur.name for r in data_inputs(c))]
        if len(data_cons) != 1 or data_cons[0].op not in _PAD_CHAIN_OPS:
            break
        nxt = data_cons[0]
        others = [r for r in data_inputs(nxt) if node_of(r) != cur.name]
        if any(g.nodes[a].op in PLACEHOLDER_OPS for a in g.ancestors(others)):
            break
        chain.append(nxt)
        cur = nxt
    tf = import_tf()
    dtype = tf.dtypes.as_dtype(inp.attr["dtype"].type).as_numpy_dtype
    h, w = max(1, min(5, crop[0] - 1)), max(1, min(7, crop[1] - 1))
    probe = (np.random.RandomState(0).rand(1, h, w, 3) * 255).astype(dtype)
    want = np.full((crop[0], crop[1], 3), MEAN_PIXEL, np.float64)
    want[:h, :w] = probe[0]
    feeds = {tensor_name(inp.name): probe}
    found: tuple[str, int] | None = None
    for node in chain:
        ref = tensor_name(node.name)
        try:
            value = run_subgraph(graph_def, ref, feeds)
        except Exception:  # noqa: BLE001 - a chain member that cannot run alone is simply not the feed point
            continue
        if value.dtype.kind != "f" or value.ndim not in (3, 4):
            continue
        image = value[0] if value.ndim == 4 and value.shape[0] == 1 else value
        if image.shape == want.shape and np.allclose(image, want, atol=1e-3):
            found = (ref, value.ndim)
    if found is None:
        raise not_retargetable("no tensor after the input's Pad holds the padded image (pixel values, mean-pixel padding)")
    return found


def _classify_pad_consts(graph_def: Any, g: GraphIndex, inp: Any, pad: Any, candidates: list) -> tuple[str, str, int]:
    """Which scalar Const sets the pad target height and which the width (probing the padding subgraph),
    and the rank of the padded image."""
    if not candidates:
        raise not_retargetable("no scalar Const sets the pad target (the crop)")
    tf = import_tf()
    dtype = tf.dtypes.as_dtype(inp.attr["dtype"].type).as_numpy_dtype
    image = np.zeros((1, 1, 2, 3), dtype)  # 1x2 so height and width paddings differ
    feeds = {tensor_name(inp.name): image}
    try:
        base = run_subgraph(graph_def, pad.input[1], feeds)
    except Exception as exc:  # any failure here means the pattern is not what we expect
        raise not_retargetable(f"the pad target cannot be evaluated ({type(exc).__name__})") from None
    if base.ndim != 2 or base.shape[1] != 2 or base.shape[0] not in (3, 4):
        raise not_retargetable("the input padding is not a [3|4, 2] paddings tensor")
    row_h = base.shape[0] - 3
    height = width = None
    for c in candidates:
        probe = copy_graph_def(graph_def)
        set_const(probe, c.name, g.const_value(c.name) + 1000)
        diff = run_subgraph(probe, pad.input[1], feeds) - base
        if diff[row_h, 1] == 1000 and not diff[row_h + 1].any():
            height = c.name if height is None else _ambiguous(height, c.name)
        elif diff[row_h + 1, 1] == 1000 and not diff[row_h].any():
            width = c.name if width is None else _ambiguous(width, c.name)
    if height is None or width is None:
        raise not_retargetable("no scalar Consts set the pad target height and width")
    return height, width, int(base.shape[0])


def _ambiguous(a: str, b: str) -> str:
    raise not_retargetable(f"two Consts ({a}, {b}) both set one side of the pad target")


def analyse_or_none(graph_def: Any) -> tuple[CropPattern | None, str | None]:
    """``(pattern, None)`` when the graph has the export's crop pattern, else ``(None, why not)``."""
    try:
        return analyse(graph_def), None
    except ModelError as exc:
        return None, str(exc)
