#!/usr/bin/env python
"""Build the offline demo model that ``zoo demo`` ships: data, training, zoo-style export, registry entry.

Everything is seeded, so running this script again on the same machine and TensorFlow version rebuilds the
same dataset byte for byte and (with TF op determinism on) the same weights:

    python tools/build_demo_model.py                # full build into zoo_cli/demo/ (about 2-3 min on 2 cores)
    python tools/build_demo_model.py --data-only    # only regenerate the shipped val set
    python tools/build_demo_model.py --weights-from zoo_cli/demo/deeplabv3_demo_shapes_trainval.tar.gz
                                                    # re-export the shipped weights, no training (~20 s)

Steps
 1. ``generate_dataset``: a synthetic segmentation set in the PASCAL VOC layout: textured backgrounds with
    circles (class 1), squares (2) and triangles (3); ``JPEGImages/*.jpg``, palette ``SegmentationClass/*.png``
    (255 = ignore on a band along every object border, as VOC annotates it),
    ``ImageSets/Segmentation/{train,val}.txt``. Image sizes vary (96-128 px per side) so that the graph's
    pad-to-crop path is exercised like on VOC.
 2. ``train``: a small DeepLab-shaped conv net (strided convs to output stride 8, atrous convs, an ASPP with a
    1x1 branch and an image-pooling branch, logits) trained from scratch in TF2 eager/tf.function on CPU.
 3. ``export``: the trained numpy weights go through ``tests.support.export`` into a frozen graph built the 2018-zoo
    way (``ImageTensor`` uint8 in, padded to a static 129x129 crop with 127.5, image pooling with a static
    AvgPool kernel, static ResizeBilinear, ArgMax, ``SemanticPredictions`` out, no probability output) plus
    ``model.ckpt.*``, and is packed as a reproducible ``.tar.gz`` (one top folder, like the zoo's archives).
 4. ``measure``: val mIOU single-scale and multi-scale + flip, with the real ``zoo eval`` functions on the
    installed archive, written with the archive's sha256 into ``zoo_cli/demo/registry.yaml``.

Only the val split is shipped (``zoo_cli/demo/voc``); the train split is regenerated in a temp dir.
"""

from __future__ import annotations

import argparse
import colorsys
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from zoo_cli.graph.tf_import import import_tf, init_devices  # light: TensorFlow loads on first call

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "zoo_cli" / "demo"

# ------------------------------------------------------------------ dataset

CLASS_NAMES = ("background", "circle", "square", "triangle")
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = 255
DATA_SEED = 20180301
N_TRAIN = 3000
N_VAL = 12
MIN_SIDE, MAX_SIDE = 96, 128
BORDER = 1  # half-width in px of the ignore band along object borders (VOC draws ~5 px at ~500 px images)
JPEG_QUALITY = 90
# Each class has a preferred hue, but the jitter makes the ranges overlap: colour alone does not decide.
_CLASS_HUE = {1: 0.0, 2: 1 / 3, 3: 2 / 3}
_HUE_JITTER = 0.17


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (bit-interleaved), flattened for ``Image.putpalette``."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A float RGB background in [0, 255]: mixed gratings, blobs and noise in two random colours."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 4)):
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(0.04, 0.35)
        field += np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq + rng.uniform(0, 2 * np.pi))
    # low-frequency blobs: coarse noise upsampled
    coarse = rng.normal(size=(6, 6)).astype(np.float32)
    blobs = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.BILINEAR))
    field = field / (np.abs(field).max() + 1e-6) * rng.uniform(0.2, 1.0) + blobs * rng.uniform(0.0, 0.8)
    field = (field - field.min()) / (field.max() - field.min() + 1e-6)
    c0 = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.7), rng.uniform(0.2, 1.0)), np.float32)
    c1 = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.7), rng.uniform(0.2, 1.0)), np.float32)
    img = (c0 * (1 - field[..., None]) + c1 * field[..., None]) * 255.0
    img += rng.normal(scale=rng.uniform(2, 14), size=img.shape)
    return img


