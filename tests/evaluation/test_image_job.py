"""``zoo eval --images``: outputs never replace inputs, broken inputs and odd paths get clear messages, Ctrl-C
leaves whole label/overlay pairs, and images the runner had to grow the crop for are noted.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.support.datasets import make_voc
from tests.support.eval_graphs import quantize_red, tiny_voc, tiny_voc_graph  # noqa: F401 (fixtures)
from zoo_cli.atomic import atomic_paths
from zoo_cli.cli.app import cli
from zoo_cli.evaluation import predictors
from zoo_cli.evaluation.image_job import PredictionInterrupted, evaluate_images
from zoo_cli.evaluation.palettes import get_palette

# ---------------------------------------------------------------- outputs never replace inputs, broken inputs are
# skipped and counted (exit 7)


@pytest.fixture
def zoo(tiny_voc):
    """``zoo eval ARGS...`` on the installed tiny_voc checkpoint, optionally from another working directory."""

    def invoke(*args, cwd=None):
        if cwd is None:
            return CliRunner().invoke(cli, ["eval", *map(str, args)])
        old = os.getcwd()
        os.chdir(cwd)
        try:
            return CliRunner().invoke(cli, ["eval", *map(str, args)])
        finally:
            os.chdir(old)

    return invoke


def _image(path, seed, size=(20, 30)):
    img = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(img).save(path)
    return img


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_outputs_never_replace_an_input(zoo, tmp_path):
    """The QA case: gray.png and gray.jpg written into their own directory; gray.png must survive."""
    work = tmp_path / "work"
    work.mkdir()
    png = _image(work / "gray.png", 1)
    Image.fromarray(png).save(work / "gray.jpg", quality=95)
    _image(work / "gray_overlay.png", 2)  # an input named like an overlay output
    inputs = {p.name: _digest(p) for p in work.iterdir()}
    result = zoo("tiny_voc", "--images", "gray.png", "--images", "gray.jpg", "--images", "gray_overlay.png",
                 "--out", ".", "--json", cwd=work)
    assert result.exit_code == 0, result.output
    for name, digest in inputs.items():
        assert _digest(work / name) == digest, f"input {name} was overwritten"
    written = [(r["labels"], r["overlay"]) for r in json.loads(result.stdout)["images"]]
    names = [name for pair in written for name in pair]
    assert len(set(names)) == 6 and not set(names) & set(inputs)
    assert written[0] == ("gray-2.png", "gray-2_overlay.png")  # gray.png's own names are taken by inputs
    # each output belongs to its input: the label PNG of gray.png holds gray.png's labels
    assert np.array_equal(np.asarray(Image.open(work / written[0][0])), quantize_red(png, 21))


def test_same_file_twice_and_same_stem_in_two_folders(zoo, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    a = _image(tmp_path / "a" / "x.png", 3)
    b = _image(tmp_path / "b" / "x.png", 4)
    result = zoo("tiny_voc", "--images", tmp_path / "a" / "x.png", "--images", tmp_path / "b" / "x.png",
                 "--images", tmp_path / "a" / "x.png", "--out", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    labels = [r["labels"] for r in json.loads(result.stdout)["images"]]
    assert [os.path.basename(p) for p in labels] == ["x.png", "x-2.png", "x-3.png"]
    assert np.array_equal(np.asarray(Image.open(labels[0])), quantize_red(a, 21))
    assert np.array_equal(np.asarray(Image.open(labels[1])), quantize_red(b, 21))


def test_rerun_replaces_its_own_previous_outputs(zoo, tmp_path):
    _image(tmp_path / "p.png", 5)
    for _ in range(2):
        result = zoo("tiny_voc", "--images", tmp_path / "p.png", "--out", tmp_path / "o")
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["p.png", "p_overlay.png"]


def test_broken_image_is_skipped_counted_and_exits_7(zoo, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    good = [_image(src / f"a{i}.png", 10 + i) for i in range(2)]
    (src / "b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    _image(src / "c.png", 12)
    truncated = src / "d_truncated.png"
    _image(truncated, 13, size=(30, 30))
    truncated.write_bytes(truncated.read_bytes()[:100])
    result = zoo("tiny_voc", "--images", src, "--out", tmp_path / "o", "--json")
    assert result.exit_code == 7
    data = json.loads(result.stdout)  # stdout stays JSON; the error line goes to stderr
    assert [os.path.basename(r["image"]) for r in data["images"]] == ["a0.png", "a1.png", "c.png"]
    assert [os.path.basename(f["image"]) for f in data["failed"]] == ["b_broken.jpg", "d_truncated.png"]
    assert "2 of 5 images failed" in result.stderr and "b_broken.jpg" in result.stderr
    assert result.stderr.count("\n") == 1
    for i, img in enumerate(good):  # the images after the broken one still ran
        assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / f"a{i}.png")), quantize_red(img, 21))
    assert (tmp_path / "o" / "c.png").is_file()
    human = zoo("tiny_voc", "--images", src, "--out", tmp_path / "o2")
    assert human.exit_code == 7 and "skipped" in human.stdout and "2 of 5 images failed" in human.stderr


def test_unreadable_photo_hint_is_not_about_dataset_archives(zoo, tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    result = zoo("tiny_voc", "--images", tmp_path / "notes.png", "--out", tmp_path / "o")
    assert result.exit_code == 7
    assert "dataset archive" not in result.output and "re-save it as PNG or JPEG" in result.output


def test_bad_graph_hint_depends_on_where_the_file_came_from(zoo, tmp_path, zoo_home):
    """--graph notagraph.png: 'pass a frozen_inference_graph.pb', not 'zoo download NAME --force'; a damaged
    installed graph: re-download that checkpoint by name."""
    _image(tmp_path / "p.png", 20)
    (tmp_path / "notagraph.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    result = zoo("--graph", tmp_path / "notagraph.png", "--images", tmp_path / "p.png", "--out", tmp_path / "o")
    assert result.exit_code == 6, result.output
    assert "is not a frozen TensorFlow GraphDef (.pb)" in result.output
    assert "pass a frozen_inference_graph.pb" in result.output and "zoo download" not in result.output
    installed = zoo_home / "models" / "tiny_voc" / "frozen_inference_graph.pb"
    installed.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    result = zoo("tiny_voc", "--images", tmp_path / "p.png", "--out", tmp_path / "o")
    assert result.exit_code == 6 and "re-download it with 'zoo download tiny_voc --force'" in result.output


def test_out_that_is_an_images_directory_is_refused(zoo, tmp_path):
    """The QA case: '--images DIR --out DIR' run again predicted on its own outputs; the folder grew every run."""
    photos = tmp_path / "photos"
    photos.mkdir()
    _image(photos / "good.png", 6)
    before = sorted(p.name for p in photos.iterdir())
    for out in (photos, tmp_path / "photos" / "."):  # the same directory, spelled two ways
        result = zoo("tiny_voc", "--images", photos, "--out", out)
        assert result.exit_code == 2, result.output
        assert "is also an --images directory" in result.output and "pass a separate --out" in result.output
    assert sorted(p.name for p in photos.iterdir()) == before
    # a folder inside it is fine (directories are read non-recursively), and a re-run reads only the photo
    for _ in range(2):
        result = zoo("tiny_voc", "--images", photos, "--out", photos / "predictions", "--json")
        assert result.exit_code == 0, result.output
        assert [os.path.basename(r["image"]) for r in json.loads(result.stdout)["images"]] == ["good.png"]


# ---------------------------------------------------------------- paths that are not what the options expect get a
# message saying what they are and what to pass instead


def _run(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


def _one_error(result, needle):
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code != 0 and len(lines) == 1 and needle in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_special_files_for_images_are_named_as_such(tiny_voc, tmp_path, fifo):
    _one_error(_run("eval", "tiny_voc", "--images", fifo, "--out", tmp_path / "o"), "is a FIFO (named pipe), not a "
               "regular file")
    _one_error(_run("eval", "tiny_voc", "--images", "/dev/zero", "--out", tmp_path / "o"),
               "/dev/zero is a character device, not a regular file")
    _one_error(_run("eval", "tiny_voc", "--images", tmp_path / "missing.png", "--out", tmp_path / "o"),
               "does not exist")


def test_special_files_for_graph_never_block(tmp_path, fifo):
    # reading either would block forever or never end; both must be refused without opening them
    _one_error(_run("eval", "--graph", fifo, "--dataset", "voc", "--images", tmp_path, "--out", tmp_path / "o"),
               "FIFO")
    _one_error(_run("bench", "--graph", fifo), "FIFO")
    _one_error(_run("bench", "--graph", "/dev/zero"), "character device")


@pytest.mark.parametrize("name", ["model.ckpt.index", "model.ckpt.data-00000-of-00001", "model.ckpt-30000.meta"])
def test_a_training_checkpoint_file_as_graph_gets_the_frozen_graph_advice(tiny_voc, tmp_path, name):
    # inside the install: the advice must not be 'zoo download --force' (re-downloading changes nothing)
    path = tiny_voc.parent / name
    path.write_bytes(b"\x00" * 16)
    for argv in (["eval", "--graph", path, "--dataset", "voc", "--images", tiny_voc, "--out", tmp_path / "o"],
                 ["bench", "--graph", path]):
        result = _run(*argv)
        _one_error(result, "training checkpoint file")
        assert "frozen_inference_graph.pb" in result.output and "--force" not in result.output


# ---------------------------------------------------------------- a progress bar per image, and Ctrl-C leaves whole
# label/overlay pairs and lists them


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


# ---------------------------------------------------------------- a note when the multi-scale/flip/--crop runner grew
# the eval crop to cover a larger image (also for --data-dir runs)


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
