"""A second, independently wired export of a small DeepLab network, shaped like research/deeplab's
export_model.py + input_preprocess.py (3-D preprocessing: squeeze, pad_to_bounding_box via a reshaped
6-element stack, set_shape, expand_dims; AvgPool with strides = kernel as slim.avg_pool2d; the logits
resized to [logits_h, logits_w] before the final resize) so the re-targeting code is tested on wiring other
than tests.support.export's own. Weights come from tests.support.export.Weights (same seed -> same network)."""

from __future__ import annotations

from typing import Any

from tests.support.export import NetBuilder, Weights, resize_bilinear, scale_dimension
from tests.support.tfgraph import tf


def reference_style_graph(*, seed: int, num_classes: int, crop: int | tuple[int, int], output_stride: int = 8) -> Any:
    """Frozen GraphDef of a tiny DeepLab built the reference way (see module docstring)."""
    t = tf()
    tf1 = t.compat.v1
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    weights = Weights(seed=seed)
    graph = t.Graph()
    with graph.as_default():
        inp = tf1.placeholder(t.uint8, [1, None, None, 3], name="ImageTensor")
        original_size = tf1.shape(inp)[1:3]
        image = tf1.squeeze(inp, axis=0)
        x = tf1.cast(image, t.float32)
        shape = tf1.shape(x)
        h, w = shape[0], shape[1]
        th = h + tf1.maximum(ch - h, 0)
        tw = w + tf1.maximum(cw - w, 0)
        mean = tf1.reshape([127.5, 127.5, 127.5], [1, 1, 3])
        x = x - mean
        paddings = tf1.reshape(tf1.stack([0, th - h, 0, tw - w, 0, 0]), [3, 2])
        x = tf1.pad(x, paddings) + mean
        x.set_shape([ch, cw, 3])
        images = tf1.expand_dims(x, 0)
        net = NetBuilder(weights=weights, crop=(ch, cw), output_stride=output_stride, num_classes=num_classes)
        y = (2.0 / 255.0) * images - 1.0
        y = net.conv(y, "conv1", 8, 3, stride=2)
        y = net.conv(y, "conv2", 16, 3, stride=2)
        y = net.conv(y, "conv3", 16, 3, stride=2)
        if output_stride == 16:
            y = net.conv(y, "conv4", 16, 3, stride=2)
            y = net.depthwise(y, "conv5_depthwise", 3, rate=2)
        else:
            y = net.conv(y, "conv4", 16, 3, rate=2)
            y = net.depthwise(y, "conv5_depthwise", 3, rate=4)
        ph, pw = scale_dimension(ch, 1.0 / output_stride), scale_dimension(cw, 1.0 / output_stride)
        pooled = t.nn.avg_pool2d(y, [1, ph, pw, 1], [1, ph, pw, 1], "VALID")
        pooled = net.conv(pooled, "image_pooling", 16, 1)
        pooled = resize_bilinear(pooled, [ph, pw], name="ResizeBilinear")
        y = tf1.concat([pooled, net.conv(y, "aspp0", 16, 1)], 3)
        y = net.conv(y, "concat_projection", 16, 1)
        logits = net.conv(y, "logits", num_classes, 1, relu=False)
        logits = resize_bilinear(logits, [ph, pw], name="ResizeBilinear_1")  # [logits_height, logits_width]
        full = resize_bilinear(logits, tf1.shape(images)[1:3], name="ResizeBilinear_2")
        pred = tf1.argmax(full, 3)
        raw = tf1.identity(tf1.cast(pred, t.float32), name="RawSemanticPredictions")
        resized_size = tf1.shape(image)[:2]  # before padding
        sliced = tf1.slice(raw, [0, 0, 0], [1, resized_size[0], resized_size[1]])
        # The reference resizes the label map back to the original size (nearest); a no-op without resizing.
        lab = tf1.image.resize_nearest_neighbor(tf1.expand_dims(sliced, 3), original_size, align_corners=True)
        lab = tf1.cast(tf1.squeeze(lab, 3), t.int32)
        t.identity(lab, name="SemanticPredictions")
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            gd = tf1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(add_shapes=True),
                                                               ["SemanticPredictions"])
    assert any("_output_shapes" in n.attr for n in gd.node)
    return gd
