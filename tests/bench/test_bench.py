"""zoo bench: latency statistics, settings, reported-vs-measured comparison, JSON schema, storage, --all, mIOU."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.datasets import decoded, make_voc, naive_metrics
from tests.support.eval_graphs import build_graph, install, quantize_red, registry_entry
from zoo_cli.bench import measure
from zoo_cli.bench.compare import Comparison, compare, reported_facts
from zoo_cli.bench.latency import latency_stats, time_runs
from zoo_cli.bench.machine import cpu_model, machine_info, machine_key, peak_rss_mb
from zoo_cli.bench.settings import BenchOptions, BenchSetting, bench_settings, default_input_size, parse_size
from zoo_cli.bench.store import BenchResult, eval_subset, load_results
from zoo_cli.bench.sweep import bench_checkpoint
from zoo_cli.cli.app import cli
from zoo_cli.errors import UsageError
from zoo_cli.hub.cache import Cache
from zoo_cli.registry.catalog import load_registry
from zoo_cli.registry.types import EvalRow

NAME = "tinyvoc"


# ---------------------------------------------------------------- pure functions


def test_latency_stats_against_hand_computed_values():
    samples = [i / 1000.0 for i in range(10, 0, -1)]  # 10 ms .. 1 ms, unordered on purpose
    s = latency_stats(samples, warmup=3)
    assert s.runs == 10 and s.warmup == 3
    # Linear interpolation between order statistics: rank 0.5*9 = 4.5 -> 5.5 ms; 0.9*9 = 8.1 -> 9.1 ms.
    assert s.p50 == pytest.approx(5.5)
    assert s.p90 == pytest.approx(9.1)
    assert s.mean == pytest.approx(5.5)
    assert s.std == pytest.approx(math.sqrt(sum((i - 5.5) ** 2 for i in range(1, 11)) / 10))
    assert (s.min, s.max) == (pytest.approx(1.0), pytest.approx(10.0))


def test_time_runs_warms_up_then_times():
    calls = []
    s = time_runs(lambda: calls.append(1), runs=4, warmup=2)
    assert len(calls) == 6 and s.runs == 4 and s.warmup == 2
    with pytest.raises(UsageError):
        time_runs(lambda: None, runs=0, warmup=0)


def test_parse_scales_and_size():
    from zoo_cli.evaluation.settings import parse_scales

    assert parse_scales("[0.5:0.25:1.75]") == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert parse_scales("1.25, 0.75,1") == (0.75, 1.0, 1.25)
    # zoo bench reads --scales with this parser too: sorted and unique, for matching the registry rows.
    for text in ("0.5,0.75", "[0.5:0.25:1.75]", "0.5:0.25:1.75", "[1.0]"):
        try:
            expected = parse_scales(text)
        except UsageError:
            with pytest.raises(UsageError):
                parse_scales(text)
            continue
        assert parse_scales(text) == tuple(sorted(set(expected)))
    assert parse_size("1025x2049") == (1025, 2049)
    assert parse_size("257") == (257, 257)
    for bad in ("0.5:0:1", "a,b", "-1"):
        with pytest.raises(UsageError):
            parse_scales(bad)
    with pytest.raises(UsageError):
        parse_size("513by513")


def test_settings_follow_the_eval_rows():
    reg = load_registry()
    settings = bench_settings(reg.get("mobilenetv2_coco_voc_trainaug"))
    assert [s.key for s in settings] == ["single", "s0.5-0.75-1-1.25-1.5-1.75-flip"]
    assert settings[0].rows[0].madds_billion == 2.75 and settings[1].rows[0].madds_billion == 152.59
    # A checkpoint whose only row is multi-scale still gets the single-scale setting (with no reported row).
    settings = bench_settings(reg.get("mobilenetv2_coco_voc_trainval"))
    assert settings[0].rows == () and settings[1].rows[0].miou == 80.25
    only = bench_settings(reg.get("mobilenetv2_coco_voc_trainaug"), scales=(1.0,), flip=False)
    assert len(only) == 1 and only[0].rows[0].output_stride == 16


def test_default_input_sizes_follow_the_registry():
    reg = load_registry()
    assert default_input_size(reg.get("mobilenetv2_ade20k_train"), None)[0] == (257, 257)
    assert default_input_size(reg.get("xception65_cityscapes_trainfine"), None)[0] == (1025, 2049)
    assert default_input_size(reg.get("mobilenetv2_coco_voc_trainaug"), None)[0] == (513, 513)


def _row(os_: int) -> EvalRow:
    return EvalRow(output_stride=os_, scales=(1.0,), flip=False, madds_billion=2.75, runtime_s=0.1,
                   latency_ms=None, miou=75.32, pixel_accuracy=None, split="val")


def test_comparison_with_matching_output_stride():
    measured = {"madds_billion": 2.7424, "latency_ms": {"mean": 150.0}, "miou": 74.0}
    lines = {c.metric: c for c in compare(_row(16), measured, graph_os=16)}
    assert lines["Multiply-Adds"].comparable
    assert lines["Multiply-Adds"].delta == pytest.approx(-0.0076)
    assert lines["Multiply-Adds"].delta_pct == pytest.approx(-0.0076 / 2.75 * 100)
    assert lines["CPU runtime"].reported == pytest.approx(100.0) and lines["CPU runtime"].delta == pytest.approx(50.0)
    assert lines["mIOU"].delta == pytest.approx(74.0 - 75.32)


def test_comparison_refuses_unlike_output_strides():
    measured = {"madds_billion": 8.84, "latency_ms": {"mean": 400.0}, "miou": 76.0}
    lines = compare(_row(16), measured, graph_os=8)
    for line in lines[:3]:
        assert not line.comparable and line.delta is None and line.delta_pct is None
        assert "not comparable" in line.note and "OS 8" in line.note and "OS 16" in line.note
        assert line.measured is not None  # measured value kept, only the comparison is refused


def test_comparison_refuses_another_input_size():
    """QA-2 finding 5: Multiply-Adds/runtime at 10x10 are not compared with numbers reported at 129x129."""
    measured = {"madds_billion": 0.0003, "latency_ms": {"mean": 1.0}, "miou": 74.0}
    lines = {c.metric: c for c in compare(_row(16), measured, 16, (10, 10), (129, 129))}
    for metric in ("Multiply-Adds", "CPU runtime"):
        line = lines[metric]
        assert not line.comparable and line.delta is None and line.to_json()["comparable"] is False
        assert line.why == "input 10x10 vs 129x129" and "drop --input-size" in line.note
    assert lines["mIOU"].comparable  # evaluated at the eval crop whatever --input-size says
    same = {c.metric: c for c in compare(_row(16), measured, 16, (129, 129), (129, 129))}
    assert same["Multiply-Adds"].comparable


# ---------------------------------------------------------------- end to end on a tiny graph


@pytest.fixture(scope="module")
def graph_bytes():
    return build_graph(crop=(33, 33), num_classes=21, output_stride=1).SerializeToString()


@pytest.fixture(scope="module")
def graph_os2_bytes():
    return build_graph(crop=(33, 33), num_classes=21, output_stride=2).SerializeToString()


@pytest.fixture
def registry_file(tmp_path, monkeypatch):
    path = tmp_path / "registry.yaml"
    path.write_text("version: 1\ncheckpoints:\n" + registry_entry(NAME, "voc", 21, 255, miou=60.0)
                    + registry_entry("broken", "voc", 21, 255) + registry_entry("absent", "voc", 21, 255))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return path


def _expected_madds(h: int, w: int) -> int:
    # The OS-2 test graph: the crop subsampled by 2, a 1x1 conv 3->21 on it, plus a 1x1 conv 3->21 on the
    # pooled map resized back to that size.
    fh, fw = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    return 2 * fh * fw * 3 * 21


def test_bench_json_schema_storage_and_counts(zoo_home, registry_file, graph_os2_bytes):
    install(zoo_home, NAME, graph_os2_bytes)
    result = CliRunner().invoke(cli, ["bench", NAME, "--input-size", "33x33", "--runs", "3", "--warmup", "1",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["name"] == NAME
    assert data["reported"]["miou"] == 60.0 and data["reported"]["output_stride"] == 16
    m = data["measured"]
    assert m["madds"] == _expected_madds(33, 33)
    assert m["madds_billion"] == round(_expected_madds(33, 33) / 1e9, 4)
    assert m["params_million"] == pytest.approx((3 * 21 + 21 + 3 * 21) / 1e6, abs=1e-4)
    assert set(m["latency_ms"]) >= {"p50", "p90", "mean", "std", "min"} and m["latency_ms"]["runs"] == 3
    assert m["latency_ms"]["min"] <= m["latency_ms"]["p50"] <= m["latency_ms"]["p90"]
    assert m["peak_rss_mb"] > 0 and "miou" in m
    c = data["conditions"]
    assert c["input_size"] == [33, 33] and c["output_stride"] == 2 and c["cpu"]
    # Graph OS 2 vs reported OS 16: measured, but not compared.
    assert {x["metric"]: x["comparable"] for x in data["comparison"]}["Multiply-Adds"] is False
    # Second setting: the reported row's scales [0.5, 0.75, 1.0] + flip, summed at the scaled crops.
    ms = data["settings"][1]
    assert ms["setting"] == "s0.5-0.75-1-flip"
    assert ms["conditions"]["scaled_sizes"] == [[17, 17], [25, 25], [33, 33]]
    assert ms["measured"]["madds"] == 2 * sum(_expected_madds(s, s) for s in (17, 25, 33))
    assert ms["measured"]["runs_per_image"] == 6
    stored = sorted((zoo_home / "results" / "bench").glob("*.json"))
    assert [p.name.split("__")[1] for p in stored] == ["s0.5-0.75-1-flip", "single"]
    assert all(p.name.startswith(f"{NAME}__") for p in stored)
    assert json.loads(stored[1].read_text())["measured"]["madds"] == m["madds"]


def test_bench_table_output_says_not_comparable(zoo_home, registry_file, graph_bytes):
    install(zoo_home, NAME, graph_bytes)
    result = CliRunner().invoke(cli, ["bench", NAME, "--scales", "1.0", "--runs", "2", "--no-store"])
    assert result.exit_code == 0, result.output
    assert "not comparable: the graph runs at OS 1, the reported row is OS 16" in result.output
    assert "Multiply-Adds" in result.output and "latency p50" in result.output
    assert not (zoo_home / "results" / "bench").exists()


def test_bench_table_is_compact_and_names_its_conditions(zoo_home, tmp_path, monkeypatch, graph_os2_bytes):
    # An entry measured elsewhere than the seed: bench must name that machine, not the seed's.
    path = tmp_path / "registry.yaml"
    entry = registry_entry(NAME, "voc", 21, 255, miou=60.0).replace(
        "    size_mb: 1\n", "    size_mb: 1\n    reported_on: my build box\n    eval_crop: [33, 33]\n")
    path.write_text("version: 1\ncheckpoints:\n" + entry)
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    monkeypatch.setenv("COLUMNS", "120")
    install(zoo_home, NAME, graph_os2_bytes)
    result = CliRunner().invoke(cli, ["bench", NAME, "--runs", "2", "--warmup", "0", "--no-store"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # piped: fitted to the width, and no row padded with trailing spaces to the column or console width
    assert max(len(line) for line in lines) <= 120 and all(line == line.rstrip() for line in lines)
    header = next(line for line in lines if line.lstrip().startswith("metric"))
    assert header.split() == ["metric", "┃", "reported", "┃", "measured", "┃", "Δ", "┃", "note"]
    # One header line per table: the conditions are not repeated inside the header.
    assert sum(1 for line in lines if "┃" in line) == 2
    reported = [line for line in lines if line.strip().startswith("reported:")]
    measured = [line for line in lines if line.strip().startswith("measured:")]
    assert len(reported) == len(measured) == 2
    assert "my build box" in reported[0] and "E5-1650" not in result.output
    assert "OS 16, scale 1, no flip, val split" in reported[0]
    assert "OS 8, scales 0.5,0.75,1, flip, val split" in reported[1]
    block = result.output[result.output.index("measured:"):result.output.index("metric")]
    for part in ("OS 2 (from graph)", "scale 1, no flip", "33x33 input (registry eval_crop)",
                 cpu_model(), "all threads", "random image"):
        assert part in " ".join(block.split()), part
    assert "run at 17x17, 25x25, 33x33" in " ".join(result.output.split())
    result = CliRunner().invoke(cli, ["bench", NAME, "--scales", "1", "--runs", "1", "--no-store", "--json"])
    data = json.loads(result.output)
    assert data["reported"]["reported_on"] == "my build box"
    assert data["reported"]["conditions"] == "OS 16, scale 1, no flip, val, my build box"


def test_render_result_cells():
    from io import StringIO

    from rich.console import Console

    from zoo_cli.cli.bench_view import fmt_delta, fmt_value, render_result

    setting = BenchSetting((1.0,), False, (_row(16),))
    measured = {"madds_billion": 2.7424, "tfprof_madds_billion": 2.7476, "params_million": 2.1136,
                "latency_ms": {"runs": 3, "warmup": 1, "p50": 150.0, "p90": 160.0, "mean": 151.0, "std": 4.0,
                               "min": 145.0, "max": 161.0},
                "peak_rss_mb": 812.4, "gflops_per_s": 36.6, "miou": 75.3, "pixel_accuracy": None}
    conditions = {"output_stride": 16, "scales": [1.0], "flip": False, "input_size": [513, 513],
                  "input_size_source": "--input-size", "scaled_sizes": [[513, 513]], "cpu": "Test CPU",
                  "threads": 2, "eval": {"images": 5, "dataset": "voc", "split": "val"}}
    result = BenchResult("m", setting, reported_facts(setting, 16, "Lab PC"), measured, conditions,
                               compare(_row(16), measured, 16))
    buf = StringIO()
    render_result(Console(file=buf, width=120), result)
    text = buf.getvalue()
    assert "reported: OS 16, scale 1, no flip, val split; Lab PC" in text
    assert "measured: OS 16 (from graph), scale 1, no flip, 513x513 input (--input-size); Test CPU, 2 threads" in text
    assert "mIOU on 5 voc val images" in text
    row = {line.split("│")[0].strip(): [c.strip() for c in line.split("│")[1:]]
           for line in text.splitlines() if "│" in line}
    assert row["Multiply-Adds (B)"][:3] == ["2.75", "2.74", "-0.008 B (-0.3%)"]
    assert row["tfprof count (B)"][1] == "2.75"
    assert row["CPU runtime (ms)"][:3] == ["100", "151", "+51.00 ms (+51.0%)"]
    assert row["mIOU (%)"][:3] == ["75.32", "75.30", "-0.02 pt"]
    assert row["latency p50/p90 (ms)"][1] == "150/160"
    assert fmt_value(None) == "-" and fmt_value(1234.6) == "1235" and fmt_value(0.02921) == "0.02921"
    # Multiply-Adds as zoo list / info / report print them (units.fmt_madds), not 4 significant digits.
    assert [fmt_value(v, "B") for v in (0.1822, 0.0292, 2.7424, 152.59)] == ["0.182", "0.0292", "2.74", "152.59"]
    tiny = BenchResult("m", setting, {}, {**measured, "madds": 292_160, "madds_billion": 0.0003},
                             conditions, compare(None, {**measured, "madds_billion": 0.0003}, 16))
    buf = StringIO()
    render_result(Console(file=buf, width=120), tiny)
    assert "│ 0.000292 │" in buf.getvalue().replace("  ", "")  # the exact count, as zoo report prints it
    tiny = Comparison("mIOU", "%", 90.88, 90.8799, True)
    assert fmt_delta(tiny) == "+0.00 pt"


def test_bench_output_is_readable_at_80_columns(zoo_home, registry_file, graph_bytes, monkeypatch):
    """Finding 18: at 80 columns nothing wraps unindented and no table cell wraps over several lines."""
    deep = zoo_home / ("a-rather-long-directory-name-" * 3)
    monkeypatch.setenv("ZOO_HOME", str(deep))
    monkeypatch.setenv("COLUMNS", "80")
    install(deep, NAME, graph_bytes)
    result = CliRunner().invoke(cli, ["bench", NAME, "--scales", "1", "--runs", "1", "--warmup", "0", "--no-store"])
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.output.splitlines()]
    assert max(map(len, lines)) <= 80
    start = next(i for i, line in enumerate(lines) if line.startswith("graph "))
    assert lines[start + 1].startswith("      ")  # the long path continues under itself, not at column 0
    reason = next(i for i, line in enumerate(lines) if "not comparable: the graph runs at OS 1" in line)
    assert lines[reason].startswith("  ") and "the reported row is OS 16" in lines[reason]
    # The graph could not be rewritten to the row's OS 16: said, with why, wrapped under itself.
    said = next(i for i, line in enumerate(lines) if "measured at the graph's own OS 1" in line)
    assert lines[said + 1].startswith("  ") and "cannot rewrite" in " ".join(lines[said:said + 3])
    table = [line for line in lines if "│" in line]
    assert [line.split("│")[0].strip() for line in table][:2] == ["Multiply-Adds (B)", "tfprof count (B)"]
    assert all(line.split("│")[0].strip() for line in table), "a table row wrapped onto a continuation line"
    # The notes follow the table, one per metric.
    notes = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines
             if line.startswith("  ") and ":" in line and "│" not in line and "reported" not in line
             and "measured:" not in line and "not comparable" not in line and line.strip()[0].isalpha()}
    assert notes["tfprof count (B)"] == "float_ops/2: + elementwise, pooling, ArgMax"
    assert notes["throughput (GFLOP/s)"] == "2 x Multiply-Adds / p50"


def test_bench_at_another_input_size_says_not_comparable(zoo_home, registry_file, monkeypatch):
    """QA-2 finding 5: `--input-size 65` against rows reported at VOC's 513x513: no Δ, in text and JSON."""
    monkeypatch.setenv("COLUMNS", "80")
    # A row at the graph's own OS 8 with reported Multiply-Adds and runtime, so only the input size differs.
    entry = registry_entry(NAME, "voc", 21, 255).replace(
        "output_stride: 16, scales: [1.0], flip: false,", "output_stride: 8, scales: [1.0], flip: false, "
        "madds_billion: 0.0001, runtime_s: 0.01,")
    registry_file.write_text("version: 1\ncheckpoints:\n" + entry)
    install(zoo_home, NAME, build_graph(crop=(33, 33), num_classes=21, output_stride=8).SerializeToString())
    base = ["bench", NAME, "--scales", "1", "--runs", "1", "--warmup", "0", "--no-store", "--input-size", "65"]
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 0, result.output
    row = {line.split("│")[0].strip(): [c.strip() for c in line.split("│")[1:]]
           for line in result.output.splitlines() if "│" in line}
    # At 80 columns the Δ cell says only 'not comparable'; the reason line above the table names the sizes.
    assert row["Multiply-Adds (B)"][2] == row["CPU runtime (ms)"][2] == "not comparable"
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "measured at input 65x65, the reported Multiply-Adds and runtime are at 513x513" in " ".join(
        result.output.split())
    monkeypatch.setenv("COLUMNS", "160")
    result = CliRunner().invoke(cli, base)
    row = {line.split("│")[0].strip(): [c.strip() for c in line.split("│")[1:]]
           for line in result.output.splitlines() if "│" in line}
    assert row["Multiply-Adds (B)"][2] == "not comparable (input 65x65 vs 513x513)"
    assert row["CPU runtime (ms)"][2] == "not comparable (input 65x65 vs 513x513)"
    data = json.loads(CliRunner().invoke(cli, base + ["--json"]).output)
    madds = next(c for c in data["comparison"] if c["metric"] == "Multiply-Adds")
    assert madds["comparable"] is False and madds["delta"] is None and madds["why"] == "input 65x65 vs 513x513"
    assert data["conditions"]["reference_input_size"] == [513, 513]


