"""Safe untar: hostile archives are refused before anything lands outside the target; good ones unpack."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from tests.support.archives import (
    CKPT_CONTENTS,
    FULL_CONTENTS,
    HOSTILE_KINDS,
    TOP,
    checkpoint_files,
    hostile_archive,
    zoo_archive,
)
from zoo_cli.errors import ArchiveError
from zoo_cli.hub.archive import ArchiveLimits, contents_missing, extract_archive, gzip_isize

ABS_ESCAPE = Path("/tmp/zoo-test-absolute-escape.txt")
SMALL = ArchiveLimits(max_members=100, max_total_bytes=1 << 20)


def write(tmp_path: Path, data: bytes, name: str = "a.tar.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_archive_is_refused_and_nothing_escapes(tmp_path, kind):
    ABS_ESCAPE.unlink(missing_ok=True)
    sandbox = tmp_path / "sandbox"
    dest = sandbox / "models" / ".tmp-m"
    sandbox.mkdir()
    archive = write(sandbox, hostile_archive(kind))
    before = snapshot(sandbox)
    with pytest.raises(ArchiveError, match="refusing"):
        extract_archive(archive, dest, FULL_CONTENTS, SMALL)
    # Only the temporary destination may have changed; nothing appeared beside or above it.
    after = {p for p in snapshot(sandbox) if not p.startswith("models/.tmp-m")}
    assert after == before | {"models"}
    assert not (tmp_path / "escaped.txt").exists() and not ABS_ESCAPE.exists()
    assert not (tmp_path / "outside_target").exists() and not (sandbox / "outside_file").exists()
    for p in dest.rglob("*") if dest.exists() else ():
        assert not p.is_symlink() and not p.is_char_device() and not p.is_fifo(), p


@pytest.mark.parametrize("kind, reason", [
    ("dotdot", "'..' component"), ("absolute", "absolute path"), ("symlink_escape", "symlink pointing outside"),
    ("symlink_absolute", "symlink to the absolute path"), ("hardlink_escape", "hardlink pointing outside"),
    ("hardlink_absolute", "hardlink pointing outside"), ("device", "device file"), ("fifo", "FIFO"),
    ("too_many_members", "more than 100 members"), ("too_big", "possible tar bomb"),
    ("duplicate", "member 'deeplabv3_mnv2_pascal_train_aug/frozen_inference_graph.pb' appears twice"),
])
def test_refusal_names_the_member_and_the_reason(tmp_path, kind, reason):
    archive = write(tmp_path, hostile_archive(kind))
    with pytest.raises(ArchiveError, match=reason):
        extract_archive(archive, tmp_path / "dest", FULL_CONTENTS, SMALL)


def test_default_limits_catch_a_compression_bomb(tmp_path):
    # 4 MiB of zeros packs into a few KiB: far beyond any real checkpoint's ratio.
    archive = write(tmp_path, hostile_archive("too_big"))
    limits = ArchiveLimits(max_ratio=50.0, ratio_slack_bytes=1 << 20)
    with pytest.raises(ArchiveError, match="tar bomb"):
        extract_archive(archive, tmp_path / "dest", FULL_CONTENTS, limits)


def _tar_gz(entries: list[tuple[str, bytes | None, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = data.decode()
                tar.addfile(info)
            elif kind == tarfile.DIRTYPE:
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def test_forged_completion_marker_is_refused(tmp_path):
    files = [(f"{TOP}/{n}", d, tarfile.REGTYPE) for n, d in checkpoint_files(frozen_graph=False).items()]
    archive = write(tmp_path, _tar_gz(files + [(f"{TOP}/.zoo/complete", b"", tarfile.REGTYPE)]))
    with pytest.raises(ArchiveError, match="reserved name '.zoo'"):
        extract_archive(archive, tmp_path / "dest", CKPT_CONTENTS)


def test_writing_through_an_internal_symlink_is_refused(tmp_path):
    files = [(f"{TOP}/{n}", d, tarfile.REGTYPE) for n, d in checkpoint_files(frozen_graph=False).items()]
    extra = [(f"{TOP}/sub", None, tarfile.DIRTYPE), (f"{TOP}/alias", b"sub", tarfile.SYMTYPE),
             (f"{TOP}/alias/x", b"data", tarfile.REGTYPE)]
    archive = write(tmp_path, _tar_gz(files + extra))
    with pytest.raises(ArchiveError, match="written through a symlink"):
        extract_archive(archive, tmp_path / "dest", CKPT_CONTENTS)


def test_good_archive_unpacks_with_the_top_folder_stripped(tmp_path):
    files = checkpoint_files(frozen_graph=False, data_size=5000)
    archive = write(tmp_path, zoo_archive(files=files))
    result = extract_archive(archive, tmp_path / "dest", CKPT_CONTENTS)
    assert result.top == TOP and result.root == tmp_path / "dest" / TOP
    assert result.files == {n: len(d) for n, d in files.items()}
    for name, data in files.items():
        assert (result.root / name).read_bytes() == data
    assert result.total_bytes == sum(map(len, files.values()))
    assert gzip_isize(archive) == len(gzip.decompress(archive.read_bytes()))


def test_archive_without_a_top_folder_unpacks_in_place(tmp_path):
    files = checkpoint_files(frozen_graph=False)
    archive = write(tmp_path, zoo_archive(top=None, files=files))
    result = extract_archive(archive, tmp_path / "dest", CKPT_CONTENTS)
    assert result.top is None and result.root == tmp_path / "dest"
    assert sorted(result.files) == sorted(files)


def test_missing_expected_member_is_reported(tmp_path):
    archive = write(tmp_path, zoo_archive(files=checkpoint_files(frozen_graph=False)))
    with pytest.raises(ArchiveError, match="lacks frozen_inference_graph.pb .*not the expected checkpoint"):
        extract_archive(archive, tmp_path / "dest", FULL_CONTENTS)


def test_step_suffixed_checkpoint_names_match_the_registry_globs():
    assert contents_missing(["model.ckpt-30000.index", "model.ckpt-30000.data-00000-of-00001"],
                            CKPT_CONTENTS) == []
    assert contents_missing(["model.ckpt.index"], CKPT_CONTENTS) == ["model.ckpt.data-*"]
    assert contents_missing(["frozen_inference_graph.pb"], ["frozen_inference_graph.pb"]) == []


def test_html_page_saved_as_archive_is_named_as_such(tmp_path):
    archive = write(tmp_path, b"<!DOCTYPE html><html><body>Login</body></html>")
    with pytest.raises(ArchiveError, match="is an HTML page"):
        extract_archive(archive, tmp_path / "dest", CKPT_CONTENTS)


def test_truncated_archive_is_corrupt(tmp_path):
    data = zoo_archive(files=checkpoint_files(frozen_graph=False, data_size=50_000))
    archive = write(tmp_path, data[: len(data) - 200])
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        extract_archive(archive, tmp_path / "dest", CKPT_CONTENTS)


def test_flipped_byte_is_caught_by_the_gzip_crc(tmp_path):
    data = bytearray(zoo_archive(files=checkpoint_files(frozen_graph=False, data_size=50_000)))
    data[len(data) // 2] ^= 0xFF
    archive = write(tmp_path, bytes(data))
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        extract_archive(archive, tmp_path / "dest", CKPT_CONTENTS)


def test_unpacked_files_get_sane_permissions(tmp_path):
    files = checkpoint_files(frozen_graph=False)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size, info.mode = len(data), 0o4777  # setuid + world-writable in the archive
            tar.addfile(info, io.BytesIO(data))
    archive = write(tmp_path, gzip.compress(raw.getvalue()))
    result = extract_archive(archive, tmp_path / "dest", CKPT_CONTENTS)
    mode = os.stat(result.root / "model.ckpt.index").st_mode
    assert not mode & 0o4000 and not mode & 0o002  # tarfile's data filter strips both
