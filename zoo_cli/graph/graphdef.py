"""GraphDef helpers the graph modules share: node and tensor names, one producer/consumer index, weight
detection, shape-only imports and static shapes, running a subgraph, and copying/editing a GraphDef.

Nothing here knows DeepLab's pattern; :mod:`zoo_cli.graph.crop_pattern`, :mod:`zoo_cli.graph.retarget`,
:mod:`zoo_cli.graph.output_stride` and :mod:`zoo_cli.graph.info` build on it. TensorFlow is imported on first
use (through :mod:`zoo_cli.graph.tf_import`), never at import time.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable

import numpy as np

from zoo_cli.errors import ModelError
from zoo_cli.graph.tf_import import import_tf, new_session

RESIZE_OPS = ("ResizeBilinear", "ResizeBicubic", "ResizeNearestNeighbor", "ResizeArea")
PAD_OPS = ("Pad", "PadV2")
PLACEHOLDER_OPS = ("Placeholder", "PlaceholderV2", "PlaceholderWithDefault")
# Float Consts at least this big are weights: replaced by Placeholders for shape-only imports and shared
# (never copied) between the crops a multi-scale runner imports.
WEIGHT_MIN_ELEMENTS = 16
# NodeDef attributes that go stale when a graph is copied or rewritten (colocation, recorded shapes).
_STALE_ATTRS = ("_class", "_output_shapes")


def node_of(ref: str) -> str:
    """The node name of an input reference: ``'^n'``, ``'n'``, ``'n:1'`` -> ``'n'``."""
    return ref.lstrip("^").split(":")[0]


def tensor_name(ref: str) -> str:
    """The tensor name of a reference: ``'n'`` -> ``'n:0'``; ``'n:1'`` stays; a control ``'^'`` is dropped."""
    ref = ref.lstrip("^")
    return ref if ":" in ref else f"{ref}:0"


def data_inputs(node: Any) -> list[str]:
    """A NodeDef's inputs without its control inputs."""
    return [r for r in node.input if not r.startswith("^")]


class GraphIndex:
    """Producer/consumer index over a GraphDef, and the structural queries on it."""

    def __init__(self, graph_def: Any) -> None:
        self.graph_def = graph_def
        self.nodes = {n.name: n for n in graph_def.node}
        self.consumers: dict[str, list[Any]] = {n.name: [] for n in graph_def.node}
        for n in graph_def.node:
            for ref in n.input:
                self.consumers.setdefault(node_of(ref), []).append(n)

    def producer(self, ref: str) -> Any:
        """The NodeDef producing ``ref`` (None when the graph has no such node)."""
        return self.nodes.get(node_of(ref))

    def of_type(self, op_type: str) -> list[Any]:
        """Every node of op type ``op_type``."""
        return [node for node in self.nodes.values() if node.op == op_type]

    def ancestors(self, refs: Iterable[str], stop: Iterable[str] = ()) -> set[str]:
        """Names of all nodes the given tensors depend on (data inputs), not walking past ``stop``."""
        stop = set(stop)
        seen: set[str] = set()
        queue = deque(node_of(r) for r in refs)
        while queue:
            name = queue.popleft()
            if name in seen or name not in self.nodes:
                continue
            seen.add(name)
            if name in stop:
                continue
            queue.extend(node_of(r) for r in data_inputs(self.nodes[name]))
        return seen

    def descendants(self, name: str, within: set[str] | None = None, stop_ops: tuple[str, ...] = ()) -> set[str]:
        """Names of all nodes fed (directly or not) by ``name``, itself included; only nodes in ``within`` when
        given, and not walking past nodes whose op is in ``stop_ops`` (they are included)."""
        seen: set[str] = set()
        queue = deque([name])
        while queue:
            cur = queue.popleft()
            if cur in seen:
                continue
            seen.add(cur)
            if self.nodes[cur].op in stop_ops:
                continue
            queue.extend(c.name for c in self.consumers.get(cur, []) if within is None or c.name in within)
        return seen

    def find_back(self, start: str, op_types: Iterable[str], limit: int = 200) -> Any:
        """The nearest node of one of ``op_types`` reached by walking data inputs backwards from ``start``
        (``start`` itself excluded; at most ``limit`` nodes visited); None when there is none."""
        wanted = set(op_types)
        seen = {node_of(start)}
        queue = deque([node_of(start)])
        while queue and len(seen) <= limit:
            node = self.nodes.get(queue.popleft())
            if node is None:
                continue
            if node.op in wanted and node.name != node_of(start):
                return node
            for ref in data_inputs(node):
                name = node_of(ref)
                if name not in seen:
                    seen.add(name)
                    queue.append(name)
        return None

    def depends_on_placeholder(self, ref: str) -> bool:
        """True when any ancestor of ``ref`` (control inputs included) is a Placeholder, so it cannot be
        evaluated without a feed."""
        seen: set[str] = set()
        stack = [node_of(ref)]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            node = self.nodes.get(name)
            if node is None:
                continue
            if node.op in PLACEHOLDER_OPS:
                return True
            stack.extend(node_of(r) for r in node.input)
        return False

    def matching_batch_to_space(self, s2b: Any) -> Any:
        """The BatchToSpaceND that closes the atrous unit a SpaceToBatchND opens (a single-consumer chain of
        at most four nodes), else None."""
        cur = s2b
        for _ in range(4):
            cons = self.consumers.get(cur.name, [])
            if len(cons) != 1:
                return None
            cur = cons[0]
            if cur.op == "BatchToSpaceND":
                return cur
        return None

    def const_value(self, ref: str) -> np.ndarray | None:
        """The value of ``ref`` when a Const produces it, else None."""
        node = self.producer(ref)
        if node is None or node.op != "Const":
            return None
        return const_array(node)


