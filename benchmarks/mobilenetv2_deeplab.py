"""A MobileNet-v2 DeepLab-v3 frozen graph built from the architecture, with random weights.

Written from the published architecture (MobileNet-v2, arXiv:1801.04381; DeepLab-v3 as the model zoo uses
it for MobileNet-v2: no ASPP conv branches, no decoder), exported through ``tests.support.export`` so it has the
zoo's interface (``ImageTensor`` uint8 -> pad to the crop with 127.5 -> ... -> ``SemanticPredictions``):

* backbone up to ``layer_18`` (the 320-channel block; the 1280-channel 1x1 conv is not built):
  conv 3x3/2 (32) -> 17 inverted residual blocks
  (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1);
  each block = 1x1 expansion (skipped when t = 1) -> 3x3 depthwise (stride / atrous rate) -> 1x1 linear
  projection, batch norm after every conv, ReLU6 after the first two, residual add when stride 1 and the
  depth is unchanged;
* output stride 16 (or 8): once the running stride reaches the target, later strides become 1 and the
  depthwise convs of the following blocks become atrous (rate 2, or 2 then 4 for OS 8), which TensorFlow
  writes as SpaceToBatchND -> DepthwiseConv2dNative -> BatchToSpaceND;
* depth multiplier: output channels ``_make_divisible(c * dm, divisible_by, min_depth)`` with DeepLab's
  choice ``divisible_by = min_depth = 8`` for dm 1.0 and ``1`` otherwise; expansion widths
  ``_make_divisible(in * t, 8)``;
* head: image pooling (AvgPool over the whole feature map -> 1x1 conv 256 + BN + ReLU -> bilinear resize)
  concatenated with a 1x1 conv 256 + BN + ReLU of the features, 1x1 projection 256 + BN + ReLU,
  then 1x1 logits (``num_classes``, with bias).

Run ``python benchmarks/mobilenetv2_deeplab.py`` for the Multiply-Adds comparison with the seed
(results in docs/bench.md).
"""

from __future__ import annotations

import os
import sys
import zlib
from typing import Any

import numpy as np

# Inverted residual settings of MobileNet-v2: expansion t, output channels c, repeats n, first stride s.
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1))
FIRST_CONV = 32
HEAD_DEPTH = 256
BN_EPSILON = 1e-3


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``min_value``), never down by > 10 %."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def layer_plan(depth_multiplier: float = 1.0, output_stride: int = 16, divisible_by: int | None = None,
               min_depth: int | None = None) -> list[dict[str, Any]]:
    """The backbone as a list of layers: first conv, then one dict per inverted residual block."""
    if output_stride not in (8, 16, 32):
        raise ValueError("output_stride must be 8, 16 or 32")
    if divisible_by is None:
        divisible_by = 8 if depth_multiplier == 1.0 else 1
    if min_depth is None:
        min_depth = 8 if depth_multiplier == 1.0 else 1

    def depth(c: int) -> int:
        return make_divisible(c * depth_multiplier, divisible_by, min_depth)

    plan: list[dict[str, Any]] = []
    current_stride, rate = 1, 1

    def place(stride: int) -> tuple[int, int]:
        nonlocal current_stride, rate
        if current_stride == output_stride:
            layer_stride, layer_rate = 1, rate
            rate *= stride
        else:
            layer_stride, layer_rate = stride, 1
            current_stride *= stride
        return layer_stride, layer_rate

    stride, _ = place(2)
    channels = depth(FIRST_CONV)
    plan.append({"kind": "conv", "out": channels, "stride": stride, "rate": 1})
    for t, c, n, s in BLOCKS:
        for i in range(n):
            stride, r = place(s if i == 0 else 1)
            expansion = make_divisible(channels * t, 1 if t == 1 else 8)
            out = depth(c)
            plan.append({"kind": "block", "in": channels, "expansion": expansion, "out": out, "stride": stride,
                         "rate": r, "residual": stride == 1 and out == channels})
            channels = out
    return plan


