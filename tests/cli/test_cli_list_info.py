"""`zoo list` and `zoo info` through the real click group; global options and env vars."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from tests.registry.test_registry import registry_text
from zoo_cli.cli.app import cli

EVAL_KEYS = {"output_stride", "scales", "flip", "madds_billion", "runtime_s", "latency_ms", "miou",
             "pixel_accuracy", "split"}


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_list_json_schema_covers_every_checkpoint():
    result = run("list", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert len(data) == 22
    for item in data:
        assert {"name", "dataset", "backbone", "url", "size_mb", "has_frozen_graph", "downloaded", "evals"} <= set(item)
        assert item["downloaded"] is False
        for row in item["evals"]:
            assert set(row) == EVAL_KEYS
            assert all(isinstance(s, float) for s in row["scales"]) and isinstance(row["flip"], bool)
    mnv2 = next(i for i in data if i["name"] == "mobilenetv2_coco_voc_trainaug")
    assert mnv2["evals"][1]["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert mnv2["evals"][1]["madds_billion"] == 152.59 and mnv2["evals"][0]["runtime_s"] == 0.1


def test_list_table_filters_and_summary():
    result = run("list", "*xception*", "--dataset", "voc", "--sort", "miou")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    rows = [line for line in lines if "xception65" in line]
    assert len(rows) == 2 and "trainval" in rows[0] and "87.80%" in rows[0]
    assert "2 of 22 checkpoints shown, 0 downloaded" in result.output


def test_list_downloaded_uses_the_cache_markers(zoo_home):
    model = zoo_home / "models" / "mobilenetv2_coco_voc_trainaug"
    (model / ".zoo").mkdir(parents=True)
    (model / "frozen_inference_graph.pb").write_bytes(b"x")
    # a non-empty directory without a completion marker is not an install
    assert json.loads(run("list", "--downloaded", "--json").output) == []
    (model / ".zoo" / "manifest.json").write_text("{}")
    (model / ".zoo" / "complete").write_text("")
    data = json.loads(run("list", "--downloaded", "--json").output)
    assert [d["name"] for d in data] == ["mobilenetv2_coco_voc_trainaug"] and data[0]["downloaded"] is True
    assert "✓" in run("list", "mobilenetv2_coco_voc_trainaug").output


def test_list_no_match_is_not_an_error():
    result = run("list", "nothing*")
    assert result.exit_code == 0 and "0 of 22 checkpoints shown" in result.output


def test_info_shows_rows_and_flags():
    result = run("info", "mobilenetv3_large_cityscapes_trainfine")
    assert result.exit_code == 0
    assert "--model_variant=mobilenet_v3_large_seg" in result.output
    assert "--image_pooling_crop_size=769,769" in result.output
    assert "72.41%" in result.output
    assert "reported on: Xeon E5-1650 v3 @ 3.50GHz, 32GB (tfprof)" in result.output
    data = json.loads(run("info", "EdgeTPU-DeepLab", "--json").output)
    assert [r["latency_ms"] for r in data["evals"]] == [13.8, 17.5]
    assert data["downloaded"] is False and data["manifest"] is None


def test_unknown_checkpoint_is_one_line_exit_2():
    result = CliRunner().invoke(cli, ["info", "xception65_coco_voc_trainvall"])
    assert result.exit_code == 2
    assert result.output == ("Error: unknown checkpoint 'xception65_coco_voc_trainvall'; "
                             "did you mean 'xception65_coco_voc_trainval'?\n")


def test_registry_option_and_env(tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text(registry_text())
    assert [d["name"] for d in json.loads(run("--registry", str(path), "list", "--json").output)] == ["tiny_voc"]
    assert [d["name"] for d in json.loads(run("list", "--json", env={"ZOO_REGISTRY": str(path)}).output)] == ["tiny_voc"]


def test_bad_registry_is_one_line_with_file_and_line(tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text(registry_text().replace("miou: 50.0", "miou: 101"))
    result = CliRunner().invoke(cli, ["--registry", str(path), "list"])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {path}:15: ") and result.output.count("\n") == 1


def test_bad_boolean_env_is_reported():
    result = CliRunner().invoke(cli, ["list"], env={"ZOO_OFFLINE": "perhaps"})
    assert result.exit_code == 2 and "ZOO_OFFLINE='perhaps' is not a boolean" in result.output


def test_debug_shows_the_traceback():
    result = CliRunner().invoke(cli, ["info", "nope"], env={"ZOO_DEBUG": "1"})
    assert result.exit_code != 0 and result.exception is not None


def test_light_commands_never_import_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "from zoo_cli.cli.app import cli\n"
        "for args in (['--help'], ['list'], ['list', '--json'], ['info', 'xception65_coco_voc_trainval'],\n"
        "             ['eval', '--help'], ['bench', '--help']):\n"
        "    try:\n"
        "        cli.main(args, prog_name='zoo', standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('tensorflow', 'matplotlib', 'ray') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "ZOO_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "HEAVY []" in out


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "zoo_cli", "--help"], capture_output=True, text=True, check=True)
    assert "list" in out.stdout and "info" in out.stdout


def test_filesystem_errors_are_one_line_with_the_fix(monkeypatch, tmp_path):
    import errno as _errno

    import zoo_cli.cli.commands.list_ as list_module

    for code, fix in [(_errno.ENOSPC, "free some space"), (_errno.EROFS, "a directory you can write to")]:
        def broken(*args, _code=code, **kwargs):
            raise OSError(_code, os.strerror(_code), str(tmp_path / "x"))

        monkeypatch.setattr(list_module, "sort_checkpoints", broken)
        result = CliRunner().invoke(cli, ["list", "--sort", "name"])
        assert result.exit_code == 8
        assert result.output.startswith(f"Error: {os.strerror(code)}: {tmp_path / 'x'}; ")
        assert fix in result.output and result.output.count("\n") == 1


def test_interrupt_message_fits_the_command(monkeypatch):
    import zoo_cli.cli.commands.list_ as list_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(list_module, "sort_checkpoints", interrupted)
    result = CliRunner().invoke(cli, ["list", "--sort", "name"])
    assert result.exit_code == 130
    assert result.output == "Interrupted; no result was written for the unfinished work.\n"


def test_list_never_cuts_names_on_a_narrow_terminal():
    for columns in ("80", "120"):
        out = CliRunner().invoke(cli, ["list"], env={"COLUMNS": columns}).output
        for name in ("mobilenetv2_coco_voc_trainaug", "mobilenetv2_coco_voc_trainval",
                     "mobilenetv3_large_cityscapes_trainfine"):
            assert f"{name} " in out, (columns, out)
        assert max(len(line) for line in out.splitlines() if "│" in line or "┃" in line) <= int(columns)
        # dropped columns are named, never silently missing
        hidden = "dataset and backbone columns hidden at 80 columns"
        assert (hidden in out) == (columns == "80") and ("backbone" in out.splitlines()[0]) == (columns != "80")


def test_info_numbers_rows_as_eval_row_takes_them_and_shows_edgetpu_only_when_reported():
    out = run("info", "mobilenetv2_coco_voc_trainaug").output
    lines = [line for line in out.splitlines() if "│" in line]
    assert lines[0].split("│")[0].strip() == "1" and "75.32%" in lines[0]
    assert lines[1].split("│")[0].strip() == "2" and "77.33%" in lines[1]
    assert "EdgeTPU" not in out
    assert "EdgeTPU ms" in run("info", "EdgeTPU-DeepLab").output


def test_verify_with_nothing_of_this_registry_names_other_installed_models(zoo_home):
    other = zoo_home / "models" / "demo_shapes" / ".zoo"
    other.mkdir(parents=True)
    result = run("verify")
    assert result.exit_code == 0
    assert "no checkpoint of this registry is downloaded" in result.output
    assert "1 model(s) of another registry in the cache: demo_shapes; pass that registry with --registry" in result.output


def test_info_numbers_are_never_cut_at_80_columns():
    for name in ("EdgeTPU-DeepLab", "xception65_coco_voc_trainaug", "xception65_cityscapes_trainfine",
                 "mobilenetv2_ade20k_train"):
        out = CliRunner().invoke(cli, ["info", name], env={"COLUMNS": "80"}).output
        assert "…" not in out, out
    out = CliRunner().invoke(cli, ["info", "xception65_coco_voc_trainaug"], env={"COLUMNS": "80"}).output
    assert "0.5:0.25:1.75" in out and "3055.35" in out and "83.58%" in out
    assert "http://download.tensorflow.org/models/deeplabv3_pascal_train_aug_2018_01_04.tar.gz" in out
