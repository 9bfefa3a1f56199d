"""MobileNet-v3 (large, small) and EdgeTPU-MobileNet backbones as research/deeplab builds them.

Written from research/slim nets/mobilenet (mobilenet_v3.py conv defs V3_LARGE / V3_SMALL / V3_EDGETPU,
conv_blocks.py expanded_conv + squeeze_excite, mobilenet.py mobilenet_base) and research/deeplab
core/feature_extractor.py (mobilenet_v3_large_seg, mobilenet_v3_small_seg, mobilenet_edgetpu,
_mobilenet_v3, mobilenet_v2_arg_scope), with tf.compat.v1 graph mode + tf_slim so the frozen graph has the
reference's ops and names. Facts that shape the graph:

* DeepLab's variants are slim's conv defs cut at a final end point: 'layer_17' (large: the 1x1 conv
  before global pooling), 'layer_13' (small), 'layer_24' (EdgeTPU: the 1x1 conv to 1280). The '_seg'
  variants halve the output channels of the last four layers (large: layers 14-17, small: 10-13) and
  re-set the expansion widths to (large) 336, 480, 480 / (small) 144, 288, 288 channels, expressed in the
  reference as expansion factors relative to the (halved) previous layer.
* depth multiplier: every layer's output channels become ``make_divisible(c * dm, 8, min 8)`` (DeepLab
  deletes its own ``divisible_by``); expansion widths are ``make_divisible(input_channels * factor, 8)``
  of the block's actual input; an expansion no wider than the input is skipped.
* output stride (mobilenet_base): once the running stride equals the requested output stride, later
  stride-2 layers run at stride 1 and the atrous rate of the layers after them doubles; a layer's rate is
  passed on only when > 1 and reaches every op of the layer, including the 1x1 convs (TensorFlow then
  writes SpaceToBatchND -> conv -> BatchToSpaceND). Fused EdgeTPU blocks keep their conv's stride and
  ignore the rate (slim bakes the stride into their expansion function); they all sit before stride 8.
* no explicit padding (DeepLab does not pass use_explicit_padding): every conv is 'SAME'.
* squeeze-excite (after the depthwise conv, before the projection): AvgPool over the whole static map ->
  1x1 conv to ``make_divisible(C / 4, 8)`` + bias + ReLU -> 1x1 conv to C + bias -> hard sigmoid
  ``relu6(x + 3) * 0.16667`` -> multiply; hard swish is ``x * relu6(x + 3) * (1 / 6)`` under the name
  scope 'hard_swish'.
* arg scopes: mobilenet_v2_arg_scope (batch norm after every conv but the SE ones, decay 0.997, epsilon
  0.001, center + scale, inference mode, 'SAME') under the conv defs' own defaults (ReLU unless a layer
  says hard swish; projections linear via tf.identity).
* scopes: 'MobilenetV3' (both '_seg' variants) or 'MobilenetEdgeTPU'; the input goes through
  '<scope>/<scope>/input' (slim's mobilenet() re-enters the variable scope) and the layers are named
  '<scope>/Conv', '<scope>/expanded_conv', '<scope>/expanded_conv_1', ...
* end points: 'layer_N' for every layer plus 'layer_N/<op>' for each op of the layer's scope whose name
  ends in 'output' (e.g. 'layer_7/depthwise_output', the OS-8 end point the MobileNet-v3 decoder reads).

Batch norm is the package's one inference batch norm (layers.batch_norm, slim.batch_norm's graph).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import tensorflow as tf
import tf_slim as slim

from .layers import batch_norm, layer_strides_and_rates, make_divisible

tf1 = tf.compat.v1

# DeepLab's final end points (feature_extractor._MOBILENET_V3_*_FINAL_ENDPOINT, _MOBILENET_EDGETPU).
FINAL_ENDPOINT = {
    "mobilenet_v3_large_seg": "layer_17",
    "mobilenet_v3_small_seg": "layer_13",
    "mobilenet_edgetpu": "layer_24",
}
# feature_extractor.name_scope
NAME_SCOPE = {
    "mobilenet_v3_large_seg": "MobilenetV3",
    "mobilenet_v3_small_seg": "MobilenetV3",
    "mobilenet_edgetpu": "MobilenetEdgeTPU",
}
# feature_extractor.networks_to_feature_maps[...][DECODER_END_POINTS]; EdgeTPU has no entry (no decoder).
DECODER_END_POINTS = {
    "mobilenet_v3_large_seg": {4: ["layer_4/depthwise_output"], 8: ["layer_7/depthwise_output"],
                               16: ["layer_13/depthwise_output"]},
    "mobilenet_v3_small_seg": {4: ["layer_2/depthwise_output"], 8: ["layer_4/depthwise_output"],
                               16: ["layer_9/depthwise_output"]},
}

BN_DECAY = 0.997
BN_EPSILON = 0.001
SE_SQUEEZE_FACTOR = 4
HARD_SIGMOID_SCALE = 0.16667  # the SE gate's literal constant (not exactly 1/6)


def hard_swish(x: Any) -> Any:
    """MobileNet-v3's hard swish, x * relu6(x + 3) / 6, as slim writes it."""
    with tf1.name_scope("hard_swish"):
        return x * tf.nn.relu6(x + np.float32(3)) * np.float32(1.0 / 6.0)