def _object_colour(rng: np.random.Generator, cls: int) -> tuple[int, int, int]:
    hue = (_CLASS_HUE[cls] + rng.uniform(-_HUE_JITTER, _HUE_JITTER)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.35, 1.0), rng.uniform(0.35, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _shape_polygon(rng: np.random.Generator, cls: int, cx: float, cy: float, size: float) -> list[tuple[float, float]]:
    """Vertices of a rotated square (2) or triangle (3); circles are drawn as ellipses."""
    angle = rng.uniform(0, 2 * np.pi)
    n = 4 if cls == 2 else 3
    radius = size / 2 * (np.sqrt(2) if n == 4 else 1.25)
    return [(cx + radius * np.cos(angle + 2 * np.pi * k / n), cy + radius * np.sin(angle + 2 * np.pi * k / n))
            for k in range(n)]


def _ignore_band(label: np.ndarray, width: int) -> np.ndarray:
    """Mask of pixels within ``width`` px of a boundary between two different labels."""
    edge = np.zeros(label.shape, bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[:, :-1] |= label[:, 1:] != label[:, :-1]
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    edge[:-1, :] |= label[1:, :] != label[:-1, :]
    grown = edge.copy()
    for _ in range(width - 1):
        g = grown.copy()
        g[1:, :] |= grown[:-1, :]
        g[:-1, :] |= grown[1:, :]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    return grown


def render_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 HxWx3) and its label (uint8 HxW: 0-3, 255 on object borders)."""
    h, w = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    img = Image.fromarray(np.clip(_texture(rng, h, w), 0, 255).astype(np.uint8))
    label = Image.new("L", (w, h), 0)
    draw_img, draw_lbl = ImageDraw.Draw(img), ImageDraw.Draw(label)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, NUM_CLASSES))
        size = float(rng.uniform(18, 0.55 * min(h, w)))
        cx, cy = float(rng.uniform(0.1 * w, 0.9 * w)), float(rng.uniform(0.1 * h, 0.9 * h))
        colour = _object_colour(rng, cls)
        if cls == 1:
            rx, ry = size / 2, size / 2 * float(rng.uniform(0.8, 1.0))
            box = [cx - rx, cy - ry, cx + rx, cy + ry]
            draw_img.ellipse(box, fill=colour)
            draw_lbl.ellipse(box, fill=cls)
        else:
            poly = _shape_polygon(rng, cls, cx, cy, size)
            draw_img.polygon(poly, fill=colour)
            draw_lbl.polygon(poly, fill=cls)
    pixels = np.asarray(img, np.float32) + rng.normal(scale=4.0, size=(h, w, 3))
    lbl = np.asarray(label, np.uint8).copy()
    lbl[_ignore_band(lbl, BORDER)] = IGNORE_LABEL
    return np.clip(pixels, 0, 255).astype(np.uint8), lbl


def sample_ids(split: str, n: int) -> list[str]:
    return [f"shapes_{split}_{i:04d}" for i in range(n)]


def generate_split(split: str, n: int, seed: int = DATA_SEED):
    """Yield (id, image, label) for a split; each split has its own seeded stream, so val never changes
    when the train size does."""
    stream = {"train": 0, "val": 1}[split]
    rng = np.random.default_rng([seed, stream])
    for sid in sample_ids(split, n):
        image, label = render_sample(rng)
        yield sid, image, label


def write_voc(root: Path, splits: dict[str, int], seed: int = DATA_SEED) -> Path:
    """Write a VOC-layout dataset under ``root``; returns root."""
    jpeg_dir, seg_dir, sets_dir = root / "JPEGImages", root / "SegmentationClass", root / "ImageSets" / "Segmentation"
    for d in (jpeg_dir, seg_dir, sets_dir):
        d.mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    for split, n in splits.items():
        ids = []
        for sid, image, label in generate_split(split, n, seed):
            Image.fromarray(image).save(jpeg_dir / f"{sid}.jpg", quality=JPEG_QUALITY)
            png = Image.fromarray(label, mode="P")
            png.putpalette(palette)
            png.save(seg_dir / f"{sid}.png", optimize=True)
            ids.append(sid)
        (sets_dir / f"{split}.txt").write_text("\n".join(ids) + "\n", encoding="ascii")
    return root


# ------------------------------------------------------------------ network and training

CROP = 129  # eval crop; (CROP - 1) is divisible by the output stride, as the zoo's 513 is
OUTPUT_STRIDE = 8
TRAIN_SEED = 7
TRAIN_STEPS = 3000
BATCH = 16
LEARNING_RATE = 3e-3
SCALE_AUG = (0.7, 1.35)


WIDTH = 32  # tiny_deeplab's channel width
DECODER = True  # logits at output stride 4 through the DeepLab-v3+ style decoder: cleaner object borders


class _Getter:
    """Hands out one tf.Variable per weight name, initialised like ``tests.support.export.Weights`` does."""

    def __init__(self, tf, seed: int) -> None:
        from tests.support.export import Weights

        self.tf, self.source, self.variables = tf, Weights(seed=seed), {}

    def __call__(self, name: str, shape: tuple[int, ...], **kw) -> object:
        if name not in self.variables:
            self.variables[name] = self.tf.Variable(self.source.get(name, shape, **kw), name=name.replace("/", "_"))
        return self.variables[name]


def resize_bilinear(x, size, tf):
    """Bilinear resize with align_corners=True, the op the exported graph has (differentiable)."""
    return tf.raw_ops.ResizeBilinear(images=x, size=tf.constant([int(size[0]), int(size[1])]), align_corners=True,
                                     half_pixel_centers=False)


def forward(images, get, tf, *, width: int = WIDTH, decoder: bool = DECODER, num_classes: int = NUM_CLASSES):
    """Feature-resolution logits of ``tests.support.export.tiny_deeplab`` (output stride 8), written in TF2 ops so
    it can be trained; ``get(name, shape, fan_in=..., bias=...)`` returns the weight tensors.

    Every op mirrors the exported graph: SAME convs, relu6, atrous conv rate 2 and atrous depthwise rate 4,
    image pooling = mean over the whole (padded) crop -> 1x1 conv -> bilinear resize back, ``aspp0`` 1x1
    branch, concat, projection, optional decoder at output stride 4, logits."""
    c = int(width)

    def conv(x, name, out, k=1, stride=1, rate=1, relu=True):
        cin = int(x.shape[-1])
        w = get(f"{name}/weights", (k, k, cin, out), fan_in=k * k * cin)
        b = get(f"{name}/biases", (out,), bias=True)
        if rate > 1:
            # As the export wires it (SpaceToBatchND -> Conv2D -> BatchToSpaceND): TensorFlow's CPU kernels
            # without oneDNN (e.g. on AMD hosts, or with op determinism on) have no gradient for a dilated Conv2D.
            y = tf.nn.with_space_to_batch(
                x, [rate, rate], "SAME", lambda inp, num_spatial_dims, padding: tf.nn.conv2d(inp, w, 1, padding),
                filter_shape=[k, k])
        else:
            y = tf.nn.conv2d(x, w, stride, "SAME")
        y = y + b
        return tf.nn.relu6(y) if relu else y

    def depthwise(x, name, k=3, rate=1):
        ch = int(x.shape[-1])
        w = get(f"{name}/depthwise_weights", (k, k, ch, 1), fan_in=k * k)
        b = get(f"{name}/biases", (ch,), bias=True)
        return tf.nn.relu6(tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME", dilations=[rate, rate]) + b)

    def resize(x, size):
        return resize_bilinear(x, size, tf)

    x = conv(images, "conv1", c // 2, 3, stride=2)
    low = conv(x, "conv2", c, 3, stride=2)
    x = conv(low, "conv3", c, 3, stride=2)
    x = conv(x, "conv4", c, 3, rate=2)
    x = depthwise(x, "conv5_depthwise", 3, rate=4)
    # The exported AvgPool has a static kernel equal to the feature size: the mean over the padded crop.
    pool = conv(tf.reduce_mean(x, axis=[1, 2], keepdims=True), "image_pooling", c, 1)
    pool = resize(pool, x.shape[1:3])
    x = tf.concat([pool, conv(x, "aspp0", c, 1)], 3)
    x = conv(x, "concat_projection", c, 1)
    if decoder:
        x = resize(x, low.shape[1:3])
        x = tf.concat([x, conv(low, "feature_projection0", c // 2, 1)], 3)
        x = conv(x, "decoder_conv0", c, 3)
    return conv(x, "logits", num_classes, 1, relu=False)


def _augment(rng: np.random.Generator, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, flip and placement inside the crop; padding is 127.5 / ignore like the eval graph."""
    h, w = label.shape
    s = rng.uniform(*SCALE_AUG)
    nh, nw = max(8, int(round(h * s))), max(8, int(round(w * s)))
    img = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR), np.float32)
    lbl = np.asarray(Image.fromarray(label).resize((nw, nh), Image.NEAREST))
    if rng.uniform() < 0.5:
        img, lbl = img[:, ::-1], lbl[:, ::-1]
    # crop if larger than the crop, else place at a random offset inside it
    y0 = int(rng.integers(0, nh - CROP + 1)) if nh > CROP else 0
    x0 = int(rng.integers(0, nw - CROP + 1)) if nw > CROP else 0
    img, lbl = img[y0:y0 + CROP, x0:x0 + CROP], lbl[y0:y0 + CROP, x0:x0 + CROP]
    out_img = np.full((CROP, CROP, 3), 127.5, np.float32)
    out_lbl = np.full((CROP, CROP), IGNORE_LABEL, np.uint8)
    oy = int(rng.integers(0, CROP - img.shape[0] + 1))
    ox = int(rng.integers(0, CROP - img.shape[1] + 1))
    out_img[oy:oy + img.shape[0], ox:ox + img.shape[1]] = img
    out_lbl[oy:oy + lbl.shape[0], ox:ox + lbl.shape[1]] = lbl
    return out_img, out_lbl