def _batch_norm(net: Any, x: Any, name: str) -> Any:
    """Inference batch norm as a frozen slim graph has it: FusedBatchNorm with Const gamma/beta/mean/var."""
    import tensorflow as tf

    ch = int(x.shape[-1])
    rng = np.random.default_rng([int(net.weights.seed or 0), zlib.crc32(name.encode())])
    defaults = {
        "gamma": 1.0 + 0.1 * rng.standard_normal(ch), "beta": 0.1 * rng.standard_normal(ch),
        "moving_mean": 0.1 * rng.standard_normal(ch), "moving_variance": 1.0 + 0.1 * np.abs(rng.standard_normal(ch)),
    }
    params = []
    for key, value in defaults.items():
        full = f"{name}/BatchNorm/{key}"
        net.weights.arrays.setdefault(full, value.astype(np.float32))
        params.append(net.variable(full, (ch,)))
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, params[0], params[1], mean=params[2], variance=params[3],
                                               epsilon=BN_EPSILON, is_training=False, name=f"{name}/BatchNorm")
    return y


def _conv_bn(net: Any, x: Any, name: str, out: int, kernel: int = 1, stride: int = 1,
             activation: Any = "relu6") -> Any:
    import tensorflow as tf

    cin = int(x.shape[-1])
    w = net.variable(f"{name}/weights", (kernel, kernel, cin, out), fan_in=kernel * kernel * cin)
    y = tf.nn.conv2d(x, w, [1, stride, stride, 1], "SAME", name=f"{name}/Conv2D")
    y = _batch_norm(net, y, name)
    if activation == "relu6":
        return tf.nn.relu6(y)
    if activation == "relu":
        return tf.nn.relu(y)
    return y


def _depthwise_bn(net: Any, x: Any, name: str, stride: int, rate: int) -> Any:
    import tensorflow as tf

    ch = int(x.shape[-1])
    w = net.variable(f"{name}/depthwise_weights", (3, 3, ch, 1), fan_in=9)
    with tf.compat.v1.name_scope(name):
        # With rate > 1 TensorFlow writes the atrous depthwise conv as SpaceToBatchND -> conv -> BatchToSpaceND.
        y = tf.compat.v1.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], "SAME", rate=[rate, rate])
    return tf.nn.relu6(_batch_norm(net, y, name))


def mobilenetv2_deeplab_fn(depth_multiplier: float = 1.0, output_stride: int = 16, num_classes: int = 21,
                           divisible_by: int | None = None, min_depth: int | None = None):
    """The ``network_fn(images, net)`` for :func:`tests.support.export.export_frozen_graph`."""
    plan = layer_plan(depth_multiplier, output_stride, divisible_by, min_depth)

    def network_fn(images: Any, net: Any) -> Any:
        import tensorflow as tf

        first = plan[0]
        x = _conv_bn(net, images, "MobilenetV2/Conv", first["out"], 3, first["stride"])
        for i, layer in enumerate(plan[1:]):
            scope = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
            inp = x
            if layer["expansion"] > layer["in"]:
                x = _conv_bn(net, x, f"{scope}/expand", layer["expansion"])
            x = _depthwise_bn(net, x, f"{scope}/depthwise", layer["stride"], layer["rate"])
            x = _conv_bn(net, x, f"{scope}/project", layer["out"], activation=None)
            if layer["residual"]:
                x = tf.add(x, inp, name=f"{scope}/add")
        features = x
        # Image pooling over the whole (static) feature map, as the zoo exports it with a fixed crop.
        fh, fw = features.shape.as_list()[1:3]
        pooled = tf.nn.avg_pool2d(features, [1, fh, fw, 1], [1, 1, 1, 1], "VALID", name="image_pooling/AvgPool")
        pooled = _conv_bn(net, pooled, "image_pooling", HEAD_DEPTH, activation="relu")
        pooled = tf.compat.v1.image.resize_bilinear(pooled, [fh, fw], align_corners=True, name="image_pooling_resize")
        branch = _conv_bn(net, features, "aspp0", HEAD_DEPTH, activation="relu")
        x = tf.concat([pooled, branch], 3, name="concat")
        x = _conv_bn(net, x, "concat_projection", HEAD_DEPTH, activation="relu")
        return net.conv(x, "logits", num_classes, 1, relu=False)

    return network_fn


