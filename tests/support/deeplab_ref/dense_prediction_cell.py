"""The dense prediction cell (DPC) of research/deeplab core/dense_prediction_cell.py, inference only.

model.py builds it in place of ASPP when --dense_prediction_cell_json is given, as::

    cell = DensePredictionCell(config, hparams={'conv_rate_multiplier': 16 // output_stride})
    features = cell.build_cell(features, output_stride=output_stride, crop_size=crop_size,
                               image_pooling_crop_size=image_pooling_crop_size)

(:func:`build_cell` here does both steps). The zoo's Xception-71 Cityscapes checkpoints use
dense_prediction_cell_branch5_top1_cityscapes.json, whose facts are :data:`BRANCH5_TOP1_CITYSCAPES`:
five 3x3 split separable convs (depthwise with the listed [h, w] atrous rates, then 1x1 pointwise, each
followed by batch norm + ReLU) wired as a small tree, concatenated, dropout (identity at inference),
and a 1x1 'concat_projection' conv, all under the 'meta_architecture' scope.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import tensorflow.compat.v1 as tf
import tf_slim as slim

from .layers import batch_norm

# research/deeplab core/dense_prediction_cell_branch5_top1_cityscapes.json, in file order. 'input' -1
# reads the backbone features, i >= 0 reads branch i's output; 'rate' is [rate_h, rate_w] at OS 16.
BRANCH5_TOP1_CITYSCAPES: tuple[dict[str, Any], ...] = (
    {"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1},
    {"kernel": 3, "rate": [18, 15], "op": "conv", "input": 0},
    {"kernel": 3, "rate": [6, 3], "op": "conv", "input": 1},
    {"kernel": 3, "rate": [1, 1], "op": "conv", "input": 0},
    {"kernel": 3, "rate": [6, 21], "op": "conv", "input": 0},
)

# The cell's default variable scope (model.py passes no scope, so its variables live under it).
META_ARCHITECTURE_SCOPE = "meta_architecture"
CONCAT_PROJECTION_SCOPE = "concat_projection"

# Batch norm of the cell (model.py's ASPP/decoder use the same values).
_BATCH_NORM_DECAY = 0.9997
_BATCH_NORM_EPSILON = 1e-5


def dense_prediction_cell_hparams() -> dict[str, Any]:
    """The reference's default hyper-parameters of the cell."""
    return {
        "reduction_size": 256,
        "dropout_on_concat_features": True,
        "dropout_on_projection_features": False,
        "dropout_keep_prob": 0.9,
        "concat_channels": 256,
        "conv_rate_multiplier": 1,
    }


def scale_dimension(dim: int, scale: float) -> int:
    """core/utils.py scale_dimension for Python ints: int((dim - 1) * scale + 1)."""
    return int((float(dim) - 1.0) * scale + 1.0)


def _pyramid_pooling_arguments(crop_size: Sequence[int], output_stride: int, image_grid: Sequence[int],
                               image_pooling_crop_size: Sequence[int] | None) -> tuple[list[int], list[int]]:
    resize = [scale_dimension(crop_size[0], 1.0 / output_stride),
              scale_dimension(crop_size[1], 1.0 / output_stride)]
    pool_crop = crop_size if image_pooling_crop_size is None else image_pooling_crop_size
    pooled = [scale_dimension(pool_crop[0], 1.0 / (output_stride * image_grid[0])),
              scale_dimension(pool_crop[1], 1.0 / (output_stride * image_grid[1]))]
    return resize, pooled


def split_separable_conv2d(inputs: Any, filters: int, kernel_size: Any = 3, rate: Any = 1,
                           depthwise_weights_initializer_stddev: float = 0.33,
                           pointwise_weights_initializer_stddev: float = 0.06, scope: str | None = None) -> Any:
    """core/utils.py split_separable_conv2d: depthwise (``scope_depthwise``) then 1x1 (``scope_pointwise``)."""
    outputs = slim.separable_conv2d(
        inputs, None, kernel_size=kernel_size, depth_multiplier=1, rate=rate,
        weights_initializer=tf.truncated_normal_initializer(stddev=depthwise_weights_initializer_stddev),
        scope=scope + "_depthwise")
    return slim.conv2d(
        outputs, filters, 1,
        weights_initializer=tf.truncated_normal_initializer(stddev=pointwise_weights_initializer_stddev),
        scope=scope + "_pointwise")


