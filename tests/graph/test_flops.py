"""Multiply-Adds counter: exact counts against hand-computed numbers on small built graphs."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

from zoo_cli.errors import ModelError  # noqa: E402
from zoo_cli.graph.flops import count_madds, count_madds_multiscale  # noqa: E402
from zoo_cli.graph.geometry import scaled_crop


def _graph(build, shape=(1, None, None, 3), dtype=tf.float32):
    """GraphDef of ``build(x)`` on a placeholder ``x`` of partially known shape."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(dtype, shape, name="input")
        tf.identity(build(x), name="output")
    return g.as_graph_def()


def _w(*shape):
    return tf.constant(np.ones(shape, np.float32))


def test_plain_conv_3x3_same():
    gd = _graph(lambda x: tf.nn.conv2d(x, _w(3, 3, 3, 5), strides=1, padding="SAME"))
    r = count_madds(gd, (10, 12))
    assert r.madds == 10 * 12 * 5 * (3 * 3 * 3)
    assert r.params == r.weight_params == 3 * 3 * 3 * 5
    assert [o.op for o in r.ops] == ["Conv2D"]


def test_strided_conv_same_and_valid():
    gd = _graph(lambda x: tf.nn.conv2d(x, _w(3, 3, 3, 4), strides=2, padding="SAME"))
    assert count_madds(gd, (11, 11)).madds == 6 * 6 * 4 * 27  # ceil(11/2) = 6
    gd = _graph(lambda x: tf.nn.conv2d(x, _w(3, 3, 3, 4), strides=2, padding="VALID"))
    assert count_madds(gd, (11, 11)).madds == 5 * 5 * 4 * 27  # (11-3)//2+1 = 5


def test_one_by_one_conv():
    gd = _graph(lambda x: tf.nn.conv2d(x, _w(1, 1, 3, 7), strides=1, padding="SAME"))
    assert count_madds(gd, (9, 8)).madds == 9 * 8 * 3 * 7


def test_dilated_conv2d_counts_at_output_size():
    # A native dilated Conv2D computes kh*kw taps per output, whatever the rate.
    gd = _graph(lambda x: tf.nn.conv2d(x, _w(3, 3, 3, 2), strides=1, padding="SAME", dilations=2))
    assert count_madds(gd, (9, 9)).madds == 9 * 9 * 2 * 27


def test_atrous_depthwise_counts_space_to_batch_shape():
    # tf.nn.depthwise_conv2d with a rate is SpaceToBatchND -> DepthwiseConv2dNative -> BatchToSpaceND.
    # 9x9, rate 2, 3x3 SAME: pad 2+2 for the dilated 5x5 kernel -> 13, +1 to a multiple of 2 -> 14;
    # space-to-batch -> 4 x 7x7; VALID 3x3 -> 4 x 5x5 outputs per channel, 9 taps each.
    gd = _graph(lambda x: tf.nn.depthwise_conv2d(x, _w(3, 3, 3, 1), strides=[1, 1, 1, 1], padding="SAME",
                                                 dilations=[2, 2]))
    ops = {n.op for n in gd.node}
    assert {"SpaceToBatchND", "BatchToSpaceND", "DepthwiseConv2dNative"} <= ops
    r = count_madds(gd, (9, 9))
    assert r.madds == 4 * 5 * 5 * 3 * 9
    assert r.ops[0].input_shape == (4, 7, 7, 3)


def test_atrous_conv2d_through_space_to_batch():
    def build(x):
        w = _w(3, 3, 3, 6)
        return tf.nn.with_space_to_batch(
            x, dilation_rate=[2, 2], padding="SAME", filter_shape=[3, 3],
            op=lambda inp, num_spatial_dims, padding: tf.nn.conv2d(inp, w, strides=1, padding=padding))

    r = count_madds(_graph(build), (9, 9))
    assert r.madds == 4 * 5 * 5 * 6 * 27


def test_depthwise_with_multiplier_and_stride():
    gd = _graph(lambda x: tf.nn.depthwise_conv2d(x, _w(3, 3, 3, 2), strides=[1, 2, 2, 1], padding="SAME"))
    r = count_madds(gd, (8, 10))
    assert r.madds == 4 * 5 * (3 * 2) * 9
    assert r.params == 3 * 3 * 3 * 2


def test_matmul_and_transpose():
    def build(x):
        flat = tf.reshape(x, [4, -1])  # 1x4x5x3 -> 4 x 15
        a = tf.matmul(flat, _w(15, 7))  # 4*7*15
        return tf.matmul(a, _w(2, 7), transpose_b=True)  # 4*2*7

    r = count_madds(_graph(build), (4, 5))
    assert r.madds == 4 * 7 * 15 + 4 * 2 * 7
    assert r.params == 15 * 7 + 2 * 7
    assert r.by_op_type() == {"MatMul": 4 * 7 * 15 + 4 * 2 * 7}


