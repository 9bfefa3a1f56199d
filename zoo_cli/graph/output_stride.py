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
result is checked by :func:`zoo_cli.graph.retarget.analyse` (static shapes, encoder stride == the target).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from zoo_cli.constants import OUTPUT_NAME
from zoo_cli.errors import ModelError
from zoo_cli.graph import retarget as rt
from zoo_cli.graph.geometry import required_paddings, size_at_stride
from zoo_cli.graph.graphdef import (
    PAD_OPS,
    PLACEHOLDER_OPS,
    RESIZE_OPS,
    GraphIndex,
    const_array,
    copy_graph_def,
    data_inputs,
    node_of,
    spatial_size,
    static_shapes,
    strip_colocation,
    tensor_name,
)
from zoo_cli.graph.tf_import import import_tf

OUTPUT_STRIDES = (8, 16, 32)
CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
POOL_OPS = ("AvgPool", "MaxPool")
# Ops whose inputs and output share one resolution (lateness spreads through them both ways).
_SAME_RES_OPS = ("FusedBatchNorm", "FusedBatchNormV3", "Relu", "Relu6", "Identity", "Add", "AddV2", "AddN",
                 "Mul", "Sub", "BiasAdd", "ConcatV2", "Concat", "Sigmoid", "Tanh", "Maximum", "Minimum",
                 "RealDiv", "Elu", "Selu", "LeakyRelu", "Swish", "Neg", "Square")


def _refuse(what: str) -> ModelError:
    return ModelError(f"cannot rewrite this graph's output stride: {what}")


class _Net:
    """The graph with static shapes at its own crop, and its atrous units."""

    def __init__(self, graph_def: Any, pattern: rt.CropPattern) -> None:
        self.graph_def = graph_def
        self.pattern = pattern
        self.g = GraphIndex(graph_def)
        g = self.g
        logits_anc = g.ancestors([pattern.logits])
        feed = node_of(pattern.padded_image)
        self.scope = logits_anc & g.descendants(feed)
        names = [tensor_name(n) for n in self.scope if g.nodes[n].op != "Const"]
        names += [tensor_name(g.nodes[n].input[1]) for n in self.scope if g.nodes[n].op in CONV_OPS]
        crop = pattern.crop
        feed_shape = [1, crop[0], crop[1], 3] if pattern.padded_rank == 4 else [crop[0], crop[1], 3]
        self.shapes = static_shapes(graph_def, pattern.padded_image, feed_shape, names)
        self.crop = crop
        # conv -> (SpaceToBatchND, BatchToSpaceND) for atrous convs written by with_space_to_batch
        self.unit_of: dict[str, tuple[str, str]] = {}
        for n in self.scope:
            node = g.nodes[n]
            if node.op == "SpaceToBatchND":
                cons = g.consumers.get(n, [])
                b2s = g.matching_batch_to_space(node)
                if len(cons) != 1 or cons[0].op not in CONV_OPS or b2s is None \
                        or node_of(b2s.input[0]) != cons[0].name:
                    raise _refuse(f"SpaceToBatchND {n} does not wrap exactly one conv")
                self.unit_of[cons[0].name] = (n, b2s.name)

    def hw(self, name: str) -> tuple[int, int] | None:
        shape = self.shapes.get(tensor_name(name))
        return spatial_size(shape) if shape and len(shape) == 4 else None

    def kernel(self, conv: str) -> tuple[int, int]:
        shape = self.shapes.get(tensor_name(self.g.nodes[conv].input[1]))
        if not shape or None in shape[:2]:
            raise _refuse(f"the kernel of {conv} has no static shape")
        return int(shape[0]), int(shape[1])

    def rate(self, conv: str) -> tuple[int, int]:
        node = self.g.nodes[conv]
        if conv in self.unit_of:
            block = self.g.const_value(self.g.nodes[self.unit_of[conv][0]].input[1]).reshape(-1)
            return int(block[0]), int(block[1])
        d = list(node.attr["dilations"].list.i) if "dilations" in node.attr else []
        return (int(d[1]), int(d[2])) if len(d) == 4 else (1, 1)

    def unit_input(self, conv: str) -> str:
        """The tensor an (atrous) conv reads, outside its SpaceToBatchND."""
        return self.g.nodes[self.unit_of[conv][0]].input[0] if conv in self.unit_of else self.g.nodes[conv].input[0]

    def unit_output(self, conv: str) -> str:
        return self.unit_of[conv][1] if conv in self.unit_of else conv

    def stride(self, node: Any) -> int:
        s = list(node.attr["strides"].list.i) if "strides" in node.attr else []
        return max(s[1], s[2]) if len(s) == 4 else 1


