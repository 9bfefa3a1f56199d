"""Multi-scale + flip on a re-targeted frozen graph vs an independent implementation of the reference
procedure (research/deeplab predict_labels_multi_scale) built from natively exported graphs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.support import export
from tests.support.tfgraph import GraphRunner, random_image, tf
from zoo_cli.errors import ModelError, UsageError
from zoo_cli.evaluation.multiscale import MultiScalePredictor
from zoo_cli.evaluation.resize import resize_bilinear
from zoo_cli.evaluation.settings import parse_crop, parse_scales

CLASSES = 5


# ------------------------------------------------------------------ independent reference (plain numpy)


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Dense (n_out x n_in) matrix of 1-D linear interpolation with align_corners=True, in float64."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        pos = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        lo = min(int(np.floor(pos)), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        m[i, lo] += 1 - (pos - lo)
        m[i, hi] += pos - lo
    return m


def _resize_ac(x: np.ndarray, size) -> np.ndarray:
    my, mx = _interp_matrix(x.shape[0], size[0]), _interp_matrix(x.shape[1], size[1])
    return np.einsum("ab,bcd,ec->aed", my, x.astype(np.float64), mx, optimize=True)


def _sd(dim, s):
    return int((dim - 1) * s + 1)


class NativeReference:
    """The reference procedure, running the SAME network exported natively at every scaled crop."""

    def __init__(self, *, seed, crop, logits_stride, **net):
        self.seed, self.crop, self.k, self.net = seed, crop, logits_stride, net
        self.runners = {}

    def logits(self, x):  # x: float padded+scaled image at its crop
        c = x.shape[:2]
        if c not in self.runners:
            self.runners[c] = GraphRunner(export.tiny_deeplab(seed=self.seed, num_classes=CLASSES, crop=c, **self.net))
        return self.runners[c].run(export.LOGITS_NAME + ":0", {export.PADDED_IMAGE_NAME + ":0": x[None]})[0]

    def probabilities(self, image, scales, flip):
        h, w = image.shape[:2]
        ch, cw = self.crop
        padded = np.full((ch, cw, 3), 127.5)
        padded[:h, :w] = image
        maps = []
        for s in scales:
            x = padded if s == 1.0 else _resize_ac(padded, (_sd(ch, s), _sd(cw, s)))
            variants = [(x, False)] + ([(x[:, ::-1], True)] if flip else [])
            for xi, flipped in variants:
                lg = self.logits(np.ascontiguousarray(xi, np.float32)).astype(np.float64)
                if flipped:
                    lg = lg[:, ::-1]
                # multi_scale_logits: to the logits size at max(1, s), then to the crop.
                lg = _resize_ac(lg, (_sd(ch, max(1.0, s) / self.k), _sd(cw, max(1.0, s) / self.k)))
                lg = _resize_ac(lg, (ch, cw))
                e = np.exp(lg - lg.max(-1, keepdims=True))
                maps.append(e / e.sum(-1, keepdims=True))
        return np.mean(maps, axis=0)[:h, :w]


def _assert_same_labels(got, probs_ref):
    want = probs_ref.argmax(-1)
    diff = got != want
    if diff.any():  # only where the reference's top two classes are within float noise
        top2 = np.sort(probs_ref, axis=-1)[..., -2:]
        assert np.all((top2[..., 1] - top2[..., 0])[diff] < 1e-5), f"{diff.sum()} labels differ"


# ------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def graph65():
    return export.tiny_deeplab(seed=1, num_classes=CLASSES, crop=65)


@pytest.mark.parametrize("variant, seed, size", [
    (dict(), 1, (120, 100)),
    (dict(decoder=True), 2, (97, 113)),  # odd sizes, not multiples of the stride
], ids=["os8", "decoder"])
def test_multiscale_flip_equals_independent_reference(variant, seed, size):
    scales = (0.5, 0.75, 1.0, 1.25, 1.75)  # below and above 1.0
    graph = export.tiny_deeplab(seed=seed, num_classes=CLASSES, crop=65, **variant)
    pred = MultiScalePredictor(graph, scales=scales, flip=True, crop=(129, 129))
    assert pred.skipped == [] and pred.describe()["retargeted"]
    ref = NativeReference(seed=seed, crop=(129, 129), logits_stride=4 if variant else 8, **variant)
    image = random_image(*size, seed=3)
    want = ref.probabilities(image, scales, flip=True)
    got = pred.predict_probabilities(image)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5)
    labels = pred(image)
    assert labels.shape == size and labels.dtype == np.int32
    _assert_same_labels(labels, want)
    assert len(np.unique(labels)) >= 2
    pred.close()


def test_flip_is_handled_on_an_asymmetric_graph(graph65):
    image = random_image(60, 64, seed=4)
    ref = NativeReference(seed=1, crop=(65, 65), logits_stride=8)
    with_flip = MultiScalePredictor(graph65, scales=(1.0,), flip=True).predict_probabilities(image)
    without = MultiScalePredictor(graph65, scales=(1.0,), flip=False).predict_probabilities(image)
    np.testing.assert_allclose(with_flip, ref.probabilities(image, (1.0,), flip=True), atol=2e-5)
    np.testing.assert_allclose(without, ref.probabilities(image, (1.0,), flip=False), atol=2e-5)
    assert np.abs(with_flip - without).max() > 1e-3  # the graph is not left/right symmetric
    # Not flipping the flipped logits back would be a different (wrong) answer.
    padded = np.full((65, 65, 3), 127.5, np.float32)
    padded[:60, :64] = image
    mirrored = ref.logits(np.ascontiguousarray(padded[:, ::-1]))
    wrong = 0.5 * (without + _softmax(_resize_ac(_resize_ac(mirrored, (9, 9)), (65, 65)))[:60, :64])
    assert np.abs(wrong - with_flip).max() > 1e-3


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("size", [(1, 37), (45, 1), (65, 65)])
def test_thin_and_full_crop_images(graph65, size):
    pred = MultiScalePredictor(graph65, scales=(0.75, 1.25), flip=True, crop=(65, 65))
    image = random_image(*size, seed=11)
    want = NativeReference(seed=1, crop=(65, 65), logits_stride=8).probabilities(image, (0.75, 1.25), True)
    np.testing.assert_allclose(pred.predict_probabilities(image), want, atol=2e-5)


def test_single_scale_at_a_larger_eval_crop_retargets_instead_of_shrinking(graph65):
    # The Cityscapes case: the graph's crop is smaller than the eval crop.
    image = random_image(101, 150, seed=5)
    pred = MultiScalePredictor(graph65, scales=(1.0,), crop=(129, 161))
    native = GraphRunner(export.tiny_deeplab(seed=1, num_classes=CLASSES, crop=(129, 161)))
    np.testing.assert_array_equal(pred(image), native.predict(image))
    assert pred.describe()["retargeted"] and pred.fitted == 0
    # At the graph's own crop, single scale is exactly the exported computation.
    small = random_image(50, 61, seed=6)
    np.testing.assert_array_equal(MultiScalePredictor(graph65)(small), GraphRunner(graph65).predict(small))


def test_image_larger_than_eval_crop_runs_at_a_covering_crop(graph65):
    pred = MultiScalePredictor(graph65, scales=(1.0,), crop=(65, 65))
    image = random_image(70, 90, seed=7)
    native = GraphRunner(export.tiny_deeplab(seed=1, num_classes=CLASSES, crop=(70, 90)))
    np.testing.assert_array_equal(pred(image), native.predict(image))
    assert pred.enlarged == 1


def test_unbuildable_scales_are_reported_never_dropped(graph65):
    with pytest.raises(ModelError, match=r"cannot run 1 of 3 scales: scale 0.05 \(crop 4x4\)"):
        MultiScalePredictor(graph65, scales=(0.05, 1.0, 1.5), crop=(65, 65))
    pred = MultiScalePredictor(graph65, scales=(0.05, 1.0, 1.5), crop=(65, 65), strict=False)
    info = pred.describe()
    assert info["scales_used"] == [1.0, 1.5]
    assert [s["scale"] for s in info["skipped_scales"]] == [0.05] and "too small" in info["skipped_scales"][0]["reason"]
    image = random_image(40, 40, seed=8)
    ref = NativeReference(seed=1, crop=(65, 65), logits_stride=8)
    np.testing.assert_allclose(pred.predict_probabilities(image), ref.probabilities(image, (1.0, 1.5), False),
                               atol=2e-5)
    with pytest.raises(ModelError, match="cannot run 1 of 1 scales"):
        MultiScalePredictor(graph65, scales=(0.05,), strict=False)


def test_weights_are_shared_between_crops(graph65):
    pred = MultiScalePredictor(graph65, scales=(0.5, 1.0, 1.5, 2.0), flip=True, crop=(65, 65))
    consts = [op for op in pred.graph.get_operations() if op.type == "Const"
              and op.get_attr("value").tensor_shape.dim and
              np.prod([d.size for d in op.get_attr("value").tensor_shape.dim]) >= 16]
    n_weights = sum(1 for n in graph65.node if n.op == "Const" and n.attr["dtype"].type == 1
                    and np.prod([d.size for d in n.attr["value"].tensor.tensor_shape.dim] or [0]) >= 16)
    assert len(pred.describe()["scales_used"]) == 4
    assert len(consts) == n_weights  # one copy of the weights, not one per crop


def test_concurrent_calls_give_the_same_answer(graph65):
    pred = MultiScalePredictor(graph65, scales=(0.75, 1.25), flip=True, crop=(97, 97))
    images = [random_image(90, 80, seed=i) for i in range(4)]
    serial = [pred(im) for im in images]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(pred, images))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("window", [1, 3, 12])
def test_any_number_of_runs_in_flight_gives_the_reference_answer(graph65, window):
    # The whole procedure is one Session.run; `window` only bounds how many network runs overlap.
    scales = (0.5, 1.0, 1.5)
    pred = MultiScalePredictor(graph65, scales=scales, flip=True, crop=(97, 97), window=window)
    image = random_image(90, 71, seed=12)
    want = NativeReference(seed=1, crop=(97, 97), logits_stride=8).probabilities(image, scales, flip=True)
    np.testing.assert_allclose(pred.predict_probabilities(image), want, atol=2e-5)
    _assert_same_labels(pred(image), want)


def test_multiscale_on_an_image_larger_than_the_eval_crop(graph65):
    pred = MultiScalePredictor(graph65, scales=(0.75, 1.25), flip=True, crop=(65, 65))
    image = random_image(70, 90, seed=13)
    want = NativeReference(seed=1, crop=(70, 90), logits_stride=8).probabilities(image, (0.75, 1.25), flip=True)
    np.testing.assert_allclose(pred.predict_probabilities(image), want, atol=2e-5)
    assert pred.enlarged == 1


class ReferenceStyleNative(NativeReference):
    """NativeReference on the reference-wired export (3-D preprocessing, then ExpandDims)."""

    def logits(self, x):
        from tests.support.refgraph import reference_style_graph
        from zoo_cli.graph.crop_pattern import analyse

        c = x.shape[:2]
        if c not in self.runners:
            gd = reference_style_graph(seed=self.seed, num_classes=CLASSES, crop=c)
            self.runners[c] = (GraphRunner(gd), analyse(gd))
        runner, pattern = self.runners[c]
        feed = x[None] if pattern.padded_rank == 4 else x
        return runner.run(pattern.logits, {pattern.padded_image: feed})[0]


def test_multiscale_flip_on_a_reference_wired_export():
    from tests.support.refgraph import reference_style_graph

    scales = (0.75, 1.25)
    pred = MultiScalePredictor(reference_style_graph(seed=5, num_classes=CLASSES, crop=65), scales=scales,
                               flip=True, crop=(81, 81))
    image = random_image(77, 60, seed=14)
    want = ReferenceStyleNative(seed=5, crop=(81, 81), logits_stride=8).probabilities(image, scales, flip=True)
    np.testing.assert_allclose(pred.predict_probabilities(image), want, atol=2e-5)
    _assert_same_labels(pred(image), want)


def test_numpy_resize_matches_tensorflow_align_corners():
    t = tf()
    rng = np.random.default_rng(0)
    for src, dst in (((9, 9), (65, 65)), ((17, 13), (129, 97)), ((5, 7), (5, 7)), ((33, 33), (9, 20))):
        x = rng.normal(size=(*src, 4)).astype(np.float32)
        want = t.raw_ops.ResizeBilinear(images=x[None], size=dst, align_corners=True).numpy()[0]
        np.testing.assert_allclose(resize_bilinear(x, dst), want, atol=1e-5)
        np.testing.assert_allclose(resize_bilinear(x, dst, keep=(dst[0] - 2, dst[1] - 1)),
                                   want[:-2, :-1], atol=1e-5)


def test_memory_is_one_image_sized_buffer_not_one_map_per_run(graph65):
    import tracemalloc

    classes = 40  # many classes so that the probability maps dominate the image buffers
    graph = export.tiny_deeplab(seed=1, num_classes=classes, crop=65)
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    pred = MultiScalePredictor(graph, scales=scales, flip=True, crop=(257, 257))
    image = random_image(250, 250, seed=9)
    pred(image)  # warm up
    tracemalloc.start()
    pred(image)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    one_map = 250 * 250 * classes * 4
    assert peak < 3 * one_map  # 12 maps are summed in place, never held together


def test_parse_scales_and_crop():
    assert parse_scales("[0.5:0.25:1.75]") == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert parse_scales("[0.75:0.25:2]") == (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    assert parse_scales("0.5,1,1.5") == (0.5, 1.0, 1.5)
    assert parse_scales(None) is None
    assert parse_crop("1025,2049") == (1025, 2049) and parse_crop("513x513") == (513, 513) and parse_crop("65") == (65, 65)
    with pytest.raises(UsageError):
        parse_scales("a,b")
    with pytest.raises(UsageError):
        parse_scales("0,1")
    with pytest.raises(UsageError):
        parse_crop("1,2,3")


# ------------------------------------------------------------------ zoo eval wiring


@pytest.fixture
def zoo_ms(zoo_home, tmp_path, monkeypatch):
    """A registry with one tiny DeepLab-shaped VOC checkpoint (OS 8 graph, crop 65) installed."""
    from click.testing import CliRunner

    from tests.support.eval_graphs import install, registry_entry
    from zoo_cli.cli.app import cli

    reg = tmp_path / "registry.yaml"
    reg.write_text("version: 1\ncheckpoints:\n" + registry_entry("tiny_ms", "voc", 21, 255, miou=70.0))
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    graph = export.tiny_deeplab(seed=4, num_classes=21, crop=65)
    install(zoo_home, "tiny_ms", graph.SerializeToString())
    return graph, lambda *args: CliRunner().invoke(cli, ["eval", *map(str, args)])


def _eval_json(invoke, *args):
    import json

    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_zoo_eval_defaults_to_the_row_the_graph_reproduces(zoo_ms, tmp_path):
    from tests.support.datasets import decoded, make_voc, naive_metrics

    graph, invoke = zoo_ms
    samples = make_voc(tmp_path / "voc", n=3, size=(40, 52))
    data = _eval_json(invoke, "tiny_ms", "--data-dir", tmp_path / "voc")
    # Row 2 is the one at the graph's OS 8: scales 0.5,0.75,1.0 with flip, at the graph's crop 65.
    assert data["scales"] == [0.5, 0.75, 1.0] and data["flip"] is True
    settings = data["eval_settings"]
    assert settings["row"] == 2 and settings["eval_crop"] == [65, 65] and settings["graph_output_stride"] == 8
    assert not settings["os_differs"] and data["multiscale"]["skipped_scales"] == []
    assert [r["os_differs_from_graph"] for r in data["reported"]] == [True, False]
    pred = MultiScalePredictor(graph, scales=(0.5, 0.75, 1.0), flip=True)
    miou, _, acc = naive_metrics([(gt, pred(decoded(p))) for p, gt in samples.values()], 21, 255)
    assert data["miou"] == pytest.approx(miou * 100, abs=1e-3)
    assert data["pixel_accuracy"] == pytest.approx(acc * 100, abs=1e-3)


def test_zoo_eval_overrides_and_statements(zoo_ms, tmp_path):
    from tests.support.datasets import make_voc

    _, invoke = zoo_ms
    make_voc(tmp_path / "voc", n=2, size=(40, 52))
    # --row 1 is an OS 16 row: this tiny graph (no atrous convs) cannot be rewritten to OS 16, so it is refused
    refused = invoke("tiny_ms", "--data-dir", tmp_path / "voc", "--row", "1")
    assert refused.exit_code == 6 and "cannot rewrite this graph's output stride" in refused.output
    # asked to run the OS 16 row's scales at the graph's own OS 8: it runs, and says the row is not comparable
    data = _eval_json(invoke, "tiny_ms", "--data-dir", tmp_path / "voc", "--row", "1", "--output-stride", "8")
    assert data["scales"] == [1.0] and data["flip"] is False and data["eval_settings"]["os_differs"]
    assert any("not comparable" in n for n in data["eval_settings"]["notes"])
    data = _eval_json(invoke, "tiny_ms", "--data-dir", tmp_path / "voc", "--scales", "[0.75:0.25:1.25]",
                      "--no-flip", "--crop", "97,97")
    assert data["scales"] == [0.75, 1.0, 1.25] and data["flip"] is False
    assert data["multiscale"]["eval_crop"] == [97, 97] and data["multiscale"]["graph_crop"] == [65, 65]
    human = invoke("tiny_ms", "--data-dir", tmp_path / "voc", "--row", "1", "--output-stride", "8")
    assert human.exit_code == 0, human.output
    assert "crop 65x65" in human.output and "OS differs from the graph's 8" in human.output
    assert "not comparable" in human.output
    bad = invoke("tiny_ms", "--data-dir", tmp_path / "voc", "--row", "7")
    assert bad.exit_code == 2 and "--row 7 does not exist" in bad.output
    bad = invoke("tiny_ms", "--data-dir", tmp_path / "voc", "--scales", "x")
    assert bad.exit_code == 2 and "--scales" in bad.output
