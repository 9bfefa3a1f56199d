"""research/deeplab export_model.py with the parts of input_preprocess.py, core/preprocess_utils.py,
model.py and core/utils.py an export runs, rebuilt in tf.compat.v1 graph mode with tf_slim so that the
frozen graph has the reference's ops, node names and wiring; weights are deterministic random numbers.

The call sequence (and so every op name counter) follows the reference: _create_input_tensors
(squeeze, preprocess_image_and_label with pad_to_bounding_box, expand_dims), predict_labels or
predict_labels_multi_scale -> multi_scale_logits -> _get_logits -> extract_features (backbone, then ASPP
or the dense prediction cell) -> refine_by_decoder -> get_branch_logits, then the export tail (cast,
RawSemanticPredictions, crop to the resized size, nearest-neighbour resize to the input size, int32
SemanticPredictions). Only the inference paths exist (is_training=False, no regularizers: they are
pruned by freezing anyway).

Variables are never created: :class:`FrozenVariables` builds each as the Const + '<name>/read' Identity that
convert_variables_to_constants leaves of a RefVariable, and the graph is pruned to its outputs as freezing
does. Checked once against the former Variables + session + convert_variables_to_constants builder: the same
GraphDef bytes for every MobileNet family, and rebuilt with the weights of the graph research/deeplab wrote
(tests/data), that graph byte for byte.

Known deviation: upstream predict_labels_multi_scale assigns a softmax into a Tensor (a TypeError); here
the multi-scale probabilities are the averaged softmax the labels are the argmax of.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow.compat.v1 as tf
import tf_slim as slim

from . import feature_extractor
from .layers import batch_norm

INPUT_NAME = "ImageTensor"
OUTPUT_NAME = "SemanticPredictions"
RAW_OUTPUT_NAME = "RawSemanticPredictions"
OUTPUT_PROB_NAME = "SemanticProbabilities"
RAW_OUTPUT_PROB_NAME = "RawSemanticProbabilities"
OUTPUT_TYPE = "semantic"  # common.OUTPUT_TYPE: the logits conv is 'logits/semantic'
PROB_SUFFIX = "_prob"


@dataclass(frozen=True)
class ExportConfig:
    """export_model.py flags (and common.py model flags) of one export; defaults are the reference's."""

    model_variant: str
    num_classes: int = 21
    crop_size: tuple[int, int] = (513, 513)
    output_stride: int = 8
    atrous_rates: tuple[int, ...] | None = None
    decoder_output_stride: tuple[int, ...] | None = None
    depth_multiplier: float = 1.0
    width: float = 1.0  # channel factor of narrow xception test versions; 1.0 = real widths
    inference_scales: tuple[float, ...] = (1.0,)
    add_flipped_images: bool = False
    image_pooling_crop_size: tuple[int, int] | None = None
    image_pooling_stride: tuple[int, int] = (1, 1)
    add_image_level_feature: bool = True
    aspp_with_batch_norm: bool = True
    aspp_with_separable_conv: bool = True
    aspp_convs_filters: int = 256
    aspp_with_concat_projection: bool = True
    aspp_with_squeeze_and_excitation: bool = False
    image_se_uses_qsigmoid: bool = False
    decoder_use_separable_conv: bool = True
    decoder_use_sum_merge: bool = False
    decoder_filters: int = 256
    decoder_output_is_logits: bool = False
    dense_prediction_cell: bool = False
    multi_grid: tuple[int, ...] | None = None
    logits_kernel_size: int = 1
    merge_method: str = "max"
    prediction_with_upsampled_logits: bool = True
    use_bounded_activation: bool = False
    export_probabilities: bool = False
    seed: int = 0  # weights are a pure function of (seed, variable name, shape)

    def __post_init__(self) -> None:
        if self.decoder_output_stride is not None and \
                list(self.decoder_output_stride) != sorted(self.decoder_output_stride, reverse=True):
            raise ValueError("decoder_output_stride must be sorted in descending order")
        if self.merge_method not in ("max", "avg"):
            raise ValueError("merge_method must be 'max' or 'avg'")