def hard_sigmoid(x: Any) -> Any:
    """The squeeze-excite gate of mobilenet_v3.py: relu6(x + 3) * 0.16667."""
    return tf.nn.relu6(x + 3) * HARD_SIGMOID_SCALE


_ACTIVATIONS: dict[str, Callable[[Any], Any]] = {"relu": tf.nn.relu, "hard_swish": hard_swish}


# ---------------------------------------------------------------------------------------------------------
# Conv defs


@dataclass(frozen=True)
class Conv:
    """A plain slim.conv2d layer (batch norm + activation)."""

    num_outputs: float
    kernel: int
    stride: int = 1
    activation: str = "relu"


@dataclass(frozen=True)
class Block:
    """An expanded_conv block: [expand] -> [depthwise] -> [squeeze-excite] -> linear projection [+ input].

    ``expansion`` is the factor on the block's input channels; ``fused`` replaces the 1x1 expansion and
    the depthwise conv by one kxk conv with the block's stride (mbv3_fused).
    """

    expansion: float
    num_outputs: float
    kernel: int
    stride: int = 1
    activation: str = "relu"
    se: bool = False
    fused: bool = False
    residual: bool = True


Layer = Conv | Block

# mobilenet_v3.V3_LARGE up to layer_17 (the avg pool and the 1280 conv after it are never built by DeepLab).
V3_LARGE: tuple[Layer, ...] = (
    Conv(16, 3, 2, "hard_swish"),
    Block(1, 16, 3),
    Block(4, 24, 3, 2),
    Block(3, 24, 3),
    Block(3, 40, 5, 2, se=True),
    Block(3, 40, 5, se=True),
    Block(3, 40, 5, se=True),
    Block(6, 80, 3, 2, "hard_swish"),
    Block(2.5, 80, 3, 1, "hard_swish"),
    Block(184 / 80.0, 80, 3, 1, "hard_swish"),
    Block(184 / 80.0, 80, 3, 1, "hard_swish"),
    Block(6, 112, 3, 1, "hard_swish", se=True),
    Block(6, 112, 3, 1, "hard_swish", se=True),
    Block(6, 160, 5, 2, "hard_swish", se=True),
    Block(6, 160, 5, 1, "hard_swish", se=True),
    Block(6, 160, 5, 1, "hard_swish", se=True),
    Conv(960, 1, 1, "hard_swish"),
)

# mobilenet_v3.V3_SMALL up to layer_13.
V3_SMALL: tuple[Layer, ...] = (
    Conv(16, 3, 2, "hard_swish"),
    Block(1, 16, 3, 2, se=True),
    Block(72.0 / 16, 24, 3, 2),
    Block(88.0 / 24, 24, 3),
    Block(4, 40, 5, 2, "hard_swish", se=True),
    Block(6, 40, 5, 1, "hard_swish", se=True),
    Block(6, 40, 5, 1, "hard_swish", se=True),
    Block(3, 48, 5, 1, "hard_swish", se=True),
    Block(3, 48, 5, 1, "hard_swish", se=True),
    Block(6, 96, 5, 2, "hard_swish", se=True),
    Block(6, 96, 5, 1, "hard_swish", se=True),
    Block(6, 96, 5, 1, "hard_swish", se=True),
    Conv(576, 1, 1, "hard_swish"),
)

