"""The offline demo: shipped data and registry are consistent and reproducible; `zoo demo` works end to end.

The end-to-end test runs the INSTALLED ``zoo`` console script in a subprocess exactly as docs/demo.md (and the
README quickstart) say, with ZOO_HOME in a temp dir. The build script is not re-run here (training takes
minutes); its deterministic parts (dataset generator, archive packing) are checked against the shipped files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from tests.support.demo_builder import load_builder
from zoo_cli import demo_run
from zoo_cli.cli.app import cli
from zoo_cli.registry.catalog import load_registry

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "zoo_cli" / "demo"


@pytest.fixture(scope="module")
def builder():
    """tools/build_demo_model.py imported as a module (it is a script, not part of the package)."""
    yield from load_builder("build_demo_model")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _archive() -> Path:
    (archive,) = DEMO.glob("*.tar.gz")
    return archive


# ---------------------------------------------------------------- shipped files


def test_shipped_files_are_small_and_where_the_package_finds_them():
    assert demo_run.demo_dir() == DEMO
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert total < 3_000_000, f"the demo files take {total} bytes; keep them under ~3 MB"
    assert demo_run.demo_registry_path().is_file()
    assert (demo_run.demo_val_dir() / "ImageSets" / "Segmentation" / "val.txt").is_file()


def test_registry_entry_pins_the_shipped_archive():
    registry = load_registry(demo_run.demo_registry_path())
    ckpt = registry.get(demo_run.DEMO_NAME)
    archive = _archive()
    assert ckpt.archive_filename == archive.name
    assert ckpt.sha256 == _sha256(archive)
    assert ckpt.size_mb == pytest.approx(archive.stat().st_size / 1e6, abs=1e-3)
    assert ckpt.url.startswith(demo_run.PLACEHOLDER_PREFIX)
    assert (ckpt.dataset, ckpt.num_classes, ckpt.ignore_label) == ("voc", 4, 255)
    assert ckpt.eval_crop == (129, 129) and (ckpt.eval_crop[0] - 1) % 8 == 0
    single, multi = ckpt.evals
    assert (single.scales, single.flip) == ((1.0,), False)
    assert len(multi.scales) > 1 and multi.flip
    for row in ckpt.evals:
        assert row.output_stride == 8 and row.split == "val"
        assert 50.0 < row.miou <= 100.0  # a trained model, not chance (4 classes)
        assert row.madds_billion and row.madds_billion > 0
    # the multi-scale row runs the network 2 x len(scales) times at the scaled crops: more MAdds
    assert multi.madds_billion > 2 * single.madds_billion


def test_archive_has_the_zoo_layout():
    with tarfile.open(_archive(), "r:gz") as tar:
        names = sorted(m.name for m in tar.getmembers())
        top = names[0]
        assert names == [top] + [f"{top}/{n}" for n in
                                 ("frozen_inference_graph.pb", "model.ckpt.data-00000-of-00001", "model.ckpt.index")]
        assert tar.getmember(top).isdir()
        assert all(tar.getmember(n).isfile() and tar.getmember(n).size > 0 for n in names[1:])


def test_packing_is_reproducible(builder, tmp_path):
    """Re-packing the shipped archive's files with the build script's packer gives the same bytes (sha256)."""
    with tarfile.open(_archive(), "r:gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    (top,) = (tmp_path / "x").iterdir()
    assert top.name == builder.ARCHIVE_TOP
    repacked = builder.pack(top, tmp_path / "again" / builder.ARCHIVE_NAME)
    assert _sha256(repacked) == _sha256(_archive())


def test_val_set_is_a_voc_layout_the_eval_code_reads():
    from zoo_cli.evaluation.datasets import open_dataset

    ds = open_dataset(demo_run.demo_val_dir(), "voc", "val")
    assert 8 <= len(ds) <= 16
    seen = set()
    for sample in ds.samples:
        image, label = ds.load(sample)
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert max(image.shape[:2]) <= 128  # fits the 129x129 eval crop unresized
        values = set(np.unique(label).tolist())
        assert values <= {0, 1, 2, 3, 255}
        assert 255 in values and len(values - {0, 255}) >= 1  # objects with an ignore border, like VOC
        seen |= values
        with Image.open(sample.label_path) as png:
            assert png.mode == "P"  # palette PNG as VOC ships them
    assert {1, 2, 3} <= seen


# ---------------------------------------------------------------- generator determinism


def test_generator_rebuilds_the_shipped_val_set(builder, tmp_path):
    """Same seed -> the same val set: labels pixel-identical, JPEGs identical once decoded (within codec noise)."""
    root = builder.write_voc(tmp_path / "voc", {"val": builder.N_VAL})
    shipped = demo_run.demo_val_dir()
    listing = "ImageSets/Segmentation/val.txt"
    assert (root / listing).read_text() == (shipped / listing).read_text()
    for sid in (root / listing).read_text().split():
        new = np.asarray(Image.open(root / "SegmentationClass" / f"{sid}.png"))
        old = np.asarray(Image.open(shipped / "SegmentationClass" / f"{sid}.png"))
        np.testing.assert_array_equal(new, old)
        a = np.asarray(Image.open(root / "JPEGImages" / f"{sid}.jpg"), np.int16)
        b = np.asarray(Image.open(shipped / "JPEGImages" / f"{sid}.jpg"), np.int16)
        assert a.shape == b.shape and np.abs(a - b).mean() < 1.0


def test_generator_is_seeded_per_split(builder):
    first = [(i.copy(), l.copy()) for _, i, l in builder.generate_split("val", 3)]
    again = [(i, l) for _, i, l in builder.generate_split("val", 3)]
    for (i1, l1), (i2, l2) in zip(first, again):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(l1, l2)
    other = next(builder.generate_split("val", 1, seed=builder.DATA_SEED + 1))[1]
    assert other.shape != first[0][0].shape or not np.array_equal(other, first[0][0])
    train = next(builder.generate_split("train", 1))[1]
    assert train.shape != first[0][0].shape or not np.array_equal(train, first[0][0])


def test_ignore_band_marks_only_borders(builder):
    label = np.zeros((10, 10), np.uint8)
    label[3:7, 3:7] = 2
    band = builder._ignore_band(label, 1)
    # pixels on either side of the square's edge, nothing in its interior or far background
    assert band[3, 4] and band[2, 4] and not band[5, 5] and not band[0, 0]


# ---------------------------------------------------------------- local server + registry rewrite


def test_local_registry_points_at_a_live_127_0_0_1_server(tmp_path):
    with demo_run.serve_directory(demo_run.demo_dir()) as base:
        assert base.startswith("http://127.0.0.1:")
        registry, path = demo_run.local_registry(base, tmp_path)
        ckpt = registry.get(demo_run.DEMO_NAME)
        assert ckpt.url.startswith(base + "/") and path == tmp_path / "registry.yaml"
        body = requests.get(ckpt.url, timeout=10).content
        assert hashlib.sha256(body).hexdigest() == ckpt.sha256


def test_tampered_archive_is_refused_before_anything_runs(tmp_path, monkeypatch, zoo_home):
    """A demo archive that does not match its pinned sha256 stops at download: exit 4, nothing installed."""
    fake = tmp_path / "demo"
    shutil.copytree(DEMO, fake)
    archive = next(fake.glob("*.tar.gz"))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    monkeypatch.setattr(demo_run, "demo_dir", lambda: fake)
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 4, result.output
    assert "Error:" in result.output and "sha256" in result.output
    assert not (zoo_home / "models" / demo_run.DEMO_NAME).exists()


def test_mismatching_miou_fails_the_demo(monkeypatch, tmp_path):
    """Exit status 1 with a one-line error when a measured mIOU is off the recorded one."""
    checks = [demo_run.RowCheck("eval", "scales 1", 80.0, 80.05), demo_run.RowCheck("bench", "scales 1", 80.0, 79.0)]
    fake = demo_run.DemoResult(name="demo_shapes", out_dir=tmp_path, registry_path=tmp_path / "r.yaml",
                               url="http://127.0.0.1:1/x.tar.gz", checks=checks)
    monkeypatch.setattr(demo_run, "run_demo", lambda *a, **k: fake)
    result = CliRunner().invoke(cli, ["demo", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and [c["ok"] for c in data["checks"]] == [True, False]
    assert result.stderr.startswith("Error: 1 measured mIOU")


def test_row_check_tolerance():
    assert demo_run.RowCheck("eval", "s", 70.0, 70.1).ok
    assert not demo_run.RowCheck("eval", "s", 70.0, 70.2).ok
    assert not demo_run.RowCheck("eval", "s", 70.0, None).ok


# ---------------------------------------------------------------- end to end, installed console script


def _zoo_script() -> str:
    exe = shutil.which("zoo") or str(Path(sys.executable).with_name("zoo"))
    assert Path(exe).exists(), "the 'zoo' console script is not installed; run pip install -e '.[test]'"
    return exe


def test_zoo_demo_end_to_end_installed_script(tmp_path):
    """`zoo demo` as the README says: download -> verify -> untar -> eval (scales + flip) -> bench, exit 0."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    # A proxy in the environment (here a closed local port) must not be used for the loopback server.
    env.update(ZOO_HOME=str(home), COLUMNS="200", HTTP_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
    proc = subprocess.run([_zoo_script(), "demo"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "demo OK" in out and "installed:" in out and "(pinned)" in out
    # installed by the real fetch path: manifest + completion marker + the archive's files, top folder stripped
    model = home / "models" / demo_run.DEMO_NAME
    manifest = json.loads((model / ".zoo" / "manifest.json").read_text())
    assert (model / ".zoo" / "complete").is_file() and (model / "frozen_inference_graph.pb").is_file()
    ckpt = load_registry(demo_run.demo_registry_path()).get(demo_run.DEMO_NAME)
    assert manifest["sha256"] == ckpt.sha256 and manifest["url"].startswith("http://127.0.0.1:")
    # eval results per setting, matching the recorded numbers; overlays of every val image
    results = home / "results" / "demo"
    for row, key in zip(ckpt.evals, ("single-scale", "scales-0.75-1-1.25-flip")):
        metrics = json.loads((results / "eval" / key / "metrics.json").read_text())
        assert metrics["scales"] == list(row.scales) and metrics["flip"] == row.flip
        assert abs(metrics["miou"] - row.miou) <= demo_run.MIOU_TOLERANCE
        assert (results / "eval" / key / "confusion.npy").is_file()
    overlays = sorted((results / "overlays").glob("*_overlay.png"))
    assert len(overlays) == len(list((DEMO / "voc" / "JPEGImages").glob("*.jpg")))
    # bench stored its JSON results under the cache, one per setting
    bench_files = sorted((home / "results" / "bench").glob("demo_shapes*.json"))
    assert len(bench_files) == 2
    assert all(json.loads(p.read_text())["measured"]["miou"] is not None for p in bench_files)
    # the rewritten registry is usable with the other commands
    info = subprocess.run([_zoo_script(), "--registry", str(results / "registry.yaml"), "info",
                           demo_run.DEMO_NAME, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and json.loads(info.stdout)["downloaded"] is True


# ---------------------------------------------------------------- training network == exported graph

_TRAINING_CHECK = r"""
import json, sys, tarfile, importlib.util
from pathlib import Path
import numpy as np
spec = importlib.util.spec_from_file_location("build_demo_model", sys.argv[1])
b = importlib.util.module_from_spec(spec); sys.modules[spec.name] = b; spec.loader.exec_module(b)
import tensorflow as tf
work = Path(sys.argv[3])
with tarfile.open(sys.argv[2], "r:gz") as tar:
    tar.extractall(work / "shipped", filter="data")
shipped = work / "shipped" / b.ARCHIVE_TOP
weights = b.checkpoint_weights(shipped / "model.ckpt")
out = {}
# 1. the TF2 network the build trains computes what the shipped frozen graph computes
out["agreement"] = b.check_export(weights, shipped / "frozen_inference_graph.pb", Path(sys.argv[4]))
# 2. exporting the shipped checkpoint's weights again rebuilds the shipped frozen graph, byte for byte
again = b.export(weights, work / "again")
out["same_graph"] = (again / "frozen_inference_graph.pb").read_bytes() == (shipped / "frozen_inference_graph.pb").read_bytes()
# 3. training is deterministic: two short runs from the same seed give identical weights
samples = [(i, l) for _, i, l in b.generate_split("train", 6)]
w1 = b.train(samples, steps=3, log_every=0)
w2 = b.train(samples, steps=3, log_every=0)
out["deterministic"] = all(np.array_equal(w1[k], w2[k]) for k in w1)
print(json.dumps(out))
"""


def test_training_network_is_the_shipped_graph_and_training_is_deterministic(tmp_path):
    """In a subprocess (training switches TF op determinism on globally): the build's TF2 network reproduces
    the shipped frozen graph from the shipped model.ckpt, re-export gives the same graph bytes, and two short
    trainings from the same seed give identical weights."""
    proc = subprocess.run(
        [sys.executable, "-c", _TRAINING_CHECK, str(REPO / "tools" / "build_demo_model.py"), str(_archive()),
         str(tmp_path), str(demo_run.demo_val_dir())],
        capture_output=True, text=True, timeout=240, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["agreement"] > 0.999
    assert out["same_graph"]
    assert out["deterministic"]
