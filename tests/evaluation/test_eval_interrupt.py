"""``zoo eval --images``: a progress bar per image, and Ctrl-C leaves whole label/overlay pairs and lists them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.support.eval_graphs import tiny_voc, tiny_voc_graph  # noqa: F401 (fixtures)
from zoo_cli.atomic import atomic_paths
from zoo_cli.cli.app import cli
from zoo_cli.evaluation import predictors
from zoo_cli.evaluation.image_job import PredictionInterrupted, evaluate_images
from zoo_cli.evaluation.palettes import get_palette


def _images(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def _pairs(out):
    """The output files by stem, and any hidden temporary left behind."""
    names = sorted(p.name for p in out.iterdir()) if out.exists() else []
    return names, [n for n in names if n.startswith(".")]


class _StopAt:
    """A predictor that raises KeyboardInterrupt (as Ctrl-C does) when asked for image number ``at``."""

    scales, flip, fitted, enlarged, output_stride_rewrite = (1.0,), False, 0, 0, None

    def __init__(self, at):
        self.at, self.calls = at, 0

    def describe(self):
        return None

    def close(self):
        pass

    def __call__(self, image):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return np.zeros(image.shape[:2], np.int32)


def test_interrupt_between_images_lists_the_written_pairs(tmp_path):
    folder, out = _images(tmp_path / "in"), tmp_path / "out"
    with pytest.raises(PredictionInterrupted) as info:
        evaluate_images([folder], _StopAt(3), get_palette("voc"), out, progress=False)
    assert [r.image.name for r in info.value.written] == ["im0.png", "im1.png"] and info.value.total == 4
    names, hidden = _pairs(out)
    assert names == ["im0.png", "im0_overlay.png", "im1.png", "im1_overlay.png"] and not hidden


@pytest.mark.parametrize("fail_at_rename", [0, 1])
def test_interrupt_inside_a_pair_leaves_neither_half(tmp_path, monkeypatch, fail_at_rename):
    """Ctrl-C while the pair is being put in place: before the first rename (the older pair stays whole) or
    between the two renames (both names removed: never a label PNG without its overlay)."""
    import os

    labels, overlay = tmp_path / "x.png", tmp_path / "x_overlay.png"
    labels.write_bytes(b"old labels"), overlay.write_bytes(b"old overlay")
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == fail_at_rename + 1:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with atomic_paths((labels, overlay), suffix=".png") as (a, b):
            a.write_bytes(b"new labels"), b.write_bytes(b"new overlay")
    left = sorted(p.name for p in tmp_path.iterdir())
    if fail_at_rename == 0:
        assert left == ["x.png", "x_overlay.png"] and labels.read_bytes() == b"old labels"
    else:
        assert left == []  # no hidden temporaries either


def test_cli_interrupt_lists_written_images_and_exits_130(tiny_voc, tmp_path, monkeypatch):
    folder, out = _images(tmp_path / "in"), tmp_path / "out"
    real = predictors.make_predictor

    class StopSecond:
        """The real predictor, but Ctrl-C on the second image."""

        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def __getattr__(self, name):  # scales, flip, the counters, describe, close: the real predictor's
            return getattr(self.inner, name)

        def __call__(self, image):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return self.inner(image)

    def stopping(model, **options):
        return StopSecond(real(model, **options))

    monkeypatch.setattr(predictors, "make_predictor", stopping)
    result = CliRunner().invoke(cli, ["eval", "tiny_voc", "--images", str(folder), "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert "im0.png → im0.png, im0_overlay.png" in result.stdout and "im1" not in result.stdout
    assert "Interrupted after 1 of 4 images" in result.stderr
    assert _pairs(out) == (["im0.png", "im0_overlay.png"], [])
    # --json: the same list as JSON, marked interrupted
    result = CliRunner().invoke(cli, ["eval", "tiny_voc", "--images", str(folder), "--out", str(out), "--json"])
    data = json.loads(result.stdout)
    assert result.exit_code == 130 and data["interrupted"] is True and len(data["images"]) == 1


def test_images_progress_bar_follows_the_flag(tiny_voc, tmp_path):
    folder, out = _images(tmp_path / "in", n=3), tmp_path / "out"
    shown = CliRunner().invoke(cli, ["eval", "tiny_voc", "--images", str(folder), "--out", str(out), "--progress"])
    assert shown.exit_code == 0 and "3/3" in shown.stderr and "img/s" in shown.stderr
    hidden = CliRunner().invoke(cli, ["eval", "tiny_voc", "--images", str(folder), "--out", str(out)])
    assert hidden.exit_code == 0 and "3/3" not in hidden.stderr  # not a terminal: no bar by default
    quiet = CliRunner().invoke(cli, ["eval", "tiny_voc", "--images", str(folder), "--out", str(out), "--json",
                                     "--progress"])
    assert quiet.exit_code == 0 and json.loads(quiet.stdout)["images"]  # stdout stays pure JSON