def build_mobilenetv2_deeplab(depth_multiplier: float = 1.0, output_stride: int = 16,
                              crop: int | tuple[int, int] = (513, 513), seed: int = 0, num_classes: int = 21,
                              divisible_by: int | None = None, min_depth: int | None = None) -> Any:
    """A zoo-style frozen ``GraphDef`` of MobileNet-v2 DeepLab-v3 with random weights (deterministic in ``seed``)."""
    from tests.support.export import export_frozen_graph

    fn = mobilenetv2_deeplab_fn(depth_multiplier, output_stride, num_classes, divisible_by, min_depth)
    return export_frozen_graph(fn, crop=crop, num_classes=num_classes, output_stride=output_stride, seed=seed)


# (label, depth multiplier, output stride, crop, classes, scales, flip, seed's Multiply-Adds in billions)
SEED_ROWS = (
    ("VOC dm1.0 OS16 [1.0]", 1.0, 16, (513, 513), 21, (1.0,), False, 2.75),
    ("VOC dm0.5 OS16 [1.0]", 0.5, 16, (513, 513), 21, (1.0,), False, 0.88),
    ("VOC dm0.5 OS8 [1.0]", 0.5, 8, (513, 513), 21, (1.0,), False, 2.84),
    ("VOC dm1.0 OS8 [0.5:0.25:1.75] flip", 1.0, 8, (513, 513), 21, (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), True, 152.59),
    ("Cityscapes dm1.0 OS16 [1.0]", 1.0, 16, (1025, 2049), 19, (1.0,), False, 21.27),
    ("Cityscapes dm1.0 OS8 [0.75:0.25:1.25] flip", 1.0, 8, (1025, 2049), 19, (0.75, 1.0, 1.25), True, 433.24),
)


def madds_table() -> list[dict[str, Any]]:
    """Count every seed row that this builder can reproduce; one dict per row."""
    from zoo_cli.graph.flops import count_madds_multiscale

    rows = []
    for label, dm, os_, crop, classes, scales, flip, seed_b in SEED_ROWS:
        report = count_madds_multiscale(
            lambda size: build_mobilenetv2_deeplab(dm, os_, crop=size, num_classes=classes), crop, scales, flip)
        rows.append({"row": label, "seed_b": seed_b, "ours_b": report.madds_billion,
                     "delta_pct": 100 * (report.madds_billion / seed_b - 1),
                     "tfprof_b": report.tfprof_madds_billion,
                     "tfprof_delta_pct": 100 * (report.tfprof_madds_billion / seed_b - 1)
                     if report.tfprof_madds_billion else None,
                     "params_m": report.params_million, "runs": report.runs})
    return rows


def channel_plan(depth_multiplier: float, divisible_by: int | None = None, min_depth: int | None = None) -> str:
    """The backbone's channels as ``first conv | in>expansion>out ...`` (for reading against the reference)."""
    plan = layer_plan(depth_multiplier, 16, divisible_by, min_depth)
    blocks = [f"{b['in']}>{b['expansion'] if b['expansion'] > b['in'] else '-'}>{b['out']}" for b in plan[1:]]
    return f"{plan[0]['out']} | " + " ".join(blocks)


