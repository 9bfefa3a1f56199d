"""Build frozen inference graphs the way the DeepLab model zoo's ``export_model.py`` builds them.

The graphs made here have the zoo's interface and the zoo's crop-dependent structure, so tests and the demo
model exercise the same code paths as the real checkpoints:

* ``ImageTensor``: uint8 placeholder ``[1, None, None, 3]``;
* the image is cast to float and padded (bottom/right) to ``max(crop, size)`` per side with the mean pixel
  127.5 (two scalar int32 Consts hold the crop height/width), then given the static shape
  ``[1, crop_h, crop_w, 3]``, so ``tf.shape`` of it later folds to a Const;
* normalisation ``x * 2/255 - 1``; a network body (``network_fn``) producing feature-resolution logits;
  atrous convs come out as ``SpaceToBatchND -> Conv2D -> BatchToSpaceND`` with static paddings/crops;
  image pooling is an ``AvgPool`` with a static kernel and a ``ResizeBilinear`` to a Const size;
* the logits are resized (bilinear, align_corners=True) to the full crop, ``ArgMax``-ed over classes,
  sliced to the unpadded input size, cast to int32 -> ``SemanticPredictions`` (and optionally a softmax
  sliced the same way -> ``SemanticProbabilities``);
* weights are Variables initialised from numpy arrays (so a ``model.ckpt`` can be saved) and then frozen
  into Consts.

Typical use::

    gd = tiny_deeplab(seed=0, num_classes=5, crop=65)           # a small DeepLab-shaped graph
    save_frozen_graph(gd, "frozen_inference_graph.pb")

TensorFlow is imported lazily (inside functions) so importing this module is cheap.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from zoo_cli.atomic import write_bytes_atomic
from zoo_cli.graph.tf_import import import_tf, new_session, quiet_tf_logger

INPUT_NAME = "ImageTensor"
OUTPUT_NAME = "SemanticPredictions"
PROBABILITIES_NAME = "SemanticProbabilities"
MEAN_PIXEL = 127.5
# Names of interior tensors of graphs built here (for tests that feed/read them; the re-targeting code
# finds the same tensors structurally and never relies on these names).
PADDED_IMAGE_NAME = "pad_to_crop/padded"
LOGITS_NAME = "logits/BiasAdd"


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


def scale_dimension(dim: int, scale: float) -> int:
    """The reference's size rule: ``int((dim - 1) * scale + 1)`` (feature size at 1/OS, scaled crop, ...)."""
    return int((dim - 1) * scale + 1)


# ---------------------------------------------------------------- weights


