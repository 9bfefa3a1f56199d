"""Re-target a DeepLab frozen graph to another static crop (the crop pattern is :mod:`zoo_cli.graph.crop_pattern`'s).

:func:`retarget` rewrites every place the crop pattern names for a new crop (pad target, final resize size,
image-pooling kernels, static resize sizes, atrous paddings/crops) and checks the result with TensorFlow's
static shape inference; anything that does not fit is a :class:`~zoo_cli.errors.ModelError` that says what.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo_cli.errors import ModelError
from zoo_cli.graph.crop_pattern import CropPattern, analyse, not_retargetable
from zoo_cli.graph.geometry import required_paddings, stride_between
from zoo_cli.graph.graphdef import (
    GraphIndex,
    copy_graph_def,
    data_inputs,
    node_of,
    set_const,
    spatial_size,
    static_shapes,
    tensor_name,
)
from zoo_cli.graph.tf_import import import_tf


def _map_size(old_crop: int, old: int, new_crop: int) -> int:
    if old == 1:
        return 1
    k = stride_between(old_crop, old)
    if k is None:
        raise not_retargetable(f"a crop-dependent size {old} is not the {old_crop} crop at any output stride")
    return (new_crop - 1) // k + 1


def retarget(graph_def: Any, crop: tuple[int, int] | int, pattern: CropPattern | None = None,
             scale: float = 1.0) -> Any:
    """A copy of ``graph_def`` rebuilt for the static ``crop`` (H, W); the original is left untouched.

    ``scale`` is the multi-scale factor the crop comes from: research/deeplab's ``multi_scale_logits`` scales
    ``image_pooling_crop_size`` with the image, so a fixed-window image pooling (MobileNet-v3) gets the window
    of ``scale_dimension(image_pooling_crop_size, scale)``; a plain crop change (``scale`` 1) keeps it.

    The result pads to the new crop, pools over the new feature size, resizes to the new sizes and its
    atrous convs use paddings/crops computed for the new feature sizes; TensorFlow's static shape inference
    checks it. ``_output_shapes`` attributes (stale after the rewrite) are dropped.
    """
    if isinstance(crop, (int, np.integer)):
        crop = (int(crop), int(crop))
    crop = (int(crop[0]), int(crop[1]))
    pattern = pattern or analyse(graph_def)
    old = pattern.crop
    min_side = max(pattern.logits_stride) + 1
    if min(crop) < min_side:
        raise ModelError(f"crop {crop[0]}x{crop[1]} is too small for this graph (at least {min_side} per side)")
    g = GraphIndex(graph_def)
    out = copy_graph_def(graph_def)
    nodes = {n.name: n for n in out.node}

    def new_size(ref_hw: tuple[int, int]) -> tuple[int, int]:
        return (_map_size(old[0], ref_hw[0], crop[0]), _map_size(old[1], ref_hw[1], crop[1]))

    set_const(out, pattern.pad_height_const, crop[0])
    set_const(out, pattern.pad_width_const, crop[1])
    if scale != 1.0:
        for name in pattern.image_pools:
            _scale_pool_window(nodes[name], pattern, scale)
    if pattern.shape_const is not None:
        v = g.const_value(pattern.shape_const).reshape(-1).copy()
        if len(v) == 4:
            v[1], v[2] = crop
        elif len(v) == 3:
            v[0], v[1] = crop
        else:
            v[:] = crop
        set_const(out, pattern.shape_const, v.reshape(g.const_value(pattern.shape_const).shape))

    # First guess of every crop-dependent size from the stride it has at the old crop.
    targets: dict[str, tuple[int, int]] = {}
    for name in pattern.avg_pools:
        targets[name] = new_size(pattern.spatial[tensor_name(g.nodes[name].input[0])])
    for name in pattern.resizes:
        targets[name] = new_size(tuple(int(x) for x in g.const_value(g.nodes[name].input[1])))
    for s2b_name, _ in pattern.atrous:
        targets[s2b_name] = new_size(pattern.spatial[tensor_name(g.nodes[s2b_name].input[0])])

    for _round in range(4):
        _apply(out, nodes, g, pattern, targets)
        check = _verify(out, pattern, crop, g)
        wrong = {k: v for k, v in check.items() if targets.get(k) != v}
        if not wrong:
            break
        targets.update(wrong)
    else:
        raise ModelError(f"re-targeting to {crop[0]}x{crop[1]} did not settle; the graph's crop-dependent sizes "
                         "do not follow the DeepLab pattern")
    for n in out.node:
        if "_output_shapes" in n.attr:
            del n.attr["_output_shapes"]
    return out


def _scale_pool_window(node: Any, pattern: CropPattern, scale: float) -> None:
    """The window of a fixed-window image pooling at ``scale``: the reference pools
    ``scale_dimension(scale_dimension(image_pooling_crop_size, scale), 1 / OS)``; the crop size is
    ``(k - 1) * OS + 1`` for the window ``k`` at stride ``OS`` (the zoo's 769 -> 25 at OS 32)."""
    src = pattern.spatial[tensor_name(node.input[0])]
    ksize = list(node.attr["ksize"].list.i)
    new = []
    for i, (full, size) in enumerate(zip(pattern.crop, src)):
        stride = stride_between(full, size)
        if stride is None:
            raise not_retargetable(f"the image pooling {node.name} reads a feature map of no output stride")
        pool_crop = (ksize[1 + i] - 1) * stride + 1
        new.append(int((int((pool_crop - 1) * scale + 1) - 1) / stride + 1))
    node.attr["ksize"].list.i[:] = [1, new[0], new[1], 1]


def _apply(out: Any, nodes: dict, g: GraphIndex, pattern: CropPattern, targets: dict) -> None:
    for name in pattern.avg_pools:
        node = nodes[name]
        h, w = targets[name]
        old_k = list(node.attr["ksize"].list.i)
        old_s = list(node.attr["strides"].list.i)
        node.attr["ksize"].list.i[:] = [1, h, w, 1]
        if old_s == old_k:  # slim.avg_pool2d(features, [ph, pw], [ph, pw]) exports
            node.attr["strides"].list.i[:] = [1, h, w, 1]
    for name in pattern.resizes:
        _set_input_const(out, nodes, g, name, 1, np.array(targets[name], np.int32))
    for s2b_name, b2s_name in pattern.atrous:
        s2b, b2s = g.nodes[s2b_name], g.nodes[b2s_name]
        block = g.const_value(s2b.input[1]).reshape(-1)
        pads = g.const_value(s2b.input[2])
        crops = g.const_value(b2s.input[2])
        if np.any(crops[:, 0] != 0):
            raise not_retargetable(f"atrous conv {s2b_name} crops at the start")
        new_p, new_c = [], []
        for i, size in enumerate(targets[s2b_name]):
            base = (int(pads[i, 0]), int(pads[i, 1] - crops[i, 1]))
            p, c = required_paddings(size, base, int(block[i]))
            new_p.append(p)
            new_c.append(c)
        _set_input_const(out, nodes, g, s2b_name, 2, np.array(new_p, pads.dtype))
        _set_input_const(out, nodes, g, b2s_name, 2, np.array(new_c, crops.dtype))


def _set_input_const(out: Any, nodes: dict, g: GraphIndex, consumer: str, index: int, value: np.ndarray) -> None:
    """Give input ``index`` of ``consumer`` the Const ``value``: in place when only it reads the Const,
    else through a fresh Const (so another reader keeps the old value)."""
    tf = import_tf()
    node = nodes[consumer]
    src = node_of(node.input[index])
    readers = {c.name for c in g.consumers.get(src, [])}
    if readers == {consumer} or src.endswith("/zoo_retarget"):
        set_const(out, src, value)
        return
    fresh = f"{consumer}/input{index}/zoo_retarget"
    if fresh not in nodes:
        c = out.node.add()
        c.name, c.op = fresh, "Const"
        c.attr["dtype"].type = tf.dtypes.as_dtype(value.dtype).as_datatype_enum
        nodes[fresh] = c
    set_const(out, fresh, value)
    node.input[index] = fresh


def _verify(out: Any, pattern: CropPattern, crop: tuple[int, int], g: GraphIndex) -> dict[str, tuple[int, int]]:
    """The sizes each crop-dependent node needs, from TF's shape inference of the rewritten graph."""
    names = set()
    for name in pattern.avg_pools:
        names.add(tensor_name(g.nodes[name].input[0]))
    for s2b_name, _ in pattern.atrous:
        names.add(tensor_name(g.nodes[s2b_name].input[0]))
    sib = {}
    for name in pattern.resizes:
        names.add(tensor_name(g.nodes[name].input[0]))
        for c in g.consumers.get(name, []):
            if c.op in ("ConcatV2", "Concat"):
                others = [tensor_name(x) for x in data_inputs(c) if node_of(x) != name
                          and g.producer(x) is not None and g.producer(x).op != "Const"]
                sib[name] = others
                names.update(others)
    names.add(pattern.logits)
    feed_shape = [1, crop[0], crop[1], 3] if pattern.padded_rank == 4 else [crop[0], crop[1], 3]
    shapes = static_shapes(out, pattern.padded_image, feed_shape, names)
    need: dict[str, tuple[int, int]] = {}
    for name in pattern.avg_pools:
        hw = spatial_size(shapes[tensor_name(g.nodes[name].input[0])])
        if hw is None:
            raise ModelError(f"re-targeting to {crop[0]}x{crop[1]}: the input of {name} has no static size")
        need[name] = hw
    for s2b_name, _ in pattern.atrous:
        hw = spatial_size(shapes[tensor_name(g.nodes[s2b_name].input[0])])
        if hw is None:
            raise ModelError(f"re-targeting to {crop[0]}x{crop[1]}: the input of {s2b_name} has no static size")
        need[s2b_name] = hw
    for name in pattern.resizes:
        old_size = tuple(int(x) for x in g.const_value(g.nodes[name].input[1]))
        ref = next((spatial_size(shapes[s]) for s in sib.get(name, []) if spatial_size(shapes[s]) is not None), None)
        if ref is None and old_size == pattern.spatial.get(tensor_name(g.nodes[name].input[0])):
            ref = spatial_size(shapes[tensor_name(g.nodes[name].input[0])])  # a no-op resize stays a no-op
        if ref is not None:
            need[name] = ref
    if spatial_size(shapes[pattern.logits]) is None:
        raise ModelError(f"re-targeting to {crop[0]}x{crop[1]}: the logits have no static size")
    return need


def retarget_or_none(graph_def: Any, crop: tuple[int, int], pattern: CropPattern,
                     scale: float = 1.0) -> tuple[Any, str | None]:
    """``(graph, None)`` or ``(None, reason)``: for callers that report skipped scales instead of failing."""
    try:
        return retarget(graph_def, crop, pattern, scale), None
    except ModelError as exc:
        return None, str(exc)
