"""The MobileNet-v3 / EdgeTPU reference fixtures (tests/support/deeplab_ref/mobilenet_v3.py) build what
research/deeplab builds: the expected numbers below are worked out by hand from the reference's conv defs
(slim nets/mobilenet/mobilenet_v3.py, deeplab core/feature_extractor.py), not from the fixture code.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from tests.support.tfgraph import tf as _tf

tf = _tf()

deeplab_ref = pytest.importorskip("tests.support.deeplab_ref")
from tests.support.deeplab_ref import (  # noqa: E402
    FAMILIES,
    export_graph,
    mobilenet_v3,  # noqa: E402
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

PROBE_HW = (65, 97)  # odd sizes: 'SAME' convs round up, ceil(65 / 32) = 3, ceil(97 / 32) = 4

# Per variant: scope, the op that ends the backbone, its channels, and per decoder stride the end point
# name, the op it must be, and its channels (large: expansions 24*3, 40*3, 112*6; small: 16, 24*88/24, 48*3).
VARIANTS = {
    "mobilenet_v3_large_seg": ("MobilenetV3", "Conv_1/hard_swish/mul_1", 480, {
        4: ("layer_4/depthwise_output", "expanded_conv_2/depthwise_output", 72),
        8: ("layer_7/depthwise_output", "expanded_conv_5/depthwise_output", 120),
        16: ("layer_13/depthwise_output", "expanded_conv_11/depthwise_output", 672)}),
    "mobilenet_v3_small_seg": ("MobilenetV3", "Conv_1/hard_swish/mul_1", 288, {
        4: ("layer_2/depthwise_output", "expanded_conv/depthwise_output", 16),
        8: ("layer_4/depthwise_output", "expanded_conv_2/depthwise_output", 88),
        16: ("layer_9/depthwise_output", "expanded_conv_7/depthwise_output", 144)}),
    "mobilenet_edgetpu": ("MobilenetEdgeTPU", "Conv_1/Relu", 1280, {}),
}

# Atrous rates per output stride (mobilenet_base: once the running stride reaches the output stride,
# stride-2 layers run at stride 1 and double the rate of the layers after them). Stride-2 layers: large
# 1, 3, 5, 8, 14; small 1, 2, 3, 5, 10; EdgeTPU 1, 3, 7, 11, 19. layer_N is expanded_conv_{N-2}; the last
# layer is the 1x1 'Conv_1', which gets the rate too. Left out to keep the file fast: small at OS 16 (its OS 8
# build exercises both doublings) and EdgeTPU at OS 8 (its fused blocks all run before stride 8, so OS 8
# only moves the doubling earlier, as for large).
_RANGE = lambda first, last, rate: {f"expanded_conv_{i}": rate for i in range(first, last + 1)}  # noqa: E731
RATES = {
    ("mobilenet_v3_large_seg", 32): {},
    ("mobilenet_v3_large_seg", 16): {**_RANGE(13, 14, 2), "Conv_1": 2},
    ("mobilenet_v3_large_seg", 8): {**_RANGE(7, 12, 2), **_RANGE(13, 14, 4), "Conv_1": 4},
    ("mobilenet_v3_small_seg", 32): {},
    ("mobilenet_v3_small_seg", 8): {**_RANGE(4, 8, 2), **_RANGE(9, 10, 4), "Conv_1": 4},
    ("mobilenet_edgetpu", 32): {},
    ("mobilenet_edgetpu", 16): {**_RANGE(18, 21, 2), "Conv_1": 2},
}

# Which exports cover which (variant, output stride) at full depth; the rest are built as bare backbones.
EXPORTED = {("mobilenet_v3_large_seg", 32): "mnv3_large", ("mobilenet_v3_small_seg", 32): "mnv3_small",
            ("mobilenet_edgetpu", 32): "edgetpu_os32", ("mobilenet_edgetpu", 16): "edgetpu_os16"}


@functools.cache
def _export(name: str):
    return export_graph(FAMILIES[name])


@functools.cache
def _export_graph(name: str):
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(_export(name), name="")
    return graph


@functools.cache
def _backbone(variant: str, output_stride: int):
    tf1 = tf.compat.v1
    graph = tf.Graph()
    # Variables as constants (what a frozen export holds): no variables to create or initialise.
    with graph.as_default(), tf1.variable_scope(tf1.get_variable_scope(),
                                                custom_getter=deeplab_ref.FrozenVariables(seed=0)):
        images = tf1.placeholder(tf.float32, [1, *PROBE_HW, 3], name="images")
        features, end_points = mobilenet_v3.BACKBONES[variant](images, output_stride=output_stride)
    return graph, features, end_points


def _const(graph, tensor) -> np.ndarray:
    op = tensor.op
    while op.type == "Identity":
        op = op.inputs[0].op
    assert op.type == "Const", f"{tensor.name} is not a constant"
    return tf.make_ndarray(op.get_attr("value"))


def _dilations(graph, scope: str) -> dict[str, int]:
    """Layer (e.g. 'expanded_conv_13') -> atrous rate, from the SpaceToBatchND ops under ``scope``."""
    rates = {}
    for op in graph.get_operations():
        if op.type == "SpaceToBatchND" and op.name.startswith(scope + "/"):
            block = _const(graph, op.inputs[1])
            assert block[0] == block[1]
            rates[op.name.split("/")[1]] = int(block[0])
    return rates


@pytest.mark.parametrize("variant,output_stride", sorted(RATES))
def test_backbone_geometry(variant, output_stride):
    scope, last_op, channels, decoder_points = VARIANTS[variant]
    if (variant, output_stride) in EXPORTED:
        family = FAMILIES[EXPORTED[(variant, output_stride)]]
        graph = _export_graph(EXPORTED[(variant, output_stride)])
        height, width = family.crop_size
        features = graph.get_tensor_by_name(f"{scope}/{last_op}:0")
        end_point = {stride: graph.get_tensor_by_name(f"{scope}/{op}:0")
                     for stride, (_, op, _) in decoder_points.items()}
    else:
        graph, features, end_points = _backbone(variant, output_stride)
        height, width = PROBE_HW
        assert features.name == f"{scope}/{last_op}:0"
        assert graph.get_operation_by_name(f"{scope}/{scope}/input").type == "Identity"
        end_point = {}
        for stride, (key, op, _) in decoder_points.items():
            assert end_points[key].name == f"{scope}/{op}:0"
            end_point[stride] = end_points[key]
    assert features.shape.as_list() == [1, math.ceil(height / output_stride), math.ceil(width / output_stride),
                                        channels]
    for stride, (_, _, depth) in decoder_points.items():
        expected_stride = min(stride, output_stride)
        assert end_point[stride].shape.as_list() == [1, math.ceil(height / expected_stride),
                                                     math.ceil(width / expected_stride), depth]
    assert _dilations(graph, scope) == RATES[(variant, output_stride)]


def _producer(tensor, op_type: str):
    assert tensor.op.type == op_type, f"{tensor.name} is {tensor.op.type}, expected {op_type}"
    return tensor.op


def _check_hard_swish(graph, scope: str) -> None:
    """'<scope>/hard_swish': x * relu6(x + 3) * (1/6) on the batch-normed conv output."""
    out = graph.get_operation_by_name(f"{scope}/hard_swish/mul_1")
    assert out.type == "Mul"
    assert np.isclose(_const(graph, out.inputs[1]), 1.0 / 6.0, rtol=0, atol=1e-7)
    inner = _producer(out.inputs[0], "Mul")
    x = inner.inputs[0]
    assert x.op.type == "FusedBatchNormV3" and x.op.name.startswith(scope + "/")
    add = _producer(_producer(inner.inputs[1], "Relu6").inputs[0], "AddV2")
    assert add.inputs[0] is x and _const(graph, add.inputs[1]) == 3.0


def _check_squeeze_excite(graph, block_scope: str, squeeze_channels: int) -> None:
    """depthwise_output * hard_sigmoid(conv(relu(conv(avgpool(depthwise_output))))), biases, no BN."""
    gated = graph.get_operation_by_name(f"{block_scope}/squeeze_excite/mul")
    x = graph.get_tensor_by_name(f"{block_scope}/depthwise_output:0")
    assert gated.inputs[0] is x
    gate = _producer(gated.inputs[1], "Mul")
    assert np.isclose(_const(graph, gate.inputs[1]), 0.16667, rtol=0, atol=1e-7)
    add = _producer(_producer(gate.inputs[0], "Relu6").inputs[0], "AddV2")
    assert _const(graph, add.inputs[1]) == 3.0
    excite = _producer(_producer(add.inputs[0], "BiasAdd").inputs[0], "Conv2D")
    assert _const(graph, excite.inputs[1]).shape == (1, 1, squeeze_channels, x.shape[-1])
    squeeze = _producer(_producer(_producer(excite.inputs[0], "Relu").inputs[0], "BiasAdd").inputs[0], "Conv2D")
    pool = _producer(squeeze.inputs[0], "AvgPool")
    assert pool.inputs[0] is x
    assert list(pool.get_attr("ksize")) == [1, *x.shape.as_list()[1:3], 1]
    assert pool.get_attr("padding") == b"VALID"


# SE blocks and their squeeze widths: make_divisible(C / 4, 8) of the depthwise width C, by hand.
# large: layers 5-7 (C 72, 120, 120), 12-16 (C 480, 672, 336 (seg), 480, 480);
# small: layer 2 (C 16), 5-12 (C 96, 240, 240, 120, 144, 144 (seg), 288, 288).
SE_BLOCKS = {
    "mnv3_large": {3: 24, 4: 32, 5: 32, 10: 120, 11: 168, 12: 88, 13: 120, 14: 120},
    "mnv3_small": {0: 8, 3: 24, 4: 64, 5: 64, 6: 32, 7: 40, 8: 40, 9: 72, 10: 72},
}
# Hard swish: the first conv, expand + depthwise of the listed blocks, and the last conv.
HARD_SWISH_BLOCKS = {"mnv3_large": range(6, 15), "mnv3_small": range(3, 11)}


def _block(index: int) -> str:
    return "expanded_conv" if index == 0 else f"expanded_conv_{index}"


@pytest.mark.parametrize("family", ["mnv3_large", "mnv3_small"])
def test_squeeze_excite_and_hard_swish_as_the_reference(family):
    graph = _export_graph(family)
    scope = "MobilenetV3"
    blocks = {op.name.split("/")[1] for op in graph.get_operations() if op.name.startswith(scope + "/expanded_conv")}
    se_found = {op.name.split("/")[1] for op in graph.get_operations()
                if op.name.startswith(scope + "/") and "/squeeze_excite/" in op.name}
    assert se_found == {_block(i) for i in SE_BLOCKS[family]}
    for index, squeeze in SE_BLOCKS[family].items():
        _check_squeeze_excite(graph, f"{scope}/{_block(index)}", squeeze)

    hswish_scopes = {"Conv", "Conv_1"} | {f"{_block(i)}/{part}" for i in HARD_SWISH_BLOCKS[family]
                                          for part in ("expand", "depthwise")}
    found = {op.name[len(scope) + 1:].rsplit("/hard_swish/", 1)[0] for op in graph.get_operations()
             if op.name.startswith(scope + "/") and "/hard_swish/" in op.name}
    assert found == hswish_scopes
    for sub in hswish_scopes:
        _check_hard_swish(graph, f"{scope}/{sub}")
    # Everything else in the backbone is ReLU (the conv defs override mobilenet_v2_arg_scope's ReLU6), and
    # ReLU6 only appears inside hard swish and the squeeze-excite gates.
    for block in blocks - {_block(i) for i in HARD_SWISH_BLOCKS[family]}:
        assert graph.get_operation_by_name(f"{scope}/{block}/depthwise/Relu").type == "Relu"
    for op in graph.get_operations():
        if op.type == "Relu6" and op.name.startswith(scope + "/"):
            assert "/hard_swish/" in op.name or "/squeeze_excite/" in op.name, op.name


def test_edgetpu_fused_blocks_and_residuals():
    graph = _export_graph("edgetpu_os32")
    names = {op.name for op in graph.get_operations()}
    scope = "MobilenetEdgeTPU"
    assert not any("squeeze_excite" in n or "hard_swish" in n for n in names)
    # layers 2-10 are fused: one kxk 'expand' conv carrying the stride, no depthwise; layer 2 (16 from 32,
    # factor 1) does not widen, so it is the projection alone.
    assert not any(n.startswith(f"{scope}/expanded_conv/expand/") for n in names)
    for index in range(9):
        assert not any(n.startswith(f"{scope}/{_block(index)}/depthwise/") for n in names)
    for index, stride, cin, cout in ((1, 2, 16, 128), (2, 1, 32, 128), (5, 2, 32, 256), (6, 1, 48, 192)):
        conv = graph.get_operation_by_name(f"{scope}/{_block(index)}/expand/Conv2D")
        assert list(conv.get_attr("strides")) == [1, stride, stride, 1]
        assert _const(graph, conv.inputs[1]).shape == (3, 3, cin, cout)
    for index in range(9, 22):
        assert f"{scope}/{_block(index)}/depthwise/depthwise" in names
    # residual adds: stride 1 with equal depth, except layer 15 (residual=False)
    adds = {op.name.split("/")[1] for op in graph.get_operations()
            if op.name.startswith(f"{scope}/expanded_conv") and op.name.endswith("/add") and op.type == "AddV2"}
    assert adds == {_block(i) for i in (2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20)}


@pytest.mark.parametrize("family", sorted(mobilenet_v3.FAMILIES))
def test_family_export_runs(family):
    config = FAMILIES[family]
    graph = _export_graph(family)
    image = (np.random.RandomState(7).rand(1, 100, 150, 3) * 255).astype(np.uint8)
    with tf.compat.v1.Session(graph=graph) as sess:
        labels = sess.run("SemanticPredictions:0", {"ImageTensor:0": image})
    assert labels.shape == (1, 100, 150) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < config.num_classes
    assert len(np.unique(labels)) > 1
    pools = [op for op in graph.get_operations() if op.type == "AvgPool" and "squeeze_excite" not in op.name]
    assert len(pools) == 1
    ksize, strides = list(pools[0].get_attr("ksize")), list(pools[0].get_attr("strides"))
    feature_hw = [math.ceil(d / config.output_stride) for d in config.crop_size]
    if config.model_variant == "mobilenet_edgetpu":
        # global image pooling over the crop's feature map (image_pooling_stride keeps its default 1),
        # ASPP 1x1 conv of aspp_convs_filters
        assert ksize == [1, *feature_hw, 1] and strides == [1, 1, 1, 1]
        assert _const(graph, graph.get_operation_by_name("aspp0/Conv2D").inputs[1]).shape[-1] == \
            config.aspp_convs_filters
        assert not any(op.name.startswith("decoder/") for op in graph.get_operations())
    else:
        # image_pooling_crop_size 129 at OS 32 -> a 5x5 window, strides 4x5 over the 9x15 map: a 2x3 grid
        assert feature_hw == [9, 15] and ksize == [1, 5, 5, 1] and strides == [1, 4, 5, 1]
        _, _, channels, decoder_points = VARIANTS[config.model_variant]
        assert pools[0].outputs[0].shape.as_list() == [1, 2, 3, channels]
        # the decoder projects the OS-8 end point the reference names for this variant
        projection = graph.get_operation_by_name("decoder/feature_projection0/Conv2D")
        assert projection.inputs[0].name == f"MobilenetV3/{decoder_points[8][1]}:0"
        assert projection.inputs[0].shape.as_list()[1:3] == [33, 57]


@pytest.mark.parametrize("pair", [("edgetpu_os32", "edgetpu_os16"), ("edgetpu_slim_os32", "edgetpu_slim_os16")])
def test_same_seed_same_weights_at_os16_and_os32(pair):
    def weights(name):
        return {node.name: tf.make_ndarray(node.attr["value"].tensor) for node in _export(name).node
                if node.op == "Const" and node.name.startswith("MobilenetEdgeTPU/")
                and node.name.rsplit("/", 1)[-1] in ("weights", "depthwise_weights", "biases", "gamma", "beta",
                                                     "moving_mean", "moving_variance")}

    first, second = weights(pair[0]), weights(pair[1])
    assert first.keys() == second.keys() and len(first) > 100
    for name, value in first.items():
        assert np.array_equal(value, second[name]), name
