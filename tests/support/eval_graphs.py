"""Tiny zoo-style frozen graphs whose output is known exactly, for the runner and eval tests.

Structure as export_model.py builds it: ``ImageTensor`` uint8 [1,?,?,3] → pad to a static crop with the mean
pixel 127.5 → network → ``ResizeBilinear`` of the logits to the crop (its size a StridedSlice of a Const
``[1,H,W,3]``) → ``ArgMax`` → slice to the input size → nearest resize → int32 → ``SemanticPredictions``.

The "network" is a 1x1 conv with bias whose class scores are s_k = 2 c_k R - c_k^2 for centres
c_k = 6.25 + 12 k: the ArgMax is then the class whose centre is nearest to the pixel's red value, so with
``output_stride=1`` the expected labels are ``quantize_red(image, num_classes)``, computed without TensorFlow.
With ``output_stride > 1`` the image is subsampled first (the output is then only known by running it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

CENTRE0, STEP = 6.25, 12.0


def centres(num_classes: int) -> np.ndarray:
    return CENTRE0 + STEP * np.arange(num_classes, dtype=np.float64)


def quantize_red(image: np.ndarray, num_classes: int) -> np.ndarray:
    """Expected labels of the OS-1 graph: index of the centre nearest to each pixel's red value."""
    red = np.asarray(image)[..., 0].astype(np.float64)
    return np.abs(red[..., None] - centres(num_classes)).argmin(axis=-1).astype(np.int32)


def red_for_class(k: int) -> int:
    """A red value that the graph maps to class ``k`` (its centre, rounded)."""
    return int(round(CENTRE0 + STEP * k))


