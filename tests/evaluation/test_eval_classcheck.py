"""A graph with the wrong class count is refused right after it loads, in both modes, before any re-targeting."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.support.datasets import make_voc
from tests.support.eval_graphs import build_graph, install_tiny_voc
from zoo_cli.cli.app import cli


@pytest.fixture(scope="module")
def four_class_graph():
    return build_graph(crop=(40, 40), num_classes=4).SerializeToString()


@pytest.fixture
def zoo(zoo_home, tmp_path, monkeypatch, four_class_graph):
    (tmp_path / "g4.pb").write_bytes(four_class_graph)
    install_tiny_voc(zoo_home, tmp_path, monkeypatch, four_class_graph)

    def no_predictor(*args, **kwargs):
        raise AssertionError("a predictor (re-targeted graph) was built before the class count was checked")

    monkeypatch.setattr("zoo_cli.evaluation.predictors.make_predictor", no_predictor)
    return lambda *args: CliRunner().invoke(cli, ["eval", *map(str, args)])


@pytest.mark.parametrize("source", [["tiny_voc"], ["tiny_voc", "--graph", "{t}/g4.pb"]])
@pytest.mark.parametrize("mode", ["images", "data-dir"])
def test_wrong_class_count_is_refused_in_both_modes(zoo, tmp_path, source, mode):
    make_voc(tmp_path / "voc", n=1)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "p.png")
    target = (["--images", tmp_path / "p.png", "--out", tmp_path / "o"] if mode == "images"
              else ["--data-dir", tmp_path / "voc"])
    args = [a.format(t=tmp_path) for a in source]
    result = zoo(*args, *target, "--scales", "0.5,1", "--flip")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: the graph predicts 4 classes but the registry entry tiny_voc says "
                                    "num_classes 21")
    assert not (tmp_path / "o").exists()


def test_images_with_dataset_but_no_checkpoint_is_checked(zoo, tmp_path):
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "p.png")
    result = zoo("--graph", tmp_path / "g4.pb", "--dataset", "voc", "--images", tmp_path / "p.png",
                 "--out", tmp_path / "o")
    assert result.exit_code == 2 and "predicts 4 classes but voc has 21" in result.output
