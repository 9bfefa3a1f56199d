"""The Xception-65/71 and dense-prediction-cell reference fixtures build what research/deeplab exports.

Expected numbers are derived by hand from the reference (core/xception.py, core/dense_prediction_cell.py,
the Cityscapes DPC json, model.py's conv_rate_multiplier = 16 // output_stride), not from the fixture code.
Each narrow export is built once per session (building dominates the cost, not the tiny crops).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from tests.support.tfgraph import tf

deeplab_ref = pytest.importorskip("tests.support.deeplab_ref")
from tests.support.deeplab_ref import (  # noqa: E402
    FAMILIES,
    export_graph,
    xception,  # noqa: E402
)

XCEPTION_FAMILIES = ("xception65_os8_decoder", "xception65_os16_decoder", "x71_dpc_os8", "x71_dpc_os16")

# feature_extractor.networks_to_feature_maps: the decoder's OS-4 end point of each backbone.
DECODER_OS4 = {
    "xception_65": "entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise",
    "xception_71": "entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise",
}
EXIT_OUTPUT = "exit_flow/block2/unit_1/xception_module/separable_conv3_pointwise/Relu"


@pytest.fixture(scope="session")
def exports() -> Any:
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = export_graph(FAMILIES[name])
        return cache[name]

    return get


def _nodes(graph_def: Any) -> dict[str, Any]:
    return {n.name: n for n in graph_def.node}


def _const_value(node: Any) -> np.ndarray:
    return tf().make_ndarray(node.attr["value"].tensor)


def _atrous_depthwise(graph_def: Any) -> dict[str, list[int]]:
    """Depthwise convs fed by SpaceToBatchND (TF's atrous form) -> their block shape (the rate)."""
    nodes = _nodes(graph_def)
    out = {}
    for n in graph_def.node:
        if n.op != "DepthwiseConv2dNative":
            continue
        src = nodes[n.input[0].split(":")[0]]
        if src.op == "SpaceToBatchND":
            out[n.name] = [int(v) for v in _const_value(nodes[src.input[1]])]
    return out


def test_xception_families_are_registered() -> None:
    assert set(XCEPTION_FAMILIES) <= set(FAMILIES)
    assert FAMILIES["xception65_os8_decoder"].atrous_rates == (12, 24, 36)
    assert FAMILIES["xception65_os16_decoder"].atrous_rates == (6, 12, 18)
    for name in XCEPTION_FAMILIES:
        assert FAMILIES[name].decoder_output_stride == (4,)
        assert FAMILIES[name].width < 1.0


@pytest.mark.parametrize("name", XCEPTION_FAMILIES)
def test_family_export_runs_on_a_small_image(exports: Any, name: str) -> None:
    config = FAMILIES[name]
    graph_def = exports(name)
    t = tf()
    graph = t.Graph()
    with graph.as_default():
        t.compat.v1.import_graph_def(graph_def, name="")
    image = (np.random.RandomState(1).rand(1, 50, 60, 3) * 255).astype(np.uint8)
    with t.compat.v1.Session(graph=graph) as sess:
        labels = sess.run("SemanticPredictions:0", {"ImageTensor:0": image})
    assert labels.shape == (1, 50, 60) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < config.num_classes
    assert len(np.unique(labels)) > 1  # random weights, but the prediction varies over the image
    # The decoder reads the backbone's OS-4 end point (a BN output: no activation in the Xception module).
    nodes = _nodes(graph_def)
    scope = config.model_variant
    projection = nodes["decoder/feature_projection0/Conv2D"]
    assert projection.input[0] == f"{scope}/{DECODER_OS4[scope]}/BatchNorm/FusedBatchNormV3"


# Atrous depthwise convs (SpaceToBatchND -> DepthwiseConv2dNative -> BatchToSpaceND), by hand:
# xception_65 at OS 8 = blocks at OS 4 after the stride-2 root conv: entry_flow/block3 reaches OS 4 and
# keeps rate 1, then rate 2 for middle_flow (16 units x 3) and exit_flow/block1 (3), rate 4 for
# exit_flow/block2 (3): 54, plus the 3 ASPP branches = 57. At OS 16 only exit_flow/block2 (rate 2): 3 + 3.
# xception_71 has the same tail: 54 / 3 in the backbone; the Cityscapes DPC adds every branch whose
# [rate_h, rate_w] x (16 // OS) is not [1, 1]: all 5 at OS 8, 4 at OS 16 ([1, 1] branch3 is plain).
ATROUS = {"xception65_os8_decoder": 57, "xception65_os16_decoder": 6, "x71_dpc_os8": 59, "x71_dpc_os16": 7}
# Explicit Pads: fixed_padding before each strided conv still striding (root conv + strided blocks below
# the target OS), plus the one of the input's pad_to_bounding_box.
PADS = {"xception65_os8_decoder": 1 + 3, "xception65_os16_decoder": 1 + 4, "x71_dpc_os8": 1 + 3,
        "x71_dpc_os16": 1 + 4}


@pytest.mark.parametrize("name", XCEPTION_FAMILIES)
def test_atrous_and_padding_ops(exports: Any, name: str) -> None:
    graph_def = exports(name)
    ops = Counter(n.op for n in graph_def.node)
    atrous = _atrous_depthwise(graph_def)
    assert len(atrous) == ATROUS[name] == ops["SpaceToBatchND"] == ops["BatchToSpaceND"]
    assert ops["Pad"] == PADS[name]
    scope = FAMILIES[name].model_variant
    os8 = FAMILIES[name].output_stride == 8
    mid = f"{scope}/middle_flow/block1/unit_16/xception_module/separable_conv2_depthwise/depthwise"
    ext = f"{scope}/exit_flow/block2/unit_1/xception_module/separable_conv3_depthwise/depthwise"
    assert atrous.get(mid) == ([2, 2] if os8 else None)
    assert atrous[ext] == ([4, 4] if os8 else [2, 2])
    if FAMILIES[name].dense_prediction_cell:
        # branch0 [1, 6] and branch4 [6, 21] of dense_prediction_cell_branch5_top1_cityscapes.json
        m = 2 if os8 else 1
        assert atrous["meta_architecture/branch0_depthwise/depthwise"] == [1 * m, 6 * m]
        assert atrous["meta_architecture/branch4_depthwise/depthwise"] == [6 * m, 21 * m]
        assert ("meta_architecture/branch3_depthwise/depthwise" in atrous) == os8
        assert "aspp0/Conv2D" not in _nodes(graph_def)


@pytest.mark.parametrize("name,feature", [("xception65_os8_decoder", 65), ("xception65_os16_decoder", 33),
                                          ("x71_dpc_os8", 65), ("x71_dpc_os16", 33)])
def test_exported_backbone_geometry_at_513(exports: Any, name: str, feature: int) -> None:
    """The exported backbone, fed a 513x513 image: (513 - 1) / OS + 1 features, decoder end point at 129."""
    graph_def = exports(name)
    config = FAMILIES[name]
    scope = config.model_variant
    nodes = _nodes(graph_def)
    backbone_input = nodes[f"{scope}/Pad"].input[0]  # the root conv's fixed padding reads the image
    wanted = [f"{scope}/{EXIT_OUTPUT}", f"{scope}/{DECODER_OS4[scope]}/BatchNorm/FusedBatchNormV3"]
    t = tf()
    sub = t.compat.v1.graph_util.extract_sub_graph(graph_def, wanted)
    for node in sub.node:  # the export recorded its crop's shapes; let TF infer them for 513 instead
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
    with t.Graph().as_default():
        image = t.compat.v1.placeholder(t.float32, [1, 513, 513, 3])
        out, low = t.compat.v1.import_graph_def(sub, input_map={backbone_input: image}, name="",
                                                return_elements=[w + ":0" for w in wanted])
        assert out.shape.as_list() == [1, feature, feature, xception.scaled_depth(2048, config.width)]
        assert low.shape.as_list()[1:3] == [129, 129]


def test_backbone_os32_and_end_points() -> None:
    """A bare Xception-65 at OS 32 on 513x513: 17x17 features, the reference's end point names."""
    t = tf()
    v1 = t.compat.v1
    def constant_getter(getter: Any, name: str, shape: Any = None, dtype: Any = None, **kwargs: Any) -> Any:
        return t.zeros(shape, dtype or t.float32, name=name)  # shapes only: no variables to create

    with t.Graph().as_default() as graph, v1.variable_scope(v1.get_variable_scope(), custom_getter=constant_getter):
        images = v1.placeholder(t.float32, [1, 513, 513, 3])
        features, end_points = xception.build_xception_65(images, output_stride=32, width=0.0625)
    assert features.shape.as_list() == [1, 17, 17, 128]
    for name, size in [("entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise", 129),
                       ("entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise", 65),
                       ("exit_flow/block1/unit_1/xception_module/separable_conv2_pointwise", 33),
                       ("exit_flow/block1", 17), ("middle_flow/block1/unit_16/xception_module", 33)]:
        assert end_points[name] is end_points["xception_65/" + name]
        assert end_points[name].shape.as_list()[1:3] == [size, size]
    ops = Counter(op.type for op in graph.get_operations())
    assert ops["SpaceToBatchND"] == 0 and ops["Pad"] == 5  # root conv + 4 strided blocks
    # 1 + 1 root convs, 21 modules x 3 pointwise, 4 'conv' shortcuts; 21 x 3 depthwise
    assert ops["Conv2D"] == 2 + 63 + 4 and ops["DepthwiseConv2dNative"] == 63
    assert ops["FusedBatchNormV3"] == ops["Conv2D"] + ops["DepthwiseConv2dNative"]


def test_same_seed_same_weights_at_os8_and_os16(exports: Any) -> None:
    """Variable names do not depend on the output stride (or crop), so the weights are identical."""
    a = {n.name: n for n in exports("xception65_os8_decoder").node if n.op == "Const"}
    b = {n.name: n for n in exports("xception65_os16_decoder").node if n.op == "Const"}
    weights = sorted(k for k in a if k.endswith(("weights", "gamma", "beta", "moving_mean", "moving_variance")))
    assert len(weights) > 500
    assert weights == sorted(k for k in b if k.endswith(("weights", "gamma", "beta", "moving_mean",
                                                          "moving_variance")))
    for key in weights:
        assert a[key].attr["value"].tensor.tensor_content == b[key].attr["value"].tensor.tensor_content, key