class Weights:
    """Named numpy weight arrays, taken from a dict or generated deterministically from a seed.

    A generated array depends only on ``(seed, name, shape)``, never on creation order, so the same seed
    yields the same network whatever crop it is exported at. ``arrays`` holds every array handed out.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray] | None = None, *, seed: int | None = 0) -> None:
        self.arrays: dict[str, np.ndarray] = {k: np.asarray(v, np.float32) for k, v in (arrays or {}).items()}
        self.seed = seed

    def get(self, name: str, shape: tuple[int, ...], *, fan_in: int | None = None, bias: bool = False) -> np.ndarray:
        """The array called ``name`` (checked against ``shape``), generating it if it is new."""
        shape = tuple(int(s) for s in shape)
        if name in self.arrays:
            arr = self.arrays[name]
            if arr.shape != shape:
                raise ValueError(f"weight '{name}' has shape {arr.shape}, the network needs {shape}")
            return arr
        if self.seed is None:
            raise KeyError(f"weight '{name}' {shape} is missing and no seed was given to generate it")
        rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])
        if bias:
            arr = rng.normal(0.0, 0.1, shape)
        else:
            # He initialisation keeps activations at a sane scale through the small random networks.
            arr = rng.normal(0.0, np.sqrt(2.0 / max(1, fan_in or int(np.prod(shape[:-1])))), shape)
        arr = arr.astype(np.float32)
        self.arrays[name] = arr
        return arr


# ---------------------------------------------------------------- building blocks


@dataclass
class NetBuilder:
    """Handed to a ``network_fn``: conv helpers that take their weights from a ``Weights`` source.

    Weights become tf.compat.v1 (ref) Variables named like the weight, so a Saver writes them under those
    names and freezing turns them into Consts.
    """

    weights: Weights
    crop: tuple[int, int]
    output_stride: int
    num_classes: int
    variables: dict[str, Any] = field(default_factory=dict)

    def variable(self, name: str, shape: tuple[int, ...], **kw: Any) -> Any:
        tf = import_tf()
        if name not in self.variables:
            value = self.weights.get(name, shape, **kw)
            self.variables[name] = tf.compat.v1.Variable(value, name=name, use_resource=False)
        return self.variables[name]

    def conv(
        self, x: Any, name: str, out_channels: int, kernel: int = 1, *, stride: int = 1, rate: int = 1,
        relu: bool = True, bias: bool = True,
    ) -> Any:
        """``kernel``x``kernel`` conv, SAME padding; ``rate > 1`` gives the SpaceToBatchND form of TF1 exports."""
        tf = import_tf()
        in_ch = int(x.shape[-1])
        w = self.variable(f"{name}/weights", (kernel, kernel, in_ch, out_channels), fan_in=kernel * kernel * in_ch)
        b = self.variable(f"{name}/biases", (out_channels,), bias=True) if bias else None
        with tf.compat.v1.name_scope(name):
            if rate > 1:
                if stride != 1:
                    raise ValueError("an atrous conv cannot also be strided")
                y = tf.nn.atrous_conv2d(x, w, rate, "SAME")
            else:
                y = tf.nn.conv2d(x, w, [1, stride, stride, 1], "SAME")
            if b is not None:
                y = tf.nn.bias_add(y, b, name="BiasAdd")
            return tf.nn.relu6(y) if relu else y

    def depthwise(self, x: Any, name: str, kernel: int = 3, *, stride: int = 1, rate: int = 1, relu: bool = True) -> Any:
        """Depthwise conv (MobileNet style), SAME padding; ``rate > 1`` goes through SpaceToBatchND."""
        tf = import_tf()
        ch = int(x.shape[-1])
        w = self.variable(f"{name}/depthwise_weights", (kernel, kernel, ch, 1), fan_in=kernel * kernel)
        b = self.variable(f"{name}/biases", (ch,), bias=True)
        with tf.compat.v1.name_scope(name):
            y = tf.compat.v1.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], "SAME", rate=[rate, rate])
            y = tf.nn.bias_add(y, b)
            return tf.nn.relu6(y) if relu else y

    def image_pooling(self, features: Any, name: str = "image_pooling", out_channels: int = 16) -> Any:
        """Global image pooling as the zoo exports it; see :func:`image_pooling`."""
        return image_pooling(features, self.crop, self.output_stride, builder=self, name=name,
                             out_channels=out_channels)

    def resize_to_stride(self, x: Any, stride: int, name: str = "resize") -> Any:
        """Bilinear resize (align_corners=True) to the Const size of the crop at 1/``stride``."""
        size = [scale_dimension(self.crop[0], 1.0 / stride), scale_dimension(self.crop[1], 1.0 / stride)]
        return resize_bilinear(x, size, name=name)


def image_pooling(
    features: Any, crop: int | tuple[int, int], output_stride: int, *, builder: NetBuilder, name: str = "image_pooling",
    out_channels: int = 16,
) -> Any:
    """Image-level feature branch: AvgPool with the static kernel ``[1, ph, pw, 1]`` (``ph = (crop-1)//OS+1``),
    stride 1, VALID -> 1x1 conv -> ResizeBilinear(align_corners=True) to the Const size ``[ph, pw]``."""
    tf = import_tf()
    ch, cw = _pair(crop)
    ph, pw = scale_dimension(ch, 1.0 / output_stride), scale_dimension(cw, 1.0 / output_stride)
    static = features.shape.as_list()[1:3]
    if static != [ph, pw]:
        raise ValueError(f"features are {static} but crop {ch}x{cw} at output stride {output_stride} needs {[ph, pw]}")
    pooled = tf.nn.avg_pool2d(features, [1, ph, pw, 1], [1, 1, 1, 1], "VALID", name=f"{name}_avgpool")
    pooled = builder.conv(pooled, name, out_channels, 1)
    return resize_bilinear(pooled, [ph, pw], name=f"{name}_resize")


def resize_bilinear(x: Any, size: Any, name: str | None = None) -> Any:
    """``ResizeBilinear`` with align_corners=True (the TF1 op the zoo graphs contain; no deprecation noise)."""
    tf = import_tf()
    if isinstance(size, (list, tuple)):
        size = tf.constant(list(size), tf.int32, name=f"{name}/size" if name else None)
    return tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True, half_pixel_centers=False, name=name)


# ---------------------------------------------------------------- export


NetworkFn = Callable[[Any, NetBuilder], Any]


def export_frozen_graph(
    network_fn: NetworkFn,
    *,
    crop: int | tuple[int, int],
    num_classes: int,
    output_stride: int,
    weights: Weights | Mapping[str, np.ndarray] | None = None,
    seed: int | None = 0,
    with_probabilities: bool = False,
    checkpoint_prefix: str | os.PathLike[str] | None = None,
) -> Any:
    """Build and freeze a zoo-style inference graph around ``network_fn``; returns a ``tf.compat.v1.GraphDef``.

    ``network_fn(images, net)`` gets the normalised, padded image (static shape ``[1, crop_h, crop_w, 3]``)
    and a :class:`NetBuilder`, and returns logits ``[1, fh, fw, num_classes]`` at feature resolution.
    Weights come from ``weights`` (a :class:`Weights` or a dict of arrays), else are generated from ``seed``.
    With ``checkpoint_prefix`` (e.g. ``dir/model.ckpt``) the same weights are also saved as a TF1
    checkpoint (``.index`` + ``.data-00000-of-00001``).
    """
    tf = import_tf()
    tf1 = tf.compat.v1
    crop_h, crop_w = _pair(crop)
    if not isinstance(weights, Weights):
        weights = Weights(weights, seed=seed)
    graph = tf.Graph()
    with graph.as_default():
        image = tf1.placeholder(tf.uint8, [1, None, None, 3], name=INPUT_NAME)
        size = tf.shape(image)[1:3]
        height, width = size[0], size[1]
        with tf1.name_scope("pad_to_crop"):
            x = tf.cast(image, tf.float32)
            # As the reference input_preprocess: target = size + max(crop - size, 0), per side.
            target_h = height + tf.maximum(tf.constant(crop_h, tf.int32, name="crop_height") - height, 0)
            target_w = width + tf.maximum(tf.constant(crop_w, tf.int32, name="crop_width") - width, 0)
            paddings = tf.stack([[0, 0], tf.stack([0, target_h - height]), tf.stack([0, target_w - width]), [0, 0]])
            # pad_to_bounding_box with a pad value: shift so the value becomes 0, zero-pad, shift back.
            x = tf.pad(x - MEAN_PIXEL, paddings)
            padded = tf.add(x, MEAN_PIXEL, name="padded")
            padded.set_shape([1, crop_h, crop_w, 3])
        with tf1.name_scope("normalize"):
            images = padded * (2.0 / 255.0) - 1.0
        net = NetBuilder(weights=weights, crop=(crop_h, crop_w), output_stride=output_stride, num_classes=num_classes)
        logits = network_fn(images, net)
        if logits.shape.as_list()[-1] != num_classes:
            raise ValueError(f"network_fn returned {logits.shape} logits, expected {num_classes} classes")
        # tf.shape of the statically shaped padded image folds to the Const [1, crop_h, crop_w, 3].
        full = resize_bilinear(logits, tf1.shape(padded)[1:3], name="upsample_logits")
        predictions = tf.argmax(full, 3)
        predictions = tf.slice(predictions, [0, 0, 0], tf.stack([1, height, width]))
        tf.identity(tf.cast(predictions, tf.int32), name=OUTPUT_NAME)
        outputs = [OUTPUT_NAME]
        if with_probabilities:
            probs = tf.nn.softmax(full)
            probs = tf.slice(probs, [0, 0, 0, 0], tf.stack([1, height, width, -1]))
            tf.identity(probs, name=PROBABILITIES_NAME)
            outputs.append(PROBABILITIES_NAME)
        with new_session(graph=graph) as sess, quiet_tf_logger():
            sess.run(tf1.global_variables_initializer())
            if checkpoint_prefix is not None:
                saver = tf1.train.Saver(net.variables, write_version=tf1.train.SaverDef.V2)
                saver.save(sess, os.fspath(checkpoint_prefix), write_meta_graph=False, write_state=False)
            frozen = tf1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), outputs)
    return frozen


def tiny_deeplab(
    weights: Weights | Mapping[str, np.ndarray] | None = None,
    *,
    seed: int | None = 0,
    num_classes: int,
    crop: int | tuple[int, int],
    output_stride: int = 8,
    decoder: bool = False,
    width: int = 16,
    with_probabilities: bool = False,
    checkpoint_prefix: str | os.PathLike[str] | None = None,
) -> Any:
    """A small DeepLab-shaped network exported zoo-style (a ``GraphDef``); same seed/weights at any crop.

    Body: three stride-2 convs (the second one's output is the OS-4 low-level feature), then at OS 8 an
    atrous conv (rate 2) and an atrous depthwise conv (rate 4), or at OS 16 a fourth stride-2 conv and an
    atrous depthwise conv (rate 2); image pooling + 1x1 branch, concat, 1x1 projection; optional decoder
    (resize to the OS-4 size, concat with projected low-level features, 3x3 conv); 1x1 logits with bias.
    ``width`` scales the channel counts (the benchmark uses a wider one).
    """
    if output_stride not in (8, 16):
        raise ValueError("tiny_deeplab supports output stride 8 or 16")
    c = int(width)

    def body(images: Any, net: NetBuilder) -> Any:
        tf = import_tf()
        x = net.conv(images, "conv1", c // 2, 3, stride=2)
        low = net.conv(x, "conv2", c, 3, stride=2)
        x = net.conv(low, "conv3", c, 3, stride=2)
        if output_stride == 8:
            x = net.conv(x, "conv4", c, 3, rate=2)
            x = net.depthwise(x, "conv5_depthwise", 3, rate=4)
        else:
            x = net.conv(x, "conv4", c, 3, stride=2)
            x = net.depthwise(x, "conv5_depthwise", 3, rate=2)
        pool = net.image_pooling(x, "image_pooling", c)
        branch = net.conv(x, "aspp0", c, 1)
        x = tf.concat([pool, branch], 3, name="aspp_concat")
        x = net.conv(x, "concat_projection", c, 1)
        if decoder:
            x = net.resize_to_stride(x, 4, name="decoder_resize")
            low_proj = net.conv(low, "feature_projection0", c // 2, 1)
            x = tf.concat([x, low_proj], 3, name="decoder_concat")
            x = net.conv(x, "decoder_conv0", c, 3)
        return net.conv(x, "logits", num_classes, 1, relu=False)

    return export_frozen_graph(
        body, crop=crop, num_classes=num_classes, output_stride=output_stride, weights=weights, seed=seed,
        with_probabilities=with_probabilities, checkpoint_prefix=checkpoint_prefix,
    )


def save_frozen_graph(graph_def: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``graph_def`` as a binary ``.pb`` atomically (temp file beside it, then ``os.replace``).

    Serialised deterministically: protobuf otherwise writes map fields (every node's attrs) in an order that
    changes from process to process, so the same graph would give different bytes (and archive sha256s).
    """
    return write_bytes_atomic(path, graph_def.SerializeToString(deterministic=True))


def export_model_dir(
    directory: str | os.PathLike[str], *, seed: int | None = 0, weights: Mapping[str, np.ndarray] | None = None,
    **tiny_kwargs: Any,
) -> Path:
    """Write a zoo-like model folder: ``frozen_inference_graph.pb`` + ``model.ckpt.index/.data-*`` of
    :func:`tiny_deeplab` with the same weights; returns the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gd = tiny_deeplab(weights, seed=seed, checkpoint_prefix=directory / "model.ckpt", **tiny_kwargs)
    save_frozen_graph(gd, directory / "frozen_inference_graph.pb")
    return directory
