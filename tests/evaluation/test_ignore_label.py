"""Registry ``num_classes`` / ``ignore_label``: validated when the registry loads, and used by the evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.registry.test_registry import GOOD_ENTRY, error_of, registry_text
from tests.support.datasets import make_voc
from tests.support.eval_graphs import install, registry_entry, tiny_voc_graph  # noqa: F401 (fixture)
from zoo_cli.cli.app import cli
from zoo_cli.registry.catalog import parse_registry


def _entry(extra: str) -> str:
    return GOOD_ENTRY.replace("    eval_crop: [65, 65]\n", "    eval_crop: [65, 65]\n" + extra)


@pytest.mark.parametrize("extra,why", [
    ("    num_classes: -3\n", "-3 is out of range 1-256"),
    ("    num_classes: 0\n", "0 is out of range 1-256"),
    ("    num_classes: 300\n", "300 is out of range 1-256"),
    ("    num_classes: 21\n    ignore_label: 1000\n", "1000 is out of range 0-255"),
    ("    num_classes: 21\n    ignore_label: -1\n", "-1 is out of range 0-255"),
    ("    num_classes: 21\n    ignore_label: 7\n", "7 is a class id"),
])
def test_registry_refuses_impossible_class_fields(extra, why):
    message = error_of(registry_text(_entry(extra)))
    assert why in message and "reg.yaml" in message


@pytest.mark.parametrize("extra", ["    num_classes: 21\n    ignore_label: 255\n",
                                   "    num_classes: 151\n    ignore_label: 0\n",   # ADE20K: 0 is 'other'
                                   "    num_classes: 21\n    ignore_label: 21\n"])
def test_registry_accepts_real_ignore_labels(extra):
    ckpt = parse_registry(registry_text(_entry(extra)), "reg.yaml").get("tiny_voc")
    assert ckpt.ignore_label in (255, 0, 21)


def test_eval_scores_without_the_registry_ignore_label(zoo_home, tmp_path, monkeypatch, tiny_voc_graph):
    """A VOC-layout set whose label files mark unlabelled pixels with 21 (not 255): the registry says so, and the
    evaluation leaves exactly those pixels out and reports 21 (it used to report the layout's 255 always)."""
    gts = make_voc(tmp_path / "voc", n=2)
    expected_pixels = 0
    palette = None
    for name, (_, gt) in gts.items():
        path = tmp_path / "voc" / "SegmentationClass" / f"{name}.png"
        palette = Image.open(path).getpalette()
        relabelled = np.where(gt == 255, 21, gt).astype(np.uint8)
        image = Image.fromarray(relabelled, mode="P")
        image.putpalette(palette)
        image.save(path)
        expected_pixels += int((relabelled != 21).sum())
    reg = tmp_path / "registry.yaml"
    reg.write_text("version: 1\ncheckpoints:\n" + registry_entry("tiny_voc", "voc", 21, 21))
    monkeypatch.setenv("ZOO_REGISTRY", str(reg))
    install(zoo_home, "tiny_voc", tiny_voc_graph)
    result = CliRunner().invoke(cli, ["eval", "tiny_voc", "--data-dir", str(tmp_path / "voc"), "--json",
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ignore_label"] == 21 and data["pixels"] == expected_pixels
