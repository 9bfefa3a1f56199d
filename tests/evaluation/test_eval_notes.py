"""``zoo eval`` tells when the multi-scale/flip/--crop runner grew the eval crop to cover a larger image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.support.datasets import make_voc
from tests.support.eval_graphs import tiny_voc, tiny_voc_graph  # noqa: F401 (fixtures)
from zoo_cli.cli.app import cli


@pytest.fixture
def zoo(tiny_voc):
    return lambda *args: CliRunner().invoke(cli, ["eval", *map(str, args)])


def _photo(path, size):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(path)


def test_images_larger_than_the_crop_with_flip_get_a_note(zoo, tmp_path):
    _photo(tmp_path / "big.png", (50, 60))  # above the graph's 40x40 crop
    _photo(tmp_path / "small.png", (20, 30))
    args = ("tiny_voc", "--images", tmp_path / "big.png", tmp_path / "small.png", "--out", tmp_path / "o", "--flip")
    result = zoo(*args)
    assert result.exit_code == 0, result.output
    assert ("note: 1 image(s) were larger than the eval crop 40x40; they ran at a crop grown to cover them"
            in result.output)
    assert "shrunk to fit" not in result.output
    data = json.loads(zoo(*args, "--json").stdout)
    assert data["enlarged_images"] == 1
    assert [r["crop_enlarged"] for r in data["images"]] == [True, False]


def test_dataset_run_with_images_above_the_crop_gets_a_note(zoo, tmp_path):
    make_voc(tmp_path / "voc", n=2, size=(44, 52))
    result = zoo("tiny_voc", "--data-dir", tmp_path / "voc", "--crop", "40,40", "--scales", "1", "--flip",
                 "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "note: 2 image(s) were larger than the eval crop 40x40; they ran at a crop grown" in result.output


def test_output_wording(zoo, tmp_path):
    """Small classes are '<1%' (not '0%'); the per-class title is one line; measured says 'scale 1' like the rows."""
    from tests.support.eval_graphs import red_for_class

    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 0] = red_for_class(0)
    img[0, 0, 0] = red_for_class(15)  # 1 of 600 pixels: 0.17 %
    Image.fromarray(img).save(tmp_path / "p.png")
    result = zoo("tiny_voc", "--images", tmp_path / "p.png", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "(background 100%, person <1%)" in result.output
    make_voc(tmp_path / "voc", n=1)
    result = zoo("tiny_voc", "--data-dir", tmp_path / "voc", "--scales", "1", "--no-flip", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "per-class IoU (- = class absent)\n" in result.output
    measured = next(line for line in result.output.splitlines() if "measured" in line)
    assert "scale 1, no flip" in measured and "scales 1," not in measured
