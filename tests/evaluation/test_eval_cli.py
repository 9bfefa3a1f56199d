"""``zoo eval`` command line: ``--images PATH...`` as documented, usage text naming ``zoo eval``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.support.eval_graphs import tiny_voc, tiny_voc_graph  # noqa: F401 (fixtures)
from zoo_cli.cli.app import cli
from zoo_cli.cli.commands.eval import spread_multi_values


@pytest.fixture
def zoo(tiny_voc):
    return lambda *args: CliRunner().invoke(cli, ["eval", *map(str, args)], prog_name="zoo")


def _photos(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "more").mkdir()
    for path in (tmp_path / "a.png", tmp_path / "more" / "b.png", tmp_path / "more" / "c.png", tmp_path / "d.png"):
        Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("form", [
    ["--images", "{t}/a.png", "{t}/more", "{t}/d.png"],                       # documented: PATH...
    ["--images", "{t}/a.png", "--images", "{t}/more", "--images", "{t}/d.png"],  # repeated
    ["--images={t}/a.png", "{t}/more", "--images", "{t}/d.png"],               # mixed, with '='
])
def test_images_takes_several_paths(zoo, tmp_path, form):
    _photos(tmp_path)
    args = [a.format(t=tmp_path) for a in form]
    result = zoo("tiny_voc", *args, "--out", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    names = [os.path.basename(r["image"]) for r in json.loads(result.stdout)["images"]]
    assert names == ["a.png", "b.png", "c.png", "d.png"]


def test_options_after_images_still_work(zoo, tmp_path):
    _photos(tmp_path)
    result = zoo("--images", tmp_path / "a.png", tmp_path / "d.png", "--out", tmp_path / "o", "--json",
                 "--alpha", "0.3")  # NAME missing: the error is about NAME, not about d.png
    assert result.exit_code == 2 and "name a checkpoint" in result.output
    result = zoo("tiny_voc", "--images", tmp_path / "a.png", "--alpha", "0.3", "--json", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["images"]) == 1


def test_usage_names_zoo_eval_not_the_hidden_run(zoo, tmp_path):
    result = zoo("tiny_voc", "--nonsense")
    assert result.exit_code == 2
    assert "Usage: zoo eval [OPTIONS] [NAME]" in result.output and "Try 'zoo eval --help'" in result.output
    assert "eval run" not in result.output
    for args in (["tiny_voc", "--help"], ["--help"], ["run", "--help"]):
        text = zoo(*args).output
        assert "Usage: zoo eval [OPTIONS] [NAME]" in text and "eval run" not in text
        assert "--images PATH..." in text
    assert "Usage: zoo eval merge" in zoo("merge", "--help").output


def test_spread_multi_values():
    assert spread_multi_values(["N", "--images", "a", "b", "--out", "o", "c"], "--images") == \
        ["N", "--images", "a", "--images", "b", "--out", "o", "c"]
    assert spread_multi_values(["--images=a", "b", "--", "c"], "--images") == \
        ["--images=a", "--images", "b", "--", "c"]
    assert spread_multi_values(["--out", "--images"], "--images") == ["--out", "--images"]
    assert spread_multi_values(["--images", "-", "x"], "--images") == ["--images", "-", "--images", "x"]


def test_images_without_a_path_says_so(zoo, tmp_path):
    result = zoo("tiny_voc", "--images", "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert "--images needs at least one PATH" in result.output and "needs --out" not in result.output
    result = zoo("tiny_voc", "--out", tmp_path / "x", "--images")  # at the end: click's own message
    assert result.exit_code == 2 and "'--images' requires an argument" in result.output
