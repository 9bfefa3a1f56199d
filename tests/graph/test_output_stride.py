"""Output-stride rewriting (zoo_cli.graph.output_stride) against faithful reference exports: the rewrite of a graph
exported at one output stride equals a native export of the same weights at the other (the fixtures' weights
are a pure function of (seed, variable name, shape)): logits to float tolerance, labels identical, the same
Multiply-Adds; also composed with crop re-targeting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.graph.test_family_exports import export, smooth_image
from tests.support.deeplab_ref import FAMILIES, ExportConfig
from tests.support.tfgraph import GraphRunner


def at_os(cfg: ExportConfig, os_: int, crop=None) -> ExportConfig:
    """``cfg`` at output stride ``os_``: ASPP rates are given for the OS (12/24/36 at 8, 6/12/18 at 16)."""
    rates = tuple(r * cfg.output_stride // os_ for r in cfg.atrous_rates) if cfg.atrous_rates else None
    return dataclasses.replace(cfg, output_stride=os_, atrous_rates=rates, crop_size=crop or cfg.crop_size)


MNV2_DM10 = ExportConfig("mobilenet_v2", crop_size=(65, 65), output_stride=8)  # full width, small crop
MNV2_DM05 = ExportConfig("mobilenet_v2", depth_multiplier=0.5, crop_size=(65, 97), output_stride=8)
# (config at its own OS, the other OS)
CASES = {
    "mnv2_dm10_8to16": (MNV2_DM10, 16),
    "mnv2_dm05_16to8": (at_os(MNV2_DM05, 16), 8),
    "xception65_decoder_8to16": (FAMILIES["xception65_os8_decoder"], 16),
    "xception65_decoder_16to8": (at_os(FAMILIES["xception65_os8_decoder"], 16), 8),
    "x71_dpc_8to16": (FAMILIES["x71_dpc_os8"], 16),
    "x71_dpc_16to8": (FAMILIES["x71_dpc_os16"], 8),
    "mnv3_large_32to16": (FAMILIES["mnv3_large"], 16),
    "mnv3_small_16to32": (at_os(FAMILIES["mnv3_small"], 16), 32),  # loses the residual slim adds at stride 1
    "mnv3_small_32to16": (FAMILIES["mnv3_small"], 16),  # gains it
    "edgetpu_16to32": (FAMILIES["edgetpu_os16"], 32),
    "edgetpu_32to16": (FAMILIES["edgetpu_os32"], 16),
}


def compare(mine, native, crop, seed=0):
    from zoo_cli.graph.crop_pattern import analyse

    p_mine, p_native = analyse(mine), analyse(native)
    image = smooth_image(crop[0] - 2, crop[1] - 3, seed=seed)
    feed = {p_native.input_tensor: image[None]}
    a_labels, a_logits = GraphRunner(native).run(["SemanticPredictions:0", p_native.logits], feed)
    b_labels, b_logits = GraphRunner(mine).run(["SemanticPredictions:0", p_mine.logits], feed)
    assert b_logits.shape == a_logits.shape
    scale = float(np.abs(a_logits).max())
    np.testing.assert_allclose(b_logits, a_logits, rtol=0, atol=1e-4 * scale)
    np.testing.assert_array_equal(b_labels, a_labels)
    assert len(np.unique(a_labels)) > 1  # labels that vary, so equality means something


@pytest.mark.parametrize("case", sorted(CASES))
def test_rewrite_equals_native_export_of_the_same_weights(case):
    from zoo_cli.graph.crop_pattern import analyse
    from zoo_cli.graph.flops import count_madds
    from zoo_cli.graph.output_stride import rewrite_output_stride

    cfg, target = CASES[case]
    native = export(at_os(cfg, target))
    mine = rewrite_output_stride(export(cfg), target)
    assert analyse(mine).encoder_stride == target
    compare(mine, native, cfg.crop_size)
    assert count_madds(mine, cfg.crop_size).madds == count_madds(native, cfg.crop_size).madds


@pytest.mark.parametrize("case", ["mnv2_dm10_8to16", "xception65_decoder_8to16"])
def test_rewrite_composes_with_crop_retargeting(case):
    """OS first, then the crop: equals the native export at the other OS and the other crop."""
    from zoo_cli.graph.output_stride import rewrite_output_stride
    from zoo_cli.graph.retarget import retarget

    cfg, target = CASES[case]
    crop = (97, 129)
    rewritten = rewrite_output_stride(export(cfg), target)
    mine = retarget(rewritten, crop)
    compare(mine, export(at_os(cfg, target, crop)), crop, seed=3)


def test_supported_output_strides_and_refusal():
    from zoo_cli.errors import ModelError
    from zoo_cli.graph.output_stride import rewrite_output_stride, supported_output_strides

    assert supported_output_strides(export(MNV2_DM10)) == (8, 16, 32)
    # MobileNet-v3 at OS 32 has no atrous conv and its decoder reads OS 8: OS 8 would need the decoder's
    # stride; what it can do is 16 and 32
    with pytest.raises(ModelError, match="cannot rewrite this graph's output stride"):
        rewrite_output_stride(export(FAMILIES["x71_dpc_os16"]), 32)


def test_multiscale_predictor_runs_the_rewritten_graph():
    """A multi-scale run of the rewritten graph equals the same run of the native export."""
    from zoo_cli.evaluation.multiscale import MultiScalePredictor
    from zoo_cli.graph.output_stride import rewrite_output_stride

    cfg, target = CASES["mnv2_dm10_8to16"]
    image = smooth_image(60, 58, seed=5)
    runs = []
    for gd in (rewrite_output_stride(export(cfg), target), export(at_os(cfg, target))):
        ms = MultiScalePredictor(gd, scales=(0.75, 1.25), flip=True)
        try:
            runs.append(ms.predict(image))
        finally:
            ms.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_round_trip_guard_passes_on_a_true_rewrite_and_refuses_a_wrong_one():
    from zoo_cli.errors import ModelError
    from zoo_cli.evaluation.rewritten import guard_rewrite
    from zoo_cli.graph.crop_pattern import analyse
    from zoo_cli.graph.output_stride import rewrite_output_stride

    cfg, target = CASES["mnv2_dm10_8to16"]
    gd = export(cfg)
    pattern = analyse(gd)
    good = rewrite_output_stride(gd, target)
    assert guard_rewrite(gd, good, pattern, target)["round_trip_pixels_differ"] <= 0.005
    # another network's graph at OS 16 (other weights): its round trip is not this graph
    other = export(dataclasses.replace(at_os(cfg, target), seed=7))
    with pytest.raises(ModelError, match="does not reproduce its own output"):
        guard_rewrite(gd, other, pattern, target)


def _eval_json(args):
    import json

    from click.testing import CliRunner

    from zoo_cli.cli.app import cli

    result = CliRunner().invoke(cli, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_default_row_runs_at_its_own_output_stride(zoo_home, tmp_path, monkeypatch):
    """The test registry's row 1 is OS 16: the installed OS 8 graph is rewritten to OS 16 and measures what the
    native OS 16 export of the same weights measures; --output-stride 8 runs it as exported."""
    from tests.support.datasets import make_voc
    from tests.support.eval_graphs import install_tiny_voc

    cfg = FAMILIES["mnv2_os8"]
    install_tiny_voc(zoo_home, tmp_path, monkeypatch, export(cfg).SerializeToString())
    native = tmp_path / "native_os16.pb"
    native.write_bytes(export(at_os(cfg, 16)).SerializeToString())
    make_voc(tmp_path / "voc", n=2)
    data = ["--data-dir", str(tmp_path / "voc")]
    run = _eval_json(["tiny_voc", *data, "--out", str(tmp_path / "a")])
    assert run["eval_settings"]["row"] == 1 and run["eval_settings"]["output_stride"] == 16
    assert run["setting"] == "single-scale-os16"
    assert run["output_stride_rewrite"]["guard"]["round_trip_pixels_differ"] <= 0.005
    want = _eval_json(["tiny_voc", "--graph", str(native), *data, "--out", str(tmp_path / "b")])
    assert (run["miou"], run["per_class_iou"], run["pixels"]) == (want["miou"], want["per_class_iou"], want["pixels"])
    own = _eval_json(["tiny_voc", *data, "--output-stride", "8", "--out", str(tmp_path / "c")])
    # --output-stride 8: the first row at OS 8 (row 2, multi-scale + flip), the graph as it is
    assert own["eval_settings"]["row"] == 2 and own["setting"] == "scales-0.5-0.75-1-flip"
    assert "output_stride_rewrite" not in own


def test_cli_refuses_an_output_stride_it_cannot_map_in_one_line(zoo_home, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tests.support.datasets import make_voc
    from tests.support.eval_graphs import build_graph, install_tiny_voc
    from zoo_cli.cli.app import cli

    # a crop-pattern graph without atrous convs or strided k x k convs: nothing says how its OS would change
    install_tiny_voc(zoo_home, tmp_path, monkeypatch, build_graph(crop=(40, 40), num_classes=21).SerializeToString())
    make_voc(tmp_path / "voc", n=1)
    result = CliRunner().invoke(cli, ["eval", "tiny_voc", "--data-dir", str(tmp_path / "voc"), "--output-stride",
                                      "32", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot rewrite this graph's output stride" in lines[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_bench_measures_a_row_at_another_output_stride_on_the_rewritten_graph(zoo_home, tmp_path, monkeypatch):
    """zoo bench: the installed OS 8 graph's OS 16 row (the test registry's row 1) is measured on the graph
    rewritten to OS 16: its Multiply-Adds are the native OS 16 export's, and the row is comparable."""
    import json

    from click.testing import CliRunner

    from tests.support.eval_graphs import install_tiny_voc
    from zoo_cli.cli.app import cli
    from zoo_cli.graph.flops import count_madds

    cfg = FAMILIES["mnv2_os8"]
    install_tiny_voc(zoo_home, tmp_path, monkeypatch, export(cfg).SerializeToString())
    result = CliRunner().invoke(cli, ["bench", "tiny_voc", "--scales", "1", "--no-flip", "--input-size", "65x65",
                                      "--runs", "1", "--warmup", "0", "--no-store", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rewrite = data["conditions"]["output_stride_rewrite"]
    assert (rewrite["from"], rewrite["to"]) == (8, 16) and rewrite["guard"]["round_trip_pixels_differ"] <= 0.005
    assert data["conditions"]["output_stride"] == 16
    native = count_madds(export(at_os(cfg, 16)), (65, 65))
    assert data["measured"]["madds"] == native.madds
    assert not any("not comparable: the graph runs at OS" in c.get("note", "") for c in data["comparison"])


def test_bench_output_stride_option_runs_there_or_refuses_in_one_line(zoo_home, tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from tests.support.eval_graphs import build_graph, install_tiny_voc
    from zoo_cli.cli.app import cli
    from zoo_cli.graph.flops import count_madds

    cfg = FAMILIES["mnv2_dm05_os16"]
    install_tiny_voc(zoo_home, tmp_path, monkeypatch, export(cfg).SerializeToString())
    args = ["bench", "tiny_voc", "--scales", "1", "--no-flip", "--input-size", "129x129", "--runs", "1",
            "--warmup", "0", "--json", "--output-stride", "8"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["conditions"]["output_stride"] == 8 and data["conditions"]["output_stride_rewrite"]["to"] == 8
    assert data["measured"]["madds"] == count_madds(export(at_os(cfg, 8)), (129, 129)).madds
    stored = sorted(p.name for p in (zoo_home / "results" / "bench").glob("*.json"))
    assert len(stored) == 1 and "__single-os8__" in stored[0]  # never over a run at the graph's own OS
    install_tiny_voc(zoo_home, tmp_path, monkeypatch, build_graph(crop=(40, 40), num_classes=21).SerializeToString())
    refused = CliRunner().invoke(cli, args[:6] + ["40x40"] + args[7:])
    assert refused.exit_code == 6 and refused.output.count("\n") == 1 and "Traceback" not in refused.output