# ----------------------------------------------------------------------------------------------- weights

def variable_value(seed: int, name: str, shape: Sequence[int]) -> np.ndarray:
    """The value of variable ``name`` (op name, no ':0'): a pure function of (seed, name, shape).

    Kernels are He-normal (fan-in from the kernel shape, depthwise kernels by kh*kw), batch norm is close
    to the identity (gamma ~ 1, beta ~ 0, moving mean ~ 0, moving variance ~ 1) so activations stay O(1)
    without calibration, biases are small; the logits kernels are centred over their input channels.
    """
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    rng = np.random.RandomState(int.from_bytes(digest[:4], "little"))
    shape = tuple(int(d) for d in shape)
    leaf = name.rsplit("/", 1)[-1]
    if leaf == "gamma":
        value = rng.uniform(0.9, 1.1, shape)
    elif leaf in ("beta", "moving_mean"):
        value = rng.normal(0.0, 0.05, shape)
    elif leaf == "moving_variance":
        value = rng.uniform(0.9, 1.1, shape)
    elif leaf == "biases":
        value = rng.normal(0.0, 0.05, shape)
    elif len(shape) == 4:
        fan_in = shape[0] * shape[1] * (1 if leaf == "depthwise_weights" else shape[2])
        value = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), shape)
        if name.startswith("logits/") and leaf == "weights":
            # Features after a ReLU share a large positive mean; class kernels that are zero-mean over the
            # input channels ignore it, so the argmax follows the spatial variation of the features.
            value -= value.mean(axis=2, keepdims=True)
    elif len(shape) == 2:
        value = rng.normal(0.0, np.sqrt(2.0 / max(shape[0], 1)), shape)
    else:
        value = rng.normal(0.0, 0.05, shape)
    return value.astype(np.float32)


