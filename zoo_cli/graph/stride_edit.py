"""What the output-stride rewrite (:mod:`zoo_cli.graph.output_stride`) reads and writes.

:class:`StrideNet` is the graph seen at its own crop: static shapes of everything between the padded image and
the logits, and its atrous units (SpaceToBatchND -> conv -> BatchToSpaceND); :func:`region_at` picks the
nodes at one output stride. :class:`GraphEditor` edits a copy of the GraphDef (fresh Consts, rewiring,
wrapping and unwrapping atrous units, removing nodes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo_cli.errors import ModelError
from zoo_cli.graph.crop_pattern import CropPattern
from zoo_cli.graph.geometry import size_at_stride
from zoo_cli.graph.graphdef import (
    PAD_OPS,
    GraphIndex,
    copy_graph_def,
    data_inputs,
    node_of,
    spatial_size,
    static_shapes,
    tensor_name,
)
from zoo_cli.graph.tf_import import import_tf

CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
POOL_OPS = ("AvgPool", "MaxPool")


def not_rewritable(what: str) -> ModelError:
    """The ModelError for a graph whose output stride cannot be rewritten, saying what could not be mapped."""
    return ModelError(f"cannot rewrite this graph's output stride: {what}")


class StrideNet:
    """The graph with static shapes at its own crop, and its atrous units (conv -> its SpaceToBatchND and
    BatchToSpaceND)."""

    def __init__(self, graph_def: Any, pattern: CropPattern) -> None:
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
                    raise not_rewritable(f"SpaceToBatchND {n} does not wrap exactly one conv")
                self.unit_of[cons[0].name] = (n, b2s.name)

    def hw(self, name: str) -> tuple[int, int] | None:
        """(H, W) of a 4-D tensor at the graph's crop, None when not static."""
        shape = self.shapes.get(tensor_name(name))
        return spatial_size(shape) if shape and len(shape) == 4 else None

    def kernel(self, conv: str) -> tuple[int, int]:
        """The (kh, kw) of a conv's filter."""
        shape = self.shapes.get(tensor_name(self.g.nodes[conv].input[1]))
        if not shape or None in shape[:2]:
            raise not_rewritable(f"the kernel of {conv} has no static shape")
        return int(shape[0]), int(shape[1])

    def rate(self, conv: str) -> tuple[int, int]:
        """A conv's atrous rate: its SpaceToBatchND block shape, else its dilations."""
        node = self.g.nodes[conv]
        if conv in self.unit_of:
            block = self.g.const_value(self.g.nodes[self.unit_of[conv][0]].input[1]).reshape(-1)
            return int(block[0]), int(block[1])
        d = list(node.attr["dilations"].list.i) if "dilations" in node.attr else []
        return (int(d[1]), int(d[2])) if len(d) == 4 else (1, 1)

    def unit_input(self, conv: str) -> str:
        """The tensor an (atrous) conv reads, outside its SpaceToBatchND."""
        return self.g.nodes[self.unit_of[conv][0]].input[0] if conv in self.unit_of else self.g.nodes[conv].input[0]

    def stride(self, node: Any) -> int:
        """A node's spatial stride (1 when it has none)."""
        s = list(node.attr["strides"].list.i) if "strides" in node.attr else []
        return max(s[1], s[2]) if len(s) == 4 else 1


def region_at(net: StrideNet, stride: int) -> set[str]:
    """Nodes (in the image -> logits scope) whose output is a 4-D map at ``stride``."""
    want = size_at_stride(net.crop, stride)
    return {n for n in net.scope if net.g.nodes[n].op not in ("Const", "SpaceToBatchND")
            and net.hw(n) == want}


def data_producers(net: StrideNet, name: str) -> list[str]:
    """The nodes whose outputs ``name`` reads (data inputs)."""
    return [node_of(r) for r in data_inputs(net.g.nodes[name])]


def strided_padding_style(net: StrideNet) -> str:
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
        raise not_rewritable("cannot tell how this graph pads its strided convs (no strided k x k conv, or both "
                             "SAME and explicit Pad)")
    return styles.pop()


class GraphEditor:
    """Edits on a copy of the GraphDef (node lookup by name, fresh Consts, rewiring)."""

    def __init__(self, net: StrideNet) -> None:
        self.net = net
        self.out = copy_graph_def(net.graph_def)
        self.nodes = {n.name: n for n in self.out.node}
        self.removed: set[str] = set()

    def const(self, name: str, value: np.ndarray) -> str:
        tf = import_tf()
        c = self.out.node.add()
        c.name, c.op = self.unique(name), "Const"
        c.attr["dtype"].type = tf.dtypes.as_dtype(value.dtype).as_datatype_enum
        c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        self.nodes[c.name] = c
        return c.name

    def unique(self, name: str) -> str:
        """``name``, or ``name_<i>`` when the graph already has a node of that name."""
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
        """Leave node ``name`` out of the finished graph."""
        self.removed.add(name)

    def wrap_atrous(self, conv: str, rate: tuple[int, int]) -> None:
        """A SAME conv becomes SpaceToBatchND -> conv (VALID) -> BatchToSpaceND at ``rate`` (paddings set later)."""
        tf = import_tf()
        node = self.nodes[conv]
        if node.attr["padding"].s != b"SAME":
            raise not_rewritable(f"conv {conv} is not SAME-padded, so it cannot take an atrous rate")
        t = node.attr["T"]
        i32 = tf.int32.as_datatype_enum
        s2b = self.out.node.add()
        s2b.name, s2b.op = self.unique(f"{conv}/zoo_os/SpaceToBatchND"), "SpaceToBatchND"
        self.nodes[s2b.name] = s2b
        zeros = np.zeros((2, 2), np.int32)
        s2b.input.extend([node.input[0], self.const(f"{s2b.name}/block_shape", np.array(rate, np.int32)),
                          self.const(f"{s2b.name}/paddings", zeros)])
        s2b.attr["T"].CopyFrom(t)
        s2b.attr["Tblock_shape"].type = i32
        s2b.attr["Tpaddings"].type = i32
        b2s = self.out.node.add()
        b2s.name, b2s.op = self.unique(f"{conv}/zoo_os/BatchToSpaceND"), "BatchToSpaceND"
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
        """An atrous unit back to a plain SAME conv (its SpaceToBatchND / BatchToSpaceND removed)."""
        node = self.nodes[conv]
        node.input[0] = self.nodes[s2b].input[0]
        node.attr["padding"].s = b"SAME"
        self.rewire(b2s, conv)
        self.remove(s2b)
        self.remove(b2s)

    def finish(self) -> Any:
        """The edited GraphDef: removed nodes (and Consts only they read) dropped, stale shapes cleared."""
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
