"""Multiply-Adds and parameters counted from a GraphDef at a fixed input size, without running it.

What is counted (one multiply-add = one multiplication plus one accumulation; tfprof reports 2 FLOPs per
multiply-add, so the seed's tfprof numbers halved are comparable):

| op                               | multiply-adds                                                       |
|----------------------------------|---------------------------------------------------------------------|
| Conv2D (plain, strided, dilated) | N * Ho * Wo * Cout * kh * kw * Cin_per_group                        |
| DepthwiseConv2dNative            | N * Ho * Wo * (Cin * multiplier) * kh * kw                          |
| MatMul                           | M * N * K                                                           |
| BatchMatMul / V2 / V3            | batch * M * N * K                                                   |

Shapes are those TensorFlow infers once the input placeholder is replaced by one of static shape
``[1, H, W, C]``. An atrous conv that TensorFlow expresses as SpaceToBatchND -> conv -> BatchToSpaceND is
counted at the conv's real (space-to-batch) shape, padding included, which is what the kernel computes.
NOT counted: bias adds, batch norm, activations, elementwise ops, pooling, resize ops, pad/concat, argmax.

Parameters: elements of the Const tensors that feed the counted ops' weights (through Identity), plus
``BiasAdd`` biases and the scale/offset (gamma/beta) of ``FusedBatchNorm*``; batch-norm moving mean and
variance are statistics, not parameters, and are reported separately as ``bn_stat_elements``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from zoo_cli.errors import ModelError
from zoo_cli.graph.geometry import scaled_crop
from zoo_cli.graph.graphdef import node_of
from zoo_cli.graph.tf_import import import_tf

COUNTED_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
_BN_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
_PASS_THROUGH = ("Identity", "Snapshot", "StopGradient", "PreventGradient")


@dataclass(frozen=True)
class OpCount:
    """Multiply-adds of one counted op, with the shapes they were computed from."""

    name: str
    op: str
    madds: int
    params: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "madds": self.madds, "params": self.params,
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "weight_shape": list(self.weight_shape)}


@dataclass
class MaddsReport:
    """Result of :func:`count_madds` (or a sum of them for a multi-scale/flip setting)."""

    input_size: tuple[int, int]
    madds: int
    params: int
    weight_params: int
    bias_params: int
    bn_params: int
    bn_stat_elements: int
    ops: list[OpCount] = field(default_factory=list)
    runs: int = 1  # graph executions summed (scales x flips)
    # What tfprof (the seed's tool) reports for the same graph: float_ops of every op TF registers FLOPs
    # for (convs, MatMul, BiasAdd, elementwise, pooling, ArgMax, ...); None if the profiler failed.
    tfprof_float_ops: int | None = None

    @property
    def tfprof_madds_billion(self) -> float | None:
        """tfprof's float_ops / 2 in billions (tfprof counts 2 FLOPs per multiply-add)."""
        return None if self.tfprof_float_ops is None else self.tfprof_float_ops / 2e9

    @property
    def madds_billion(self) -> float:
        return self.madds / 1e9

    @property
    def params_million(self) -> float:
        return self.params / 1e6

    def by_op_type(self) -> dict[str, int]:
        """Multiply-adds per op type."""
        out: Counter[str] = Counter()
        for item in self.ops:
            out[item.op] += item.madds
        return dict(out)

    def to_json(self, with_ops: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "input_size": list(self.input_size), "madds": self.madds, "madds_billion": self.madds_billion,
            "params": self.params, "params_million": self.params_million, "weight_params": self.weight_params,
            "bias_params": self.bias_params, "bn_params": self.bn_params,
            "bn_stat_elements": self.bn_stat_elements, "runs": self.runs, "by_op_type": self.by_op_type(),
            "tfprof_float_ops": self.tfprof_float_ops, "tfprof_madds_billion": self.tfprof_madds_billion,
        }
        if with_ops:
            d["ops"] = [o.to_json() for o in self.ops]
        return d


