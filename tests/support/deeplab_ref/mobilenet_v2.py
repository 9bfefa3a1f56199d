"""MobileNet-v2 backbone as research/deeplab builds it (slim nets/mobilenet: mobilenet.py, mobilenet_v2.py,
conv_blocks.py), graph mode + tf_slim, inference only.

What makes the frozen graph match the reference node for node:

- the scope nesting: deeplab's ``_mobilenet_v2`` opens variable scope 'MobilenetV2', slim's
  ``mobilenet()`` re-enters it (name scope 'MobilenetV2/MobilenetV2/', hence the Identity
  'MobilenetV2/MobilenetV2/input') and ``mobilenet_base`` re-enters it once more but resets the name
  scope to the original one, so layers are 'MobilenetV2/Conv', 'MobilenetV2/expanded_conv', ...;
- ``expanded_conv``: Identity 'input', 1x1 'expand' conv (skipped when the expansion does not widen),
  Identity 'expansion_output', depthwise 'depthwise' (slim.separable_conv2d with num_outputs=None,
  SpaceToBatchND/BatchToSpaceND around it when rate > 1), Identity 'depthwise_output', linear 1x1
  'project' conv (activation tf.identity -> 'project/Identity'), residual 'add' when stride 1 and depths
  match, Identity 'output';
- mobilenet_base's output_stride logic: once the running stride reaches output_stride, later strides
  become 1 and multiply the atrous rate of the following layers instead;
- depth: ``_make_divisible(d * depth_multiplier, divisible_by, min_depth)`` with divisible_by = min_depth
  = 8 at depth multiplier 1.0 and 1 otherwise (deeplab's feature_extractor), while the expansion width is
  ``_make_divisible(input_depth * 6, 8)`` whatever the multiplier (conv_blocks.expand_input_by_factor).

Backbone contract: ``build(images, output_stride=..., depth_multiplier=..., width=..., multi_grid=...,
scope=...) -> (features, end_points)``; end points are keyed like the reference's ('layer_4/
depthwise_output', ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import tensorflow.compat.v1 as tf
import tf_slim as slim

from .layers import batch_norm, layer_strides_and_rates, make_divisible

# feature_extractor.py: deeplab stops MobileNet-v2 at layer_18 (expanded_conv_16, 320 x multiplier).
FINAL_ENDPOINT = "layer_18"
NAME_SCOPE = {"mobilenet_v2": "MobilenetV2"}
# feature_extractor.networks_to_feature_maps[...][DECODER_END_POINTS]
DECODER_END_POINTS = {
    "mobilenet_v2": {4: ("layer_4/depthwise_output",), 8: ("layer_7/depthwise_output",),
                     16: ("layer_14/depthwise_output",)},
}
PREPROCESSING = {"mobilenet_v2": "zero_mean_unit_range"}


@dataclass(frozen=True)
class LayerSpec:
    """One entry of V2_DEF['spec']: a plain conv ('conv') or an inverted residual ('expanded')."""

    kind: str
    num_outputs: int
    stride: int = 1
    kernel_size: tuple[int, int] = (3, 3)
    expansion: float = 6.0
    expansion_divisible_by: int = 8


# nets/mobilenet/mobilenet_v2.py V2_DEF: the first expanded_conv expands by 1 (divisible_by=1), the rest
# by 6; the final 1x1 conv to 1280 (layer_19) is never built by deeplab.
V2_SPEC: tuple[LayerSpec, ...] = (
    LayerSpec("conv", 32, stride=2),
    LayerSpec("expanded", 16, expansion=1, expansion_divisible_by=1),
    LayerSpec("expanded", 24, stride=2), LayerSpec("expanded", 24),
    LayerSpec("expanded", 32, stride=2), LayerSpec("expanded", 32), LayerSpec("expanded", 32),
    LayerSpec("expanded", 64, stride=2), LayerSpec("expanded", 64), LayerSpec("expanded", 64),
    LayerSpec("expanded", 64),
    LayerSpec("expanded", 96), LayerSpec("expanded", 96), LayerSpec("expanded", 96),
    LayerSpec("expanded", 160, stride=2), LayerSpec("expanded", 160), LayerSpec("expanded", 160),
    LayerSpec("expanded", 320),
    LayerSpec("conv", 1280, kernel_size=(1, 1)),
)


def expanded_conv(inputs: Any, num_outputs: int, *, expansion_size: int, stride: int = 1, rate: int = 1,
                  kernel_size: tuple[int, int] = (3, 3), scope: str | None = None) -> tuple[Any, dict[str, Any]]:
    """conv_blocks.expanded_conv (depthwise at the expansion, residual on); returns (output, its tensors)."""
    tensors: dict[str, Any] = {}
    with tf.variable_scope(scope, default_name="expanded_conv") as vs, tf.name_scope(vs.original_name_scope):
        input_depth = inputs.get_shape().as_list()[3]
        input_tensor = tf.identity(inputs, "input")
        net = input_tensor
        if expansion_size > net.shape[3]:
            net = slim.conv2d(net, expansion_size, [1, 1], stride=1, scope="expand",
                              normalizer_fn=batch_norm)
            net = tf.identity(net, "expansion_output")
            tensors["expansion_output"] = net
        net = slim.separable_conv2d(net, None, kernel_size, depth_multiplier=1, stride=stride, rate=rate,
                                    normalizer_fn=batch_norm, padding="SAME", scope="depthwise")
        net = tf.identity(net, name="depthwise_output")
        tensors["depthwise_output"] = net
        net = slim.conv2d(net, num_outputs, [1, 1], stride=1, scope="project", normalizer_fn=batch_norm,
                          activation_fn=tf.identity)
        tensors["projection_output"] = net
        if stride == 1 and net.get_shape().as_list()[3] == input_depth:
            net += input_tensor
        net = tf.identity(net, name="output")
        tensors["output"] = net
        return net, tensors


def mobilenet_base(inputs: Any, *, depth_multiplier: float, output_stride: int | None, divisible_by: int,
                   min_depth: int, final_endpoint: str, scope: Any) -> tuple[Any, dict[str, Any]]:
    """slim mobilenet.mobilenet_base for V2_DEF in inference mode."""
    if depth_multiplier <= 0:
        raise ValueError("depth_multiplier must be greater than zero")
    if output_stride is not None and (output_stride == 0 or (output_stride > 1 and output_stride % 2)):
        raise ValueError("output_stride must be None, 1 or a multiple of 2")
    plan = layer_strides_and_rates([spec.stride for spec in V2_SPEC], output_stride)
    end_points: dict[str, Any] = {}
    with tf.variable_scope(scope, default_name="Mobilenet") as vs, tf.name_scope(vs.original_name_scope), \
            slim.arg_scope([batch_norm], is_training=False, center=True, scale=True), \
            slim.arg_scope([slim.conv2d, slim.separable_conv2d], normalizer_fn=batch_norm,
                           activation_fn=tf.nn.relu6, padding="SAME"):
        net = inputs
        for i, (spec, (stride, rate)) in enumerate(zip(V2_SPEC, plan)):
            end_point = f"layer_{i + 1}"
            num_outputs = make_divisible(spec.num_outputs * depth_multiplier, divisible_by, min_depth)
            if spec.kind == "conv":
                kwargs = {"rate": rate} if rate > 1 else {}
                net = slim.conv2d(net, num_outputs, list(spec.kernel_size), stride=stride, **kwargs)
            else:
                input_depth = net.get_shape().as_list()[3]
                expansion = make_divisible(input_depth * spec.expansion, spec.expansion_divisible_by)
                net, tensors = expanded_conv(net, num_outputs, expansion_size=expansion, stride=stride,
                                             rate=rate, kernel_size=spec.kernel_size)
                for key, tensor in tensors.items():
                    if key.endswith("output"):
                        end_points[f"{end_point}/{key}"] = tensor
            end_points[end_point] = net
            if end_point == final_endpoint:
                break
    return net, end_points


def build(images: Any, *, output_stride: int, depth_multiplier: float = 1.0, width: float = 1.0,
          multi_grid: Any = None, scope: str | None = "MobilenetV2",
          final_endpoint: str = FINAL_ENDPOINT, divisible_by: int | None = None) -> tuple[Any, dict[str, Any]]:
    """deeplab feature_extractor._mobilenet_v2 on preprocessed ``images`` (the backbone contract).

    ``width`` and ``multi_grid`` are accepted for the common contract and ignored (the reference has
    neither for MobileNets); narrow test versions use ``depth_multiplier``.
    """
    del width, multi_grid
    if divisible_by is None:
        divisible_by = 8 if depth_multiplier == 1.0 else 1
    min_depth = 8 if depth_multiplier == 1.0 else 1
    with tf.variable_scope(scope, "MobilenetV2", [images]) as outer:
        # slim mobilenet.mobilenet(base_only=True): re-enter the scope, name the input, build the base.
        with tf.variable_scope(outer, "Mobilenet") as inner:
            inputs = tf.identity(images, "input")
            return mobilenet_base(inputs, depth_multiplier=depth_multiplier, output_stride=output_stride,
                                  divisible_by=divisible_by, min_depth=min_depth,
                                  final_endpoint=final_endpoint, scope=inner)


BACKBONES: dict[str, Callable[..., tuple[Any, dict[str, Any]]]] = {"mobilenet_v2": build}


def _families() -> tuple[dict[str, Any], dict[str, tuple[Any, tuple[int, int], float | None, str]]]:
    from .export import ExportConfig

    families = {
        # Small test versions of the zoo's MobileNet-v2 families (same ops and wiring, small crops).
        "mnv2_dm05_os16": ExportConfig("mobilenet_v2", depth_multiplier=0.5, output_stride=16, crop_size=(129, 129)),
        "mnv2_os8": ExportConfig("mobilenet_v2", depth_multiplier=0.25, output_stride=8, crop_size=(65, 65)),
        "mnv2_cityscapes": ExportConfig("mobilenet_v2", num_classes=19, depth_multiplier=0.25, output_stride=16,
                                        crop_size=(65, 129)),
        "mnv2_ade20k_decoder": ExportConfig("mobilenet_v2", num_classes=151, depth_multiplier=0.25,
                                            output_stride=16, decoder_output_stride=(4,), crop_size=(65, 65)),
    }
    voc_ms = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    full_width = {
        # name: (config, input size (H, W), seed Multiply-Adds in billions or None, seed row)
        "mnv2_dm1_os16_513": (ExportConfig("mobilenet_v2", output_stride=16), (513, 513), 2.75,
                              "mobilenetv2_coco_voc_trainaug, OS 16, [1.0], no flip"),
        "mnv2_dm1_os8_513": (ExportConfig("mobilenet_v2", output_stride=8), (513, 513), None,
                             "mobilenetv2_coco_voc_trainaug, OS 8, [1.0] (no seed row)"),
        "mnv2_dm1_os8_513_ms_flip": (
            ExportConfig("mobilenet_v2", output_stride=8, inference_scales=voc_ms, add_flipped_images=True),
            (513, 513), 152.59, "mobilenetv2_coco_voc_trainaug, OS 8, [0.5:0.25:1.75], flip"),
        "mnv2_dm05_os16_513": (ExportConfig("mobilenet_v2", depth_multiplier=0.5, output_stride=16), (513, 513),
                               0.88, "mobilenetv2_dm05_coco_voc_trainaug, OS 16, [1.0], no flip"),
        "mnv2_dm05_os8_513": (ExportConfig("mobilenet_v2", depth_multiplier=0.5, output_stride=8), (513, 513),
                              2.84, "mobilenetv2_dm05_coco_voc_trainval, OS 8, [1.0], no flip"),
        "mnv2_cityscapes_os16_1025x2049": (
            ExportConfig("mobilenet_v2", num_classes=19, output_stride=16, crop_size=(1025, 2049)), (1025, 2049),
            21.27, "mobilenetv2_coco_cityscapes_trainfine, OS 16, [1.0], no flip"),
        "mnv2_ade20k_257_decoder": (
            ExportConfig("mobilenet_v2", num_classes=151, output_stride=16, decoder_output_stride=(4,),
                         crop_size=(257, 257)), (257, 257), None,
            "mobilenetv2_ade20k_train, OS 16, decoder OS 4, 257x257 (no seed Multiply-Adds)"),
    }
    return families, full_width


FAMILIES, FULL_WIDTH = _families()