def test_resize_pool_and_elementwise_are_not_counted():
    def build(x):
        y = tf.nn.conv2d(x, _w(1, 1, 3, 2), strides=1, padding="SAME")  # 6*6*3*2
        y = tf.nn.relu6(y * 2.0 + 1.0)
        y = tf.image.resize(y, [24, 24], method="bilinear")
        y = tf.compat.v1.image.resize_nearest_neighbor(y, [12, 12])
        y = tf.nn.avg_pool2d(y, 3, 1, "SAME")
        return tf.argmax(y, axis=3)

    r = count_madds(_graph(build), (6, 6))
    assert r.madds == 6 * 6 * 3 * 2
    gd = _graph(lambda x: tf.image.resize(x, [100, 100]))
    assert count_madds(gd, (50, 50)).madds == 0


def test_dynamic_pad_to_static_crop_and_uint8_input():
    # Like the zoo's frozen graphs: uint8 input of unknown size, padded to a fixed crop with 127.5.
    def build(x):
        f = tf.cast(x, tf.float32)
        s = tf.shape(f)
        f = tf.pad(f, [[0, 0], [0, 33 - s[1]], [0, 33 - s[2]], [0, 0]], constant_values=127.5)
        return tf.nn.conv2d(f, _w(3, 3, 3, 4), strides=2, padding="SAME")

    gd = _graph(build, dtype=tf.uint8)
    assert count_madds(gd, (20, 30)).madds == 17 * 17 * 4 * 27


def test_params_bias_and_batch_norm():
    def build(x):
        y = tf.nn.conv2d(x, _w(3, 3, 3, 4), strides=1, padding="SAME")
        y = tf.nn.bias_add(y, tf.constant(np.zeros(4, np.float32)))
        c = [tf.constant(np.ones(4, np.float32)) for _ in range(4)]
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, c[0], c[1], mean=c[2], variance=c[3], is_training=False)
        return y

    r = count_madds(_graph(build), (5, 5))
    assert (r.weight_params, r.bias_params, r.bn_params, r.bn_stat_elements) == (108, 4, 8, 8)
    assert r.params == 108 + 4 + 8


def test_shared_weights_are_counted_once_but_madds_twice():
    def build(x):
        w = _w(1, 1, 3, 3)
        return tf.nn.conv2d(tf.nn.conv2d(x, w, 1, "SAME"), w, 1, "SAME")

    r = count_madds(_graph(build), (4, 4))
    assert r.madds == 2 * 16 * 9
    assert r.params == 9


def test_multiscale_sum_over_scales_and_flips():
    gd = _graph(lambda x: tf.nn.conv2d(x, _w(3, 3, 3, 2), strides=2, padding="SAME"))
    r = count_madds_multiscale(lambda size: gd, (9, 13), scales=[0.5, 1.0, 1.5], flip=True)
    sizes = [scaled_crop((9, 13), s) for s in (0.5, 1.0, 1.5)]
    assert sizes == [(5, 7), (9, 13), (13, 19)]
    expected = sum(-(-h // 2) * -(-w // 2) * 2 * 27 for h, w in sizes) * 2
    assert r.madds == expected
    assert r.runs == 6


def test_scaled_size_matches_deeplab():
    assert [scaled_crop((513, 513), s)[0] for s in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)] == \
        [257, 385, 513, 641, 769, 897]


def test_data_dependent_shape_is_an_error():
    def build(x):
        n = tf.cast(tf.reduce_max(x), tf.int32) + 2
        y = tf.image.resize(x, tf.stack([n, n]))
        return tf.nn.conv2d(y, _w(3, 3, 3, 2), strides=1, padding="SAME")

    with pytest.raises(ModelError, match="not static"):
        count_madds(_graph(build), (8, 8))


def test_input_must_be_unambiguous():
    g = tf.Graph()
    with g.as_default():
        a = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3], name="a")
        b = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3], name="b")
        tf.identity(a + b, name="out")
    with pytest.raises(ModelError, match="Placeholders found: a, b"):
        count_madds(g.as_graph_def(), (4, 4))
    assert count_madds(g.as_graph_def(), (4, 4), input_name="a:0").madds == 0


def test_tfprof_figure_is_twice_the_conv_madds_plus_elementwise():
    gd = _graph(lambda x: tf.nn.conv2d(x, _w(3, 3, 3, 5), strides=1, padding="SAME"))
    r = count_madds(gd, (10, 12))
    assert r.tfprof_float_ops == 2 * r.madds  # tfprof: 2 FLOPs per multiply-add, nothing else here
    gd = _graph(lambda x: tf.nn.conv2d(x, _w(1, 1, 3, 2), strides=1, padding="SAME") + 1.0)
    r = count_madds(gd, (4, 4))
    assert r.madds == 16 * 6
    assert r.tfprof_float_ops == 2 * 16 * 6 + 16 * 2  # the AddV2 is 1 FLOP per element for tfprof only