def dm05_variants() -> list[dict[str, Any]]:
    """dm 0.5 counts under the two channel-rounding rules of the reference code, at OS 16 and OS 8."""
    from zoo_cli.graph.flops import count_madds

    rows = []
    for label, div, mind in (("DeepLab feature_extractor (divisible_by = min_depth = 1)", 1, 1),
                             ("slim default (divisible_by = min_depth = 8)", 8, 8)):
        for os_, seed_b in ((16, 0.88), (8, 2.84)):
            report = count_madds(build_mobilenetv2_deeplab(0.5, os_, divisible_by=div, min_depth=mind), (513, 513))
            rows.append({"rule": label, "os": os_, "seed_b": seed_b, "ours_b": report.madds_billion,
                         "tfprof_b": report.tfprof_madds_billion, "channels": channel_plan(0.5, div, mind)})
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the Multiply-Adds comparison (markdown) and, with --latency, the runner-overhead measurement."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", action="store_true", help="also measure runner overhead vs Session.run")
    parser.add_argument("--latency-only", action="store_true", help="only the runner-overhead measurement")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--dm05-variants", action="store_true",
                        help="only the dm 0.5 counts under DeepLab's and slim's channel rounding")
    args = parser.parse_args(argv)
    if args.dm05_variants:
        print("| channel rule | OS | seed (B) | ours: convs+MatMul (B) | Δ | tfprof float_ops/2 (B) | Δ |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        rows = dm05_variants()
        for r in rows:
            print(f"| {r['rule']} | {r['os']} | {r['seed_b']:.2f} | {r['ours_b']:.4f} | "
                  f"{100 * (r['ours_b'] / r['seed_b'] - 1):+.2f} % | {r['tfprof_b']:.4f} | "
                  f"{100 * (r['tfprof_b'] / r['seed_b'] - 1):+.2f} % |")
        for rule in dict.fromkeys(r["rule"] for r in rows):
            print(f"\n{rule}: channels {next(r['channels'] for r in rows if r['rule'] == rule)}")
        return
    if args.latency_only:
        runner_overhead(runs=args.runs)
        return
    print("| seed row | seed MAdds (B) | ours: convs+MatMul (B) | Δ | tfprof float_ops/2 (B) | Δ | params (M) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in madds_table():
        print(f"| {r['row']} | {r['seed_b']:.2f} | {r['ours_b']:.3f} | {r['delta_pct']:+.2f} % | "
              f"{r['tfprof_b']:.3f} | {r['tfprof_delta_pct']:+.2f} % | {r['params_m']:.3f} |")
    if args.latency:
        runner_overhead(runs=args.runs)


def runner_overhead(runs: int = 30, warmup: int = 3, depth_multiplier: float = 1.0, output_stride: int = 8) -> None:
    """Time FrozenGraphModel.predict vs a bare Session.run of the same graph/session, interleaved A/B."""
    import time

    from zoo_cli.graph.runner import FrozenGraphModel

    gd = build_mobilenetv2_deeplab(depth_multiplier, output_stride)
    image = np.random.default_rng(0).integers(0, 256, (513, 513, 3), dtype=np.uint8)
    with FrozenGraphModel(gd) as model:
        feed = {model.input_tensor: image[None]}

        def bare() -> Any:
            return model.session.run(model.prediction_tensor, feed)

        def runner() -> Any:
            return model.predict(image)

        for _ in range(warmup):
            bare()
            runner()
        times: dict[str, list[float]] = {"bare Session.run": [], "FrozenGraphModel.predict": []}
        for i in range(runs):
            order = [("bare Session.run", bare), ("FrozenGraphModel.predict", runner)]
            for label, fn in (order if i % 2 == 0 else order[::-1]):
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
    med = {k: float(np.median(v)) * 1000 for k, v in times.items()}
    mean = {k: float(np.mean(v)) * 1000 for k, v in times.items()}
    print(f"\nRunner overhead, MobileNet-v2 dm {depth_multiplier} OS {output_stride}, 513x513 uint8 input, "
          f"{runs} interleaved runs each after {warmup} warm-up:")
    print("| call | median (ms) | mean (ms) |")
    print("|---|---:|---:|")
    for k in times:
        print(f"| {k} | {med[k]:.1f} | {mean[k]:.1f} |")
    bare_m, run_m = med["bare Session.run"], med["FrozenGraphModel.predict"]
    print(f"| overhead | {100 * (run_m / bare_m - 1):+.2f} % (median) | "
          f"{100 * (mean['FrozenGraphModel.predict'] / mean['bare Session.run'] - 1):+.2f} % (mean) |")


if __name__ == "__main__":  # pragma: no cover - run by hand, see docs/bench.md
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