@functools.lru_cache(maxsize=8192)
def _small_variable_value(seed: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    # Exports of one test session share most variables; seeding a RandomState per variable is what costs.
    value = variable_value(seed, name, shape)
    value.setflags(write=False)
    return value


_SMALL_VARIABLE = 1 << 16  # elements; full-width kernels are not kept


# ------------------------------------------------------------------------------------------ core/utils.py

def q_sigmoid(x: Any) -> Any:
    """utils.q_sigmoid: relu6(x + 3) * 0.16667."""
    return tf.nn.relu6(x + 3) * 0.16667


def resize_bilinear(images: Any, size: Any, output_dtype: Any = tf.float32) -> Any:
    """utils.resize_bilinear: align_corners=True, then a (no-op for float32) cast."""
    images = tf.image.resize_bilinear(images, size, align_corners=True)
    return tf.cast(images, dtype=output_dtype)


def scale_dimension(dim: Any, scale: float) -> Any:
    """utils.scale_dimension: int((dim - 1) * scale + 1), also for a scalar int tensor."""
    if isinstance(dim, tf.Tensor):
        return tf.cast((tf.to_float(dim) - 1.0) * scale + 1.0, dtype=tf.int32)
    return int((float(dim) - 1.0) * scale + 1.0)


def split_separable_conv2d(inputs: Any, filters: int, kernel_size: int = 3, rate: int = 1,
                           scope: str = "") -> Any:
    """utils.split_separable_conv2d: depthwise conv (+BN+act) '<scope>_depthwise', then 1x1 '<scope>_pointwise'."""
    outputs = slim.separable_conv2d(inputs, None, kernel_size=kernel_size, depth_multiplier=1, rate=rate,
                                    weights_regularizer=None, scope=scope + "_depthwise")
    return slim.conv2d(outputs, filters, 1, scope=scope + "_pointwise")


def batch_norm_params() -> dict[str, Any]:
    """utils.get_batch_norm_params as model.py calls it at inference."""
    return {"is_training": False, "decay": 0.9997, "epsilon": 1e-5, "scale": True, "center": True}


# ------------------------------------------------------------------------- core/preprocess_utils.py

def _image_dimensions(image: Any, rank: int) -> list[Any]:
    if image.get_shape().is_fully_defined():
        return image.get_shape().as_list()
    static = image.get_shape().with_rank(rank).as_list()
    dynamic = tf.unstack(tf.shape(image), rank)
    return [s if s is not None else d for s, d in zip(static, dynamic)]


def pad_to_bounding_box(image: Any, offset_height: int, offset_width: int, target_height: Any,
                        target_width: Any, pad_value: Any) -> Any:
    """preprocess_utils.pad_to_bounding_box: pad a 3-D/4-D image with ``pad_value`` (asserts included)."""
    with tf.name_scope(None, "pad_to_bounding_box", [image]):
        image = tf.convert_to_tensor(image, name="image")
        original_dtype = image.dtype
        if original_dtype not in (tf.float32, tf.float64):
            image = tf.cast(image, tf.int32)
        rank_assert = tf.Assert(tf.logical_or(tf.equal(tf.rank(image), 3), tf.equal(tf.rank(image), 4)),
                                ["Wrong image tensor rank."])
        with tf.control_dependencies([rank_assert]):
            image -= pad_value
        ndims = image.get_shape().ndims
        is_batch = True
        if ndims == 3:
            is_batch = False
            image = tf.expand_dims(image, 0)
        elif ndims is None:
            is_batch = False
            image = tf.expand_dims(image, 0)
            image.set_shape([None] * 4)
        elif ndims != 4:
            raise ValueError("Input image must have either 3 or 4 dimensions.")
        _, height, width, _ = _image_dimensions(image, rank=4)
        width_assert = tf.Assert(tf.greater_equal(target_width, width), ["target_width must be >= width"])
        height_assert = tf.Assert(tf.greater_equal(target_height, height), ["target_height must be >= height"])
        with tf.control_dependencies([width_assert]):
            after_padding_width = target_width - offset_width - width
        with tf.control_dependencies([height_assert]):
            after_padding_height = target_height - offset_height - height
        offset_assert = tf.Assert(
            tf.logical_and(tf.greater_equal(after_padding_width, 0), tf.greater_equal(after_padding_height, 0)),
            ["target size not possible with the given target offsets"])
        batch_params = tf.stack([0, 0])
        height_params = tf.stack([offset_height, after_padding_height])
        width_params = tf.stack([offset_width, after_padding_width])
        channel_params = tf.stack([0, 0])
        with tf.control_dependencies([offset_assert]):
            paddings = tf.stack([batch_params, height_params, width_params, channel_params])
        padded = tf.pad(image, paddings)
        if not is_batch:
            padded = tf.squeeze(padded, axis=[0])
        outputs = padded + pad_value
        if outputs.dtype != original_dtype:
            outputs = tf.cast(outputs, original_dtype)
        return outputs


# ---------------------------------------------------------------------------------- input_preprocess.py

def preprocess_image_and_label(image: Any, crop_height: int, crop_width: int,
                               model_variant: str) -> tuple[Any, Any]:
    """input_preprocess.preprocess_image_and_label at inference without label or resizing.

    Returns (original_image, processed_image): the image is cast to float and padded with the mean
    pixel up to at least the crop size; its static shape is then declared to be the crop.
    """
    original_image = image
    processed_image = tf.cast(image, tf.float32)
    image_shape = tf.shape(processed_image)
    image_height = image_shape[0]
    image_width = image_shape[1]
    target_height = image_height + tf.maximum(crop_height - image_height, 0)
    target_width = image_width + tf.maximum(crop_width - image_width, 0)
    mean_pixel = tf.reshape(feature_extractor.mean_pixel(model_variant), [1, 1, 3])
    processed_image = pad_to_bounding_box(processed_image, 0, 0, target_height, target_width, mean_pixel)
    processed_image.set_shape([crop_height, crop_width, 3])
    return original_image, processed_image


# --------------------------------------------------------------------------------------------- model.py

def _image_pooling(features: Any, config: ExportConfig, depth: int, batch_norm: Any) -> Any:
    crop_size = config.crop_size
    pool_crop = config.image_pooling_crop_size or crop_size
    pool_height = scale_dimension(pool_crop[0], 1.0 / config.output_stride)
    pool_width = scale_dimension(pool_crop[1], 1.0 / config.output_stride)
    image_feature = slim.avg_pool2d(features, [pool_height, pool_width], list(config.image_pooling_stride),
                                    padding="VALID")
    resize_height = scale_dimension(crop_size[0], 1.0 / config.output_stride)
    resize_width = scale_dimension(crop_size[1], 1.0 / config.output_stride)
    activation_fn: Any = tf.nn.relu
    normalizer_fn: Any = batch_norm
    if config.aspp_with_squeeze_and_excitation:
        activation_fn = q_sigmoid if config.image_se_uses_qsigmoid else tf.nn.sigmoid
        normalizer_fn = None
    image_feature = slim.conv2d(image_feature, depth, 1, activation_fn=activation_fn,
                                normalizer_fn=normalizer_fn, scope="image_pooling")
    image_feature = resize_bilinear(image_feature, [resize_height, resize_width], image_feature.dtype)
    image_feature.set_shape([None, resize_height, resize_width, depth])
    return image_feature


def extract_features(images: Any, config: ExportConfig) -> tuple[Any, dict[str, Any]]:
    """model.extract_features: the backbone, then the dense prediction cell or the ASPP module."""
    features, end_points = feature_extractor.extract_features(
        images, model_variant=config.model_variant, output_stride=config.output_stride,
        depth_multiplier=config.depth_multiplier, width=config.width, multi_grid=config.multi_grid)
    if not config.aspp_with_batch_norm:
        return features, end_points
    if config.dense_prediction_cell:
        from . import dense_prediction_cell  # written by the xception helper

        concat_logits = dense_prediction_cell.build_cell(
            features, output_stride=config.output_stride, crop_size=config.crop_size,
            image_pooling_crop_size=config.image_pooling_crop_size)
        return concat_logits, end_points
    activation_fn = tf.nn.relu6 if config.use_bounded_activation else tf.nn.relu
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d], activation_fn=activation_fn,
                        normalizer_fn=batch_norm, padding="SAME", stride=1), \
            slim.arg_scope([batch_norm], **batch_norm_params()):
        depth = config.aspp_convs_filters
        branch_logits = []
        image_feature = None
        if config.add_image_level_feature:
            image_feature = _image_pooling(features, config, depth, batch_norm)
            if not config.aspp_with_squeeze_and_excitation:
                branch_logits.append(image_feature)
        branch_logits.append(slim.conv2d(features, depth, 1, scope="aspp0"))
        for i, rate in enumerate(config.atrous_rates or (), 1):
            scope = f"aspp{i}"
            if config.aspp_with_separable_conv:
                branch = split_separable_conv2d(features, filters=depth, rate=rate, scope=scope)
            else:
                branch = slim.conv2d(features, depth, 3, rate=rate, scope=scope)
            branch_logits.append(branch)
        concat_logits = tf.concat(branch_logits, 3)
        if config.aspp_with_concat_projection:
            concat_logits = slim.conv2d(concat_logits, depth, 1, scope="concat_projection")
            concat_logits = slim.dropout(concat_logits, keep_prob=0.9, is_training=False,
                                         scope="concat_projection_dropout")
        if image_feature is not None and config.aspp_with_squeeze_and_excitation:
            concat_logits *= image_feature
        return concat_logits, end_points