def train(samples: list[tuple[np.ndarray, np.ndarray]], *, steps: int = TRAIN_STEPS, seed: int = TRAIN_SEED,
          log_every: int = 100) -> dict[str, np.ndarray]:
    """Train the network on (image, label) pairs; returns the weights as numpy arrays."""
    tf = import_tf()
    init_devices()  # eager training: the device start-up noise would otherwise come with the first op

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(seed)
    get = _Getter(tf, seed)
    forward(tf.zeros([1, CROP, CROP, 3]), get, tf)  # creates the variables eagerly, outside tf.function
    w = get.variables
    variables = list(w.values())
    schedule = tf.keras.optimizers.schedules.PolynomialDecay(LEARNING_RATE, steps, LEARNING_RATE * 0.02, power=0.9)
    opt = tf.keras.optimizers.Adam(schedule)

    @tf.function(input_signature=[tf.TensorSpec([None, CROP, CROP, 3], tf.float32),
                                  tf.TensorSpec([None, CROP, CROP], tf.uint8)])
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = forward(images * (2.0 / 255.0) - 1.0, get, tf)
            logits = resize_bilinear(logits, (CROP, CROP), tf)
            labels = tf.cast(labels, tf.int32)
            valid = tf.not_equal(labels, IGNORE_LABEL)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.boolean_mask(labels, valid), logits=tf.boolean_mask(logits, valid)))
            loss += 1e-5 * tf.add_n([tf.reduce_sum(v * v) for k, v in w.items() if k.endswith("weights")])
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    import time

    t0, running = time.perf_counter(), None
    for i in range(steps):
        idx = rng.integers(0, len(samples), BATCH)
        batch = [_augment(rng, *samples[j]) for j in idx]
        loss = float(step(np.stack([b[0] for b in batch]), np.stack([b[1] for b in batch])))
        running = loss if running is None else 0.95 * running + 0.05 * loss
        if log_every and (i + 1) % log_every == 0:
            print(f"  step {i + 1:5d}/{steps}  loss {running:.4f}  {time.perf_counter() - t0:6.1f} s", flush=True)
    return {k: v.numpy() for k, v in w.items()}