def _region(net: _Net, stride: int) -> set[str]:
    """Nodes (in the image -> logits scope) whose output is a 4-D map at ``stride``."""
    want = size_at_stride(net.crop, stride)
    return {n for n in net.scope if net.g.nodes[n].op not in ("Const", "SpaceToBatchND")
            and net.hw(n) == want}


def _data_producers(net: _Net, name: str) -> list[str]:
    return [node_of(r) for r in data_inputs(net.g.nodes[name])]


def _strided_padding_style(net: _Net) -> str:
    """How the graph pads its strided k x k convs: 'same' (SAME) or 'fixed' (explicit Pad + VALID)."""
    styles = set()
    for n in net.scope:
        node = net.g.nodes[n]
        if node.op in CONV_OPS and net.stride(node) > 1 and max(net.kernel(n)) > 1:
            producer = net.g.producer(node.input[0])
            if node.attr["padding"].s == b"VALID" and producer is not None and producer.op in PAD_OPS:
                styles.add("fixed")
            elif node.attr["padding"].s == b"SAME":
                styles.add("same")
    if len(styles) != 1:
        raise _refuse("cannot tell how this graph pads its strided convs (no strided k x k conv, or both "
                      "SAME and explicit Pad)")
    return styles.pop()


# ------------------------------------------------------------------------------------------ graph edits


class _Editor:
    """Edits on a copy of the GraphDef (node lookup by name, fresh Consts, rewiring)."""

    def __init__(self, net: _Net) -> None:
        self.net = net
        self.out = copy_graph_def(net.graph_def)
        self.nodes = {n.name: n for n in self.out.node}
        self.removed: set[str] = set()

    def const(self, name: str, value: np.ndarray) -> str:
        tf = import_tf()
        c = self.out.node.add()
        c.name, c.op = self._unique(name), "Const"
        c.attr["dtype"].type = tf.dtypes.as_dtype(value.dtype).as_datatype_enum
        c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        self.nodes[c.name] = c
        return c.name

    def _unique(self, name: str) -> str:
        base, i = name, 0
        while name in self.nodes:
            i += 1
            name = f"{base}_{i}"
        return name

    def set_input_const(self, consumer: str, index: int, value: np.ndarray) -> None:
        """Input ``index`` of ``consumer`` becomes a fresh Const (the old one may have other readers)."""
        self.nodes[consumer].input[index] = self.const(f"{consumer}/input{index}/zoo_os", value)

    def rewire(self, old: str, new: str, skip: tuple[str, ...] = ()) -> None:
        """Every data reader of node ``old`` reads ``new`` instead."""
        for n in self.out.node:
            if n.name in skip:
                continue
            for i, ref in enumerate(n.input):
                if not ref.startswith("^") and node_of(ref) == old:
                    n.input[i] = new + (ref[len(old):] if ref != old and ref[len(old):] != ":0" else "")

    def remove(self, name: str) -> None:
        self.removed.add(name)

    def wrap_atrous(self, conv: str, rate: tuple[int, int]) -> None:
        """A SAME conv becomes SpaceToBatchND -> conv (VALID) -> BatchToSpaceND at ``rate`` (paddings set later)."""
        tf = import_tf()
        node = self.nodes[conv]
        if node.attr["padding"].s != b"SAME":
            raise _refuse(f"conv {conv} is not SAME-padded, so it cannot take an atrous rate")
        t = node.attr["T"]
        i32 = tf.int32.as_datatype_enum
        s2b = self.out.node.add()
        s2b.name, s2b.op = self._unique(f"{conv}/zoo_os/SpaceToBatchND"), "SpaceToBatchND"
        self.nodes[s2b.name] = s2b
        zeros = np.zeros((2, 2), np.int32)
        s2b.input.extend([node.input[0], self.const(f"{s2b.name}/block_shape", np.array(rate, np.int32)),
                          self.const(f"{s2b.name}/paddings", zeros)])
        s2b.attr["T"].CopyFrom(t)
        s2b.attr["Tblock_shape"].type = i32
        s2b.attr["Tpaddings"].type = i32
        b2s = self.out.node.add()
        b2s.name, b2s.op = self._unique(f"{conv}/zoo_os/BatchToSpaceND"), "BatchToSpaceND"
        self.nodes[b2s.name] = b2s
        self.rewire(conv, b2s.name)
        b2s.input.extend([conv, self.const(f"{b2s.name}/block_shape", np.array(rate, np.int32)),
                          self.const(f"{b2s.name}/crops", zeros)])
        b2s.attr["T"].CopyFrom(t)
        b2s.attr["Tblock_shape"].type = i32
        b2s.attr["Tcrops"].type = i32
        node.input[0] = s2b.name
        node.attr["padding"].s = b"VALID"

    def unwrap_atrous(self, conv: str, s2b: str, b2s: str) -> None:
        node = self.nodes[conv]
        node.input[0] = self.nodes[s2b].input[0]
        node.attr["padding"].s = b"SAME"
        self.rewire(b2s, conv)
        self.remove(s2b)
        self.remove(b2s)

    def finish(self) -> Any:
        tf = import_tf()
        keep = [n for n in self.out.node if n.name not in self.removed]
        out = tf.compat.v1.GraphDef()
        out.versions.CopyFrom(self.out.versions)
        out.library.CopyFrom(self.out.library)
        out.node.extend(keep)
        used = {node_of(r) for n in out.node for r in n.input}
        # drop Consts only the removed nodes read
        dead = {n.name for n in out.node if n.op == "Const" and n.name not in used
                and (n.name.endswith("/zoo_os") or any(n.name.startswith(r + "/") for r in self.removed))}
        if dead:
            keep = [n for n in out.node if n.name not in dead]
            del out.node[:]
            out.node.extend(keep)
        for n in out.node:
            if "_output_shapes" in n.attr:
                del n.attr["_output_shapes"]
        return out