def _decoder_with_sum_merge(features_list: list[Any], depth: int, conv2d_kernel: int, separable: bool,
                            scope_suffix: str) -> Any:
    if len(features_list) != 2:
        raise RuntimeError("Expect decoder_features has length 2.")
    if separable:
        return split_separable_conv2d(features_list[0], filters=depth, rate=1,
                                      scope="decoder_split_sep_conv0" + scope_suffix) + features_list[1]
    return slim.conv2d(features_list[0], depth, conv2d_kernel,
                       scope="decoder_conv0" + scope_suffix) + features_list[1]


def _decoder_with_concat_merge(features_list: list[Any], depth: int, separable: bool, scope_suffix: str) -> Any:
    if separable:
        net = split_separable_conv2d(tf.concat(features_list, 3), filters=depth, rate=1,
                                     scope="decoder_conv0" + scope_suffix)
        return split_separable_conv2d(net, filters=depth, rate=1, scope="decoder_conv1" + scope_suffix)
    return slim.repeat(tf.concat(features_list, 3), 2, slim.conv2d, depth, 3, scope="decoder_conv" + scope_suffix)


def refine_by_decoder(features: Any, end_points: dict[str, Any], config: ExportConfig) -> Any:
    """model.refine_by_decoder: per decoder output stride, project the end point, resize both, merge."""
    crop_size = config.crop_size
    depth = config.decoder_filters
    projected_filters = depth if config.decoder_use_sum_merge else 48
    separable = config.decoder_use_separable_conv
    if config.decoder_output_is_logits:
        activation_fn, normalizer_fn, conv2d_kernel, separable = None, None, 1, False
    else:
        activation_fn = tf.nn.relu6 if config.use_bounded_activation else tf.nn.relu
        normalizer_fn, conv2d_kernel = batch_norm, 3
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d], activation_fn=activation_fn,
                        normalizer_fn=normalizer_fn, padding="SAME", stride=1), \
            slim.arg_scope([batch_norm], **batch_norm_params()), \
            tf.variable_scope("decoder", "decoder", [features]):
        decoder_features = features
        scope_suffix = ""
        for stage, output_stride in enumerate(config.decoder_output_stride or ()):
            names = feature_extractor.decoder_end_points(config.model_variant, output_stride)
            if stage:
                scope_suffix = f"_{stage}"
            for i, name in enumerate(names):
                features_list = [decoder_features]
                low_level = feature_extractor.end_point(end_points, config.model_variant, name)
                features_list.append(slim.conv2d(low_level, projected_filters, 1,
                                                 scope=f"feature_projection{i}{scope_suffix}"))
                decoder_height = scale_dimension(crop_size[0], 1.0 / output_stride)
                decoder_width = scale_dimension(crop_size[1], 1.0 / output_stride)
                for j, feature in enumerate(features_list):
                    features_list[j] = resize_bilinear(feature, [decoder_height, decoder_width], feature.dtype)
                    features_list[j].set_shape([None, decoder_height, decoder_width, None])
                if config.decoder_use_sum_merge:
                    decoder_features = _decoder_with_sum_merge(features_list, depth, conv2d_kernel, separable,
                                                               scope_suffix)
                else:
                    if not separable:
                        scope_suffix = str(i) + scope_suffix
                    decoder_features = _decoder_with_concat_merge(features_list, depth, separable, scope_suffix)
        return decoder_features


