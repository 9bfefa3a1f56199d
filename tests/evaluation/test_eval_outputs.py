"""``zoo eval --images``: outputs never replace inputs, broken inputs are skipped and counted (exit 7)."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.support.eval_graphs import quantize_red, tiny_voc, tiny_voc_graph  # noqa: F401 (fixtures)
from zoo_cli.cli.app import cli


@pytest.fixture
def zoo(tiny_voc):

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
