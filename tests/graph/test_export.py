"""tests.support.export builds graphs with the zoo's interface and crop-dependent structure."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import export
from tests.support.tfgraph import GraphRunner, const_value, nodes_by_op, random_image, tf

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def g65():
    gd = export.tiny_deeplab(seed=3, num_classes=NUM_CLASSES, crop=65, with_probabilities=True)
    runner = GraphRunner(gd)
    yield gd, runner
    runner.close()


def test_interface_placeholder_and_outputs(g65):
    gd, runner = g65
    (ph,) = [n for n in gd.node if n.name == export.INPUT_NAME]
    assert ph.op == "Placeholder"
    assert ph.attr["dtype"].type == tf().uint8.as_datatype_enum
    assert [d.size for d in ph.attr["shape"].shape.dim] == [1, -1, -1, 3]
    pred, probs = runner.run(
        ["SemanticPredictions:0", "SemanticProbabilities:0"], {"ImageTensor:0": random_image(40, 50)[None]}
    )
    assert pred.shape == (1, 40, 50) and pred.dtype == np.int32
    assert probs.shape == (1, 40, 50, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probs.argmax(-1), pred)
    assert 0 <= pred.min() and pred.max() < NUM_CLASSES


def test_crop_lives_where_the_zoo_graphs_keep_it(g65):
    gd, _ = g65
    (pool,) = nodes_by_op(gd, "AvgPool")
    assert list(pool.attr["ksize"].list.i) == [1, 9, 9, 1]  # (65 - 1) // 8 + 1
    assert pool.attr["padding"].s == b"VALID"
    resizes = nodes_by_op(gd, "ResizeBilinear")
    assert resizes and all(r.attr["align_corners"].b for r in resizes)
    consts = {n.name: const_value(n) for n in nodes_by_op(gd, "Const") if n.attr["dtype"].type == 3}
    values = [v.tolist() for v in consts.values()]
    assert [1, 65, 65, 3] in values  # tf.shape of the statically shaped padded image, folded
    assert [9, 9] in values  # image-pooling resize target
    assert values.count(65) == 2  # the two pad-target scalars
    ops = {n.op for n in gd.node}
    assert {"SpaceToBatchND", "BatchToSpaceND", "DepthwiseConv2dNative", "ArgMax", "Pad"} <= ops
    assert not ({"VariableV2", "VarHandleOp", "ReadVariableOp"} & ops)  # frozen


def test_image_equal_to_crop_is_not_padded(g65):
    _, runner = g65
    img = random_image(65, 65, seed=1)
    padded, pred, full = runner.run(
        [export.PADDED_IMAGE_NAME + ":0", "SemanticPredictions:0", "ArgMax:0"], {"ImageTensor:0": img[None]}
    )
    np.testing.assert_array_equal(padded[0], img.astype(np.float32))
    np.testing.assert_array_equal(pred, full)


def test_small_image_padded_with_mean_pixel_and_output_sliced(g65):
    _, runner = g65
    img = random_image(30, 47, seed=2)
    padded, pred, full = runner.run(
        [export.PADDED_IMAGE_NAME + ":0", "SemanticPredictions:0", "ArgMax:0"], {"ImageTensor:0": img[None]}
    )
    assert padded.shape == (1, 65, 65, 3)
    np.testing.assert_array_equal(padded[0, :30, :47], img.astype(np.float32))
    assert np.all(padded[0, 30:] == 127.5) and np.all(padded[0, :, 47:] == 127.5)
    # The prediction is the top-left corner of the full-crop argmax.
    np.testing.assert_array_equal(pred[0], full[0, :30, :47])
    # Independent: feeding our own 127.5-padded float image gives the same full map.
    mine = np.full((1, 65, 65, 3), 127.5, np.float32)
    mine[0, :30, :47] = img
    np.testing.assert_array_equal(runner.run("ArgMax:0", {export.PADDED_IMAGE_NAME + ":0": mine}), full)


def test_input_larger_than_crop_fails_inside_the_graph(g65):
    # The zoo graphs' known limitation that re-targeting exists for.
    _, runner = g65
    with pytest.raises(tf().errors.InvalidArgumentError):
        runner.predict(random_image(80, 70))


def test_same_seed_same_weights_at_several_crops():
    a = export.tiny_deeplab(seed=7, num_classes=3, crop=65)
    b = export.tiny_deeplab(seed=7, num_classes=3, crop=129)
    c = export.tiny_deeplab(seed=8, num_classes=3, crop=65)
    wa = {n.name: const_value(n) for n in nodes_by_op(a, "Const") if n.name.endswith(("weights", "biases"))}
    wb = {n.name: const_value(n) for n in nodes_by_op(b, "Const") if n.name.endswith(("weights", "biases"))}
    wc = {n.name: const_value(n) for n in nodes_by_op(c, "Const") if n.name.endswith(("weights", "biases"))}
    assert wa.keys() == wb.keys() and len(wa) >= 10
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not all(np.array_equal(wa[k], wc[k]) for k in wa)
    # Both load and run; an image that fits both crops gives a valid map from each.
    img = random_image(60, 60)
    for gd in (a, b):
        r = GraphRunner(gd)
        assert r.predict(img).shape == (60, 60)
        r.close()


def test_weights_dict_reproduces_the_seeded_network():
    w = export.Weights(seed=5)
    a = export.tiny_deeplab(w, num_classes=4, crop=33)
    b = export.tiny_deeplab(dict(w.arrays), seed=None, num_classes=4, crop=33)
    img = random_image(33, 33, seed=4)
    ra, rb = GraphRunner(a), GraphRunner(b)
    np.testing.assert_array_equal(ra.run("logits/BiasAdd:0", {"ImageTensor:0": img[None]}),
                                  rb.run("logits/BiasAdd:0", {"ImageTensor:0": img[None]}))
    ra.close(), rb.close()
    with pytest.raises(KeyError):
        export.tiny_deeplab({}, seed=None, num_classes=4, crop=33)


@pytest.mark.parametrize("os_, decoder, pool, resize_sizes", [
    (16, False, [1, 5, 5, 1], [[5, 5]]),
    (8, True, [1, 9, 9, 1], [[9, 9], [17, 17]]),
])
def test_output_stride_and_decoder_variants(os_, decoder, pool, resize_sizes):
    gd = export.tiny_deeplab(seed=1, num_classes=NUM_CLASSES, crop=65, output_stride=os_, decoder=decoder)
    (avg,) = nodes_by_op(gd, "AvgPool")
    assert list(avg.attr["ksize"].list.i) == pool
    by_name = {n.name: n for n in gd.node}
    sizes = []
    for r in nodes_by_op(gd, "ResizeBilinear"):
        src = by_name[r.input[1]]
        if src.op == "Const":
            sizes.append(const_value(src).tolist())
    assert sorted(sizes) == sorted(resize_sizes)
    r = GraphRunner(gd)
    logits = r.run("logits/BiasAdd:0", {"ImageTensor:0": random_image(65, 65)[None]})
    assert logits.shape[1] == (17 if decoder else 9 if os_ == 8 else 5)
    r.close()


def test_model_dir_has_frozen_graph_and_checkpoint_with_the_same_weights(tmp_path):
    d = export.export_model_dir(tmp_path / "m", seed=11, num_classes=3, crop=33)
    names = sorted(p.name for p in d.iterdir())
    assert names == ["frozen_inference_graph.pb", "model.ckpt.data-00000-of-00001", "model.ckpt.index"]
    gd = tf().compat.v1.GraphDef()
    gd.ParseFromString((d / "frozen_inference_graph.pb").read_bytes())
    frozen = {n.name: const_value(n) for n in nodes_by_op(gd, "Const") if n.name.endswith(("weights", "biases"))}
    reader = tf().train.load_checkpoint(str(d / "model.ckpt"))
    saved = reader.get_variable_to_shape_map()
    assert set(saved) == set(frozen)
    for name, value in frozen.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)


def test_save_frozen_graph_is_atomic_and_round_trips(tmp_path):
    gd = export.tiny_deeplab(seed=0, num_classes=2, crop=17)
    path = export.save_frozen_graph(gd, tmp_path / "x" / "g.pb")
    assert [p.name for p in path.parent.iterdir()] == ["g.pb"]
    back = tf().compat.v1.GraphDef()
    back.ParseFromString(path.read_bytes())
    assert back == gd


_SAVE_IN_FRESH_PROCESS = r"""
import hashlib, sys
from tests.support import export
path = export.save_frozen_graph(export.tiny_deeplab(num_classes=3, crop=33, width=8, seed=5), sys.argv[1])
print(hashlib.sha256(path.read_bytes()).hexdigest())
"""


def test_save_frozen_graph_is_byte_reproducible_across_processes(tmp_path):
    """Node attrs are a protobuf map whose default serialisation order changes between processes; saved
    graphs are deterministic (same graph -> same bytes -> same archive sha256)."""
    import hashlib
    import subprocess
    import sys

    gd = export.tiny_deeplab(num_classes=3, crop=33, width=8, seed=5)
    path = export.save_frozen_graph(gd, tmp_path / "here.pb")
    assert path.read_bytes() == gd.SerializeToString(deterministic=True)
    proc = subprocess.run([sys.executable, "-c", _SAVE_IN_FRESH_PROCESS, str(tmp_path / "there.pb")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == hashlib.sha256(path.read_bytes()).hexdigest()