def get_branch_logits(features: Any, num_classes: int, atrous_rates: Sequence[int] | None,
                      aspp_with_batch_norm: bool, kernel_size: int, scope_suffix: str) -> Any:
    """model.get_branch_logits: 1x1 conv(s) with biases under 'logits/<output type>', summed by add_n."""
    if aspp_with_batch_norm or atrous_rates is None:
        if kernel_size != 1:
            raise ValueError("Kernel size must be 1 when atrous_rates is None or using aspp_with_batch_norm.")
        atrous_rates = [1]
    with tf.variable_scope("logits", "logits", [features]):
        branch_logits = []
        for i, rate in enumerate(atrous_rates):
            scope = scope_suffix + (f"_{i}" if i else "")
            branch_logits.append(slim.conv2d(features, num_classes, kernel_size=kernel_size, rate=rate,
                                             activation_fn=None, normalizer_fn=None, scope=scope))
        return tf.add_n(branch_logits)


def get_logits(images: Any, config: ExportConfig) -> dict[str, Any]:
    """model._get_logits."""
    features, end_points = extract_features(images, config)
    if config.decoder_output_stride:
        features = refine_by_decoder(features, end_points, config)
    if config.decoder_output_is_logits:
        return {OUTPUT_TYPE: tf.identity(features, name=OUTPUT_TYPE)}
    return {OUTPUT_TYPE: get_branch_logits(features, config.num_classes, config.atrous_rates,
                                           config.aspp_with_batch_norm, config.logits_kernel_size, OUTPUT_TYPE)}


