"""Atomic writes leave either the old file or the new one at the final path, never a partial one."""

from __future__ import annotations

import json
import os
import stat

import pytest

from zoo_cli.atomic import atomic_path, write_json_atomic, write_text_atomic


def test_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new conte")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_success_replaces_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "r.json"
    write_json_atomic(target, {"miou": 71.5})
    assert json.loads(target.read_text()) == {"miou": 71.5}
    write_text_atomic(target, "x", fsync=True)
    assert target.read_text() == "x" and os.listdir(target.parent) == ["r.json"]


def test_final_file_gets_the_usual_permissions_not_0600(tmp_path):
    target = tmp_path / "out.png"
    write_text_atomic(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_suffix_is_kept_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "plot.png", suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".plot.png.")
        tmp.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"


def test_errors_name_the_final_path_not_the_temporary_one(tmp_path):
    import errno

    target = tmp_path / "report.md"
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as info:
        with atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")  # e.g. from a library's write()
    assert info.value.filename == str(target)
    assert os.listdir(tmp_path) == []