def build_cell(features: Any, *, output_stride: int = 16, crop_size: Sequence[int] | None = None,
               config: Sequence[Mapping[str, Any]] = BRANCH5_TOP1_CITYSCAPES,
               hparams: Mapping[str, Any] | None = None, image_pooling_crop_size: Sequence[int] | None = None,
               reuse: Any = None, scope: str | None = None) -> Any:
    """The cell on ``features`` (inference), as model.extract_features builds it.

    ``hparams`` updates :func:`dense_prediction_cell_hparams`; when it has no 'conv_rate_multiplier',
    model.py's ``16 // output_stride`` is used (so the OS-16 rates double at OS 8). 'reduction_size' and
    'concat_channels' (256 in the reference) can be lowered for narrow test versions.
    """
    params = dense_prediction_cell_hparams()
    params["conv_rate_multiplier"] = 16 // output_stride
    params.update(hparams or {})
    if params["conv_rate_multiplier"] < 1:
        raise ValueError("conv_rate_multiplier cannot have value < 1.")
    depth = params["reduction_size"]

    # No L2 regularizers (training-only ops that freezing prunes).
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d], activation_fn=tf.nn.relu, normalizer_fn=batch_norm,
                        padding="SAME", stride=1, reuse=reuse):
        with slim.arg_scope([batch_norm], is_training=False, decay=_BATCH_NORM_DECAY, epsilon=_BATCH_NORM_EPSILON,
                            scale=True):
            with tf.variable_scope(scope, META_ARCHITECTURE_SCOPE, [features]):
                branch_logits: list[Any] = []
                for i, op_config in enumerate(config):
                    branch_scope = "branch%d" % i
                    op_config = copy.deepcopy(dict(op_config))
                    op_input = features if op_config["input"] < 0 else branch_logits[op_config["input"]]
                    if op_config["op"] == "conv":
                        if op_config["kernel"] in ([1, 1], 1):
                            branch_logits.append(slim.conv2d(op_input, depth, 1, scope=branch_scope))
                        else:
                            rate = [r * params["conv_rate_multiplier"] for r in op_config["rate"]]
                            branch_logits.append(split_separable_conv2d(
                                op_input, filters=depth, kernel_size=op_config["kernel"], rate=rate,
                                scope=branch_scope))
                    elif op_config["op"] == "pyramid_pooling":
                        if crop_size is None:
                            raise ValueError("pyramid_pooling needs crop_size")
                        target, kernel = _pyramid_pooling_arguments(crop_size, output_stride,
                                                                    op_config["grid_size"], image_pooling_crop_size)
                        pooled = slim.avg_pool2d(op_input, kernel_size=kernel, stride=[1, 1], padding="VALID")
                        pooled = slim.conv2d(pooled, depth, 1, scope=branch_scope)
                        pooled = tf.image.resize_bilinear(pooled, target, align_corners=True)
                        pooled.set_shape([None, target[0], target[1], depth])
                        branch_logits.append(pooled)
                    else:
                        raise ValueError("Unrecognized operation.")
                concat_logits = tf.concat(branch_logits, 3)
                if params["dropout_on_concat_features"]:
                    concat_logits = slim.dropout(concat_logits, keep_prob=params["dropout_keep_prob"],
                                                 is_training=False, scope=CONCAT_PROJECTION_SCOPE + "_dropout")
                concat_logits = slim.conv2d(concat_logits, params["concat_channels"], 1,
                                            scope=CONCAT_PROJECTION_SCOPE)
                if params["dropout_on_projection_features"]:
                    concat_logits = slim.dropout(concat_logits, keep_prob=params["dropout_keep_prob"],
                                                 is_training=False, scope=CONCAT_PROJECTION_SCOPE + "_dropout")
                return concat_logits