def find_input_placeholder(graph_def: Any, input_name: str | None = None) -> Any:
    """The NodeDef of the graph input: ``input_name`` if given, else the only Placeholder."""
    nodes = {n.name: n for n in graph_def.node}
    if input_name is not None:
        name = input_name.split(":")[0]
        if name not in nodes:
            raise ModelError(f"the graph has no input '{name}'; pass the name of its Placeholder")
        return nodes[name]
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    if len(placeholders) != 1:
        found = ", ".join(n.name for n in placeholders) or "none"
        raise ModelError(f"cannot tell the graph input: Placeholders found: {found}; pass input_name=")
    return placeholders[0]


def _const_elements(tf: Any, node: Any) -> int:
    shape = tf.TensorShape(node.attr["value"].tensor.tensor_shape)
    return int(shape.num_elements() or 0)


def _resolve_const(nodes: dict[str, Any], ref: str) -> Any | None:
    """Follow Identity-like nodes from an input reference to a Const node, if it is one."""
    seen = 0
    name = node_of(ref)
    while name in nodes and seen < 32:
        node = nodes[name]
        if node.op == "Const":
            return node
        if node.op not in _PASS_THROUGH or not node.input:
            return None
        name = node_of(node.input[0])
        seen += 1
    return None


def _dims(shape: Any, what: str) -> tuple[int, ...]:
    dims = shape.as_list() if shape.rank is not None else None
    if dims is None or any(d is None for d in dims):
        raise ModelError(f"shape of {what} is not static ({shape}) even with a fixed input size; "
                         "the graph computes it at run time, so it cannot be counted without running it")
    return tuple(int(d) for d in dims)


def _nhwc(shape: tuple[int, ...], data_format: bytes) -> tuple[int, int, int, int]:
    if data_format == b"NCHW":
        n, c, h, w = shape
        return n, h, w, c
    return shape  # type: ignore[return-value]


def _op_madds(op: Any, out: tuple[int, ...], inp: tuple[int, ...], w: tuple[int, ...]) -> int:
    kind = op.type
    if kind == "Conv2D":
        n, ho, wo, _ = _nhwc(out, op.get_attr("data_format"))
        kh, kw, cin_group, cout = w
        return n * ho * wo * cout * kh * kw * cin_group
    if kind == "DepthwiseConv2dNative":
        n, ho, wo, _ = _nhwc(out, op.get_attr("data_format"))
        kh, kw, cin, mult = w
        return n * ho * wo * cin * mult * kh * kw
    if kind == "MatMul":
        m, k = (inp[1], inp[0]) if op.get_attr("transpose_a") else inp
        ncols = w[0] if op.get_attr("transpose_b") else w[1]
        return m * k * ncols
    # BatchMatMul*: [..., M, K] x [..., K, N] -> [..., M, N]
    batch = 1
    for d in out[:-2]:
        batch *= d
    adj_x = op.get_attr("adj_x")
    k = inp[-2] if adj_x else inp[-1]
    return batch * out[-2] * out[-1] * k


