"""Paths that are not what the options expect get a message saying what they are and what to pass instead."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from tests.support.eval_graphs import tiny_voc, tiny_voc_graph  # noqa: F401 (fixtures)
from zoo_cli.cli.app import cli


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
