"""research/deeplab core/feature_extractor.py: per model variant its preprocessing, its variable scope, the
decoder end points, and the dispatch to the backbone modules of this package (imported lazily, so a
family whose module is absent only fails when it is used).
"""

from __future__ import annotations

import importlib
from typing import Any

import tensorflow.compat.v1 as tf

# model_variant -> module of this package that builds it (its BACKBONES dict, else its build()).
BACKBONE_MODULES = {
    "mobilenet_v2": "mobilenet_v2",
    "mobilenet_v3_large_seg": "mobilenet_v3",
    "mobilenet_v3_small_seg": "mobilenet_v3",
    "mobilenet_edgetpu": "mobilenet_v3",
    "xception_41": "xception",
    "xception_65": "xception",
    "xception_71": "xception",
}

# feature_extractor.name_scope
NAME_SCOPE = {
    "mobilenet_v2": "MobilenetV2",
    "mobilenet_edgetpu": "MobilenetEdgeTPU",
    "mobilenet_v3_large_seg": "MobilenetV3",
    "mobilenet_v3_small_seg": "MobilenetV3",
    "xception_41": "xception_41",
    "xception_65": "xception_65",
    "xception_71": "xception_71",
}

# feature_extractor.networks_to_feature_maps[variant][DECODER_END_POINTS] (edgetpu has none)
DECODER_END_POINTS: dict[str, dict[int, tuple[str, ...]]] = {
    "mobilenet_v2": {4: ("layer_4/depthwise_output",), 8: ("layer_7/depthwise_output",),
                     16: ("layer_14/depthwise_output",)},
    "mobilenet_v3_large_seg": {4: ("layer_4/depthwise_output",), 8: ("layer_7/depthwise_output",),
                               16: ("layer_13/depthwise_output",)},
    "mobilenet_v3_small_seg": {4: ("layer_2/depthwise_output",), 8: ("layer_4/depthwise_output",),
                               16: ("layer_9/depthwise_output",)},
    "xception_41": {4: ("entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise",),
                    8: ("entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise",),
                    16: ("exit_flow/block1/unit_1/xception_module/separable_conv2_pointwise",)},
    "xception_65": {4: ("entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise",),
                    8: ("entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise",),
                    16: ("exit_flow/block1/unit_1/xception_module/separable_conv2_pointwise",)},
    "xception_71": {4: ("entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise",),
                    8: ("entry_flow/block5/unit_1/xception_module/separable_conv2_pointwise",),
                    16: ("exit_flow/block1/unit_1/xception_module/separable_conv2_pointwise",)},
}

# feature_extractor._MEAN_RGB (only the resnet_v1_{50,101} variants, which the zoo does not ship, use it).
MEAN_RGB = (123.15, 115.90, 103.06)


def mean_pixel(model_variant: str | None) -> list[float]:
    """feature_extractor.mean_pixel: what preprocessing pads with, so padding becomes 0 after scaling."""
    if model_variant is None or model_variant in ("resnet_v1_50", "resnet_v1_101"):
        return list(MEAN_RGB)
    return [127.5, 127.5, 127.5]


def preprocess_zero_mean_unit_range(inputs: Any) -> Any:
    """feature_extractor._preprocess_zero_mean_unit_range: [0, 255] -> [-1, 1] (ops 'mul', 'sub_N')."""
    preprocessed = (2.0 / 255.0) * tf.to_float(inputs) - 1.0
    return tf.cast(preprocessed, dtype=tf.float32)


def decoder_end_points(model_variant: str, output_stride: int) -> tuple[str, ...]:
    """The end points refine_by_decoder reads at ``output_stride`` for ``model_variant``."""
    try:
        return DECODER_END_POINTS[model_variant][output_stride]
    except KeyError:
        raise ValueError(f"{model_variant} has no decoder end point at output stride {output_stride}") from None


def backbone(model_variant: str) -> Any:
    """The build function of ``model_variant`` (backbone contract), imported on first use."""
    if model_variant not in BACKBONE_MODULES:
        raise ValueError(f"unknown model variant {model_variant!r}; known: {sorted(BACKBONE_MODULES)}")
    module = importlib.import_module(f"{__package__}.{BACKBONE_MODULES[model_variant]}")
    table = getattr(module, "BACKBONES", None)
    if table is not None and model_variant in table:
        return table[model_variant]
    return module.build


def extract_features(images: Any, *, model_variant: str, output_stride: int, depth_multiplier: float = 1.0,
                     width: float = 1.0, multi_grid: Any = None) -> tuple[Any, dict[str, Any]]:
    """feature_extractor.extract_features in inference mode: preprocess, then the backbone in its scope."""
    build = backbone(model_variant)
    preprocessed = preprocess_zero_mean_unit_range(images)
    return build(preprocessed, output_stride=output_stride, depth_multiplier=depth_multiplier, width=width,
                 multi_grid=multi_grid, scope=NAME_SCOPE[model_variant])


def end_point(end_points: dict[str, Any], model_variant: str, name: str) -> Any:
    """refine_by_decoder's lookup: MobileNets by the bare name, others by '<name_scope>/<name>'."""
    full = f"{NAME_SCOPE[model_variant]}/{name}"
    first, second = (name, full) if "mobilenet" in model_variant else (full, name)
    for key in (first, second):
        if key in end_points:
            return end_points[key]
    raise KeyError(f"{model_variant} backbone returned no end point {name!r}")