def build_graph(crop: tuple[int, int] | None = (33, 33), num_classes: int = 21, output_stride: int = 1, *,
                int64: bool = False, probabilities: bool = False, image_pooling: bool = True,
                fold_size: bool = False, dynamic: bool = False):
    """A frozen GraphDef with the zoo export's structure (see module docstring).

    ``dynamic=True`` pads to max(crop, size) without fixing the static shape (as some exports do), so the
    crop is not visible in any Const: only running the graph reveals it. ``crop=None`` bakes no crop at all
    (no padding): the graph runs every image at its own size.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    v1 = tf.compat.v1
    if crop is None:
        return _no_crop_graph(num_classes)
    ch, cw = crop
    c = centres(num_classes)
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.uint8, [1, None, None, 3], name="ImageTensor")
        shape = tf.shape(image)
        h, w = shape[1], shape[2]
        x = tf.cast(image, tf.float32) - 127.5
        if dynamic:
            pads = tf.stack([[0, 0], [0, tf.maximum(ch - h, 0)], [0, tf.maximum(cw - w, 0)], [0, 0]])
        else:
            pads = tf.stack([[0, 0], [0, ch - h], [0, cw - w], [0, 0]])
        padded = tf.pad(x, pads) + 127.5
        if not dynamic:
            padded.set_shape([1, ch, cw, 3])
        if output_stride > 1:
            feat = padded[:, ::output_stride, ::output_stride, :]
        else:
            feat = padded
        fh = (ch - 1) // output_stride + 1
        fw = (cw - 1) // output_stride + 1
        kernel = np.zeros((1, 1, 3, num_classes), dtype=np.float32)
        kernel[0, 0, 0, :] = 2.0 * c
        logits = tf.nn.conv2d(feat, tf.constant(kernel), strides=[1, 1, 1, 1], padding="SAME")
        logits = tf.nn.bias_add(logits, tf.constant((-(c ** 2)).astype(np.float32)))
        if image_pooling and not dynamic:
            pooled = tf.nn.avg_pool2d(feat, ksize=[1, fh, fw, 1], strides=[1, 1, 1, 1], padding="VALID")
            pooled = v1.image.resize_bilinear(pooled, tf.constant([fh, fw]), align_corners=True)
            zero = tf.constant(np.zeros((1, 1, 3, num_classes), dtype=np.float32))
            logits = logits + tf.nn.conv2d(pooled, zero, strides=[1, 1, 1, 1], padding="SAME")
        if dynamic:
            size = tf.shape(padded)[1:3]
        elif fold_size:
            size = tf.constant([ch, cw], name="crop_size")
        else:
            size = tf.constant([1, ch, cw, 3])[1:3]
        up = v1.image.resize_bilinear(logits, size, align_corners=True, name="ResizeBilinear_2")
        argmax = tf.argmax(up, 3, name="ArgMax")
        if int64:
            tf.identity(argmax[:, :h, :w], name="SemanticPredictions")
        else:
            raw = tf.cast(argmax, tf.float32)[:, :h, :w]
            raw = v1.image.resize_nearest_neighbor(tf.expand_dims(raw, 3), tf.stack([h, w]), align_corners=True)
            tf.identity(tf.cast(tf.squeeze(raw, 3), tf.int32), name="SemanticPredictions")
        if probabilities:
            probs = tf.nn.softmax(up)[:, :h, :w]
            tf.identity(probs, name="SemanticProbabilities")
    return graph.as_graph_def()


def _no_crop_graph(num_classes: int):
    """The OS-1 red-channel classifier with no crop: cast, 1x1 conv, ArgMax at the image's own size. Its logits
    are ``(2cr - c^2) / 256``: the same argmax, but soft enough that averaging probabilities over scales and
    flips does not end in exact ties."""
    import tensorflow as tf

    v1 = tf.compat.v1
    c = centres(num_classes)
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.uint8, [1, None, None, 3], name="ImageTensor")
        x = tf.cast(image, tf.float32)
        kernel = np.zeros((1, 1, 3, num_classes), dtype=np.float32)
        kernel[0, 0, 0, :] = 2.0 * c / 256
        logits = tf.nn.conv2d(x, tf.constant(kernel), strides=[1, 1, 1, 1], padding="SAME")
        logits = tf.nn.bias_add(logits, tf.constant((-(c ** 2) / 256).astype(np.float32)))
        tf.identity(tf.cast(tf.argmax(logits, 3), tf.int32), name="SemanticPredictions")
    return graph.as_graph_def()


def write_graph(path: Path, **kwargs) -> Path:
    """Write ``build_graph(**kwargs)`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_graph(**kwargs).SerializeToString())
    return path


def install(home: Path, name: str, graph_def_bytes: bytes) -> Path:
    """Install a graph into the cache at ``home`` the way 'zoo download' leaves a checkpoint."""
    import json

    from zoo_cli.constants import META_DIR
    from zoo_cli.hub.cache import COMPLETE, MANIFEST, Cache

    model_dir = Cache(home).model_dir(name)
    (model_dir / META_DIR).mkdir(parents=True, exist_ok=True)
    path = model_dir / "frozen_inference_graph.pb"
    path.write_bytes(graph_def_bytes)
    (model_dir / META_DIR / MANIFEST).write_text(json.dumps({"url": "test", "files": [path.name]}))
    (model_dir / META_DIR / COMPLETE).write_text("")
    return path


@pytest.fixture(scope="session")
def tiny_voc_graph() -> bytes:
    """A 21-class zoo-style graph with a 40x40 crop (serialised), built once per test session."""
    return build_graph(crop=(40, 40), num_classes=21).SerializeToString()


@pytest.fixture
def tiny_voc(zoo_home, tmp_path, monkeypatch, tiny_voc_graph) -> Path:
    """``tiny_voc_graph`` installed as checkpoint 'tiny_voc' of a test registry (import it as a fixture)."""
    return install_tiny_voc(zoo_home, tmp_path, monkeypatch, tiny_voc_graph)


def install_tiny_voc(home: Path, registry_dir: Path, monkeypatch, graph_def_bytes: bytes) -> Path:
    """Install ``graph_def_bytes`` as checkpoint 'tiny_voc' (VOC, 21 classes) and point ZOO_REGISTRY at it."""
    reg = Path(registry_dir) / "registry.yaml"
    reg.write_text("version: 1\ncheckpoints:\n" + registry_entry("tiny_voc", "voc", 21, 255))
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    return install(home, "tiny_voc", graph_def_bytes)


def registry_entry(name: str, dataset: str, num_classes: int, ignore: int, miou: float = 50.0,
                   input_size: tuple[int, int] | None = None) -> str:
    """One checkpoint of a test registry (YAML), with one reported single-scale row and one multi-scale row."""
    size = f"    input_size: [{input_size[0]}, {input_size[1]}]\n" if input_size else ""
    return (
        f"  - name: {name}\n"
        f"    dataset: {dataset}\n"
        "    backbone: Tiny\n"
        "    pretrained_on: [nothing]\n"
        f"    url: \"http://127.0.0.1:9/{name}.tar.gz\"\n"
        "    size_mb: 1\n"
        "    contents: [frozen_inference_graph.pb]\n"
        f"    num_classes: {num_classes}\n"
        f"    ignore_label: {ignore}\n"
        f"{size}"
        "    evals:\n"
        f"      - {{output_stride: 16, scales: [1.0], flip: false, miou: {miou}, split: val}}\n"
        f"      - {{output_stride: 8, scales: [0.5, 0.75, 1.0], flip: true, miou: {miou + 2}, split: val}}\n"
    )
