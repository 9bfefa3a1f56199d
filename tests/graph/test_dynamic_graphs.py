"""Graphs without a baked crop (no Pad to a constant crop) run as they are: single scale at any size, and
multi-scale by feeding the scaled, padded float image to the graph directly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.evaluation.test_eval import check, expected
from tests.support.datasets import make_voc
from tests.support.eval_graphs import build_graph
from zoo_cli.cli.app import cli
from zoo_cli.evaluation.palettes import get_palette


@pytest.fixture(scope="module")
def no_crop_graph():
    return build_graph(crop=None, num_classes=21)


def _softmax(x):
    e = np.exp(x - x.max(axis=2, keepdims=True))
    return e / e.sum(axis=2, keepdims=True)


def _independent(image, scales, flip, crop):
    """predict_labels_multi_scale in numpy for the red-channel classifier (logits (2cr - c^2)/256 per pixel)."""
    from tests.support.eval_graphs import centres
    from zoo_cli.evaluation.resize import resize_bilinear
    from zoo_cli.graph.geometry import scale_dimension

    c = centres(21).astype(np.float32)
    h, w = image.shape[:2]
    padded = np.full(crop + (3,), 127.5, np.float32)
    padded[:h, :w] = image
    total = 0
    for s in scales:
        size = (scale_dimension(crop[0], s), scale_dimension(crop[1], s))
        x = padded if s == 1.0 else resize_bilinear(padded, size)
        for flipped in (False, True) if flip else (False,):
            xi = x[:, ::-1] if flipped else x
            logits = (2 * c * xi[..., :1] - c ** 2) / 256
            logits = logits[:, ::-1] if flipped else logits
            total = total + _softmax(resize_bilinear(logits, crop)[:h, :w])
    return total.argmax(axis=2)


def test_multiscale_flip_on_a_graph_without_crop_equals_the_independent_procedure(no_crop_graph):
    from zoo_cli.evaluation.multiscale import MultiScalePredictor
    from zoo_cli.graph.runner import FrozenGraphModel

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(37, 50, 3), dtype=np.uint8)
    with FrozenGraphModel(no_crop_graph) as model:
        assert model.crop_size is None and model.crop_pattern is None
        for crop in (None, (41, 57)):
            ms = MultiScalePredictor(model, scales=(0.5, 1.0, 1.5), flip=True, crop=crop)
            assert ms.dynamic and ms.guard["pixels_differ"] == 0.0
            want = _independent(image, (0.5, 1.0, 1.5), True, crop or image.shape[:2])
            assert np.mean(ms.predict(image) == want) >= 0.999


def test_zoo_eval_runs_a_graph_without_crop_single_and_multi_scale(no_crop_graph, tmp_path):
    (tmp_path / "g.pb").write_bytes(no_crop_graph.SerializeToString())
    samples = make_voc(tmp_path / "voc", n=2)
    base = ["eval", "--graph", str(tmp_path / "g.pb"), "--dataset", "voc", "--data-dir", str(tmp_path / "voc"),
            "--json"]
    single = CliRunner().invoke(cli, [*base, "--scales", "1.0", "--no-flip", "--out", str(tmp_path / "a")])
    assert single.exit_code == 0, single.output
    check(json.loads(single.stdout), expected(samples, 21, 255), get_palette("voc").class_names)
    multi = CliRunner().invoke(cli, [*base, "--scales", "0.75,1", "--flip", "--out", str(tmp_path / "b")])
    assert multi.exit_code == 0, multi.output
    assert json.loads(multi.stdout)["scales"] == [0.75, 1.0]