def test_bench_with_data_dir_measures_miou(zoo_home, registry_file, graph_bytes, tmp_path):
    install(zoo_home, NAME, graph_bytes)
    samples = make_voc(tmp_path / "voc", n=4)
    result = CliRunner().invoke(cli, ["bench", NAME, "--scales", "1", "--runs", "1", "--warmup", "0",
                                      "--data-dir", str(tmp_path / "voc"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    pairs = [(gt, quantize_red(decoded(path), 21)) for path, gt in samples.values()]
    miou, _, acc = naive_metrics(pairs, 21, 255)
    assert data["measured"]["miou"] == pytest.approx(miou * 100, abs=1e-3)
    assert data["measured"]["pixel_accuracy"] == pytest.approx(acc * 100, abs=1e-3)
    assert data["conditions"]["eval"]["images"] == 4


def test_bench_checks_limit_and_data_dir_before_loading_the_graph(zoo_home, registry_file, tmp_path, monkeypatch):
    from zoo_cli.graph import loading

    install(zoo_home, NAME, b"this is not a graph")  # loading it would fail: the option errors must come first
    loads = []
    monkeypatch.setattr(loading, "load_graph_def", lambda *a, **k: loads.append(a))
    result = CliRunner().invoke(cli, ["bench", NAME, "--limit", "3"])
    assert result.exit_code == 2 and "Error: --limit only limits the --data-dir evaluation" in result.output
    with pytest.raises(UsageError):
        bench_checkpoint(load_registry(registry_file).get(NAME), Cache(zoo_home), BenchOptions(limit=3))
    result = CliRunner().invoke(cli, ["bench", NAME, "--data-dir", str(tmp_path / "nowhere"), "--runs", "1"])
    assert result.exit_code != 0 and result.output.startswith("Error: ") and "nowhere" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["bench", "--all", "--limit", "3"])
    assert result.exit_code == 2 and "--data-dir" in result.output
    assert loads == []


def test_stored_results_keep_their_conditions_and_the_measured_miou(zoo_home, registry_file, graph_bytes, tmp_path):
    """Finding 5: other input sizes / threads get their own file; a plain run never replaces a --data-dir one."""
    install(zoo_home, NAME, graph_bytes)
    make_voc(tmp_path / "voc", n=2)
    base = ["bench", NAME, "--scales", "1", "--runs", "1", "--warmup", "0", "--json"]
    runs = [["--data-dir", str(tmp_path / "voc")], [], ["--input-size", "65x65"], ["--threads", "1"]]
    for extra in runs:
        result = CliRunner().invoke(cli, base + extra)
        assert result.exit_code == 0, result.output
    stored = {p.name: json.loads(p.read_text()) for p in (zoo_home / "results" / "bench").glob("*.json")}
    assert len(stored) == 4
    conditions = sorted((d["conditions"]["input_size"][0], str(d["conditions"]["threads"]),
                         d["measured"]["miou"] is not None) for d in stored.values())
    every = "all (TensorFlow default)"
    assert conditions == [(65, every, False), (513, "1", False), (513, every, False), (513, every, True)]
    assert all(name.split("__")[2] == "x".join(map(str, d["conditions"]["input_size"])) for name, d in stored.items())
    assert sum(name.endswith("__miou.json") for name in stored) == 1


def test_a_limit_run_is_stored_apart_from_the_full_split_one(zoo_home, registry_file, graph_bytes, tmp_path):
    """QA-2 finding 3: `--limit N` below the split size goes to `__miou-limitN`, never over the full-split file."""
    install(zoo_home, NAME, graph_bytes)
    make_voc(tmp_path / "voc", n=3)
    base = ["bench", NAME, "--scales", "1", "--runs", "1", "--warmup", "0", "--data-dir", str(tmp_path / "voc")]
    for extra in ([], ["--limit", "2"], ["--limit", "5"]):  # --limit 5 covers all 3 images: a full-split run
        result = CliRunner().invoke(cli, base + extra + ["--json"])
        assert result.exit_code == 0, result.output
    stored = {p.name.split("__")[-1]: json.loads(p.read_text())
              for p in (zoo_home / "results" / "bench").glob("*.json")}
    assert sorted(stored) == ["miou-limit2.json", "miou.json"]
    assert stored["miou-limit2.json"]["conditions"]["eval"]["images"] == 2
    assert stored["miou.json"]["conditions"]["eval"]["images"] == 3
    assert stored["miou.json"]["conditions"]["eval"]["split_images"] == 3
    assert eval_subset(stored["miou-limit2.json"]["conditions"]["eval"]) == 2
    assert eval_subset(stored["miou.json"]["conditions"]["eval"]) is None


@pytest.mark.parametrize("args", [[NAME], ["--all"]])
def test_each_setting_is_printed_as_soon_as_it_is_measured(zoo_home, registry_file, graph_bytes, monkeypatch, args):
    """QA-2 finding 10: Ctrl-C during the second (multi-scale) setting still shows the finished single-scale one."""
    install(zoo_home, NAME, graph_bytes)
    real = measure.measure_setting

    def interrupted_after_the_first(graph_def, setting, **kw):
        if setting.key != "single":
            raise KeyboardInterrupt
        return real(graph_def, setting, **kw)

    monkeypatch.setattr(measure, "measure_setting", interrupted_after_the_first)
    result = CliRunner().invoke(cli, ["bench", *args, "--runs", "1", "--warmup", "0"])
    assert result.exit_code == 130  # interrupted
    text = " ".join(result.output.split())
    assert f"{NAME} — scale 1" in text and "Multiply-Adds (B)" in text
    saved = list((zoo_home / "results" / "bench").glob("*__single__*.json"))
    assert len(saved) == 1
    assert "saved" + str(saved[0]) in "".join(result.output.split())  # the path may wrap


def test_bench_all_records_failures_and_carries_on(zoo_home, registry_file, graph_bytes):
    install(zoo_home, NAME, graph_bytes)
    install(zoo_home, "broken", b"this is not a graph")
    result = CliRunner().invoke(cli, ["bench", "--all", "--scales", "1", "--runs", "1", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert [r["name"] for r in data["results"]] == [NAME]
    assert "broken" in data["failures"] and "not a frozen TensorFlow GraphDef" in data["failures"]["broken"]
    assert data["skipped"] == {"absent": "not downloaded"}


def test_bench_graph_file_and_errors(zoo_home, tmp_path, graph_bytes):
    path = tmp_path / "g.pb"
    path.write_bytes(graph_bytes)
    result = CliRunner().invoke(cli, ["bench", "--graph", str(path), "--runs", "1", "--json", "--no-store"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["name"] == "g" and data["reported"] == {} and data["conditions"]["input_size"] == [33, 33]
    result = CliRunner().invoke(cli, ["bench"])
    assert result.exit_code == 2 and "Error: name a checkpoint" in result.output
    result = CliRunner().invoke(cli, ["bench", "mobilenetv2_coco_voc_trainaug"])
    assert result.exit_code == 5 and "zoo download mobilenetv2_coco_voc_trainaug" in result.output


def test_load_results_skips_junk(tmp_path):
    d = tmp_path / "bench"
    d.mkdir()
    (d / "a.json").write_text(json.dumps({"name": "x", "measured": {}}))
    (d / "b.json").write_text("{not json")
    (d / "c.json").write_text(json.dumps([1, 2]))
    assert [r["name"] for r in load_results(d)] == ["x"]


def test_machine_info_names_the_cpu():
    info = machine_info(threads=2)
    assert info["cpu"] and info["threads"] == 2 and info["logical_cores"] >= 1
    assert machine_key(info) == machine_key(dict(info))
    assert isinstance(np.float64(peak_rss_mb()), np.floating) and peak_rss_mb() > 0