def predict_numpy(weights: dict[str, np.ndarray], image: np.ndarray) -> np.ndarray:
    """Single-scale prediction of one image in TF2 eager, padded like the eval graph (a check on the export)."""
    tf = import_tf()

    h, w = image.shape[:2]
    padded = np.full((1, CROP, CROP, 3), 127.5, np.float32)
    padded[0, :h, :w] = image
    logits = forward(tf.constant(padded * (2.0 / 255.0) - 1.0), lambda name, shape, **kw: tf.constant(weights[name]), tf)
    logits = resize_bilinear(logits, (CROP, CROP), tf)
    return np.argmax(logits.numpy()[0, :h, :w], axis=-1)


# ------------------------------------------------------------------ export, archive, measurement, registry

DEMO_NAME = "demo_shapes"
ARCHIVE_TOP = "deeplabv3_demo_shapes_trainval"
ARCHIVE_NAME = f"{ARCHIVE_TOP}.tar.gz"
# The shipped URL is a placeholder: ``zoo demo`` rewrites it to the archive on its own 127.0.0.1 server.
PLACEHOLDER_URL = f"http://127.0.0.1/zoo-demo/{ARCHIVE_NAME}"
EVAL_SCALES = (0.75, 1.0, 1.25)
ARCHIVE_MEMBERS = ("frozen_inference_graph.pb", "model.ckpt.index", "model.ckpt.data-00000-of-00001")


