"""The frozen-graph runner: structural inspection, exact predictions, fitting, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.support.eval_graphs import build_graph, install, quantize_red, registry_entry, write_graph
from zoo_cli.errors import ModelError


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    d = tmp_path_factory.mktemp("graphs")
    return {
        "os1": write_graph(d / "os1.pb", crop=(33, 41), num_classes=21),
        "os8": write_graph(d / "os8.pb", crop=(33, 41), num_classes=19, output_stride=8, int64=True,
                           probabilities=True, fold_size=True),
        "nopool": write_graph(d / "nopool.pb", crop=(17, 17), num_classes=3, image_pooling=False),
        "dynamic": write_graph(d / "dynamic.pb", crop=(33, 41), num_classes=21, output_stride=8, dynamic=True),
    }


@pytest.fixture(scope="module")
def model(graphs):
    from zoo_cli.graph.runner import FrozenGraphModel

    with FrozenGraphModel(graphs["os1"], intra_op_threads=1, inter_op_threads=1) as m:
        yield m


def test_inspect_zoo_style_graph(graphs):
    from zoo_cli.graph.info import inspect_graph

    info = inspect_graph(graphs["os1"])
    assert info.input_tensor == "ImageTensor:0" and info.input_dtype == "uint8"
    assert info.input_shape == (1, None, None, 3)
    assert info.prediction_tensor == "SemanticPredictions:0" and info.prediction_dtype == "int32"
    assert info.scores_tensor == "ResizeBilinear_2:0" and info.scores_kind == "logits"
    assert not info.has_probabilities
    assert info.num_classes == 21 and info.crop_size == (33, 41)
    assert info.output_stride == 1 and info.argmax_node == "ArgMax"
    data = info.to_json()
    assert json.loads(json.dumps(data))["crop_size"] == [33, 41]


def test_inspect_strided_graph_with_probabilities(graphs):
    from zoo_cli.graph.info import inspect_graph

    info = inspect_graph(graphs["os8"])
    assert info.prediction_dtype == "int64"
    assert info.has_probabilities and info.scores_tensor == "SemanticProbabilities:0"
    assert info.num_classes == 19
    assert info.crop_size == (33, 41)  # from a folded Const size, not a StridedSlice of the shape
    assert info.logits_size == (5, 6) and info.output_stride == 8
    assert info.image_pooling_kernel == (5, 6) and info.encoder_output_stride == 8


def test_inspect_graph_without_image_pooling(graphs):
    from zoo_cli.graph.info import inspect_graph

    info = inspect_graph(graphs["nopool"])
    # The output stride comes from the feature maps, not from an image-pooling kernel (X71 DPC has none).
    assert info.image_pooling_kernel is None and info.encoder_output_stride == 1
    assert info.crop_size == (17, 17) and info.num_classes == 3


def test_crop_of_a_graph_without_static_shapes_is_found_by_running_it(graphs):
    from zoo_cli.graph.info import inspect_graph
    from zoo_cli.graph.runner import FrozenGraphModel

    info = inspect_graph(graphs["dynamic"])
    assert info.crop_size == (33, 41) and info.logits_size == (5, 6) and info.output_stride == 8
    assert any("tiny image" in note for note in info.notes)
    with FrozenGraphModel(graphs["dynamic"]) as m:
        assert m.crop_size == (33, 41)
        p = m.predict_full(np.zeros((50, 20, 3), dtype=np.uint8))
        assert p.fitted and p.labels.shape == (50, 20)


def test_inspect_export_module_graph(tmp_path):
    export = pytest.importorskip("tests.support.export")
    from zoo_cli.graph.info import inspect_graph

    for os_, decoder, expected_logits in ((16, False, 5), (8, False, 9), (8, True, 17)):
        path = tmp_path / f"t{os_}{decoder}.pb"
        export.save_frozen_graph(export.tiny_deeplab(num_classes=5, crop=65, output_stride=os_, decoder=decoder,
                                                     width=8), path)
        info = inspect_graph(path)
        assert info.crop_size == (65, 65) and info.num_classes == 5
        assert info.logits_size == (expected_logits, expected_logits)
        assert info.encoder_output_stride == os_  # from the image-pooling kernel
        assert info.output_stride == (4 if decoder else os_)  # effective: logits before upsampling


def test_predictions_are_exact(model):
    rng = np.random.default_rng(0)
    for size in ((1, 1), (7, 40), (33, 41), (20, 30)):
        image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        labels = model.predict(image)
        assert labels.dtype == np.int32 and labels.shape == size
        assert np.array_equal(labels, quantize_red(image, 21))


def test_session_is_reused(model):
    session = model.session
    model.predict(np.zeros((4, 4, 3), dtype=np.uint8))
    model.predict(np.zeros((5, 4, 3), dtype=np.uint8))
    assert model.session is session


def test_int64_graph_gives_int32(graphs):
    from zoo_cli.graph.runner import FrozenGraphModel

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    with FrozenGraphModel(graphs["os8"]) as m:
        p = m.predict_full(image)
        assert p.labels.dtype == np.int32 and p.labels.shape == (20, 30)


def test_image_larger_than_crop_is_shrunk_to_fit(model):
    rng = np.random.default_rng(3)
    image = np.kron(rng.integers(0, 256, size=(10, 5, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 80x40
    p = model.predict_full(image)
    assert p.fitted and p.fitted_from == (80, 40) and p.fitted_to == (33, 16)
    assert p.labels.shape == (80, 40)
    small = np.asarray(Image.fromarray(image).resize((16, 33), Image.BILINEAR))
    expected = quantize_red(small, 21)
    rows = (np.arange(80) * 33 // 80)
    cols = (np.arange(40) * 16 // 40)
    assert np.array_equal(p.labels, expected[rows][:, cols])


def test_bad_inputs_and_graphs(tmp_path, model):
    from zoo_cli.graph.info import inspect_graph
    from zoo_cli.graph.runner import FrozenGraphModel

    with pytest.raises(ModelError, match="uint8 HxWx3"):
        model.predict(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ModelError, match="uint8 HxWx3"):
        model.predict(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ModelError, match="does not exist"):
        inspect_graph(tmp_path / "missing.pb")
    (tmp_path / "junk.pb").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ModelError, match="not a frozen TensorFlow GraphDef"):
        FrozenGraphModel(tmp_path / "junk.pb")
    gd = build_graph(crop=(9, 9), num_classes=3)
    for node in gd.node:
        if node.name == "SemanticPredictions":
            node.name = "Output"
    (tmp_path / "renamed.pb").write_bytes(gd.SerializeToString())
    with pytest.raises(ModelError, match="no output tensor 'SemanticPredictions:0'"):
        inspect_graph(tmp_path / "renamed.pb")
    assert inspect_graph(tmp_path / "renamed.pb", prediction_tensor="Output").num_classes == 3


def test_zoo_info_inspect(graphs, zoo_home, tmp_path, monkeypatch):
    from zoo_cli.cli.app import cli

    reg = tmp_path / "registry.yaml"
    reg.write_text("version: 1\ncheckpoints:\n" + registry_entry("tiny_voc", "voc", 21, 255))
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    install(zoo_home, "tiny_voc", graphs["os1"].read_bytes())
    result = CliRunner().invoke(cli, ["info", "tiny_voc", "--inspect", "--json"])
    assert result.exit_code == 0, result.output
    graph = json.loads(result.stdout)["graph"]
    assert graph["num_classes"] == 21 and graph["crop_size"] == [33, 41]
    assert graph["scores_tensor"] == "ResizeBilinear_2:0"


def _avgpool_strides(graph_def) -> list[list[int]]:
    return [list(n.attr["strides"].list.i) for n in graph_def.node if n.op == "AvgPool"]


@pytest.mark.parametrize("os_", [8, 16])
def test_encoder_output_stride_from_image_pooling_with_unit_or_kernel_strides(tmp_path, os_):
    """Exports write the image-pooling AvgPool with strides 1 (tests.support.export, export_model.py with a static
    image_pooling_crop_size) or strides = kernel (slim.avg_pool2d, tests/support/refgraph.py): same eval OS."""
    from tests.support import export
    from tests.support.refgraph import reference_style_graph
    from zoo_cli.graph.info import inspect_graph

    crop = (65, 81)
    kernel = ((crop[0] - 1) // os_ + 1, (crop[1] - 1) // os_ + 1)  # the feature map at this OS
    unit = export.tiny_deeplab(num_classes=5, crop=crop, output_stride=os_, width=8)
    strided = reference_style_graph(seed=1, num_classes=5, crop=crop, output_stride=os_)
    assert _avgpool_strides(unit) == [[1, 1, 1, 1]]
    assert _avgpool_strides(strided) == [[1, kernel[0], kernel[1], 1]]
    for label, graph_def in (("unit", unit), ("strided", strided)):
        path = export.save_frozen_graph(graph_def, tmp_path / f"{label}.pb")
        info = inspect_graph(path)
        assert info.crop_size == crop, label
        assert info.image_pooling_kernel == kernel, label
        assert info.encoder_output_stride == os_, label