def multi_scale_logits(images: Any, config: ExportConfig, image_pyramid: Sequence[float] | None) -> dict[str, Any]:
    """model.multi_scale_logits: logits per pyramid scale, resized to the logits size, merged."""
    pyramid = list(image_pyramid or [1.0])
    crop_height, crop_width = config.crop_size
    logits_output_stride = min(config.decoder_output_stride) if config.decoder_output_stride \
        else config.output_stride
    logits_height = scale_dimension(crop_height, max(1.0, max(pyramid)) / logits_output_stride)
    logits_width = scale_dimension(crop_width, max(1.0, max(pyramid)) / logits_output_stride)
    scales_to_logits: dict[str, Any] = {}
    num_channels = images.get_shape().as_list()[-1]
    for image_scale in pyramid:
        if image_scale != 1.0:
            scaled_height = scale_dimension(crop_height, image_scale)
            scaled_width = scale_dimension(crop_width, image_scale)
            scaled_images = resize_bilinear(images, [scaled_height, scaled_width], images.dtype)
            scaled_images.set_shape([None, scaled_height, scaled_width, num_channels])
            pool_crop = None
            if config.image_pooling_crop_size:
                pool_crop = (scale_dimension(config.image_pooling_crop_size[0], image_scale),
                             scale_dimension(config.image_pooling_crop_size[1], image_scale))
            updated = replace(config, crop_size=(scaled_height, scaled_width), image_pooling_crop_size=pool_crop)
        else:
            scaled_images, updated = images, config
        logits = get_logits(scaled_images, updated)[OUTPUT_TYPE]
        logits = resize_bilinear(logits, [logits_height, logits_width], logits.dtype)
        if len(pyramid) == 1:
            return {"merged_logits": logits}
        scales_to_logits["logits_%.2f" % image_scale] = logits
    all_logits = tf.concat([tf.expand_dims(x, axis=4) for x in scales_to_logits.values()], 4)
    merge_fn = tf.reduce_max if config.merge_method == "max" else tf.reduce_mean
    scales_to_logits["merged_logits"] = merge_fn(all_logits, axis=4)
    return scales_to_logits


def predict_labels(images: Any, config: ExportConfig) -> dict[str, Any]:
    """model.predict_labels (single scale): logits resized to the crop, argmax; softmax for probabilities."""
    logits = multi_scale_logits(images, config, None)["merged_logits"]
    if config.prediction_with_upsampled_logits:
        logits = resize_bilinear(logits, tf.shape(images)[1:3], logits.dtype)
        return {OUTPUT_TYPE: tf.argmax(logits, 3), OUTPUT_TYPE + PROB_SUFFIX: tf.nn.softmax(logits)}
    argmax = tf.argmax(logits, 3)
    argmax = tf.image.resize_nearest_neighbor(tf.expand_dims(argmax, 3), tf.shape(images)[1:3],
                                              align_corners=True, name="resize_prediction")
    probabilities = tf.image.resize_bilinear(tf.nn.softmax(logits), tf.shape(images)[1:3], align_corners=True,
                                             name="resize_prob")
    return {OUTPUT_TYPE: tf.squeeze(argmax, 3), OUTPUT_TYPE + PROB_SUFFIX: probabilities}


def predict_labels_multi_scale(images: Any, config: ExportConfig, eval_scales: Sequence[float],
                               add_flipped_images: bool) -> dict[str, Any]:
    """model.predict_labels_multi_scale: mean of the softmaxes over scales (and flips), then argmax."""
    predictions = []
    for i, image_scale in enumerate(eval_scales):
        with tf.variable_scope(tf.get_variable_scope(), reuse=True if i else None):
            logits = multi_scale_logits(images, config, [image_scale])["merged_logits"]
        if add_flipped_images:
            with tf.variable_scope(tf.get_variable_scope(), reuse=True):
                logits_reversed = multi_scale_logits(tf.reverse_v2(images, [2]), config,
                                                     [image_scale])["merged_logits"]
        logits = resize_bilinear(logits, tf.shape(images)[1:3], logits.dtype)
        predictions.append(tf.expand_dims(tf.nn.softmax(logits), 4))
        if add_flipped_images:
            logits_reversed = resize_bilinear(tf.reverse_v2(logits_reversed, [2]), tf.shape(images)[1:3],
                                              logits_reversed.dtype)
            predictions.append(tf.expand_dims(tf.nn.softmax(logits_reversed), 4))
    mean = tf.reduce_mean(tf.concat(predictions, 4), axis=4)
    return {OUTPUT_TYPE: tf.argmax(mean, 3), OUTPUT_TYPE + PROB_SUFFIX: mean}