def count_madds(graph_def: Any, input_size: tuple[int, int], input_name: str | None = None,
                batch: int = 1) -> MaddsReport:
    """Count multiply-adds and parameters of ``graph_def`` for one run on an ``input_size`` (H, W) input.

    The input placeholder is replaced (``input_map``) by a placeholder of static shape
    ``[batch, H, W, C]`` and TensorFlow's shape inference does the rest; nothing is executed.
    Raises ModelError when a counted op's shape stays unknown.
    """
    tf = import_tf()
    h, w = int(input_size[0]), int(input_size[1])
    if h <= 0 or w <= 0:
        raise ModelError(f"input size {h}x{w} is not positive")
    src = find_input_placeholder(graph_def, input_name)
    dtype = tf.dtypes.as_dtype(src.attr["dtype"].type)
    declared = tf.TensorShape(src.attr["shape"].shape) if "shape" in src.attr else tf.TensorShape(None)
    channels = declared.as_list()[-1] if declared.rank == 4 and declared.as_list()[-1] else 3
    nodes = {n.name: n for n in graph_def.node}

    graph = tf.Graph()
    with graph.as_default():
        fixed = tf.compat.v1.placeholder(dtype, [batch, h, w, channels], name="zoo_flops_fixed_input")
        try:
            tf.graph_util.import_graph_def(graph_def, input_map={f"{src.name}:0": fixed}, name="g")
        except ValueError as exc:
            first = str(exc).splitlines()[0]
            raise ModelError(f"the graph does not accept a {h}x{w} input: {first}") from None

    ops: list[OpCount] = []
    weight_params = bias_params = bn_params = bn_stats = 0
    counted_weights: set[str] = set()
    for op in graph.get_operations():
        if not op.name.startswith("g/"):
            continue
        node_name = op.name[2:]
        node = nodes.get(node_name)
        if node is None:
            continue
        if op.type in COUNTED_OPS:
            out = _dims(op.outputs[0].shape, f"{op.type} '{node_name}' output")
            inp = _dims(op.inputs[0].shape, f"{op.type} '{node_name}' input")
            wshape = _dims(op.inputs[1].shape, f"{op.type} '{node_name}' weights")
            madds = _op_madds(op, out, inp, wshape)
            const = _resolve_const(nodes, node.input[1])
            params = 0
            if const is not None and const.name not in counted_weights:
                counted_weights.add(const.name)
                params = _const_elements(tf, const)
                weight_params += params
            ops.append(OpCount(node_name, op.type, int(madds), params, inp, out, wshape))
        elif op.type == "BiasAdd":
            const = _resolve_const(nodes, node.input[1])
            if const is not None and const.name not in counted_weights:
                counted_weights.add(const.name)
                bias_params += _const_elements(tf, const)
        elif op.type in _BN_OPS:
            for i, ref in enumerate(node.input[1:5], start=1):
                const = _resolve_const(nodes, ref)
                if const is None or const.name in counted_weights:
                    continue
                counted_weights.add(const.name)
                if i <= 2:
                    bn_params += _const_elements(tf, const)
                else:
                    bn_stats += _const_elements(tf, const)
    return MaddsReport(
        input_size=(h, w), madds=sum(o.madds for o in ops),
        params=weight_params + bias_params + bn_params, weight_params=weight_params,
        bias_params=bias_params, bn_params=bn_params, bn_stat_elements=bn_stats, ops=ops,
        tfprof_float_ops=_tfprof_float_ops(tf, graph),
    )


def _tfprof_float_ops(tf: Any, graph: Any) -> int | None:
    """Total float_ops tfprof reports for the statically shaped graph (static analysis, nothing is run)."""
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    try:
        options = builder(builder.float_operation()).with_empty_output().build()
        return int(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)
    except Exception:  # noqa: BLE001 - a secondary figure; the primary count does not depend on it
        return None


def count_madds_multiscale(graph_for_size: Callable[[tuple[int, int]], Any], crop: Sequence[int],
                           scales: Iterable[float], flip: bool, input_name: str | None = None) -> MaddsReport:
    """Multiply-adds of a multi-scale (+ flip) evaluation: the sum over every scale and flip actually run.

    ``graph_for_size(size)`` returns the GraphDef that runs at the scaled crop ``size`` (for a zoo graph:
    the crop re-targeted graph; for a fully convolutional graph: the same GraphDef); it is counted at an
    input of exactly that size. A flip is the same computation again, so it doubles each scale's count.
    Parameters are those of the graph at the largest scale (weights are shared across scales).
    """
    per_flip = 2 if flip else 1
    total = 0
    tfprof: int | None = 0
    runs = 0
    ops: list[OpCount] = []
    last: MaddsReport | None = None
    for scale in scales:
        size = scaled_crop(crop, scale)
        report = count_madds(graph_for_size(size), size, input_name=input_name)
        total += report.madds * per_flip
        tfprof = None if tfprof is None or report.tfprof_float_ops is None else tfprof + report.tfprof_float_ops * per_flip
        runs += per_flip
        ops.extend(report.ops)
        last = report
    if last is None:
        raise ModelError("no scales given; use at least one scale, e.g. 1.0")
    return MaddsReport(
        input_size=tuple(int(d) for d in crop), madds=total, params=last.params,  # type: ignore[arg-type]
        weight_params=last.weight_params, bias_params=last.bias_params, bn_params=last.bn_params,
        bn_stat_elements=last.bn_stat_elements, ops=ops, runs=runs, tfprof_float_ops=tfprof,
    )