# mobilenet_v3.V3_EDGETPU (24 layers; DeepLab keeps all of them).
V3_EDGETPU: tuple[Layer, ...] = (
    Conv(32, 3, 2),
    Block(1, 16, 3, 1, fused=True),
    Block(8, 32, 3, 2, fused=True),
    Block(4, 32, 3, 1, fused=True),
    Block(4, 32, 3, 1, fused=True),
    Block(4, 32, 3, 1, fused=True),
    Block(8, 48, 3, 2, fused=True),
    Block(4, 48, 3, 1, fused=True),
    Block(4, 48, 3, 1, fused=True),
    Block(4, 48, 3, 1, fused=True),
    Block(8, 96, 3, 2),
    Block(4, 96, 3),
    Block(4, 96, 3),
    Block(4, 96, 3),
    Block(8, 96, 3, residual=False),
    Block(4, 96, 3),
    Block(4, 96, 3),
    Block(4, 96, 3),
    Block(8, 160, 5, 2),
    Block(4, 160, 5),
    Block(4, 160, 5),
    Block(4, 160, 5),
    Block(8, 192, 3),
    Conv(1280, 1),
)


def reduce_last_block(spec: tuple[Layer, ...], changes: tuple[tuple[int, int | None], ...]) -> tuple[Layer, ...]:
    """feature_extractor's '_seg' edit: halve the outputs of the listed layers (0-based) and give each the
    stated expansion width, as a factor of the (already halved) previous layer's outputs."""
    layers = list(spec)
    for index, expansion_width in changes:
        layer = replace(layers[index], num_outputs=layers[index].num_outputs / 2)
        if expansion_width is not None:
            layer = replace(layer, expansion=expansion_width / layers[index - 1].num_outputs)
        layers[index] = layer
    return tuple(layers)


V3_LARGE_SEG = reduce_last_block(V3_LARGE, ((13, 336), (14, 480), (15, 480), (16, None)))
V3_SMALL_SEG = reduce_last_block(V3_SMALL, ((9, 144), (10, 288), (11, 288), (12, None)))

CONV_DEFS = {
    "mobilenet_v3_large_seg": V3_LARGE_SEG,
    "mobilenet_v3_small_seg": V3_SMALL_SEG,
    "mobilenet_edgetpu": V3_EDGETPU,
}


# ---------------------------------------------------------------------------------------------------------
# Blocks


def squeeze_excite(x: Any) -> Any:
    """conv_blocks.squeeze_excite with mobilenet_v3's settings (factor 4, ReLU inside, hard-sigmoid gate)."""
    with tf1.variable_scope("squeeze_excite"):
        height, width, channels = (int(d) for d in x.shape[1:4])
        squeeze_channels = make_divisible(channels / SE_SQUEEZE_FACTOR, 8)
        pooled = tf1.nn.avg_pool(x, (1, height, width, 1), strides=(1, 1, 1, 1), padding="VALID")
        squeeze = slim.conv2d(pooled, kernel_size=(1, 1), num_outputs=squeeze_channels, normalizer_fn=None,
                              activation_fn=tf.nn.relu)
        excite = slim.conv2d(squeeze, num_outputs=channels, kernel_size=[1, 1], normalizer_fn=None,
                             activation_fn=hard_sigmoid)
        return x * excite