# --------------------------------------------------------------------------------------- export_model.py

def _create_input_tensors(config: ExportConfig) -> tuple[Any, Any, Any]:
    input_image = tf.placeholder(tf.uint8, [1, None, None, 3], name=INPUT_NAME)
    original_image_size = tf.shape(input_image)[1:3]
    image = tf.squeeze(input_image, axis=0)
    resized_image, image = preprocess_image_and_label(image, int(config.crop_size[0]), int(config.crop_size[1]),
                                                      config.model_variant)
    resized_image_size = tf.shape(resized_image)[:2]
    image = tf.expand_dims(image, 0)
    return image, original_image_size, resized_image_size


class FrozenVariables:
    """Root variable-scope custom getter: every variable is built the way freezing leaves a RefVariable.

    A variable '<name>' becomes Const '<name>' holding its value (``weights[name]`` if given, else
    :func:`variable_value`) and Identity '<name>/read' colocated with it, the tensor the layers read; no
    Variable, initializer or session is created. Reuse follows tf.get_variable's rules (a second creation
    without reuse, or reuse of a variable never created, is an error).
    """

    def __init__(self, seed: int, weights: Mapping[str, np.ndarray] | None = None) -> None:
        self.seed = seed
        self.weights = weights or {}
        self.reads: dict[str, Any] = {}

    def __call__(self, getter: Any, name: str, *args: Any, shape: Any = None, dtype: Any = None,
                 reuse: Any = None, **kwargs: Any) -> Any:
        del getter, args, kwargs  # never create a real variable
        read = self.reads.get(name)
        if read is not None:
            if not reuse:
                raise ValueError(f"Variable {name} already exists, disallowed (no reuse in its scope)")
            return read
        if reuse is True:
            raise ValueError(f"Variable {name} does not exist, but its scope reuses variables")
        if dtype is not None and tf.as_dtype(dtype).base_dtype != tf.float32:
            raise ValueError(f"variable {name} has dtype {dtype}; the fixtures only build float32 variables")
        shape = tf.TensorShape(shape).as_list()
        value = self.weights.get(name)
        if value is None:
            value = (_small_variable_value(self.seed, name, tuple(shape)) if np.prod(shape) <= _SMALL_VARIABLE
                     else variable_value(self.seed, name, shape))
        elif list(value.shape) != shape:
            raise ValueError(f"weight {name} has shape {list(value.shape)}, the graph wants {shape}")
        graph = tf.get_default_graph()
        # Outside any caller's name scope, control dependencies and colocation, like a variable.
        with graph.name_scope(None), graph.control_dependencies(None), \
                graph.colocate_with(None, ignore_existing=True):
            const = tf.constant(np.asarray(value, np.float32), dtype=tf.float32, name=name)
            if const.op.name != name:
                raise ValueError(f"variable name {name} is already taken by another op")
            with graph.colocate_with(const.op):
                read = tf.identity(const, name=name + "/read")
        self.reads[name] = read
        return read