def export(weights: dict[str, np.ndarray], model_dir: Path) -> Path:
    """Write the zoo-style frozen graph and ``model.ckpt.*`` of the trained weights into ``model_dir``."""
    from tests.support.export import export_model_dir

    # seed=None: every weight must come from training; a missing one is an error, not a random array.
    # save_frozen_graph serialises deterministically, so the same weights give the same bytes (and sha256).
    export_model_dir(model_dir, seed=None, weights=weights, num_classes=NUM_CLASSES, crop=CROP,
                     output_stride=OUTPUT_STRIDE, decoder=DECODER, width=WIDTH)
    return model_dir


def checkpoint_weights(source: Path) -> dict[str, np.ndarray]:
    """The weights of a ``model.ckpt`` prefix, or of the model.ckpt inside a demo ``.tar.gz``."""
    import tarfile
    import tempfile

    tf = import_tf()

    source = Path(source)
    if source.name.endswith(".tar.gz"):
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(source, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
            (prefix,) = Path(tmp).glob("*/model.ckpt.index")
            return checkpoint_weights(prefix.with_suffix(""))
    reader = tf.train.load_checkpoint(str(source))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def pack(model_dir: Path, archive: Path) -> Path:
    """A reproducible ``.tar.gz`` with the zoo's layout: one top folder holding the three model files.

    Fixed order, mtime 0, root ownership and no gzip timestamp, so the same files give the same bytes.
    """
    import gzip
    import io
    import tarfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        def add(name: str, data: bytes | None) -> None:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))

        add(ARCHIVE_TOP, None)
        for member in ARCHIVE_MEMBERS:
            add(f"{ARCHIVE_TOP}/{member}", (model_dir / member).read_bytes())
    os.replace(tmp, archive)
    return archive


def check_export(weights: dict[str, np.ndarray], graph_path: Path, val_dir: Path) -> float:
    """Share of val pixels where the frozen graph agrees with the trained TF2 network (should be ~1)."""
    from zoo_cli.evaluation.datasets import open_dataset
    from zoo_cli.graph.runner import FrozenGraphModel

    agree = total = 0
    with FrozenGraphModel(graph_path) as model:
        for sample in open_dataset(val_dir, "voc", "val").samples:
            image = np.asarray(Image.open(sample.image_path).convert("RGB"))
            ours = predict_numpy(weights, image)
            agree += int((model.predict(image) == ours).sum())
            total += ours.size
    return agree / total


