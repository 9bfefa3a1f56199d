"""The one inference batch norm every module of the package builds with (backbones, ASPP, decoder, DPC).

:func:`batch_norm` stands in for ``slim.batch_norm(..., is_training=False)``: the same variables under
'BatchNorm' (gamma, beta, moving_mean, moving_variance, created in that order, as slim's Keras-backed batch
norm creates them) and the same single FusedBatchNormV3 reading them, so the frozen graph is the same node
for node (tests/graph/test_deeplab_ref.py compares a whole export, full of batch norms at epsilon 1e-3 and
1e-5, with a graph research/deeplab's own export wrote). On TF >= 2.16 slim.batch_norm goes through
tf_keras' legacy layer, whose add_weight scans every global variable (quadratic in the size of the
network) and which needs a module alias to import at all; this builds the op directly.
"""

from __future__ import annotations

from typing import Any, Callable

import tensorflow.compat.v1 as tf
import tf_slim as slim


@slim.add_arg_scope
def batch_norm(inputs: Any, decay: float = 0.999, center: bool = True, scale: bool = False,
               epsilon: float = 0.001, activation_fn: Callable[[Any], Any] | None = None,
               is_training: bool = False, reuse: Any = None, trainable: bool = True,
               outputs_collections: Any = None, scope: str | None = None) -> Any:
    """slim.batch_norm's inference graph (slim's defaults); ``decay`` only matters in training."""
    del decay
    if is_training:
        raise ValueError("the reference fixtures build inference graphs only (is_training=False)")
    with tf.variable_scope(scope, "BatchNorm", [inputs], reuse=reuse) as sc:
        inputs = tf.convert_to_tensor(inputs)
        dtype = inputs.dtype.base_dtype
        shape = inputs.get_shape()[-1:]
        gamma = (slim.model_variable("gamma", shape=shape, dtype=dtype, initializer=tf.ones_initializer(),
                                     trainable=trainable) if scale else tf.constant(1.0, dtype, shape))
        beta = (slim.model_variable("beta", shape=shape, dtype=dtype, initializer=tf.zeros_initializer(),
                                    trainable=trainable) if center else tf.constant(0.0, dtype, shape))
        moving_mean = slim.model_variable("moving_mean", shape=shape, dtype=dtype,
                                          initializer=tf.zeros_initializer(), trainable=False)
        moving_variance = slim.model_variable("moving_variance", shape=shape, dtype=dtype,
                                              initializer=tf.ones_initializer(), trainable=False)
        outputs, _, _ = tf.nn.fused_batch_norm(inputs, gamma, beta, mean=moving_mean, variance=moving_variance,
                                               epsilon=epsilon, is_training=False)
        outputs.set_shape(inputs.get_shape())
        if activation_fn is not None:
            outputs = activation_fn(outputs)
        return slim.utils.collect_named_outputs(outputs_collections, sc.name, outputs)


# slim nets/mobilenet rules shared by MobileNet-v2, -v3 and EdgeTPU.


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """slim mobilenet's channel rounding: nearest multiple of ``divisor``, never more than 10% down."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def layer_strides_and_rates(strides: list[int], output_stride: int | None) -> list[tuple[int, int]]:
    """mobilenet_base's conversion of layer strides into (stride, atrous rate) for an output stride."""
    current_stride, rate, out = 1, 1, []
    for stride in strides:
        if output_stride is not None and current_stride == output_stride:
            out.append((1, rate))
            rate *= stride
        else:
            out.append((stride, 1))
            current_stride *= stride
    return out