def const_array(node: Any) -> np.ndarray:
    """The value a Const NodeDef holds."""
    return import_tf().make_ndarray(node.attr["value"].tensor)


def is_weight(node: Any) -> bool:
    """True for a float Const of at least :data:`WEIGHT_MIN_ELEMENTS` elements (a weight, not a size)."""
    if node.op != "Const":
        return False
    tf = import_tf()
    if node.attr["dtype"].type not in (tf.float32.as_datatype_enum, tf.float16.as_datatype_enum,
                                       tf.float64.as_datatype_enum, tf.bfloat16.as_datatype_enum):
        return False
    dims = [d.size for d in node.attr["value"].tensor.tensor_shape.dim]
    return int(np.prod(dims)) >= WEIGHT_MIN_ELEMENTS if dims else False


def _drop_stale_attrs(node: Any) -> None:
    for key in _STALE_ATTRS:
        if key in node.attr:
            del node.attr[key]


def shape_only(graph_def: Any) -> Any:
    """Copy of ``graph_def`` with weight Consts swapped for same-shape Placeholders (fast shape import)."""
    tf = import_tf()
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    for n in graph_def.node:
        m = out.node.add()
        if is_weight(n):
            m.name, m.op = n.name, "Placeholder"
            m.attr["dtype"].CopyFrom(n.attr["dtype"])
            m.attr["shape"].shape.CopyFrom(n.attr["value"].tensor.tensor_shape)
        else:
            m.CopyFrom(n)
            _drop_stale_attrs(m)
    return out


def static_shapes(graph_def: Any, feed: str, feed_shape: list[int], names: Iterable[str]) -> dict[str, list | None]:
    """Static shapes of tensors ``names`` when ``feed`` has the static shape ``feed_shape``."""
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        ph = tf.compat.v1.placeholder(tf.float32, feed_shape, name="zoo_retarget_feed")
        try:
            tf.compat.v1.import_graph_def(shape_only(graph_def), name="g", input_map={feed: ph})
        except (ValueError, tf.errors.OpError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"the re-targeted graph is inconsistent at {feed_shape[-3]}x{feed_shape[-2]}: "
                             f"{first}") from None
        out = {}
        for name in names:
            t = g.get_tensor_by_name(f"g/{tensor_name(name)}")
            out[name] = t.shape.as_list() if t.shape.rank is not None else None
    return out


def spatial_size(shape: list | None) -> tuple[int, int] | None:
    """(H, W) of a static ``[N, H, W, C]`` or ``[H, W, C]`` shape list; None when unknown."""
    if not shape or len(shape) < 3:
        return None
    h, w = (shape[1], shape[2]) if len(shape) == 4 else (shape[0], shape[1])
    return (int(h), int(w)) if h is not None and w is not None else None


def run_subgraph(graph_def: Any, fetch: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Run just what ``fetch`` needs of ``graph_def`` in a fresh graph and session."""
    tf = import_tf()
    sub = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [node_of(fetch)])
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(strip_colocation(sub), name="")
    with new_session(graph=g) as s:
        return np.asarray(s.run(tensor_name(fetch), feeds))


def strip_colocation(graph_def: Any) -> Any:
    """Drop colocation and recorded-shape attributes in place (stale after a copy or rewrite); returns it."""
    for n in graph_def.node:
        _drop_stale_attrs(n)
    return graph_def


def copy_graph_def(graph_def: Any) -> Any:
    """A deep copy of ``graph_def``."""
    out = import_tf().compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    return out


def set_const(graph_def: Any, name: str, value: np.ndarray) -> None:
    """Give the Const ``name`` of ``graph_def`` the value ``value`` (in its own dtype); KeyError if absent."""
    tf = import_tf()
    for n in graph_def.node:
        if n.name == name:
            dtype = tf.dtypes.as_dtype(n.attr["dtype"].type)
            n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(value, dtype.as_numpy_dtype)))
            return
    raise KeyError(name)