# ------------------------------------------------------------------------------------------ one step


def _late_coarsen(net: _Net, region: set[str]) -> set[str]:
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
        raise _refuse(f"no atrous conv runs after output stride {net.pattern.encoder_stride}, so no layer "
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


def _coarsen(net: _Net, editor: _Editor) -> None:
    g = net.g
    old = net.pattern.encoder_stride
    region = _region(net, old)
    late = _late_coarsen(net, region)
    transitions = []
    for n in sorted(late):
        node = g.nodes[n]
        early_inputs = [p for p in _data_producers(net, n) if p in region and p not in late]
        if not early_inputs:
            continue
        late_inputs = [p for p in _data_producers(net, n) if p in late]
        if node.op in ("Add", "AddV2") and len(early_inputs) == 1 and len(late_inputs) == 1:
            # slim adds a residual to a block only while it runs at stride 1: the block that strides again
            # loses it (its output is the projection alone, as in a native export at the coarser OS)
            editor.rewire(n, late_inputs[0])
            editor.remove(n)
            continue
        if node.op not in CONV_OPS or n in net.unit_of or net.stride(node) != 1:
            raise _refuse(f"{node.op} {n} joins the feature map before and after the hidden stride")
        transitions.append(n)
    if not transitions:
        raise _refuse("no conv gave up its stride before the atrous convs")
    style = None
    for n in transitions:
        node = editor.nodes[n]
        k = net.kernel(n)
        if max(net.rate(n)) != 1:
            raise _refuse(f"conv {n} gave up its stride but runs at an atrous rate")
        node.attr["strides"].list.i[:] = [1, 2, 2, 1]
        if max(k) > 1:
            style = style or _strided_padding_style(net)
            if style == "fixed":
                tf = import_tf()
                pads = [[0, 0]] + [[(kk - 1) // 2, (kk - 1) - (kk - 1) // 2] for kk in k] + [[0, 0]]
                pad = editor.out.node.add()
                pad.name, pad.op = editor._unique(f"{n}/zoo_os/Pad"), "Pad"
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
            raise _refuse(f"conv {conv} after the stride runs at rate {rate[0]}x{rate[1]}, which cannot be halved")
        _set_rate(net, editor, conv, (rate[0] // 2, rate[1] // 2))
    _resize_late(net, editor, late, old, old * 2)


def _late_convs(net: _Net, late: set[str]) -> list[str]:
    out = []
    for n in sorted(late | {c for c, (s, b) in net.unit_of.items() if b in late}):
        if net.g.nodes[n].op in CONV_OPS:
            out.append(n)
    return sorted(set(out))


def _set_rate(net: _Net, editor: _Editor, conv: str, rate: tuple[int, int]) -> None:
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


def _refine(net: _Net, editor: _Editor) -> None:
    g = net.g
    old = net.pattern.encoder_stride
    if old < 2 or old % 2:
        raise _refuse(f"output stride {old} cannot be halved")
    region = _region(net, old)
    finer = _region(net, old // 2)
    transitions = sorted(n for n in region if any(p in finer for p in _data_producers(net, n))
                         or (g.nodes[n].op in CONV_OPS and g.producer(g.nodes[n].input[0]) is not None
                             and g.producer(g.nodes[n].input[0]).op in PAD_OPS
                             and node_of(g.producer(g.nodes[n].input[0]).input[0]) in finer))
    if not transitions:
        raise _refuse(f"no strided conv produces the output-stride-{old} feature map")
    for n in transitions:
        node = g.nodes[n]
        if node.op not in CONV_OPS or net.stride(node) != 2 or n in net.unit_of:
            raise _refuse(f"{node.op} {n} brings the feature map to output stride {old} but is not a stride-2 conv")
    late: set[str] = set()
    for n in transitions:
        late |= g.descendants(n) & region
    for n in transitions:
        node = editor.nodes[n]
        node.attr["strides"].list.i[:] = [1, 1, 1, 1]
        producer = g.producer(node.input[0])
        if producer is not None and producer.op in PAD_OPS:
            if len(g.consumers.get(producer.name, [])) != 1 or node.attr["padding"].s != b"VALID":
                raise _refuse(f"the Pad before {n} is shared or not followed by a VALID conv")
            node.input[0] = producer.input[0]
            node.attr["padding"].s = b"SAME"
            editor.remove(producer.name)
    for n in transitions:
        if g.nodes[n].op == "DepthwiseConv2dNative" and _strided_padding_style(net) == "same":
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


_POINTWISE = ("FusedBatchNorm", "FusedBatchNormV3", "Relu", "Relu6", "Identity", "Mul", "Sigmoid", "BiasAdd")


def _add_residual(net: _Net, editor: _Editor, depthwise: str) -> None:
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
        raise _refuse(f"the block of {depthwise} has no 1x1 projection after it")
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
    add.name, add.op = editor._unique(f"{src.name}/zoo_os/add"), "AddV2"
    editor.nodes[add.name] = add
    add.attr["T"].CopyFrom(g.nodes[depthwise].attr["T"])
    editor.rewire(src.name, add.name)
    add.input.extend([src.name, block_in])


def _pooled_by_head(net: _Net, late: set[str]) -> set[str]:
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


def _resize_late(net: _Net, editor: _Editor, late: set[str], old: int, new: int) -> None:
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
                raise _refuse(f"resize {n} has a computed size")
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


def _step(graph_def: Any, pattern: rt.CropPattern, coarser: bool) -> tuple[Any, rt.CropPattern]:
    net = _Net(graph_def, pattern)
    editor = _Editor(net)
    (_coarsen if coarser else _refine)(net, editor)
    out = editor.finish()
    want = pattern.encoder_stride * 2 if coarser else pattern.encoder_stride // 2
    try:
        new_pattern = rt.analyse(out)
    except ModelError as exc:
        raise _refuse(f"the rewrite to output stride {want} is inconsistent ({exc})") from None
    if new_pattern.encoder_stride != want:
        raise _refuse(f"the rewrite to output stride {want} runs at output stride {new_pattern.encoder_stride}")
    return out, new_pattern


def rewrite_output_stride(graph_def: Any, target_os: int, pattern: rt.CropPattern | None = None) -> Any:
    """A copy of ``graph_def`` that runs at output stride ``target_os`` with the same weights; the original is
    left untouched. A graph already at ``target_os`` is returned as it is. ModelError names what could not
    be mapped."""
    return rewrite_with_pattern(graph_def, target_os, pattern)[0]


def rewrite_with_pattern(graph_def: Any, target_os: int,
                         pattern: rt.CropPattern | None = None) -> tuple[Any, rt.CropPattern]:
    """:func:`rewrite_output_stride` and the crop pattern of the result."""
    pattern = pattern or rt.analyse(graph_def)
    target = int(target_os)
    if target < 1 or target & (target - 1):
        raise ModelError(f"output stride {target_os} is not a power of two")
    current = pattern.encoder_stride
    if not current:
        raise _refuse("its own output stride is unknown")
    while current != target:
        graph_def, pattern = _step(graph_def, pattern, coarser=current < target)
        current = pattern.encoder_stride
    return graph_def, pattern


def supported_output_strides(graph_def: Any, pattern: rt.CropPattern | None = None,
                             candidates: tuple[int, ...] = OUTPUT_STRIDES) -> tuple[int, ...]:
    """The output strides (of ``candidates``, plus the graph's own) the graph can be rewritten to."""
    pattern = pattern or rt.analyse(graph_def)
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


def timed_rewrite(graph_def: Any, target_os: int, pattern: rt.CropPattern | None = None) -> tuple[Any, float]:
    """:func:`rewrite_output_stride` and its wall time in seconds (for benchmarks/)."""
    started = time.perf_counter()
    out = rewrite_output_stride(graph_def, target_os, pattern)
    return out, time.perf_counter() - started


# ------------------------------------------------------------------------------------------ runtime


def guard_rewrite(original: Any, rewritten: Any, pattern: rt.CropPattern, target_os: int) -> dict[str, Any]:
    """Refuse a rewrite zoo may have misread, once per graph load.

    What it proves: the rewritten graph is statically consistent at the graph's crop and its encoder runs at
    ``target_os`` (checked by analyse in every step), and rewriting it back to the graph's own OS reproduces
    the exported graph's own ``SemanticPredictions`` on a probe image (the mapping read every stride, rate,
    pad, pool and resize it changed, and can undo it). What it cannot prove: that the graph at
    ``target_os`` is what the reference would export there; no number inside the frozen graph states that.
    That is what the tests prove on faithful reference exports of every family.
    """
    from zoo_cli.evaluation.multiscale import GUARD_TOLERANCE, guard_probe

    tf = import_tf()
    started = time.perf_counter()
    back = rewrite_output_stride(rewritten, pattern.encoder_stride)
    probe = guard_probe(pattern.crop)[None]
    labels = []
    for gd in (original, back):
        g = tf.Graph()
        with g.as_default():
            tf.compat.v1.import_graph_def(strip_colocation(copy_graph_def(gd)), name="")
        from zoo_cli.graph.tf_import import new_session

        with new_session(graph=g) as sess:
            labels.append(sess.run(OUTPUT_NAME + ":0", {pattern.input_tensor: probe}))
    differ = float(np.mean(labels[0] != labels[1]))
    if differ > GUARD_TOLERANCE:
        raise ModelError(f"rewriting this graph to output stride {target_os} and back does not reproduce its own "
                         f"output ({differ:.0%} of pixels differ); the graph is refused at OS {target_os} (run it "
                         f"at its own OS {pattern.encoder_stride} with --output-stride {pattern.encoder_stride})")
    return {"round_trip_pixels_differ": differ, "seconds": time.perf_counter() - started}


class OsRewrites:
    """The rewrites of one loaded graph (a :class:`zoo_cli.graph.model.FrozenGraphModel`), each built once."""

    def __init__(self, model: Any, graph_os: int | None) -> None:
        self.model = model
        self.graph_os = graph_os
        self._done: dict[int, tuple[Any, rt.CropPattern, float] | ModelError] = {}
        self._graph_def = None

    @property
    def graph_def(self) -> Any:
        if self._graph_def is None:
            self._graph_def = self.model.graph.as_graph_def()
        return self._graph_def

    def get(self, os_: int) -> tuple[Any, rt.CropPattern, float]:
        """(rewritten GraphDef, its pattern, seconds) or the ModelError saying why not."""
        if os_ not in self._done:
            pattern = getattr(self.model, "crop_pattern", None)
            started = time.perf_counter()
            try:
                if pattern is None:
                    pattern = rt.analyse(self.graph_def)
                gd, new = rewrite_with_pattern(self.graph_def, os_, pattern)
                self._done[os_] = (gd, new, time.perf_counter() - started)
            except ModelError as exc:
                self._done[os_] = exc
        result = self._done[os_]
        if isinstance(result, ModelError):
            raise result
        return result

    def runnable(self, strides: Any) -> list[int]:
        """Of ``strides``, those this graph runs at (its own, or rewritten)."""
        out = []
        for os_ in dict.fromkeys(strides):
            if os_ == self.graph_os:
                out.append(os_)
                continue
            try:
                self.get(os_)
                out.append(os_)
            except ModelError:
                pass
        return out

    def predictor(self, settings: Any) -> Any:
        """A MultiScalePredictor over the graph rewritten to ``settings.output_stride`` (guarded)."""
        from zoo_cli.evaluation.multiscale import MultiScalePredictor

        os_ = int(settings.output_stride)
        gd, _, seconds = self.get(os_)
        pattern = getattr(self.model, "crop_pattern", None) or rt.analyse(self.graph_def)
        guard = guard_rewrite(self.graph_def, gd, pattern, os_)
        predictor = MultiScalePredictor(gd, scales=settings.scales, flip=settings.flip, crop=settings.crop)
        predictor.output_stride_rewrite = {"graph_output_stride": self.graph_os, "output_stride": os_,
                                           "rewrite_seconds": seconds, "guard": guard}
        return predictor


def output_strides_of(path: Any) -> list[int] | str:
    """For ``zoo info --inspect``: the output strides the graph file runs at, or why it cannot change."""
    from zoo_cli.graph.model import load_graph_def

    try:
        return list(supported_output_strides(load_graph_def(path)))
    except ModelError as exc:
        return str(exc)