def expanded_conv(x: Any, block: Block, num_outputs: int, stride: int, rate: int) -> Any:
    """conv_blocks.expanded_conv as mobilenet_v3's mbv3_op / mbv3_fused configure it."""
    act = _ACTIVATIONS[block.activation]
    with tf1.variable_scope(None, default_name="expanded_conv") as sc, \
            tf1.name_scope(sc.original_name_scope), \
            slim.arg_scope([slim.conv2d, slim.separable_conv2d], activation_fn=act):
        inputs = tf1.identity(x, "input")
        net = inputs
        inner = make_divisible(int(x.shape[3]) * block.expansion, 8)
        if inner > int(net.shape[3]):
            if block.fused:
                # mbv3_fused bakes kernel and the conv-def stride into its expansion function.
                net = slim.conv2d(net, inner, block.kernel, stride=block.stride, scope="expand",
                                  normalizer_fn=batch_norm)
            else:
                net = slim.conv2d(net, inner, [1, 1], scope="expand", normalizer_fn=batch_norm, stride=1)
            net = tf1.identity(net, "expansion_output")
        if not block.fused:
            rate_args = {"rate": rate} if rate > 1 else {}
            net = slim.separable_conv2d(net, None, (block.kernel, block.kernel), depth_multiplier=1,
                                        stride=stride, normalizer_fn=batch_norm, padding="SAME",
                                        scope="depthwise", **rate_args)
            net = tf1.identity(net, name="depthwise_output")
        if block.se:
            net = squeeze_excite(net)
        net = slim.conv2d(net, num_outputs, [1, 1], scope="project", normalizer_fn=batch_norm,
                          activation_fn=tf.identity, stride=1)
        if block.residual and stride == 1 and int(net.shape[3]) == int(inputs.shape[3]):
            net += inputs
        return tf1.identity(net, name="output")


# ---------------------------------------------------------------------------------------------------------
# Network


def mobilenet_base(images: Any, spec: tuple[Layer, ...], *, output_stride: int | None, depth_multiplier: float,
                   final_endpoint: str, scope: str | None, default_scope: str,
                   reuse: Any = None) -> tuple[Any, dict[str, Any]]:
    """feature_extractor._mobilenet_v3 -> mobilenet_v3.mobilenet_base -> slim mobilenet_base."""
    if depth_multiplier <= 0:
        raise ValueError("multiplier is not greater than zero.")
    if output_stride is not None and (output_stride == 0 or (output_stride > 1 and output_stride % 2)):
        raise ValueError("Output stride must be None, 1 or a multiple of 2.")
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d], normalizer_fn=batch_norm,
                        activation_fn=tf.nn.relu, padding="SAME"), \
            slim.arg_scope([batch_norm], center=True, scale=True, decay=BN_DECAY, epsilon=BN_EPSILON,
                           is_training=False), \
            tf1.variable_scope(scope, default_scope, [images], reuse=reuse) as outer, \
            tf1.variable_scope(outer):
        net = tf1.identity(images, "input")
        with tf1.variable_scope(outer) as base, tf1.name_scope(base.original_name_scope):
            end_points: dict[str, Any] = {}
            scopes: dict[str, str] = {}
            plan = layer_strides_and_rates([layer.stride for layer in spec], output_stride)
            for i, (layer, (layer_stride, layer_rate)) in enumerate(zip(spec, plan)):
                num_outputs = make_divisible(layer.num_outputs * depth_multiplier, 8, 8)
                if isinstance(layer, Conv):
                    rate_args = {"rate": layer_rate} if layer_rate > 1 else {}
                    kernel = (layer.kernel, layer.kernel)
                    net = slim.conv2d(net, num_outputs, kernel, stride=layer_stride,
                                      activation_fn=_ACTIVATIONS[layer.activation], **rate_args)
                else:
                    net = expanded_conv(net, layer, num_outputs, layer_stride, layer_rate)
                end_point = f"layer_{i + 1}"
                end_points[end_point] = net
                scopes[os.path.dirname(net.name)] = end_point
                if end_point == final_endpoint:
                    break
            for op in net.graph.get_operations():
                op_scope = os.path.dirname(op.name)
                if op_scope in scopes and op.name.endswith("output"):
                    end_points[scopes[op_scope] + "/" + os.path.basename(op.name)] = op.outputs[0]
    return net, end_points


