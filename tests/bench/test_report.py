"""zoo report: markdown tables with measured columns from stored bench results, and the Pareto plot."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from zoo_cli.bench import plot, report
from zoo_cli.cli.app import cli
from zoo_cli.registry.catalog import load_registry


def _result(name: str, setting: str, os_: int, madds: float, mean_ms: float, miou: float | None,
            stamp: str = "2026-01-01T00:00:00+0000", scales=(1.0,), flip=False, size=(513, 513),
            threads=2) -> dict:
    return {
        "schema": 1, "name": name, "setting": setting, "reported": {},
        "measured": {"madds_billion": madds, "params_million": 2.1, "miou": miou, "pixel_accuracy": None,
                     "latency_ms": {"p50": mean_ms - 1, "p90": mean_ms + 5, "mean": mean_ms, "std": 1.0,
                                    "min": mean_ms - 2, "runs": 10, "warmup": 2}, "peak_rss_mb": 900.0},
        "conditions": {"output_stride": os_, "scales": list(scales), "flip": flip, "cpu": "Test CPU",
                       "threads": threads, "machine_key": f"box-{threads}", "timestamp": stamp,
                       "input_size": list(size), "graph_crop": list(size),
                       "eval": {"images": 7, "dataset": "voc", "split": "val"} if miou is not None else None},
    }


@pytest.fixture
def stored(zoo_home):
    d = zoo_home / "results" / "bench"
    d.mkdir(parents=True)
    ms = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    items = {
        "a.json": _result("mobilenetv2_coco_voc_trainaug", "single", 16, 2.7424, 150.0, 74.5),
        # an older run of the same model/setting: the newer one must win
        "a_old.json": _result("mobilenetv2_coco_voc_trainaug", "single", 16, 9.99, 999.0, 1.0,
                              stamp="2025-01-01T00:00:00+0000"),
        "b.json": _result("mobilenetv2_coco_voc_trainaug", "s0.5-0.75-1-1.25-1.5-1.75-flip", 16, 48.3, 4000.0,
                          None, scales=ms, flip=True),
        "c.json": _result("xception65_cityscapes_trainfine", "single", 16, 418.0, 9000.0, None, size=(1025, 2049)),
        "d.json": _result("my_graph", "single", 8, 1.5, 20.0, 33.3, size=(65, 65)),
    }
    for fname, data in items.items():
        (d / fname).write_text(json.dumps(data))
    return d


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every pipe table: list of rows, each a list of stripped cells (header and separator included)."""
    tables, current = [], []
    for line in markdown.splitlines():
        if "|" in line:
            current.append([c.strip() for c in line.split("|")])
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_report_markdown_parses_and_has_every_stored_model(stored, tmp_path):
    out = tmp_path / "report.md"
    plot = tmp_path / "pareto.png"
    result = CliRunner().invoke(cli, ["report", "--out", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    tables = _tables(text)
    assert len(tables) == 3 + 1  # VOC, Cityscapes, ADE20K + other graphs
    for table in tables:
        width = len(table[0])
        assert all(len(row) == width for row in table), "ragged markdown table"
        assert set("".join(table[1])) <= set("-:| ")
    names = {r["name"] for r in json.loads(CliRunner().invoke(cli, ["report", "--json"]).output)["points"]["measured"]}
    for model in ("mobilenetv2_coco_voc_trainaug", "xception65_cityscapes_trainfine", "my_graph"):
        assert model in text
    assert names == {"mobilenetv2_coco_voc_trainaug", "xception65_cityscapes_trainfine", "my_graph"}
    voc = tables[0]
    header = voc[0]
    row = next(r for r in voc if "mobilenetv2_coco_voc_trainaug" in r[0])
    cell = dict(zip(header, row))
    # Reported and measured side by side; the multi-scale row was measured at OS 16 against an OS 8 row.
    assert cell["Multiply-Adds"] == "2.75B <br> 152.59B"
    assert cell["Multiply-Adds (measured)"] == "2.74B <br> 48.30B † (OS 16)"
    assert "at the eval input size" not in text
    assert cell["Runtime (measured, sec)"] == "0.150 <br> 4.000 † (OS 16)"
    assert cell["PASCAL mIOU (measured)"] == "74.50% <br> -"
    assert cell["Eval scales"] == "[1] <br> [0.5:0.25:1.75]"
    # Every registry checkpoint with eval rows is in the regenerated tables, as in the seed.
    reg = load_registry()
    for ckpt in reg:
        if ckpt.evals:
            assert f"[{ckpt.name}](" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_report_without_results_says_how_to_get_them(zoo_home):
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code == 0
    assert "run `zoo bench NAME`" in result.output


def test_report_json(stored):
    result = CliRunner().invoke(cli, ["report", "--json"])
    data = json.loads(result.output)
    assert data["results"] == 5 and "# DeepLab model zoo" in data["markdown"]
    measured = {(p["name"], p["setting"]): p for p in data["points"]["measured"]}
    # No measured mIOU: the point uses the reported one at the same OS (and says so); at another OS: no point.
    assert measured[("mobilenetv2_coco_voc_trainaug", "single")]["miou"] == 74.5
    assert ("mobilenetv2_coco_voc_trainaug", "s0.5-0.75-1-1.25-1.5-1.75-flip") not in measured
    assert measured[("xception65_cityscapes_trainfine", "single")]["miou"] == 78.79
    assert measured[("xception65_cityscapes_trainfine", "single")]["miou_source"] == "reported"
    assert len(data["points"]["reported"]) == sum(1 for c in load_registry() for r in c.evals if r.madds_billion)


def test_report_names_where_each_checkpoints_numbers_were_reported(zoo_home, tmp_path, monkeypatch):
    from tests.support.eval_graphs import registry_entry

    own = registry_entry("built_here", "voc", 4, 255).replace(
        "    size_mb: 1\n", "    size_mb: 1\n    reported_on: zoo's build script\n")
    path = tmp_path / "registry.yaml"
    path.write_text("version: 1\ncheckpoints:\n" + own + registry_entry("seeded", "voc", 21, 255)
                    + registry_entry("seeded2", "ade20k", 151, 0))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    text = CliRunner().invoke(cli, ["report"]).output
    section = text[text.index("## Reported on"):].split("\n\n")[1].splitlines()
    assert section == ["* zoo's build script: built_here",
                       "* Xeon E5-1650 v3 @ 3.50GHz, 32GB (tfprof): the other 2 checkpoints (the seed's numbers)"]
    # With only the seed's machine the line says so for all of them.
    assert report.reported_machines(load_registry()) == [
        f"Xeon E5-1650 v3 @ 3.50GHz, 32GB (tfprof): all {sum(1 for c in load_registry() if c.evals)} checkpoints "
        "(the seed's numbers)"]


def test_pareto_front():
    pts = [{"madds": 1, "miou": 60}, {"madds": 2, "miou": 59}, {"madds": 3, "miou": 70}, {"madds": 3, "miou": 65},
           {"madds": 10, "miou": 70}, {"madds": 20, "miou": 80}]
    assert [(p["madds"], p["miou"]) for p in plot.pareto_front(pts)] == [(1, 60), (3, 70), (20, 80)]


def test_report_does_not_import_tensorflow(stored):
    before = "tensorflow" in sys.modules
    CliRunner().invoke(cli, ["report"])
    assert ("tensorflow" in sys.modules) == before


def test_report_uses_only_reference_size_runs_and_keeps_the_measured_miou(zoo_home):
    """Finding 5: a run at another input size, or a later run without --data-dir, must not change the table."""
    d = zoo_home / "results" / "bench"
    d.mkdir(parents=True)
    name = "mobilenetv2_coco_voc_trainaug"
    items = {
        # the --data-dir run (oldest), a later plain run at 513x513 on 1 thread, and the newest run at 12x12
        "eval.json": _result(name, "single", 16, 2.7424, 150.0, 74.5, stamp="2026-01-01T00:00:00+0000"),
        "plain.json": _result(name, "single", 16, 2.7424, 140.0, None, stamp="2026-01-02T00:00:00+0000", threads=1),
        "small.json": _result(name, "single", 16, 0.0012, 0.5, None, stamp="2026-01-03T00:00:00+0000",
                              size=(12, 12)),
    }
    for fname, data in items.items():
        (d / fname).write_text(json.dumps(data))
    text = CliRunner().invoke(cli, ["report"]).output
    voc = _tables(text)[0]
    cell = dict(zip(voc[0], next(r for r in voc if name in r[0])))
    assert cell["Multiply-Adds (measured)"] == "2.74B <br> -"
    assert cell["Runtime (measured, sec)"] == "0.140 <br> -"  # the newest run at 513x513, not the 12x12 one
    assert cell["PASCAL mIOU (measured)"] == "74.50% <br> -"  # kept from the older --data-dir run
    other = _tables(text)[-1]
    row = dict(zip(other[0], next(r for r in other if r[0] == name)))
    assert row["Input size"] == "12x12" and row["Multiply-Adds (measured)"] == "0.0012B"
    measured_on = text[text.index("## Measured on"):]
    assert (f"* {name} (single): Multiply-Adds and runtime at 513x513 input, Test CPU, 1 thread, "
            "2026-01-02T00:00:00+0000; mIOU on 7 voc val images, 2026-01-01T00:00:00+0000") in measured_on
    points = {(p["name"], p["setting"]): p for p in json.loads(
        CliRunner().invoke(cli, ["report", "--json"]).output)["points"]["measured"]}
    assert points[(name, "single")] == {"name": name, "setting": "single", "madds": 2.7424, "miou": 74.5,
                                        "miou_source": "measured", "dataset": "voc", "split": "val"}


def test_multiply_adds_cells_are_formatted_alike():
    """Finding 14: 3 significant digits below 1 B, the seed's 2 decimals above, in both columns."""
    assert [report._madds(v) for v in (0.0292, 0.1822, 0.18, 2.7424, 152.59, None)] == [
        "0.0292B", "0.182B", "0.18B", "2.74B", "152.59B", "-"]
    assert report._billions({"madds": 292_160, "madds_billion": 0.0003}) == pytest.approx(0.00029216)
    assert report._madds(report._billions({"madds": 292_160})) == "0.000292B"


def test_plot_is_written_in_the_format_its_suffix_names(stored, tmp_path):
    """Finding 18: --plot x.svg writes SVG, x.jpg JPEG, x.pdf PDF; an unknown suffix is a usage error."""
    magic = {"svg": b"<?xml", "jpg": b"\xff\xd8\xff", "pdf": b"%PDF", "png": b"\x89PNG"}
    for fmt, head in magic.items():
        path = tmp_path / f"pareto.{fmt}"
        result = CliRunner().invoke(cli, ["report", "--plot", str(path), "--out", str(tmp_path / "r.md")])
        assert result.exit_code == 0, result.output
        assert path.read_bytes().startswith(head), fmt
    for bad in ("pareto.txt", "pareto"):
        out = tmp_path / f"{bad}.md"
        result = CliRunner().invoke(cli, ["report", "--plot", str(tmp_path / bad), "--out", str(out)])
        assert result.exit_code == 2 and result.output.startswith("Error: --plot") and ".svg" in result.output
        assert not (tmp_path / bad).exists() and not out.exists()


def test_a_limit_subset_never_outranks_the_full_split_miou(zoo_home):
    """QA-2 finding 3: a newer `bench --limit 5` mIOU does not replace the 12-image one; alone it is marked."""
    d = zoo_home / "results" / "bench"
    d.mkdir(parents=True)
    name = "mobilenetv2_coco_voc_trainaug"
    full = _result(name, "single", 16, 2.7424, 150.0, 90.88, stamp="2026-01-01T00:00:00+0000")
    full["conditions"]["eval"] = {"images": 12, "split_images": 12, "limit": None, "dataset": "voc", "split": "val"}
    subset = _result(name, "single", 16, 2.7424, 150.0, 93.64, stamp="2026-01-02T00:00:00+0000")
    subset["conditions"]["eval"] = {"images": 5, "split_images": 12, "limit": 5, "dataset": "voc", "split": "val"}
    (d / "subset.json").write_text(json.dumps(subset))

    def cell() -> str:
        voc = _tables(CliRunner().invoke(cli, ["report"]).output)[0]
        return dict(zip(voc[0], next(r for r in voc if name in r[0])))["PASCAL mIOU (measured)"]

    assert cell() == "93.64% (5 img) <br> -"
    (d / "full.json").write_text(json.dumps(full))
    assert cell() == "90.88% <br> -"
    text = CliRunner().invoke(cli, ["report"]).output
    assert "mIOU on 12 voc val images, 2026-01-01" in text
    points = json.loads(CliRunner().invoke(cli, ["report", "--json"]).output)["points"]["measured"]
    assert [p["miou"] for p in points if p["name"] == name] == [90.88]


def _label_boxes(fig):
    renderer = fig.canvas.get_renderer()
    return [(ax, [t.get_window_extent(renderer) for t in ax.texts]) for ax in fig.axes]


def test_plot_has_one_panel_per_dataset_with_test_points_apart_and_no_overlapping_labels(stored):
    import matplotlib.pyplot as plt

    from zoo_cli.bench.store import load_results

    registry = load_registry()
    fig = plot.pareto_figure(registry, load_results(stored))
    try:
        # VOC, Cityscapes and ADE20K mIOUs are not comparable: one panel each that has points (ADE20K rows report
        # no Multiply-Adds), and one for graphs outside the registry
        assert [ax.get_title() for ax in fig.axes] == ["PASCAL VOC 2012", "Cityscapes", "other graphs"]
        voc = fig.axes[0]
        legend = [t.get_text() for t in voc.get_legend().get_texts()]
        assert "reported (val)" in legend and "reported (test split)" in legend
        test_rows = sum(1 for c in registry if c.dataset == "voc" for r in c.evals
                        if r.split == "test" and r.madds_billion is not None)
        series = {c.get_label(): len(c.get_offsets()) for c in voc.collections}
        assert test_rows > 0 and series["reported (test split)"] == test_rows
        for ax, boxes in _label_boxes(fig):
            assert boxes, ax.get_title()
            for i, a in enumerate(boxes):
                assert not any(a.overlaps(b) for b in boxes[i + 1:]), f"labels overlap in {ax.get_title()}"
    finally:
        plt.close(fig)


def test_crowded_labels_never_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    points = [(1.0 + 0.01 * i, 50.0 + 0.02 * i) for i in range(12)]  # twelve points on top of each other
    ax.scatter(*zip(*points))
    ax.margins(0.3)
    fig.tight_layout()
    placed = plot.place_labels(ax, points, [f"model {i}" for i in range(12)])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in placed]
    assert 3 <= len(placed) <= 12  # the ones with no free place are left out, never drawn over another
    assert all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


def test_report_names_corrupt_result_files(stored):
    (stored / "broken.json").write_text("{not json")
    (stored / "list.json").write_text("[1, 2]")
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 2 and "broken.json: it is not valid JSON" in warnings[0]
    assert "list.json: it is not a zoo bench result" in warnings[1]
    assert "warning" not in result.stdout  # the markdown stays clean
    data = json.loads(CliRunner().invoke(cli, ["report", "--json"]).stdout)
    assert sorted(s["path"].rsplit("/", 1)[1] for s in data["skipped"]) == ["broken.json", "list.json"]
