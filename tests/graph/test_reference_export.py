"""zoo on a frozen graph written by the reference research/deeplab export path itself (not by our code).

tests/data/deeplab_export_mnv2_dm05_os16_513.pb is vendored from shared/testdata: MobileNet-v2 (depth multiplier
0.5), output stride 16, crop 513, 21 classes, random weights; the facts in the .json beside it were read off
the reference export independently of zoo. Whatever zoo reads from the graph is checked against those facts.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo_cli.errors import ModelError

DATA = Path(__file__).resolve().parents[1] / "data"
GRAPH = DATA / "deeplab_export_mnv2_dm05_os16_513.pb"
FACTS = json.loads((DATA / "deeplab_export_mnv2_dm05_os16_513.json").read_text())


def probe_image() -> np.ndarray:
    """The probe the facts' label histogram was taken on (see labels_on_probe.probe in the .json)."""
    small = (np.random.RandomState(3).rand(39, 52, 3) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((400, 300), Image.BILINEAR))


@pytest.fixture(scope="module")
def model():
    from zoo_cli.graph.runner import FrozenGraphModel

    with FrozenGraphModel(GRAPH) as m:
        yield m


def test_vendored_graph_is_the_reference_file():
    import hashlib

    data = GRAPH.read_bytes()
    assert len(data) == FACTS["bytes"] and hashlib.sha256(data).hexdigest() == FACTS["sha256"]


def test_single_scale_labels_match_the_reference_histogram(model):
    labels = model.predict(probe_image())
    values, counts = np.unique(labels, return_counts=True)
    assert {str(int(v)): int(c) for v, c in zip(values, counts)} == FACTS["labels_on_probe"]["histogram"]


def test_inspect_reads_the_reference_geometry(model):
    info = model.info
    assert info.input_tensor == FACTS["input"][0] and info.input_dtype == FACTS["input"][1]
    assert info.prediction_tensor == FACTS["output"][0] and info.prediction_dtype == FACTS["output"][1]
    assert info.has_probabilities is FACTS["has_SemanticProbabilities"]
    assert info.num_classes == 21 and info.crop_size == (513, 513)
    assert info.image_pooling_kernel == (33, 33)  # "AvgPool2D/AvgPool ksize [1, 33, 33, 1]"
    assert info.encoder_output_stride == 16 and info.decoder_output_stride is None
    assert info.logits_size == (33, 33) and info.retargetable


def test_crop_pattern_feeds_the_padded_image_not_the_mean_subtracted_one(model):
    """The reference pads ``x - 127.5`` with zeros and adds the mean back after a Squeeze; the tensor zoo
    feeds scaled crops into must be after that add (the facts' chain), holding pixel values."""
    p = model.crop_pattern
    chain = [step.split(" ")[0] for step in FACTS["preprocessing_chain_from_mean_subtraction"]]
    after_add = chain[chain.index("pad_to_bounding_box/add"):chain.index("mul")]
    assert p.padded_image.split(":")[0] in after_add
    assert p.crop == (513, 513) and p.logits_size == (33, 33) and p.encoder_stride == 16
    assert {p.pad_height_const, p.pad_width_const} == {"sub/x", "sub_1/x"}  # the facts' crop_consts
    assert p.shape_const == "Shape_3"
    # Feeding the found tensor with the padded probe gives the graph's own labels exactly.
    image = probe_image()
    padded = np.full((1, 513, 513, 3), 127.5, np.float32)
    padded[0, :300, :400] = image
    fed = padded if p.padded_rank == 4 else padded[0]
    via_feed = model.session.run(model.graph.get_tensor_by_name(p.argmax + ":0"), {p.padded_image: fed})
    np.testing.assert_array_equal(via_feed[0, :300, :400], model.predict(image))


def test_multiply_adds_match_the_reference_count():
    from zoo_cli.graph.flops import count_madds
    from zoo_cli.graph.loading import load_graph_def

    report = count_madds(load_graph_def(GRAPH), (513, 513))
    madds = FACTS["multiply_adds_billion_at_513"]
    assert report.madds_billion == pytest.approx(madds["conv_and_matmul_only"], abs=0.0005)
    assert report.tfprof_madds_billion == pytest.approx(madds["profiler_float_ops_over_2"], abs=0.0005)


def test_the_guard_passes_on_the_reference_graph_and_refuses_a_misread_feed_point(model):
    """The bug this guards against: feeding scaled crops at the Pad (x - 127.5) shifts every pixel."""
    from zoo_cli.evaluation.multiscale import MultiScalePredictor

    ms = MultiScalePredictor(model, scales=(1.0,), flip=True)
    assert ms.guard["pixels_differ"] <= 0.005
    misread = dataclasses.replace(model.crop_pattern, padded_image="pad_to_bounding_box/Pad:0")
    model.crop_pattern, good = misread, model.crop_pattern
    try:
        with pytest.raises(ModelError, match=r"does not reproduce its own output at scale 1 \(\d+% of pixels"):
            MultiScalePredictor(model, scales=(1.0,), flip=True)
    finally:
        model.crop_pattern = good
