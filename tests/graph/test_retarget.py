"""Crop re-targeting: one frozen graph, rebuilt for another crop, gives the natively built graph's output."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import export
from tests.support.refgraph import reference_style_graph
from tests.support.tfgraph import GraphRunner, const_value, nodes_by_op, random_image, tf
from zoo_cli.errors import ModelError
from zoo_cli.graph.crop_pattern import analyse
from zoo_cli.graph.geometry import required_paddings
from zoo_cli.graph.retarget import retarget, retarget_or_none

SEED, CLASSES = 21, 5


def _predict_and_logits(gd, image, logits="logits/BiasAdd:0"):
    r = GraphRunner(gd)
    try:
        return r.run(["SemanticPredictions:0", logits], {"ImageTensor:0": image[None]})
    finally:
        r.close()


@pytest.fixture(scope="module")
def g65():
    return export.tiny_deeplab(seed=SEED, num_classes=CLASSES, crop=65)


@pytest.mark.parametrize("variant", [dict(), dict(decoder=True), dict(output_stride=16)],
                         ids=["os8", "os8-decoder", "os16"])
def test_crop65_retargeted_to_129_equals_native_129_pixel_for_pixel(variant):
    small = export.tiny_deeplab(seed=SEED, num_classes=CLASSES, crop=65, **variant)
    native = export.tiny_deeplab(seed=SEED, num_classes=CLASSES, crop=129, **variant)
    image = random_image(120, 120, seed=5)
    with pytest.raises(tf().errors.InvalidArgumentError):  # why re-targeting exists
        GraphRunner(small).predict(image)
    moved = retarget(small, 129)
    got, got_logits = _predict_and_logits(moved, image)
    want, want_logits = _predict_and_logits(native, image)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_logits, want_logits)
    assert len(np.unique(want)) >= 2  # a map with structure, not a constant


@pytest.mark.parametrize("crop, size", [((100, 77), (97, 71)), ((57, 201), (40, 199)), ((33, 33), (33, 33))])
def test_odd_crops_not_multiples_of_the_stride(g65, crop, size):
    moved = retarget(g65, crop)
    native = export.tiny_deeplab(seed=SEED, num_classes=CLASSES, crop=crop)
    image = random_image(*size, seed=6)
    got, got_logits = _predict_and_logits(moved, image)
    want, want_logits = _predict_and_logits(native, image)
    np.testing.assert_array_equal(got_logits, want_logits)
    np.testing.assert_array_equal(got, want)


def test_rewrites_exactly_the_crop_encoding_places(g65):
    moved = retarget(g65, (129, 257))
    def ints(gd):
        return [const_value(n).tolist() for n in nodes_by_op(gd, "Const")
                if n.attr["dtype"].type == 3 and const_value(n).size in (1, 2, 4)]

    assert ints(g65).count(65) == 2 and [1, 65, 65, 3] in ints(g65) and [9, 9] in ints(g65)
    after = ints(moved)
    assert 129 in after and 257 in after and 65 not in after
    assert [1, 129, 257, 3] in after and [17, 33] in after
    (pool,) = nodes_by_op(moved, "AvgPool")
    assert list(pool.attr["ksize"].list.i) == [1, 17, 33, 1]
    assert list(pool.attr["strides"].list.i) == [1, 1, 1, 1]
    # The original is untouched.
    (pool0,) = nodes_by_op(g65, "AvgPool")
    assert list(pool0.attr["ksize"].list.i) == [1, 9, 9, 1]
    assert len(moved.node) == len(g65.node)


def test_analyse_reports_the_pattern(g65):
    p = analyse(g65)
    assert p.crop == (65, 65) and p.logits_size == (9, 9) and p.logits_stride == (8, 8)
    assert p.num_classes == CLASSES and p.input_tensor == "ImageTensor:0"
    assert p.padded_image == export.PADDED_IMAGE_NAME + ":0"
    assert p.logits == export.LOGITS_NAME + ":0"
    assert len(p.avg_pools) == 1 and len(p.resizes) == 1 and len(p.atrous) == 2
    assert p.logits_size_at((513, 513), 0.5) == (33, 33)


def _renamed(gd):
    """Every node renamed to an opaque name (except the interface), so only wiring can identify it."""
    keep = {"ImageTensor", "SemanticPredictions"}
    names = {n.name: (n.name if n.name in keep else f"n{i}") for i, n in enumerate(gd.node)}
    out = tf().compat.v1.GraphDef()
    out.CopyFrom(gd)
    for n in out.node:
        n.name = names[n.name]
        for i, ref in enumerate(n.input):
            ctrl = ref.startswith("^")
            base, _, port = ref.lstrip("^").partition(":")
            n.input[i] = ("^" if ctrl else "") + names[base] + (f":{port}" if port else "")
        if "_class" in n.attr:
            del n.attr["_class"]
    return out


def test_detection_is_structural_not_by_name():
    small = _renamed(export.tiny_deeplab(seed=SEED, num_classes=CLASSES, crop=65, decoder=True))
    native = export.tiny_deeplab(seed=SEED, num_classes=CLASSES, crop=129, decoder=True)
    p = analyse(small)
    assert p.crop == (65, 65) and len(p.atrous) == 2 and len(p.resizes) == 2
    image = random_image(101, 128, seed=8)
    r1, r2 = GraphRunner(retarget(small, 129, p)), GraphRunner(native)
    np.testing.assert_array_equal(r1.predict(image), r2.predict(image))


def test_reference_style_wiring_with_output_shapes_and_strided_pool():
    # 3-D preprocessing + expand_dims, a [1,1,3] mean, AvgPool strides == kernel, an extra no-op logits
    # resize, nearest resize of the labels, and `_output_shapes` attributes on every node.
    small = reference_style_graph(seed=SEED, num_classes=CLASSES, crop=65)
    native = reference_style_graph(seed=SEED, num_classes=CLASSES, crop=(129, 97))
    p = analyse(small)
    assert p.padded_rank == 4 and p.logits_size == (9, 9) and len(p.resizes) == 2
    moved = retarget(small, (129, 97), p)
    assert not any("_output_shapes" in n.attr for n in moved.node)
    (pool,) = nodes_by_op(moved, "AvgPool")
    assert list(pool.attr["ksize"].list.i) == list(pool.attr["strides"].list.i) == [1, 17, 13, 1]
    image = random_image(111, 90, seed=9)
    r1, r2 = GraphRunner(moved), GraphRunner(native)
    np.testing.assert_array_equal(r1.predict(image), r2.predict(image))


def test_shared_constant_is_not_changed_for_its_other_reader():
    # Two resizes sharing one size Const: only the crop-dependent one may change.
    t = tf()
    tf1 = t.compat.v1

    def body(images, net):
        x = net.conv(images, "c1", 8, 3, stride=2)
        x = net.conv(x, "c2", 8, 3, stride=2)
        x = net.conv(x, "c3", 8, 3, stride=2)
        pool = net.image_pooling(x, "image_pooling", 8)
        x = tf1.concat([pool, net.conv(x, "b0", 8, 1)], 3)
        return net.conv(x, "logits", 3, 1, relu=False)

    gd = export.export_frozen_graph(body, crop=65, num_classes=3, output_stride=8, seed=1)
    moved = retarget(gd, 129)
    r1 = GraphRunner(moved)
    r2 = GraphRunner(export.export_frozen_graph(body, crop=129, num_classes=3, output_stride=8, seed=1))
    image = random_image(129, 129, seed=2)
    np.testing.assert_array_equal(r1.predict(image), r2.predict(image))


def _no_pad_graph():
    t = tf()
    tf1 = t.compat.v1
    g = t.Graph()
    with g.as_default():
        x = tf1.placeholder(t.uint8, [1, None, None, 3], name="ImageTensor")
        y = t.nn.conv2d(tf1.cast(x, t.float32), np.ones((3, 3, 3, 3), np.float32), 1, "SAME")
        full = tf1.image.resize_bilinear(y, tf1.shape(x)[1:3], align_corners=True)
        t.identity(tf1.cast(tf1.argmax(full, 3), t.int32), name="SemanticPredictions")
    return g.as_graph_def()


def test_refuses_with_a_clear_message_when_the_pattern_is_missing(g65):
    with pytest.raises(ModelError, match="cannot re-target this graph: no Pad of the input image"):
        analyse(_no_pad_graph())
    broken = tf().compat.v1.GraphDef()
    broken.CopyFrom(g65)
    for n in broken.node:
        if n.name == "SemanticPredictions":
            n.name = "Other"
    with pytest.raises(ModelError, match="no output 'SemanticPredictions'"):
        analyse(broken)
    with pytest.raises(ModelError, match="too small"):
        retarget(g65, 5)
    graph, reason = retarget_or_none(g65, (4, 4), analyse(g65))
    assert graph is None and "too small" in reason


def test_required_paddings_matches_tensorflow_atrous_conv():
    # Our rule vs what tf.nn.atrous_conv2d bakes in, for several input sizes, rates and kernels.
    t = tf()
    tf1 = t.compat.v1
    for size in (9, 10, 17, 31):
        for rate, k in ((2, 3), (4, 3), (3, 5)):
            g = t.Graph()
            with g.as_default():
                x = tf1.placeholder(t.float32, [1, size, size + 3, 2])
                t.nn.atrous_conv2d(x, np.ones((k, k, 2, 2), np.float32), rate, "SAME")
            gd = g.as_graph_def()
            s2b = nodes_by_op(gd, "SpaceToBatchND")[0]
            b2s = nodes_by_op(gd, "BatchToSpaceND")[0]
            byname = {n.name: n for n in gd.node}
            pads, crops = const_value(byname[s2b.input[2]]), const_value(byname[b2s.input[2]])
            base = ((k - 1) * rate // 2, (k - 1) * rate - (k - 1) * rate // 2)
            for i, dim in enumerate((size, size + 3)):
                p, c = required_paddings(dim, base, rate)
                assert p == pads[i].tolist() and c == crops[i].tolist()
