"""Xception-41 / 65 / 71 backbones as research/deeplab core/xception.py builds them for an export.

Graph mode (tf.compat.v1) with tf_slim, inference only (batch norm with is_training=False), so a frozen
graph has the reference's op types and node names: fixed_padding's Pad before every strided conv,
split separable convs (``separable_convN_depthwise`` DepthwiseConv2dNative + BN, then
``separable_convN_pointwise`` 1x1 Conv2D + BN), atrous depthwise convs as SpaceToBatchND ->
DepthwiseConv2dNative -> BatchToSpaceND (what TF's depthwise_conv2d does with rate > 1), ReLU before each
separable conv except in exit_flow/block2 (ReLU after it), and the 'conv' / 'sum' / 'none' skip
connections of each xception_module.

Backbone contract (shared with the other families of the package)::

    features, end_points = build_xception_65(images, output_stride=16, width=1.0, multi_grid=None)

``images`` is the already preprocessed float NHWC batch (for Xception: ``2/255 * x - 1``).
``end_points`` maps every end point the reference collects, both under its full name (the reference's
keys, ``'xception_65/entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise'``, what
model.refine_by_decoder looks up as ``name_scope + '/' + name``) and under the short name of
feature_extractor.networks_to_feature_maps (the same string without ``'xception_65/'``).

``width`` scales every channel count (32, 64, 128, ..., 2048) for narrow test versions; 1.0 is the
real network. ``depth_multiplier`` is accepted and ignored, as the reference's feature_extractor does
for Xception (it only passes it to MobileNets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import tensorflow.compat.v1 as tf
import tf_slim as slim
from tf_slim.nets import resnet_utils

from .layers import batch_norm

# research/deeplab core/xception.py: unit rates when multi_grid is None (common.py's default, and no
# zoo Xception train/eval command sets --multi_grid).
DEFAULT_MULTI_GRID = (1, 1, 1)
# use_bounded_activation's clip value (core/xception.py _CLIP_CAP).
_CLIP_CAP = 6

# Batch-norm settings feature_extractor.extract_features passes to xception_arg_scope.
BATCH_NORM_DECAY = 0.9997
BATCH_NORM_EPSILON = 1e-3
WEIGHTS_INITIALIZER_STDDEV = 0.09


def scaled_depth(depth: int, width: float) -> int:
    """A channel count of the real network scaled by ``width`` (at least 1)."""
    return depth if width == 1.0 else max(1, int(round(depth * width)))


def fixed_padding(inputs: Any, kernel_size: int, rate: int = 1) -> Any:
    """Zero-pad H and W so a VALID conv of ``kernel_size`` / ``rate`` acts like SAME, whatever the size."""
    effective = kernel_size + (kernel_size - 1) * (rate - 1)
    pad_total = effective - 1
    pad_beg = pad_total // 2
    pad_end = pad_total - pad_beg
    return tf.pad(inputs, [[0, 0], [pad_beg, pad_end], [pad_beg, pad_end], [0, 0]])


@slim.add_arg_scope
def separable_conv2d_same(inputs: Any, num_outputs: int, kernel_size: int, depth_multiplier: int,
                          stride: int, rate: int = 1, use_explicit_padding: bool = True,
                          regularize_depthwise: bool = False, scope: str | None = None, **kwargs: Any) -> Any:
    """Separable conv with SAME semantics; strided ones pad explicitly and run VALID.

    regularize_depthwise=False (what every deeplab export uses) splits the op into a depthwise conv
    (``scope_depthwise``) and a 1x1 conv (``scope_pointwise``), each with its own batch norm;
    True keeps one slim.separable_conv2d (one scope, batch norm after the pointwise conv only).
    """
    def one(padding: str) -> Any:
        return slim.separable_conv2d(inputs, num_outputs, kernel_size, depth_multiplier=depth_multiplier,
                                     stride=stride, rate=rate, padding=padding, scope=scope, **kwargs)

    def split(padding: str) -> Any:
        out = slim.separable_conv2d(inputs, None, kernel_size, depth_multiplier=depth_multiplier,
                                    stride=stride, rate=rate, padding=padding, scope=scope + "_depthwise",
                                    **kwargs)
        return slim.conv2d(out, num_outputs, 1, scope=scope + "_pointwise", **kwargs)

    if stride == 1 or not use_explicit_padding:
        padding = "SAME"
    else:
        inputs = fixed_padding(inputs, kernel_size, rate)
        padding = "VALID"
    return one(padding) if regularize_depthwise else split(padding)


@slim.add_arg_scope
def xception_module(inputs: Any, depth_list: Sequence[int], skip_connection_type: str, stride: int,
                    kernel_size: int = 3, unit_rate_list: Sequence[int] | None = None, rate: int = 1,
                    activation_fn_in_separable_conv: bool = False, regularize_depthwise: bool = False,
                    outputs_collections: Any = None, scope: str | None = None,
                    use_bounded_activation: bool = False, use_explicit_padding: bool = True) -> Any:
    """Three separable convs (the last one carries the stride) plus a 'conv', 'sum' or 'none' shortcut."""
    if len(depth_list) != 3:
        raise ValueError("Expect three elements in depth_list.")
    if unit_rate_list and len(unit_rate_list) != 3:
        raise ValueError("Expect three elements in unit_rate_list.")

    with tf.variable_scope(scope, "xception_module", [inputs]) as sc:
        residual = inputs

        def sep_conv(features: Any, depth: int, unit_rate: int, conv_stride: int, conv_scope: str) -> Any:
            if activation_fn_in_separable_conv:
                activation_fn = tf.nn.relu6 if use_bounded_activation else tf.nn.relu
            elif use_bounded_activation:
                activation_fn = lambda x: tf.clip_by_value(x, -_CLIP_CAP, _CLIP_CAP)  # noqa: E731
                features = tf.nn.relu6(features)
            else:
                # The original Xception: ReLU in front of the conv, none after it.
                activation_fn = None
                features = tf.nn.relu(features)
            return separable_conv2d_same(features, depth, kernel_size, depth_multiplier=1, stride=conv_stride,
                                         rate=unit_rate, activation_fn=activation_fn,
                                         use_explicit_padding=use_explicit_padding,
                                         regularize_depthwise=regularize_depthwise, scope=conv_scope)

        for i in range(3):
            residual = sep_conv(residual, depth_list[i], rate * unit_rate_list[i], stride if i == 2 else 1,
                                "separable_conv" + str(i + 1))

        if skip_connection_type == "conv":
            shortcut = slim.conv2d(inputs, depth_list[-1], [1, 1], stride=stride, activation_fn=None,
                                   scope="shortcut")
            if use_bounded_activation:
                residual = tf.clip_by_value(residual, -_CLIP_CAP, _CLIP_CAP)
                shortcut = tf.clip_by_value(shortcut, -_CLIP_CAP, _CLIP_CAP)
            outputs = residual + shortcut
            if use_bounded_activation:
                outputs = tf.nn.relu6(outputs)
        elif skip_connection_type == "sum":
            if use_bounded_activation:
                residual = tf.clip_by_value(residual, -_CLIP_CAP, _CLIP_CAP)
                inputs = tf.clip_by_value(inputs, -_CLIP_CAP, _CLIP_CAP)
            outputs = residual + inputs
            if use_bounded_activation:
                outputs = tf.nn.relu6(outputs)
        elif skip_connection_type == "none":
            outputs = residual
        else:
            raise ValueError("Unsupported skip connection type.")
        return slim.utils.collect_named_outputs(outputs_collections, sc.name, outputs)


@dataclass(frozen=True)
class Block:
    """One Xception block: its scope and the keyword arguments of each of its units."""

    scope: str
    unit_fn: Callable[..., Any]
    args: list[dict[str, Any]] = field(default_factory=list)


def unit_rates(output_stride: int | None, strides: Sequence[int]) -> list[tuple[int, int]]:
    """(stride, rate) each unit runs with, for units of nominal ``strides`` (stack_blocks_dense's rule).

    Once the product of strides reaches ``output_stride``, later units run with stride 1 and an atrous
    rate that grows by each skipped stride; the unit at which the target is reached keeps the old rate.
    """
    current_stride, rate, out = 1, 1, []
    for s in strides:
        if output_stride is not None and current_stride > output_stride:
            raise ValueError("The target output_stride cannot be reached.")
        if output_stride is not None and current_stride == output_stride:
            out.append((1, rate))
            rate *= s
        else:
            out.append((s, 1))
            current_stride *= s
    if output_stride is not None and current_stride != output_stride:
        raise ValueError("The target output_stride cannot be reached.")
    return out


@slim.add_arg_scope
def stack_blocks_dense(net: Any, blocks: Sequence[Block], output_stride: int | None = None,
                       outputs_collections: Any = None) -> Any:
    """Apply ``blocks`` in order; past ``output_stride`` trade each stride for a doubled atrous rate."""
    flat = [unit.get("stride", 1) for block in blocks for unit in block.args]
    plan = iter(unit_rates(output_stride, flat))
    for block in blocks:
        with tf.variable_scope(block.scope, "block", [net]) as sc:
            for i, unit in enumerate(block.args):
                stride, rate = next(plan)
                with tf.variable_scope("unit_%d" % (i + 1), values=[net]):
                    net = block.unit_fn(net, rate=rate, **dict(unit, stride=stride))
            # Block end points are collected before any subsampling of the next block.
            net = slim.utils.collect_named_outputs(outputs_collections, sc.name, net)
    return net


def xception_block(scope: str, depth_list: Sequence[int], skip_connection_type: str,
                   activation_fn_in_separable_conv: bool, regularize_depthwise: bool, num_units: int,
                   stride: int, kernel_size: int = 3, unit_rate_list: Sequence[int] | None = None) -> Block:
    """A Block of ``num_units`` identical xception_module units (core/xception.py xception_block)."""
    if unit_rate_list is None:
        unit_rate_list = DEFAULT_MULTI_GRID
    unit = {"depth_list": list(depth_list), "skip_connection_type": skip_connection_type,
            "activation_fn_in_separable_conv": activation_fn_in_separable_conv,
            "regularize_depthwise": regularize_depthwise, "stride": stride, "kernel_size": kernel_size,
            "unit_rate_list": list(unit_rate_list)}
    return Block(scope, xception_module, [dict(unit) for _ in range(num_units)])


# (scope, depth_list, skip, activation_fn_in_separable_conv, num_units, stride); the last block takes
# multi_grid. Straight from xception_41 / xception_65_factory / xception_71_factory.
_SPECS: dict[str, tuple[tuple[str, tuple[int, int, int], str, bool, int, int], ...]] = {
    "xception_41": (
        ("entry_flow/block1", (128, 128, 128), "conv", False, 1, 2),
        ("entry_flow/block2", (256, 256, 256), "conv", False, 1, 2),
        ("entry_flow/block3", (728, 728, 728), "conv", False, 1, 2),
        ("middle_flow/block1", (728, 728, 728), "sum", False, 8, 1),
        ("exit_flow/block1", (728, 1024, 1024), "conv", False, 1, 2),
        ("exit_flow/block2", (1536, 1536, 2048), "none", True, 1, 1),
    ),
    "xception_65": (
        ("entry_flow/block1", (128, 128, 128), "conv", False, 1, 2),
        ("entry_flow/block2", (256, 256, 256), "conv", False, 1, 2),
        ("entry_flow/block3", (728, 728, 728), "conv", False, 1, 2),
        ("middle_flow/block1", (728, 728, 728), "sum", False, 16, 1),
        ("exit_flow/block1", (728, 1024, 1024), "conv", False, 1, 2),
        ("exit_flow/block2", (1536, 1536, 2048), "none", True, 1, 1),
    ),
    "xception_71": (
        ("entry_flow/block1", (128, 128, 128), "conv", False, 1, 2),
        ("entry_flow/block2", (256, 256, 256), "conv", False, 1, 1),
        ("entry_flow/block3", (256, 256, 256), "conv", False, 1, 2),
        ("entry_flow/block4", (728, 728, 728), "conv", False, 1, 1),
        ("entry_flow/block5", (728, 728, 728), "conv", False, 1, 2),
        ("middle_flow/block1", (728, 728, 728), "sum", False, 16, 1),
        ("exit_flow/block1", (728, 1024, 1024), "conv", False, 1, 2),
        ("exit_flow/block2", (1536, 1536, 2048), "none", True, 1, 1),
    ),
}


def blocks_for(model_variant: str, *, width: float = 1.0, multi_grid: Sequence[int] | None = None,
               regularize_depthwise: bool = False) -> list[Block]:
    """The Block list of ``model_variant`` ('xception_65' or 'xception_71') at channel ``width``."""
    if model_variant not in _SPECS:
        raise ValueError(f"unknown Xception variant {model_variant!r}; known: {', '.join(_SPECS)}")
    specs = _SPECS[model_variant]
    blocks = []
    for i, (scope, depths, skip, act_in_sep, units, stride) in enumerate(specs):
        blocks.append(xception_block(scope, [scaled_depth(d, width) for d in depths], skip, act_in_sep,
                                     regularize_depthwise, units, stride,
                                     unit_rate_list=multi_grid if i == len(specs) - 1 else None))
    return blocks


def xception_arg_scope(batch_norm_decay: float = BATCH_NORM_DECAY, batch_norm_epsilon: float = BATCH_NORM_EPSILON,
                       batch_norm_scale: bool = True, weights_initializer_stddev: float = WEIGHTS_INITIALIZER_STDDEV,
                       use_batch_norm: bool = True, use_bounded_activation: bool = False) -> Any:
    """core/xception.py xception_arg_scope with the values feature_extractor.extract_features passes.

    Batch norm is layers.batch_norm (slim.batch_norm's inference graph, built directly). The L2 weight
    regularizers are left out (like the rest of this package): they are training-only ops
    that freezing prunes, so the exported graph is the same without them.
    """
    batch_norm_params = {"decay": batch_norm_decay, "epsilon": batch_norm_epsilon, "scale": batch_norm_scale}
    activation_fn = tf.nn.relu6 if use_bounded_activation else tf.nn.relu
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                        weights_initializer=tf.truncated_normal_initializer(stddev=weights_initializer_stddev),
                        activation_fn=activation_fn,
                        normalizer_fn=batch_norm if use_batch_norm else None):
        with slim.arg_scope([batch_norm], **batch_norm_params):
            with slim.arg_scope([xception_module], use_bounded_activation=use_bounded_activation,
                                use_explicit_padding=not use_bounded_activation) as arg_sc:
                return arg_sc


def xception(inputs: Any, blocks: Sequence[Block], *, output_stride: int | None, width: float = 1.0,
             reuse: Any = None, scope: str | None = None) -> tuple[Any, dict[str, Any]]:
    """core/xception.py xception() for dense prediction: no global pool, no logits, BN in inference mode."""
    with tf.variable_scope(scope, "xception", [inputs], reuse=reuse) as sc:
        end_points_collection = sc.original_name_scope + "end_points"
        with slim.arg_scope([slim.conv2d, slim.separable_conv2d, xception_module, stack_blocks_dense],
                            outputs_collections=end_points_collection):
            with slim.arg_scope([batch_norm], is_training=False):
                net = inputs
                if output_stride is not None:
                    if output_stride % 2 != 0:
                        raise ValueError("The output_stride needs to be a multiple of 2.")
                    # The root conv below already strides by 2.
                    output_stride //= 2
                net = resnet_utils.conv2d_same(net, scaled_depth(32, width), 3, stride=2,
                                               scope="entry_flow/conv1_1")
                net = resnet_utils.conv2d_same(net, scaled_depth(64, width), 3, stride=1,
                                               scope="entry_flow/conv1_2")
                net = stack_blocks_dense(net, blocks, output_stride)
                end_points = slim.utils.convert_collection_to_dict(end_points_collection, clear_collection=True)
        prefix = sc.name + "/"
        short = {k[len(prefix):]: v for k, v in end_points.items() if k.startswith(prefix)}
        end_points.update(short)
        return net, end_points


def build(images: Any, *, output_stride: int, depth_multiplier: float = 1.0, width: float = 1.0,
          multi_grid: Sequence[int] | None = None, scope: str | None = None, model_variant: str = "xception_65",
          regularize_depthwise: bool = False, use_bounded_activation: bool = False,
          reuse: Any = None) -> tuple[Any, dict[str, Any]]:
    """Build ``model_variant`` on preprocessed ``images`` inside its arg scope (the backbone contract).

    ``depth_multiplier`` is ignored, as for Xception in the reference. ``scope`` defaults to the
    reference's name scope, which is the variant's name ('xception_65', ...).
    """
    del depth_multiplier  # feature_extractor.extract_features never passes it to Xception.
    blocks = blocks_for(model_variant, width=width, multi_grid=multi_grid,
                        regularize_depthwise=regularize_depthwise)
    arg_sc = xception_arg_scope(use_bounded_activation=use_bounded_activation)
    with slim.arg_scope(arg_sc):
        return xception(images, blocks, output_stride=output_stride, width=width, reuse=reuse,
                        scope=scope or model_variant)


def build_xception_41(images: Any, *, output_stride: int, depth_multiplier: float = 1.0, width: float = 1.0,
                      multi_grid: Sequence[int] | None = None, scope: str = "xception_41",
                      **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Xception-41 backbone (see :func:`build`); no zoo checkpoint uses it."""
    return build(images, output_stride=output_stride, depth_multiplier=depth_multiplier, width=width,
                 multi_grid=multi_grid, scope=scope, model_variant="xception_41", **kwargs)


def build_xception_65(images: Any, *, output_stride: int, depth_multiplier: float = 1.0, width: float = 1.0,
                      multi_grid: Sequence[int] | None = None, scope: str = "xception_65",
                      **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Xception-65 backbone (see :func:`build`)."""
    return build(images, output_stride=output_stride, depth_multiplier=depth_multiplier, width=width,
                 multi_grid=multi_grid, scope=scope, model_variant="xception_65", **kwargs)


def build_xception_71(images: Any, *, output_stride: int, depth_multiplier: float = 1.0, width: float = 1.0,
                      multi_grid: Sequence[int] | None = None, scope: str = "xception_71",
                      **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Xception-71 backbone (see :func:`build`)."""
    return build(images, output_stride=output_stride, depth_multiplier=depth_multiplier, width=width,
                 multi_grid=multi_grid, scope=scope, model_variant="xception_71", **kwargs)


BACKBONES: dict[str, Callable[..., tuple[Any, dict[str, Any]]]] = {
    "xception_41": build_xception_41,
    "xception_65": build_xception_65,
    "xception_71": build_xception_71,
}


def _families() -> tuple[dict[str, Any], dict[str, tuple[Any, tuple[int, int], float | None, str]]]:
    from .export import ExportConfig

    narrow = 0.125  # 2048 -> 256, 728 -> 91, 32 -> 4 channels; same ops and wiring as the real network
    families = {
        # xception65_coco_voc_* / xception65_cityscapes_trainfine: ASPP (image pooling + 3 separable atrous
        # branches) and the decoder at OS 4, at the two eval output strides of the zoo.
        "xception65_os8_decoder": ExportConfig("xception_65", width=narrow, output_stride=8,
                                               atrous_rates=(12, 24, 36), decoder_output_stride=(4,),
                                               crop_size=(65, 65)),
        "xception65_os16_decoder": ExportConfig("xception_65", width=narrow, output_stride=16,
                                                atrous_rates=(6, 12, 18), decoder_output_stride=(4,),
                                                crop_size=(129, 129)),
        # xception71_dpc_cityscapes_*: the dense prediction cell replaces ASPP; decoder at OS 4.
        "x71_dpc_os8": ExportConfig("xception_71", num_classes=19, width=narrow, output_stride=8,
                                    dense_prediction_cell=True, decoder_output_stride=(4,), crop_size=(65, 129)),
        "x71_dpc_os16": ExportConfig("xception_71", num_classes=19, width=narrow, output_stride=16,
                                     dense_prediction_cell=True, decoder_output_stride=(4,), crop_size=(65, 129)),
    }
    x65 = {"atrous_rates": (6, 12, 18), "decoder_output_stride": (4,), "output_stride": 16}
    cityscapes = (1025, 2049)
    full_width = {
        # name: (config, input size (H, W), seed Multiply-Adds in billions or None, seed row). Single-scale
        # rows only: zoo computes the multi-scale ones from these graphs itself.
        "x65_voc_os16_513": (ExportConfig("xception_65", **x65), (513, 513), 54.17,
                             "xception65_coco_voc_trainaug, OS 16, [1.0], no flip"),
        "x65_voc_os8_513": (ExportConfig("xception_65", output_stride=8, atrous_rates=(12, 24, 36),
                                         decoder_output_stride=(4,)), (513, 513), None,
                            "xception65_coco_voc_trainaug, OS 8, [1.0] (no seed row)"),
        "x65_cityscapes_os16_1025x2049": (
            ExportConfig("xception_65", num_classes=19, crop_size=cityscapes, **x65), cityscapes, 418.64,
            "xception65_cityscapes_trainfine, OS 16, [1.0], no flip"),
        "x71_dpc_cityscapes_os16_1025x2049": (
            ExportConfig("xception_71", num_classes=19, crop_size=cityscapes, output_stride=16,
                         dense_prediction_cell=True, decoder_output_stride=(4,)), cityscapes, 502.07,
            "xception71_dpc_cityscapes_trainfine, OS 16, [1.0], no flip"),
    }
    return families, full_width


FAMILIES, FULL_WIDTH = _families()
