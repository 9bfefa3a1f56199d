"""TensorFlow is imported in one place (zoo_cli.graph.tf_import), quietly: no C++ start-up noise on stderr.

The noise checks run real ``zoo eval`` commands in subprocesses (this test process has long imported
TensorFlow, so it cannot show what a fresh start prints) on the shipped demo model's frozen graph.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from zoo_cli.graph import tf_import

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "zoo_cli" / "demo"
# Lines TensorFlow 2.21 prints from C++ at import / first device initialisation, whatever TF_CPP_MIN_LOG_LEVEL.
NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "failed call to cuInit",
    "cpu_feature_guard",
)
TF_MODULES = ("zoo_cli.graph.loading", "zoo_cli.graph.graphdef", "zoo_cli.graph.crop_pattern", "zoo_cli.graph.info",
              "zoo_cli.graph.runner", "zoo_cli.graph.retarget", "zoo_cli.graph.output_stride", "zoo_cli.graph.flops",
              "zoo_cli.graph.stride_edit", "zoo_cli.evaluation.rewritten", "zoo_cli.graph.memory", "zoo_cli.graph.tf_errors",
              "tests.support.export",
              "zoo_cli.evaluation.multiscale", "zoo_cli.demo_run")


@pytest.fixture(scope="module")
def demo_graph(tmp_path_factory) -> Path:
    """The shipped demo archive's frozen graph, extracted (no TensorFlow needed to get it)."""
    (archive,) = DEMO.glob("*.tar.gz")
    out = tmp_path_factory.mktemp("demo_graph")
    with tarfile.open(archive, "r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("frozen_inference_graph.pb"))
        member.name = "frozen_inference_graph.pb"
        tar.extract(member, out, filter="data")
    return out / "frozen_inference_graph.pb"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "TF_CPP_"))}
    env.update(ZOO_HOME=str(tmp_path / "home"), **extra)
    return env


def _eval_images(demo_graph: Path, tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    image = sorted((DEMO / "voc" / "JPEGImages").glob("*.jpg"))[0]
    cmd = [sys.executable, "-m", "zoo_cli", "eval", "--graph", str(demo_graph), "--images", str(image),
           "--out", str(tmp_path / "preds"), "--no-progress", *args]
    return subprocess.run(cmd, env=_env(tmp_path, **extra), cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)


def test_eval_in_a_fresh_process_prints_no_tensorflow_startup_noise(demo_graph, tmp_path):
    proc = _eval_images(demo_graph, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "image(s)" in proc.stdout  # the command did load the graph and predict
    assert list((tmp_path / "preds").glob("*.png"))
    found = [line for line in NOISE if line in proc.stderr]
    assert not found, proc.stderr


def test_multiscale_eval_prints_no_tensorflow_deprecation_warnings(demo_graph, tmp_path):
    """Re-targeting and the in-graph multi-scale procedure use TF1 graph APIs that log deprecations."""
    proc = _eval_images(demo_graph, tmp_path, "--scales", "0.75,1.25", "--flip")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "setting: scales 0.75,1.25, flip" in proc.stdout
    assert "WARNING:tensorflow" not in proc.stderr and "deprecated" not in proc.stderr, proc.stderr


def test_zoo_debug_keeps_the_noise(demo_graph, tmp_path):
    """ZOO_DEBUG=1 shows everything TensorFlow prints (and proves this machine's TF does print the noise)."""
    proc = _eval_images(demo_graph, tmp_path, ZOO_DEBUG="1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert any(line in proc.stderr for line in NOISE), proc.stderr


def test_help_and_tf_modules_import_no_tensorflow(tmp_path):
    code = ("import sys; from click.testing import CliRunner; from zoo_cli.cli.app import cli\n"
            "import zoo_cli.graph.tf_import\n"
            + "".join(f"import {m}\n" for m in TF_MODULES)
            + "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output\n"
            "print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_no_other_module_imports_tensorflow_itself():
    """Only zoo_cli/tf_import.py (and no tool script) has an ``import tensorflow`` statement."""
    offenders = []
    for path in [*(REPO / "zoo_cli").rglob("*.py"), *(REPO / "tools").glob("*.py")]:
        if path.name == "tf_import.py":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import tensorflow", "from tensorflow")):
                offenders.append(f"{path.relative_to(REPO)}: {stripped}")
    assert not offenders


def test_quiet_stderr_hides_descriptor_writes_and_restores_them(capfd, monkeypatch):
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    os.write(2, b"before\n")
    with tf_import.quiet_stderr():
        os.write(2, b"hidden\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "before" in err and "after" in err and "hidden" not in err


def test_quiet_stderr_restores_on_error_and_is_off_with_zoo_debug(capfd, monkeypatch):
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    with pytest.raises(RuntimeError):
        with tf_import.quiet_stderr():
            raise RuntimeError("boom")
    os.write(2, b"restored\n")
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with tf_import.quiet_stderr():
        os.write(2, b"debug-visible\n")
    err = capfd.readouterr().err
    assert "restored" in err and "debug-visible" in err


def test_new_session_runs_a_graph():
    tf = tf_import.import_tf()
    graph = tf.Graph()
    with graph.as_default():
        total = tf.constant(2) + 3
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1)
    with tf_import.new_session(config, graph=graph) as session:
        assert session.run(total) == 5