def measure(graph_path: Path, val_dir: Path) -> dict[str, dict]:
    """mIOU / pixel accuracy / MAdds of the exported graph on the val split, with the zoo's own functions:
    ``predictors.make_predictor`` + ``evaluate_dataset`` (single scale, then EVAL_SCALES + flip) and
    ``flops.count_madds_multiscale`` over crop re-targeted graphs."""
    from zoo_cli.demo_run import predictor_for
    from zoo_cli.evaluation.dataset_job import evaluate_dataset
    from zoo_cli.evaluation.datasets import open_dataset
    from zoo_cli.graph.crop_pattern import analyse
    from zoo_cli.graph.flops import count_madds_multiscale
    from zoo_cli.graph.loading import load_graph_def
    from zoo_cli.graph.retarget import retarget
    from zoo_cli.graph.runner import FrozenGraphModel

    graph_def = load_graph_def(graph_path)
    pattern = analyse(graph_def)

    def graph_for_size(size):
        return graph_def if tuple(size) == (CROP, CROP) else retarget(graph_def, tuple(size), pattern)

    dataset = open_dataset(val_dir, "voc", "val")
    rows = {}
    with FrozenGraphModel(graph_path) as model:
        for key, scales, flip in (("single", (1.0,), False), ("multi", EVAL_SCALES, True)):
            predictor = predictor_for(model, scales, flip)
            matrix, n, seconds = evaluate_dataset(dataset, predictor, progress=False)
            summary = matrix.summary()
            madds = count_madds_multiscale(graph_for_size, (CROP, CROP), scales, flip, input_name="ImageTensor:0")
            rows[key] = {"scales": scales, "flip": flip, "miou": summary.miou, "pixel_accuracy": summary.pixel_accuracy,
                         "madds_billion": madds.madds_billion, "images": n, "seconds": seconds}
            print(f"  {key:6s} scales {scales} flip {flip}: mIOU {summary.miou:.2f}%  pixel acc "
                  f"{summary.pixel_accuracy:.2f}%  MAdds {madds.madds_billion:.4f} B  ({n} images, {seconds:.1f} s)")
    return rows


def sha256_of(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Where the demo's reported numbers come from (the registry's `reported_on`): this build, not the seed's machine.
REPORTED_ON = ("zoo's tools/build_demo_model.py (zoo eval on the shipped val set; Multiply-Adds counted by zoo; "
               "no runtimes reported)")