def build_export_graph(config: ExportConfig,
                       weights: Mapping[str, np.ndarray] | None = None) -> tuple[Any, list[str]]:
    """The export graph of ``config`` with its variables already constants (:class:`FrozenVariables`),
    and its output node names; :func:`export_graph` prunes it to the outputs."""
    graph = tf.Graph()
    with graph.as_default(), \
            tf.variable_scope(tf.get_variable_scope(), custom_getter=FrozenVariables(config.seed, weights)):
        image, image_size, resized_image_size = _create_input_tensors(config)
        if tuple(config.inference_scales) == (1.0,):
            predictions = predict_labels(image, config)
        else:
            predictions = predict_labels_multi_scale(image, config, config.inference_scales,
                                                     config.add_flipped_images)
        raw_predictions = tf.identity(tf.cast(predictions[OUTPUT_TYPE], tf.float32), RAW_OUTPUT_NAME)
        raw_probabilities = tf.identity(predictions[OUTPUT_TYPE + PROB_SUFFIX], RAW_OUTPUT_PROB_NAME)
        semantic_predictions = raw_predictions[:, :resized_image_size[0], :resized_image_size[1]]
        semantic_probabilities = raw_probabilities[:, :resized_image_size[0], :resized_image_size[1]]

        label = tf.expand_dims(semantic_predictions, 3)
        label = tf.image.resize_images(label, image_size, method=tf.image.ResizeMethod.NEAREST_NEIGHBOR,
                                       align_corners=True)
        label = tf.cast(tf.squeeze(label, 3), tf.int32)
        tf.identity(label, name=OUTPUT_NAME)
        tf.image.resize_bilinear(semantic_probabilities, image_size, align_corners=True, name=OUTPUT_PROB_NAME)
    outputs = [OUTPUT_NAME] + ([OUTPUT_PROB_NAME] if config.export_probabilities else [])
    return graph, outputs


def _freeze(config: ExportConfig, weights: Mapping[str, np.ndarray] | None) -> Any:
    """build_export_graph, then what convert_variables_to_constants would add: devices cleared, the graph
    pruned to the outputs, a variable's Const left with only dtype and value, its '/read' Identity with only
    T and the colocation '_class' (the '_output_shapes' of the other nodes stay)."""
    graph, outputs = build_export_graph(config, weights)
    graph_def = graph.as_graph_def(add_shapes=True)
    by_name = {node.name: node for node in graph_def.node}
    for node in graph_def.node:
        node.device = ""
        variable = by_name.get(node.name[:-len("/read")]) if node.name.endswith("/read") else None
        if node.op == "Identity" and variable is not None and variable.op == "Const" \
                and list(node.input) == [variable.name]:
            del node.attr["_output_shapes"]
            del variable.attr["_output_shapes"]
    return tf.graph_util.extract_sub_graph(graph_def, outputs)


def _weights_digest(weights: Mapping[str, np.ndarray] | None) -> str | None:
    if not weights:
        return None
    digest = hashlib.sha256()
    for name in sorted(weights):
        value = np.ascontiguousarray(weights[name])
        digest.update(f"{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


# export_graph's memo: (config, weights digest) -> serialized GraphDef, least recently used first.
_CACHE: OrderedDict[tuple[ExportConfig, str | None], bytes] = OrderedDict()
CACHE_LIMIT_BYTES = 256 * 2**20  # small test exports are a few MB; full-width ones may not be kept


def export_graph(config: ExportConfig, weights: Mapping[str, np.ndarray] | None = None) -> Any:
    """Frozen GraphDef of ``config`` exactly as export_model.py writes it, with deterministic weights; a
    variable named in ``weights`` (e.g. the Consts of another frozen export: :func:`frozen_weights`) takes that
    value instead, so the same network can be rebuilt at another crop or with other inference scales.

    Memoised on (config, weights' content) within the process: each call returns a fresh GraphDef that
    the caller may modify.
    """
    key = (config, _weights_digest(weights))
    data = _CACHE.get(key)
    if data is None:
        data = _freeze(config, weights).SerializeToString()
        if len(data) <= CACHE_LIMIT_BYTES:
            _CACHE[key] = data
            while sum(len(v) for v in _CACHE.values()) > CACHE_LIMIT_BYTES:
                _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    graph_def = tf.GraphDef()
    graph_def.ParseFromString(data)
    return graph_def


def frozen_weights(graph_def: Any) -> dict[str, np.ndarray]:
    """The float Consts of a frozen graph by name: what were its variables (for :func:`export_graph`)."""
    out = {}
    for node in graph_def.node:
        if node.op == "Const" and node.attr["dtype"].type == tf.float32.as_datatype_enum:
            out[node.name] = tf.make_ndarray(node.attr["value"].tensor)
    return out
