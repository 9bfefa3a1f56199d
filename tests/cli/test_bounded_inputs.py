"""Absurd numbers on the command line are one-line usage errors before anything loads (issue 14, items 4, 5, 7).

The class: non-finite, out-of-range or too many ``--scales``; thread/job counts outside 0..4 per CPU; crops whose
tensors cannot fit in memory; split names that are paths. Each is checked by the core function and by the CLI of
both ``zoo eval`` and ``zoo bench``, and the CLI cases must fail before TensorFlow is imported.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tests.support.eval_graphs import tiny_voc, tiny_voc_graph  # noqa: F401 (fixtures)
from zoo_cli.cli.app import cli
from zoo_cli.config import check_count
from zoo_cli.errors import UsageError
from zoo_cli.evaluation.settings import MAX_SCALES, check_split, parse_crop, parse_scales
from zoo_cli.graph.memory import check_crop_memory, crop_memory
from zoo_cli.graph.tf_errors import describe_tf_error


@pytest.mark.parametrize("text,why", [
    ("nan", "not a finite number"), ("inf", "not a finite number"), ("1e400", "not a finite number"),
    ("0.5,-inf", "not a finite number"), ("0:nan:2", "not a finite number"),
    ("1:1e-9:2", r"gives 1,000,000,00\d scales"),  # counted before a billion floats are built
    ("0.5,4.5", "4.5 is out of range"), ("-1", "out of range"),
    (",".join(["1"] * 2), "more than once"), ("1,1.0,2", "more than once"),
    (",".join(f"{0.1 * i:.1f}" for i in range(1, 18)), "17 scales"),
])
def test_scales_out_of_bounds_are_usage_errors(text, why):
    with pytest.raises(UsageError, match=why):
        parse_scales(text)


def test_scales_bounds_are_inclusive_where_documented():
    assert parse_scales("4") == (4.0,)
    assert len(parse_scales(",".join(f"{0.25 * i:g}" for i in range(1, MAX_SCALES + 1)))) == MAX_SCALES
    assert parse_scales([1.0, 0.5]) == (0.5, 1.0)  # numbers from the API are checked and sorted the same way
    with pytest.raises(UsageError, match="finite"):
        parse_scales([math.nan])


@pytest.mark.parametrize("text,expected", [("513,513", (513, 513)), ("1025x2049", (1025, 2049)),
                                           ("65", (65, 65)), (" 33 X 65 ", (33, 65)), ("[1025, 2049]", (1025, 2049))])
def test_one_size_parser_reads_both_spellings(text, expected):
    from zoo_cli.bench.settings import parse_size

    assert parse_crop(text) == expected
    assert parse_size(text) == expected  # bench --input-size is the same parser


@pytest.mark.parametrize("text", ["0,5", "1,2,3", "a", "5x", "-3,4", "1e3,2"])
def test_bad_sizes_name_their_option(text):
    from zoo_cli.bench.settings import parse_size

    with pytest.raises(UsageError, match="--crop"):
        parse_crop(text)
    with pytest.raises(UsageError, match="--input-size"):
        parse_size(text)


def test_thread_counts_are_bounded_by_the_cpus():
    assert check_count(0, "--threads", cpus=2) == 0
    assert check_count(8, "--threads", cpus=2) == 8
    with pytest.raises(UsageError, match="at most 8"):
        check_count(9, "--threads", cpus=2)
    with pytest.raises(UsageError, match="negative"):
        check_count(-5, "--inter-threads", cpus=2)
    with pytest.raises(UsageError, match="below 1"):
        check_count(0, "--jobs", minimum=1, cpus=2)
    with pytest.raises(UsageError, match="whole number"):
        check_count(2.5, "--threads", cpus=2)


def test_crop_memory_estimate_matches_a_hand_count():
    # one network in flight: an op's input and output at 21 floats/px, plus one 21-class probability map
    assert crop_memory((100, 200), 21, 21) == 2 * 21 * 100 * 200 * 4 + 21 * 100 * 200 * 4
    # two scales with flip: two networks in flight at the largest scale (crop 199x399), two maps and the sum
    need = crop_memory((100, 200), 10, 21, scales=(0.5, 2.0), flip=True)
    assert need == 2 * (2 * 10 * 199 * 399 * 4) + 3 * 21 * 100 * 200 * 4


def test_a_crop_that_cannot_fit_names_size_memory_and_fix():
    with pytest.raises(UsageError) as info:
        check_crop_memory((100000, 100000), per_pixel=21, num_classes=21, available=16 * 1024 ** 3)
    message = str(info.value)
    assert "--crop 100000x100000" in message and "2.3 TB" in message and "16.0 GB is available" in message
    side = int(message.split("at most about ")[1].split("x")[0])
    # the suggested square crop does fit by the same estimate, and a slightly larger one would not
    assert crop_memory((side, side), 21, 21) <= 16 * 1024 ** 3 < crop_memory((side + 50,) * 2, 21, 21)
    check_crop_memory((513, 513), per_pixel=21, num_classes=21, available=16 * 1024 ** 3)  # fits: no error


def test_out_of_memory_from_tensorflow_is_one_line_with_the_size():
    tf = pytest.importorskip("tensorflow")
    message = ("Graph execution error:\n\nDetected at node 'ResizeBilinear' defined at (most recent call last):\n"
               "    File \"x.py\", line 7, in <module>\nNode: 'ResizeBilinear'\nOOM when allocating tensor with "
               "shape[1,200000,200000,3] and type float on /job:localhost/replica:0/task:0/device:CPU:0 by allocator "
               "cpu\n\t [[{{node ResizeBilinear}}]]\nHint: If you want to see a list of allocated tensors ...")
    line = describe_tf_error(tf.errors.ResourceExhaustedError(None, None, message))
    assert "\n" not in line and "[1,200000,200000,3] float tensor (447 GB)" in line and "smaller --crop" in line
    other = tf.errors.InvalidArgumentError(None, None, "Graph execution error:\n\nDetected at node 'x' defined at "
                                           "(most recent call last):\nNode: 'x'\nInput to reshape is a tensor with 3 "
                                           "values\n\t [[{{node x}}]]")
    assert describe_tf_error(other) == "Input to reshape is a tensor with 3 values"


@pytest.mark.parametrize("split", ["../../up", "a/b", "..", ".hidden", "a\\b", ""])
def test_split_names_that_are_paths_are_refused(split):
    with pytest.raises(UsageError, match="--split"):
        check_split(split)


def test_plain_split_names_pass():
    assert check_split("val") == "val" and check_split("train_aug") == "train_aug"


# ------------------------------------------------------------------------------------------- CLI

EVAL = ["eval", "some_model", "--data-dir", "/nonexistent"]
BENCH = ["bench", "--graph", "/nonexistent.pb"]


@pytest.mark.parametrize("argv,why", [
    (EVAL + ["--scales", "nan"], "not a finite number"),
    (EVAL + ["--scales", "1e400"], "not a finite number"),
    (EVAL + ["--scales", "1:1e-9:2"], "at most 16"),
    (EVAL + ["--scales", "1,1,1"], "more than once"),
    (BENCH + ["--scales", "inf"], "not a finite number"),
    (BENCH + ["--scales", "1,1,1"], "more than once"),
    (EVAL + ["--inter-threads", "-5"], "negative"),
    (EVAL + ["--threads", "100000"], "per CPU"),
    (EVAL + ["--jobs", "100000"], "per CPU"),
    (BENCH + ["--threads", "100000"], "per CPU"),
    (EVAL + ["--crop", "100000,100000"], "memory"),
    (EVAL + ["--crop", "100000x100000"], "memory"),
    (BENCH + ["--input-size", "100000,100000"], "memory"),
    (EVAL + ["--split", "../../up"], "not a split name"),
    (EVAL + ["--limit", "0"], "--limit"),
])
def test_cli_refuses_absurd_numbers_in_one_line(argv, why):
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and why in errors[0], result.output
    assert "Traceback" not in result.output


def test_refusals_happen_before_tensorflow_is_imported(tmp_path):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom zoo_cli.cli.app import cli\n"
            "for argv in (['eval', 'x', '--data-dir', '/nope', '--scales', 'nan'],\n"
            "             ['eval', 'x', '--data-dir', '/nope', '--crop', '100000,100000'],\n"
            "             ['bench', '--graph', '/nope.pb', '--input-size', '100000x100000']):\n"
            "    assert CliRunner().invoke(cli, argv).exit_code == 2\n"
            "print('tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_an_unconverted_tensorflow_error_is_still_one_line(tiny_voc, tmp_path, monkeypatch):
    """Any TensorFlow runtime error that reaches the CLI (here an out-of-memory in a Session.run) is one line with
    what went wrong, exit 6 — not 'Graph execution error:' and not a traceback."""
    tf = pytest.importorskip("tensorflow")
    from zoo_cli.evaluation import image_job

    def oom(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "Graph execution error:\n\nDetected at node 'r' defined at "
                                               "(most recent call last):\nNode: 'r'\nOOM when allocating tensor with "
                                               "shape[1,9000,9000,21] and type float on cpu\n\t [[{{node r}}]]")

    monkeypatch.setattr(image_job, "predict_checkpoint_images", oom)
    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(cli, ["eval", "tiny_voc", "--images", str(tmp_path / "in"), "--out",
                                      str(tmp_path / "o")])
    assert result.exit_code == 6 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: TensorFlow ran out of memory")
    assert "[1,9000,9000,21] float tensor (6.3 GB)" in lines[0] and "smaller --crop" in lines[0]
