"""The reference-export fixtures (tests/support/deeplab_ref) against a graph the reference code exported.

shared/testdata holds a frozen MobileNet-v2 graph written by research/deeplab's export path itself;
our export of the same configuration must have the same nodes, ops, wiring and attributes (only the
random weights differ), and the facts its .json lists. The other tests cover what the fixtures promise
their users: weights that depend only on (seed, variable name), working multi-scale + flip and decoder
exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.support.tfgraph import GraphRunner, const_value, random_image, tf

# shared/ sits beside the checkout (as for the seed, tests/support/seed.py).
REFERENCE_PB = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "deeplab_export_mnv2_dm05_os16_513.pb"
REFERENCE_FACTS = REFERENCE_PB.with_suffix(".json")

pytestmark = pytest.mark.skipif(not REFERENCE_PB.exists(), reason="reference-built test data not present")


def _ref():
    from tests.support import deeplab_ref

    return deeplab_ref


@pytest.fixture(scope="module")
def reference_graph():
    graph_def = tf().compat.v1.GraphDef()
    graph_def.ParseFromString(REFERENCE_PB.read_bytes())
    return graph_def


@pytest.fixture(scope="module")
def facts():
    return json.loads(REFERENCE_FACTS.read_text())


@pytest.fixture(scope="module")
def ours_513():
    ref = _ref()
    return ref.export_graph(ref.ExportConfig("mobilenet_v2", depth_multiplier=0.5, output_stride=16,
                                             crop_size=(513, 513), num_classes=21))


SMALL = dict(model_variant="mobilenet_v2", depth_multiplier=0.25, num_classes=21, seed=7)


@pytest.fixture(scope="module")
def small_os16():
    ref = _ref()
    return ref.export_graph(ref.ExportConfig(**SMALL, output_stride=16, crop_size=(65, 65)))


@pytest.fixture(scope="module")
def small_os8_decoder():
    ref = _ref()
    return ref.export_graph(ref.ExportConfig(**SMALL, output_stride=8, crop_size=(97, 97),
                                             decoder_output_stride=(4,)))


@pytest.fixture(scope="module")
def small_multiscale_flip():
    ref = _ref()
    return ref.export_graph(ref.ExportConfig(**SMALL, output_stride=16, crop_size=(65, 65),
                                             inference_scales=(0.75, 1.0), add_flipped_images=True))


def _nodes(graph_def):
    return {n.name: n for n in graph_def.node}


def _variable_consts(graph_def):
    """Frozen variables: the Consts read through a '<name>/read' Identity."""
    nodes = _nodes(graph_def)
    return {name: const_value(node) for name, node in nodes.items()
            if node.op == "Const" and f"{name}/read" in nodes}


def test_mnv2_export_matches_the_reference_graph_node_for_node(ours_513, reference_graph):
    ours, theirs = _nodes(ours_513), _nodes(reference_graph)
    assert sorted(ours) == sorted(theirs)
    wiring = [name for name in theirs
              if (ours[name].op, list(ours[name].input)) != (theirs[name].op, list(theirs[name].input))]
    assert wiring == []
    variables = set(_variable_consts(reference_graph))
    assert len(variables) == 272  # every weight, bias and batch-norm tensor of the network
    attr_diffs, value_diffs = [], []
    for name, node in theirs.items():
        mine = ours[name]
        for key in set(node.attr) | set(mine.attr):
            if key != "value" and node.attr[key] != mine.attr[key]:
                attr_diffs.append((name, key))
        if node.op == "Const":
            a, b = const_value(node), const_value(mine)
            same = a.shape == b.shape if name in variables else (a.shape == b.shape and np.array_equal(a, b))
            if not same:
                value_diffs.append(name)
    assert attr_diffs == [] and value_diffs == []


def _producer(nodes, ref):
    return nodes[ref.lstrip("^").split(":")[0]]


def test_preprocessing_chain_is_the_one_the_reference_facts_list(ours_513, facts):
    nodes = _nodes(ours_513)
    chain = [re.fullmatch(r"(\S+) \((\w+)\)", item).groups()
             for item in facts["preprocessing_chain_from_mean_subtraction"]]
    for name, op in chain:
        assert nodes[name].op == op, name
    for (previous, _), (name, _) in zip(chain, chain[1:]):
        assert previous in [i.split(":")[0] for i in nodes[name].input], f"{name} does not read {previous}"
    # The chain ends where the backbone starts.
    assert nodes["MobilenetV2/MobilenetV2/input"].input == [chain[-1][0]]


def test_image_pooling_crop_consts_and_argmax_input_are_the_reference_facts(ours_513, facts):
    nodes = _nodes(ours_513)
    kernel = [int(k) for k in re.search(r"ksize \[([\d, ]+)\]", facts["image_pooling"]).group(1).split(",")]
    strides = [int(k) for k in re.search(r"strides \[([\d, ]+)\]", facts["image_pooling"]).group(1).split(",")]
    pool = nodes["AvgPool2D/AvgPool"]
    assert list(pool.attr["ksize"].list.i) == kernel == [1, 33, 33, 1]
    assert list(pool.attr["strides"].list.i) == strides
    assert pool.attr["padding"].s == b"VALID"
    assert const_value(nodes["ResizeBilinear/size"]).tolist() == [33, 33]

    assert int(const_value(nodes["sub/x"])) == int(const_value(nodes["sub_1/x"])) == 513
    assert const_value(nodes["Shape_3"]).tolist() == [1, 513, 513, 3]

    argmax = nodes["ArgMax"]
    resize_to_crop = _producer(nodes, argmax.input[0])
    assert resize_to_crop.name == "ResizeBilinear_2" and resize_to_crop.attr["align_corners"].b
    size = _producer(nodes, resize_to_crop.input[1])
    assert size.name == "strided_slice_4" and size.input[0] == "Shape_3"
    resize_to_logits = _producer(nodes, resize_to_crop.input[0])
    assert resize_to_logits.name == "ResizeBilinear_1"
    assert const_value(_producer(nodes, resize_to_logits.input[1])).tolist() == [33, 33]
    assert _producer(nodes, resize_to_logits.input[0]).name == "logits/semantic/BiasAdd"
    assert ("SemanticProbabilities" in nodes) == facts["has_SemanticProbabilities"]


def test_same_seed_gives_bit_identical_weights_across_crop_output_stride_and_scales(
        small_os16, small_os8_decoder, small_multiscale_flip):
    ref = _ref()
    base = _variable_consts(small_os16)
    assert len(base) > 200
    for other in (_variable_consts(small_os8_decoder), _variable_consts(small_multiscale_flip)):
        assert set(base) <= set(other)
        assert all(np.array_equal(base[name], other[name]) for name in base)
    # The values are the documented pure function of (seed, name, shape), and the seed matters.
    for name in ("MobilenetV2/Conv/weights", "aspp0/BatchNorm/moving_variance", "logits/semantic/biases"):
        assert np.array_equal(base[name], ref.variable_value(SMALL["seed"], name, base[name].shape))
        assert not np.array_equal(base[name], ref.variable_value(SMALL["seed"] + 1, name, base[name].shape))


def test_exports_run_and_predictions_vary_across_the_image(small_os16):
    runner = GraphRunner(small_os16)
    image = random_image(50, 60, seed=3)
    labels = runner.predict(image)
    assert labels.shape == (50, 60) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < 21
    assert np.bincount(labels.ravel()).max() < 0.9 * labels.size  # not one class everywhere
    runner.close()


def test_multiscale_flip_export_builds_every_branch_and_is_flip_equivariant(small_multiscale_flip):
    nodes = _nodes(small_multiscale_flip)
    # Two scales x (image, flipped image): four backbones sharing one set of weights.
    backbones = [n for n in nodes if n.endswith("/Conv/Conv2D") and n.startswith("MobilenetV2")]
    assert len(backbones) == 4
    assert sum(n.op == "ReverseV2" for n in nodes.values()) == 4  # two flipped inputs, two flipped logits
    assert sum(n.op == "Softmax" for n in nodes.values()) == 4
    assert any(n.op == "Mean" for n in nodes.values())
    image_resizes = [n for n in nodes.values() if n.op == "ResizeBilinear"
                     and _producer(nodes, n.input[0]).name in ("ExpandDims", "ReverseV2")]
    assert [const_value(_producer(nodes, n.input[1])).tolist() for n in image_resizes] == [[49, 49]] * 2  # 65 x 0.75

    runner = GraphRunner(small_multiscale_flip)
    image = random_image(65, 65, seed=4)  # exactly the crop: no padding, so flipping commutes with the graph
    labels = runner.predict(image)
    flipped = runner.predict(image[:, ::-1].copy())
    assert labels.shape == (65, 65)
    # Averaging each scale with its mirror makes the prediction mirror-symmetric (up to float ties).
    assert np.mean(labels == flipped[:, ::-1]) > 0.99
    runner.close()


def test_decoder_export_reads_layer_4_and_upsamples_to_output_stride_4(small_os8_decoder):
    nodes = _nodes(small_os8_decoder)
    projection = nodes["decoder/feature_projection0/Conv2D"]
    assert projection.input[0] == "MobilenetV2/expanded_conv_2/depthwise_output"  # layer_4
    for name in ("decoder/decoder_conv0_depthwise/depthwise", "decoder/decoder_conv0_pointwise/Conv2D",
                 "decoder/decoder_conv1_depthwise/depthwise", "decoder/decoder_conv1_pointwise/Conv2D"):
        assert name in nodes
    concat = nodes["decoder/concat"]
    sizes = [const_value(_producer(nodes, _producer(nodes, i).input[1])).tolist() for i in concat.input[:2]]
    assert sizes == [[25, 25], [25, 25]]  # scale_dimension(97, 1/4)
    logits_resize = _producer(nodes, _producer(nodes, nodes["ArgMax"].input[0]).input[0])
    assert _producer(nodes, logits_resize.input[0]).name == "logits/semantic/BiasAdd"
    assert const_value(_producer(nodes, logits_resize.input[1])).tolist() == [25, 25]

    runner = GraphRunner(small_os8_decoder)
    labels = runner.predict(random_image(40, 90, seed=5))
    assert labels.shape == (40, 90) and labels.max() < 21
    runner.close()