def registry_text(archive: Path, rows: dict[str, dict], *, steps: int) -> str:
    """The demo registry (``zoo_cli/demo/registry.yaml``): one checkpoint with the measured eval rows."""
    size_mb = archive.stat().st_size / 1e6

    def row(r: dict) -> str:
        scales = ", ".join(f"{s:g}" if s != 1 else "1.0" for s in r["scales"])
        return (f"      - output_stride: {OUTPUT_STRIDE}\n"
                f"        scales: [{scales}]\n"
                f"        flip: {'true' if r['flip'] else 'false'}\n"
                f"        madds_billion: {r['madds_billion']:.4f}\n"
                f"        runtime_s: null\n"
                f"        latency_ms: null\n"
                f"        miou: {r['miou']:.2f}\n"
                f"        pixel_accuracy: {r['pixel_accuracy']:.2f}\n"
                f"        split: val\n")

    return (
        "# The offline demo checkpoint of 'zoo demo', written by tools/build_demo_model.py (do not edit by hand;\n"
        "# rebuild with `python tools/build_demo_model.py`). A tiny DeepLab-v3+-shaped net (tests.support.export.tiny_deeplab,\n"
        f"# width {WIDTH}, output stride {OUTPUT_STRIDE}, decoder) trained {steps} steps from scratch on a synthetic\n"
        f"# VOC-layout set of shapes ({', '.join(CLASS_NAMES)}), exported the 2018-zoo way (padded to a static\n"
        f"# {CROP}x{CROP} crop, static image pooling, no probability output). The numbers are measured by the build on\n"
        "# the shipped val set (zoo_cli/demo/voc) with zoo's own eval and MAdds functions; 'zoo demo' measures them\n"
        "# again. The url is a placeholder: 'zoo demo' serves the shipped archive on 127.0.0.1 and rewrites it.\n"
        "version: 1\n"
        "checkpoints:\n"
        f"  - name: {DEMO_NAME}\n"
        "    dataset: voc\n"
        "    backbone: tiny-deeplab (demo)\n"
        f"    pretrained_on: [synthetic shapes train set ({N_TRAIN} images)]\n"
        "    aspp: null\n"
        "    decoder: Decoder\n"
        f"    input_size: [{MAX_SIDE}, {MAX_SIDE}]\n"
        f"    eval_crop: [{CROP}, {CROP}]\n"
        f"    num_classes: {NUM_CLASSES}\n"
        f"    ignore_label: {IGNORE_LABEL}\n"
        f"    class_names: [{', '.join(CLASS_NAMES)}]\n"
        f"    reported_on: \"{REPORTED_ON}\"\n"
        f"    url: \"{PLACEHOLDER_URL}\"\n"
        f"    size_mb: {size_mb:.3f}\n"
        f"    sha256: {sha256_of(archive)}\n"
        f"    contents: [{', '.join(ARCHIVE_MEMBERS[:2])}, \"model.ckpt.data-*\"]\n"
        "    evals:\n" + row(rows["single"]) + row(rows["multi"])
    )


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build(out: Path = DEMO_DIR, *, steps: int = TRAIN_STEPS, work: Path | None = None,
          weights_from: Path | None = None) -> dict[str, dict]:
    """The whole build: data -> train -> export -> pack -> measure -> registry. Returns the measured rows.

    ``weights_from`` (a model.ckpt prefix or a demo archive) skips training and re-exports those weights."""
    import shutil
    import tempfile
    import time

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    val_dir = out / "voc"
    if val_dir.exists():
        shutil.rmtree(val_dir)
    write_voc(val_dir, {"val": N_VAL})
    print(f"val set: {N_VAL} images -> {val_dir}")
    tmp = Path(tempfile.mkdtemp(prefix="zoo-demo-build-")) if work is None else work
    try:
        if weights_from is not None:
            weights = checkpoint_weights(weights_from)
            print(f"weights: {len(weights)} arrays from {weights_from} (no training)")
        else:
            train_set = [(image, label) for _, image, label in generate_split("train", N_TRAIN)]
            print(f"train set: {len(train_set)} images generated in {time.perf_counter() - t0:.1f} s; "
                  f"training {steps} steps")
            weights = train(train_set, steps=steps)
            print(f"trained in {time.perf_counter() - t0:.1f} s (cumulative)")
        model_dir = export(weights, tmp / ARCHIVE_TOP)
        agreement = check_export(weights, model_dir / "frozen_inference_graph.pb", val_dir)
        print(f"exported; frozen graph agrees with the trained network on {agreement * 100:.3f}% of val pixels")
        if agreement < 0.999:
            raise SystemExit("the exported graph does not reproduce the trained network; not writing the demo")
        archive = pack(model_dir, tmp / ARCHIVE_NAME)
        for old in out.glob("*.tar.gz"):
            old.unlink()
        archive = Path(shutil.move(archive, out / ARCHIVE_NAME))
        print(f"archive: {archive} ({archive.stat().st_size / 1e6:.2f} MB)")
        rows = measure(model_dir / "frozen_inference_graph.pb", val_dir)
        write_atomic(out / "registry.yaml", registry_text(archive, rows, steps=steps))
        print(f"registry: {out / 'registry.yaml'}; total {time.perf_counter() - t0:.1f} s")
        return rows
    finally:
        if work is None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help="where the demo files go (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=TRAIN_STEPS, help="training steps (default: %(default)s)")
    parser.add_argument("--work", type=Path, help="keep the exported model folder here instead of a temp dir")
    parser.add_argument("--data-only", action="store_true", help="only regenerate the shipped val set")
    parser.add_argument("--weights-from", type=Path, metavar="CKPT",
                        help="skip training: re-export the weights of this model.ckpt prefix or demo .tar.gz")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TF1-API deprecation notices of the graph tools
    if args.data_only:
        write_voc(args.out / "voc", {"val": N_VAL})
        print(f"val set: {N_VAL} images -> {args.out / 'voc'}")
        return 0
    build(args.out, steps=args.steps, work=args.work, weights_from=args.weights_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())