def _builder(model_variant: str) -> Callable[..., tuple[Any, dict[str, Any]]]:
    def build(images: Any, *, output_stride: int, depth_multiplier: float = 1.0, width: float = 1.0,
              multi_grid: Any = None, scope: str | None = NAME_SCOPE[model_variant],
              reuse: Any = None) -> tuple[Any, dict[str, Any]]:
        del multi_grid  # feature_extractor passes no multi_grid to MobileNets
        if width != 1.0:
            raise ValueError(f"{model_variant} has no width factor; narrow it with depth_multiplier")
        return mobilenet_base(images, CONV_DEFS[model_variant], output_stride=output_stride,
                              depth_multiplier=depth_multiplier, final_endpoint=FINAL_ENDPOINT[model_variant],
                              scope=scope, default_scope="MobilenetV3", reuse=reuse)

    build.__name__ = build.__qualname__ = model_variant
    build.__doc__ = (f"Backbone '{model_variant}' on preprocessed NHWC ``images``: (features, end_points) "
                     "as research/deeplab's feature_extractor builds it (inference mode).")
    return build


mobilenet_v3_large_seg = _builder("mobilenet_v3_large_seg")
mobilenet_v3_small_seg = _builder("mobilenet_v3_small_seg")
mobilenet_edgetpu = _builder("mobilenet_edgetpu")

BACKBONES: dict[str, Callable[..., tuple[Any, dict[str, Any]]]] = {
    "mobilenet_v3_large_seg": mobilenet_v3_large_seg,
    "mobilenet_v3_small_seg": mobilenet_v3_small_seg,
    "mobilenet_edgetpu": mobilenet_edgetpu,
}


# ---------------------------------------------------------------------------------------------------------
# Export configurations

from .export import ExportConfig  # noqa: E402  (the package's __init__ imports export first)

CITYSCAPES_CLASSES = 19
CITYSCAPES_CROP = (1025, 2049)


def mnv3_seg_config(model_variant: str, *, crop_size: tuple[int, int], image_pooling_crop_size: tuple[int, int],
                    image_pooling_stride: tuple[int, int] = (4, 5), output_stride: int = 32,
                    depth_multiplier: float = 1.0, seed: int = 0) -> ExportConfig:
    """The seed's MobileNet-v3 Cityscapes flags (model_zoo.md) at a given crop and image-pooling window."""
    return ExportConfig(
        model_variant=model_variant, num_classes=CITYSCAPES_CLASSES, crop_size=crop_size,
        output_stride=output_stride, decoder_output_stride=(8,), depth_multiplier=depth_multiplier,
        add_image_level_feature=True, image_pooling_crop_size=image_pooling_crop_size,
        image_pooling_stride=image_pooling_stride, aspp_convs_filters=128, aspp_with_concat_projection=False,
        aspp_with_squeeze_and_excitation=True, image_se_uses_qsigmoid=True, decoder_use_sum_merge=True,
        decoder_filters=CITYSCAPES_CLASSES, decoder_output_is_logits=True, seed=seed)


def edgetpu_config(*, crop_size: tuple[int, int], output_stride: int, slim_version: bool = False,
                   depth_multiplier: float | None = None, seed: int = 0) -> ExportConfig:
    """EdgeTPU-DeepLab(-slim): the MobileNet-v2 Cityscapes flags (no ASPP rates, no decoder, global image
    pooling) with model_variant mobilenet_edgetpu; -slim has depth multiplier 0.75 and 128 ASPP filters."""
    if depth_multiplier is None:
        depth_multiplier = 0.75 if slim_version else 1.0
    return ExportConfig(
        model_variant="mobilenet_edgetpu", num_classes=CITYSCAPES_CLASSES, crop_size=crop_size,
        output_stride=output_stride, decoder_output_stride=None, atrous_rates=None,
        depth_multiplier=depth_multiplier, aspp_convs_filters=128 if slim_version else 256, seed=seed)


