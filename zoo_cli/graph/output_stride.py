"""Run a DeepLab frozen graph at another output stride by rewriting its strides and atrous rates in memory.

DeepLab evaluates one set of weights at either output stride (OS): research/slim's ``mobilenet.py`` and
research/deeplab's ``core/xception.py`` turn ``output_stride`` into strides and rates the same way. Once the
running stride reaches the OS, a layer that would stride by 2 runs at stride 1 and every later atrous rate
doubles (ASPP and dense-prediction-cell rates are given for the OS, so they double too). Everything that
depends on it is visible in the frozen GraphDef: Conv2D / DepthwiseConv2dNative strides, the
SpaceToBatchND / BatchToSpaceND pairs of atrous convs (block shape = rate, paddings/crops from the feature
size), Xception's explicit ``Pad`` before a strided conv (``fixed_padding``), the kernels of AvgPools over
the feature map and the static sizes of resizes back to it. The weights stay as they are.

One step doubles or halves the encoder's output stride; :func:`rewrite_output_stride` chains steps.

*Coarser* (e.g. OS 8 -> 16): the atrous convs after the encoder's last real stride have rates >= 2. The
feature maps that feed them (and everything after) are "late"; lateness also spreads upstream through ops
that keep the resolution (batch norm, activations, adds, 1x1 convs) until a conv whose other inputs are
early. The late convs reading an early tensor are where the reference strides (MobileNet's depthwise, an
Xception unit's last separable conv and its 1x1 shortcut): they get stride 2 (padded as the graph pads its
other strided convs: SAME, or an explicit ``Pad`` + VALID), every late rate halves (a rate that reaches 1
is unwrapped to a plain SAME conv) and late pools / resizes take the new feature size.

*Finer* (e.g. OS 16 -> 8): the stride-2 convs that produce the encoder's coarsest feature map run at stride
1 (their ``Pad`` removed, SAME), every later atrous rate doubles and every later k x k conv of rate 1 is
wrapped into a rate-2 SpaceToBatchND / conv (VALID) / BatchToSpaceND, as ``tf.nn.atrous_conv2d`` writes it.
slim also wraps a plain 1x1 ``conv2d`` layer of MobileNet (``Conv_1``) that runs after the stride; that layer
is recognised as the 1x1 conv whose output is pooled by the head and that is fed by no depthwise conv; the
wrap does not change its values, only its Multiply-Adds.

Pools that are not global (MobileNet-v3's LR-ASPP pools ``image_pooling_crop_size`` at the OS) are assumed
to have been sized from a crop of the form ``n * OS + 1`` (DeepLab's crops are): kernel ``k`` at OS ``E``
becomes ``(k - 1) * E // T + 1`` at OS ``T``.

Anything that does not fit is a :class:`~zoo_cli.errors.ModelError` naming what could not be mapped; the
result is checked by :func:`zoo_cli.graph.crop_pattern.analyse` (static shapes, encoder stride == the target).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from zoo_cli.constants import REWRITE_OUTPUT_STRIDES
from zoo_cli.errors import ModelError
from zoo_cli.graph.crop_pattern import CropPattern, analyse
from zoo_cli.graph.geometry import required_paddings, size_at_stride
from zoo_cli.graph.graphdef import PAD_OPS, PLACEHOLDER_OPS, RESIZE_OPS, const_array, data_inputs, node_of, tensor_name
from zoo_cli.graph.loading import load_graph_def
from zoo_cli.graph.stride_edit import (
    CONV_OPS,
    POOL_OPS,
    GraphEditor,
    StrideNet,
    data_producers,
    not_rewritable,
    region_at,
    strided_padding_style,
)
from zoo_cli.graph.tf_import import import_tf

# Ops whose inputs and output share one resolution (lateness spreads through them both ways).
_SAME_RES_OPS = ("FusedBatchNorm", "FusedBatchNormV3", "Relu", "Relu6", "Identity", "Add", "AddV2", "AddN",
                 "Mul", "Sub", "BiasAdd", "ConcatV2", "Concat", "Sigmoid", "Tanh", "Maximum", "Minimum",
                 "RealDiv", "Elu", "Selu", "LeakyRelu", "Swish", "Neg", "Square")


# ------------------------------------------------------------------------------------------ one step


def _late_coarsen(net: StrideNet, region: set[str]) -> set[str]:
    """Region nodes after the hidden stride (see the module docstring)."""
    g = net.g
    seeds = set()
    for conv in net.unit_of:
        if max(net.rate(conv)) >= 2:
            src = node_of(net.unit_input(conv))
            if src in region:
                seeds.add(src)
    for n in region:
        node = g.nodes[n]
        if node.op in CONV_OPS and n not in net.unit_of and max(net.rate(n)) >= 2:
            seeds.add(node_of(node.input[0]))
    if not seeds:
        raise not_rewritable(f"no atrous conv runs after output stride {net.pattern.encoder_stride}, so no layer "
                             "gave up its stride there")
    late: set[str] = set()
    for s in seeds:
        late |= g.descendants(s) & region
    changed = True
    while changed:
        changed = False
        for n in sorted(region - late):
            node = g.nodes[n]
            readers = []
            for c in g.consumers.get(n, []):
                if not any(node_of(r) == n for r in data_inputs(c)):
                    continue
                if c.op == "SpaceToBatchND":
                    readers.append((c.name, True))
                elif c.name in region:
                    readers.append((c.name, c.name in late))
            if not readers or not all(is_late for _, is_late in readers):
                continue
            # a k x k conv of rate 1 reading n is where the stride goes: n itself stays early
            if any(g.nodes[c].op in CONV_OPS and max(net.kernel(c)) > 1 and c not in net.unit_of
                   for c, _ in readers):
                continue
            if node.op in CONV_OPS or node.op in _SAME_RES_OPS or node.op in RESIZE_OPS or node.op in POOL_OPS:
                late.add(n)
                changed = True
    return late


def _coarsen(net: StrideNet, editor: GraphEditor) -> None:
    g = net.g
    old = net.pattern.encoder_stride
    region = region_at(net, old)
    late = _late_coarsen(net, region)
    transitions = []
    for n in sorted(late):
        node = g.nodes[n]
        early_inputs = [p for p in data_producers(net, n) if p in region and p not in late]
        if not early_inputs:
            continue
        late_inputs = [p for p in data_producers(net, n) if p in late]
        if node.op in ("Add", "AddV2") and len(early_inputs) == 1 and len(late_inputs) == 1:
            # slim adds a residual to a block only while it runs at stride 1: the block that strides again
            # loses it (its output is the projection alone, as in a native export at the coarser OS)
            editor.rewire(n, late_inputs[0])
            editor.remove(n)
            continue
        if node.op not in CONV_OPS or n in net.unit_of or net.stride(node) != 1:
            raise not_rewritable(f"{node.op} {n} joins the feature map before and after the hidden stride")
        transitions.append(n)
    if not transitions:
        raise not_rewritable("no conv gave up its stride before the atrous convs")
    style = None
    for n in transitions:
        node = editor.nodes[n]
        k = net.kernel(n)
        if max(net.rate(n)) != 1:
            raise not_rewritable(f"conv {n} gave up its stride but runs at an atrous rate")
        node.attr["strides"].list.i[:] = [1, 2, 2, 1]
        if max(k) > 1:
            style = style or strided_padding_style(net)
            if style == "fixed":
                tf = import_tf()
                pads = [[0, 0]] + [[(kk - 1) // 2, (kk - 1) - (kk - 1) // 2] for kk in k] + [[0, 0]]
                pad = editor.out.node.add()
                pad.name, pad.op = editor.unique(f"{n}/zoo_os/Pad"), "Pad"
                editor.nodes[pad.name] = pad
                pad.input.extend([node.input[0], editor.const(f"{pad.name}/paddings", np.array(pads, np.int32))])
                pad.attr["T"].CopyFrom(node.attr["T"])
                pad.attr["Tpaddings"].type = tf.int32.as_datatype_enum
                node.input[0] = pad.name
                node.attr["padding"].s = b"VALID"
    for conv in _late_convs(net, late):
        rate = net.rate(conv)
        if conv in transitions:
            continue
        if max(net.kernel(conv)) == 1 and rate == (1, 1):
            continue
        if any(r % 2 for r in rate):
            raise not_rewritable(f"conv {conv} after the stride runs at rate {rate[0]}x{rate[1]}, which cannot be halved")
        _set_rate(net, editor, conv, (rate[0] // 2, rate[1] // 2))
    _resize_late(net, editor, late, old, old * 2)


def _late_convs(net: StrideNet, late: set[str]) -> list[str]:
    out = []
    for n in sorted(late | {c for c, (s, b) in net.unit_of.items() if b in late}):
        if net.g.nodes[n].op in CONV_OPS:
            out.append(n)
    return sorted(set(out))


def _set_rate(net: StrideNet, editor: GraphEditor, conv: str, rate: tuple[int, int]) -> None:
    if conv in net.unit_of:
        s2b, b2s = net.unit_of[conv]
        if rate == (1, 1):
            editor.unwrap_atrous(conv, s2b, b2s)
        else:
            editor.set_input_const(s2b, 1, np.array(rate, np.int32))
            editor.set_input_const(b2s, 1, np.array(rate, np.int32))
        return
    node = editor.nodes[conv]
    d = list(node.attr["dilations"].list.i) if "dilations" in node.attr else []
    if len(d) == 4 and max(d) > 1:
        node.attr["dilations"].list.i[:] = [1, rate[0], rate[1], 1]
    elif rate != (1, 1):
        editor.wrap_atrous(conv, rate)


def _refine(net: StrideNet, editor: GraphEditor) -> None:
    g = net.g
    old = net.pattern.encoder_stride
    if old < 2 or old % 2:
        raise not_rewritable(f"output stride {old} cannot be halved")
    region = region_at(net, old)
    finer = region_at(net, old // 2)
    transitions = sorted(n for n in region if any(p in finer for p in data_producers(net, n))
                         or (g.nodes[n].op in CONV_OPS and g.producer(g.nodes[n].input[0]) is not None
                             and g.producer(g.nodes[n].input[0]).op in PAD_OPS
                             and node_of(g.producer(g.nodes[n].input[0]).input[0]) in finer))
    if not transitions:
        raise not_rewritable(f"no strided conv produces the output-stride-{old} feature map")
    for n in transitions:
        node = g.nodes[n]
        if node.op not in CONV_OPS or net.stride(node) != 2 or n in net.unit_of:
            raise not_rewritable(f"{node.op} {n} brings the feature map to output stride {old} but is not a stride-2 conv")
    late: set[str] = set()
    for n in transitions:
        late |= g.descendants(n) & region
    for n in transitions:
        node = editor.nodes[n]
        node.attr["strides"].list.i[:] = [1, 1, 1, 1]
        producer = g.producer(node.input[0])
        if producer is not None and producer.op in PAD_OPS:
            if len(g.consumers.get(producer.name, [])) != 1 or node.attr["padding"].s != b"VALID":
                raise not_rewritable(f"the Pad before {n} is shared or not followed by a VALID conv")
            node.input[0] = producer.input[0]
            node.attr["padding"].s = b"SAME"
            editor.remove(producer.name)
    for n in transitions:
        if g.nodes[n].op == "DepthwiseConv2dNative" and strided_padding_style(net) == "same":
            _add_residual(net, editor, n)
    pooled = _pooled_by_head(net, late)
    for conv in _late_convs(net, late):
        if conv in transitions:
            continue
        rate, k = net.rate(conv), net.kernel(conv)
        if max(k) == 1 and rate == (1, 1) and conv not in pooled:
            continue
        _set_rate(net, editor, conv, (rate[0] * 2, rate[1] * 2))
    _resize_late(net, editor, late, old, old // 2)


def _add_residual(net: StrideNet, editor: GraphEditor, depthwise: str) -> None:
    """slim's expanded_conv adds ``input`` to its output when it runs at stride 1 and keeps its depth: a
    MobileNet block that no longer strides gains that residual (as in a native export at the finer OS)."""
    g = net.g
    up, queue, seen = None, [node_of(g.nodes[depthwise].input[0])], set()
    while queue and up is None:  # the expansion: the nearest conv above, through activations
        cur = g.nodes[queue.pop(0)]
        if cur.name in seen or cur.op == "Const":
            continue
        seen.add(cur.name)
        if cur.op in CONV_OPS or cur.op in PLACEHOLDER_OPS:
            up = cur
        else:
            queue.extend(node_of(r) for r in data_inputs(cur))
    block_in = up.input[0] if up is not None and up.op == "Conv2D" and max(net.kernel(up.name)) == 1 \
        else g.nodes[depthwise].input[0]
    # down to the projection (the nearest 1x1 conv at the feature resolution), then its batch norm chain
    project, queue, seen = None, [depthwise], set()
    while queue and project is None:
        cur = queue.pop(0)
        if cur in seen:
            continue
        seen.add(cur)
        for c in g.consumers.get(cur, []):
            if c.name not in net.scope:
                continue
            if c.op == "Conv2D":
                if c.name not in net.unit_of and max(net.kernel(c.name)) == 1 and (net.hw(c.name) or (1, 1))[0] > 1:
                    project = c
                    break
            elif c.op not in CONV_OPS:
                queue.append(c.name)
    if project is None:
        raise not_rewritable(f"the block of {depthwise} has no 1x1 projection after it")
    chain = [project]
    while True:
        cons = [c for c in g.consumers.get(chain[-1].name, []) if c.name in net.scope]
        if len(cons) == 1 and cons[0].op in ("FusedBatchNorm", "FusedBatchNormV3", "Identity", "BiasAdd"):
            chain.append(cons[0])
        else:
            break
    depth_in = (net.shapes.get(tensor_name(block_in)) or [None])[-1]
    depth_out = (net.shapes.get(tensor_name(chain[-1].name)) or [None])[-1]
    if depth_in is None or depth_in != depth_out:
        return
    if any(c.op in ("Add", "AddV2") and node_of(block_in) in {node_of(r) for r in c.input}
           for x in chain for c in g.consumers.get(x.name, [])):
        return  # it has one already
    # after the projection's batch norm (and its Identity, where slim puts the add)
    src = chain[2] if len(chain) > 2 and chain[2].op == "Identity" else chain[min(1, len(chain) - 1)]
    add = editor.out.node.add()
    add.name, add.op = editor.unique(f"{src.name}/zoo_os/add"), "AddV2"
    editor.nodes[add.name] = add
    add.attr["T"].CopyFrom(g.nodes[depthwise].attr["T"])
    editor.rewire(src.name, add.name)
    add.input.extend([src.name, block_in])


def _pooled_by_head(net: StrideNet, late: set[str]) -> set[str]:
    """1x1 convs of a backbone layer (slim gives them the atrous rate): fed by no depthwise conv and pooled by
    the head (their output, through batch norm / activations, reaches an AvgPool whose output is resized)."""
    g = net.g
    out = set()
    for n in late:
        node = g.nodes[n]
        if node.op != "Conv2D" or n in net.unit_of or max(net.kernel(n)) != 1:
            continue
        up = g.producer(node.input[0])
        while up is not None and up.op in _SAME_RES_OPS and up.op not in ("ConcatV2", "Concat"):
            up = g.producer(up.input[0])
        if up is None or up.op != "Conv2D" or max(net.kernel(up.name)) != 1:
            continue
        frontier, pooled, seen = [n], False, set()
        while frontier:
            cur = frontier.pop()
            if cur in seen:
                continue
            seen.add(cur)
            for c in g.consumers.get(cur, []):
                if c.op in POOL_OPS and any(x.op in RESIZE_OPS or x.op in CONV_OPS
                                            for x in g.consumers.get(c.name, [])):
                    pooled = pooled or (c.name in late or c.name in net.scope)
                elif c.op in ("FusedBatchNorm", "FusedBatchNormV3", "Relu", "Relu6", "Identity", "Mul", "AddV2",
                              "Add", "Sigmoid"):
                    frontier.append(c.name)
                elif c.op == "DepthwiseConv2dNative" or c.op == "SpaceToBatchND":
                    pooled = False
                    frontier = []
                    break
        if pooled:
            out.add(n)
    return out


def _resize_late(net: StrideNet, editor: GraphEditor, late: set[str], old: int, new: int) -> None:
    """Late pools and resizes to the new feature size; atrous paddings for the new size."""
    g = net.g
    old_hw, new_hw = size_at_stride(net.crop, old), size_at_stride(net.crop, new)
    pools = {n for n in net.scope if g.nodes[n].op in POOL_OPS and node_of(g.nodes[n].input[0]) in late}
    for n in sorted(late | pools):
        node = g.nodes[n]
        if node.op in POOL_OPS:
            src_hw = net.hw(node.input[0])
            k = list(node.attr["ksize"].list.i)
            s = list(node.attr["strides"].list.i)
            if src_hw == (k[1], k[2]):
                kk = list(new_hw)
            else:  # sized from a crop n * OS + 1 at the old OS
                kk = [(k[1] - 1) * old // new + 1, (k[2] - 1) * old // new + 1]
            editor.nodes[n].attr["ksize"].list.i[:] = [1, kk[0], kk[1], 1]
            if s == k:
                editor.nodes[n].attr["strides"].list.i[:] = [1, kk[0], kk[1], 1]
        elif node.op in RESIZE_OPS:
            size = g.const_value(node.input[1])
            if size is None:
                raise not_rewritable(f"resize {n} has a computed size")
            if tuple(int(v) for v in size.reshape(-1)) == old_hw:
                editor.set_input_const(n, 1, np.array(new_hw, size.dtype))
    # atrous paddings, from the new input size
    for node in list(editor.out.node):
        if node.op != "SpaceToBatchND" or node.name in editor.removed or node_of(node.input[0]) not in late:
            continue
        block = const_array(editor.nodes[node_of(node.input[1])]).reshape(-1)
        conv = next(c for c in editor.out.node if c.op in CONV_OPS and c.input and node_of(c.input[0]) == node.name)
        b2s = next(c for c in editor.out.node if c.op == "BatchToSpaceND" and node_of(c.input[0]) == conv.name)
        k = net.kernel(conv.name)
        pads, crops = [], []
        for i in range(2):
            total = (k[i] - 1) * int(block[i])
            p, c = required_paddings(new_hw[i], (total // 2, total - total // 2), int(block[i]))
            pads.append(p)
            crops.append(c)
        editor.set_input_const(node.name, 2, np.array(pads, np.int32))
        editor.set_input_const(b2s.name, 2, np.array(crops, np.int32))


# ------------------------------------------------------------------------------------------ public


def _step(graph_def: Any, pattern: CropPattern, coarser: bool) -> tuple[Any, CropPattern]:
    net = StrideNet(graph_def, pattern)
    editor = GraphEditor(net)
    (_coarsen if coarser else _refine)(net, editor)
    out = editor.finish()
    want = pattern.encoder_stride * 2 if coarser else pattern.encoder_stride // 2
    try:
        new_pattern = analyse(out)
    except ModelError as exc:
        raise not_rewritable(f"the rewrite to output stride {want} is inconsistent ({exc})") from None
    if new_pattern.encoder_stride != want:
        raise not_rewritable(f"the rewrite to output stride {want} runs at output stride {new_pattern.encoder_stride}")
    return out, new_pattern


def rewrite_output_stride(graph_def: Any, target_os: int, pattern: CropPattern | None = None) -> Any:
    """A copy of ``graph_def`` that runs at output stride ``target_os`` with the same weights; the original is
    left untouched. A graph already at ``target_os`` is returned as it is. ModelError names what could not
    be mapped."""
    return rewrite_with_pattern(graph_def, target_os, pattern)[0]


def rewrite_with_pattern(graph_def: Any, target_os: int,
                         pattern: CropPattern | None = None) -> tuple[Any, CropPattern]:
    """:func:`rewrite_output_stride` and the crop pattern of the result."""
    pattern = pattern or analyse(graph_def)
    target = int(target_os)
    if target < 1 or target & (target - 1):
        raise ModelError(f"output stride {target_os} is not a power of two")
    current = pattern.encoder_stride
    if not current:
        raise not_rewritable("its own output stride is unknown")
    while current != target:
        graph_def, pattern = _step(graph_def, pattern, coarser=current < target)
        current = pattern.encoder_stride
    return graph_def, pattern


def supported_output_strides(graph_def: Any, pattern: CropPattern | None = None,
                             candidates: tuple[int, ...] = REWRITE_OUTPUT_STRIDES) -> tuple[int, ...]:
    """The output strides (of ``candidates``, plus the graph's own) the graph can be rewritten to."""
    pattern = pattern or analyse(graph_def)
    ok = {pattern.encoder_stride}
    for os_ in candidates:
        if os_ in ok:
            continue
        try:
            rewrite_with_pattern(graph_def, os_, pattern)
        except ModelError:
            continue
        ok.add(os_)
    return tuple(sorted(ok))


def timed_rewrite(graph_def: Any, target_os: int, pattern: CropPattern | None = None) -> tuple[Any, float]:
    """:func:`rewrite_output_stride` and its wall time in seconds (for benchmarks/)."""
    started = time.perf_counter()
    out = rewrite_output_stride(graph_def, target_os, pattern)
    return out, time.perf_counter() - started


def output_strides_of(path: Any) -> list[int] | str:
    """For ``zoo info --inspect``: the output strides the graph file runs at, or why it cannot change."""
    try:
        return list(supported_output_strides(load_graph_def(path)))
    except ModelError as exc:
        return str(exc)
