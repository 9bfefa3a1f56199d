"""The shipped demo registry entry is exactly what tools/build_demo_model.py writes, class names and provenance
included, and the demo's own eval path scores its 4 classes under those names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.demo_builder import load_builder
from zoo_cli import demo_run
from zoo_cli.registry.catalog import load_registry

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "zoo_cli" / "demo"


@pytest.fixture(scope="module")
def builder():
    """tools/build_demo_model.py imported as a module (it is a script, not part of the package)."""
    yield from load_builder("build_demo_model_reg")


def test_demo_entry_has_class_names_and_where_its_numbers_come_from():
    ckpt = load_registry(demo_run.demo_registry_path()).get(demo_run.DEMO_NAME)
    assert ckpt.class_names == ("background", "circle", "square", "triangle")
    assert ckpt.num_classes == len(ckpt.class_names)
    assert "build_demo_model.py" in ckpt.reported_machine and "zoo" in ckpt.reported_machine
    assert [name for name in demo_run.demo_palette().class_names] == list(ckpt.class_names)


def test_build_script_writes_the_shipped_registry_byte_for_byte(builder):
    ckpt = load_registry(demo_run.demo_registry_path()).get(demo_run.DEMO_NAME)
    rows = {key: {"scales": r.scales, "flip": r.flip, "madds_billion": r.madds_billion, "miou": r.miou,
                  "pixel_accuracy": r.pixel_accuracy} for key, r in zip(("single", "multi"), ckpt.evals)}
    (archive,) = DEMO.glob("*.tar.gz")
    text = builder.registry_text(archive, rows, steps=builder.TRAIN_STEPS)
    assert text == demo_run.demo_registry_path().read_text(encoding="utf-8")
    assert list(builder.CLASS_NAMES) == list(ckpt.class_names)


def test_weights_from_re_export_reproduces_the_shipped_archive_and_registry(builder, tmp_path, capsys):
    """Re-exporting the shipped weights (no training) gives the shipped archive byte for byte, and the same
    measured numbers: the export path (save_frozen_graph) is deterministic on its own."""
    import hashlib

    (archive,) = DEMO.glob("*.tar.gz")
    builder.build(tmp_path, weights_from=archive)
    rebuilt = tmp_path / archive.name
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (tmp_path / "registry.yaml").read_text() == demo_run.demo_registry_path().read_text()