# Small test versions. The seed's image pooling (crop 1025x2049, OS 32: a 33x65 feature map; window from
# image_pooling_crop_size 769 -> 25x25, stride 4x5 -> a 3x9 grid of windows that tile the map exactly,
# (33 - 25) % 4 == (65 - 25) % 5 == 0) is scaled down by keeping the stride 4x5 and the exact tiling with a
# 5x5 window (image_pooling_crop_size 129 = (5 - 1) * 32 + 1) on a 9x15 map (crop 257x449): a 2x3 grid.
# image_pooling_crop_size cannot simply shrink with the crop: the window must stay inside the feature map
# (VALID pooling) and strides are integers: 769 scaled like the crop (to 193) gives a 7x7 window on the 9x15
# map, which 4x5 strides do not tile.
FAMILIES: dict[str, ExportConfig] = {
    "mnv3_large": mnv3_seg_config("mobilenet_v3_large_seg", crop_size=(257, 449),
                                  image_pooling_crop_size=(129, 129)),
    "mnv3_small": mnv3_seg_config("mobilenet_v3_small_seg", crop_size=(257, 449),
                                  image_pooling_crop_size=(129, 129)),
    # seed 1: with seed 0's random weights EdgeTPU at OS 32 predicts one class everywhere once scales and flips
    # are averaged, which would make label agreement trivially true.
    "edgetpu_os32": replace(edgetpu_config(crop_size=(129, 193), output_stride=32), seed=1),
    "edgetpu_os16": replace(edgetpu_config(crop_size=(129, 193), output_stride=16), seed=1),
    "edgetpu_slim_os32": edgetpu_config(crop_size=(129, 193), output_stride=32, slim_version=True),
    "edgetpu_slim_os16": edgetpu_config(crop_size=(129, 193), output_stride=16, slim_version=True),
}

_EDGETPU_ROW = "EdgeTPU-DeepLab (EdgeMobilenet-1.0), eval OS {os}, scales [1.0]"
_EDGETPU_SLIM_ROW = "EdgeTPU-DeepLab-slim (EdgeMobilenet-0.75, ASPP 128), eval OS {os}, scales [1.0]"

# Seed rows at full width: name -> (config, input (H, W) counted at, seed Multiply-Adds in billions, row).
# The EdgeTPU rows come twice: at the Cityscapes eval crop and at 513x513, the input their figures match
# (see docs/bench.md, "MobileNet-v3 and EdgeTPU Multiply-Adds"; counted by benchmarks/bench_family_madds.py).
FULL_WIDTH: dict[str, tuple[ExportConfig, tuple[int, int], float | None, str]] = {
    "mnv3_large_cityscapes": (
        mnv3_seg_config("mobilenet_v3_large_seg", crop_size=CITYSCAPES_CROP, image_pooling_crop_size=(769, 769)),
        CITYSCAPES_CROP, 15.95, "mobilenetv3_large_cityscapes_trainfine, eval OS 32, scales [1.0]"),
    "mnv3_small_cityscapes": (
        mnv3_seg_config("mobilenet_v3_small_seg", crop_size=CITYSCAPES_CROP, image_pooling_crop_size=(769, 769)),
        CITYSCAPES_CROP, 4.63, "mobilenetv3_small_cityscapes_trainfine, eval OS 32, scales [1.0]"),
}
for _os, _madds, _slim_madds in ((32, 5.6, 3.5), (16, 7.1, 4.3)):
    for _size, _suffix in ((CITYSCAPES_CROP, "cityscapes"), ((513, 513), "513")):
        FULL_WIDTH[f"edgetpu_os{_os}_{_suffix}"] = (
            edgetpu_config(crop_size=_size, output_stride=_os), _size, _madds, _EDGETPU_ROW.format(os=_os))
        FULL_WIDTH[f"edgetpu_slim_os{_os}_{_suffix}"] = (
            edgetpu_config(crop_size=_size, output_stride=_os, slim_version=True), _size, _slim_madds,
            _EDGETPU_SLIM_ROW.format(os=_os))
# Not seed rows: the MobileNet-v3 rows at other output strides, for reading the seed's OS-32 figures.
for _name in ("mnv3_large_cityscapes", "mnv3_small_cityscapes"):
    for _os in (16, 8):
        _config, _size, _, _row = FULL_WIDTH[_name]
        FULL_WIDTH[f"{_name}_os{_os}"] = (replace(_config, output_stride=_os), _size, None,
                                          f"not a seed row: {_row.split(',')[0]} at OS {_os}")
del _os, _madds, _slim_madds, _size, _suffix, _name, _config, _row
