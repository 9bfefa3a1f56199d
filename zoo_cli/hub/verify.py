"""Whether an install (and an archive) is what it should be: the archive's hash against the registry pin or the
hash recorded on first download, a cheap check of an install (marker, manifest, sizes) and a full one that
re-hashes every file (``zoo verify``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from zoo_cli.constants import META_DIR
from zoo_cli.errors import ChecksumError
from zoo_cli.hub.archive import contents_missing
from zoo_cli.hub.cache import Cache, is_installed_at, manifest_at
from zoo_cli.hub.content import sha256_file
from zoo_cli.registry.catalog import Registry
from zoo_cli.registry.types import Checkpoint


@dataclass
class VerifyReport:
    """Outcome of ``verify_checkpoint``: ok only when ``problems`` is empty."""

    name: str
    path: Path
    installed: bool
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    bytes_checked: int = 0
    archive_checked: bool = False
    extra_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.installed and not self.problems

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["ok"] = self.ok
        return d


def check_archive_hash(ckpt: Checkpoint, cache: Cache, sha256: str, where: Path, fix: str | None = None) -> str:
    """Compare an archive's hash with the registry pin or the recorded first-download hash; say which.

    ``fix`` replaces the advice of the error (an archive placed by hand needs replacing, not a new download)."""
    if ckpt.sha256:
        if sha256 != ckpt.sha256:
            raise ChecksumError(
                f"sha256 of {where.name} is {sha256} but the registry pins {ckpt.sha256}; " + (fix or
                "the download is corrupt or the server's file changed — nothing was installed; run the command "
                "again, or check ZOO_MIRROR"))
        return "pinned"
    record = cache.known_hash(ckpt.url)
    if record:
        if record.get("sha256") != sha256:
            raise ChecksumError(
                f"sha256 of {where.name} is {sha256}, not the {record.get('sha256')} recorded on the first download "
                f"({record.get('recorded')}); " + (fix or
                "the server's file changed or this copy is corrupt — nothing was installed; if the change is "
                f"expected, run 'zoo rm {ckpt.name} --forget-hash' and download again"))
        return "matches-record"
    return "recorded"


def quick_check(ckpt: Checkpoint, cache: Cache, target: Path | None = None) -> list[str]:
    """Cheap install check (marker, manifest, file sizes, pin) of ``ckpt`` in the cache (or at ``target``):
    the problems found, [] when fine."""
    root = target or cache.model_dir(ckpt.name)
    if not is_installed_at(root):
        return ["not installed"]
    try:
        manifest = manifest_at(root, ckpt.name) or {}
    except Exception as exc:  # an unreadable manifest is a broken install, not a crash
        return [str(exc)]
    problems = []
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return ["manifest lists no files"]
    for rel, info in files.items():
        try:
            if (root / rel).stat().st_size != info.get("size"):
                problems.append(f"{rel} has the wrong size")
        except OSError:
            problems.append(f"{rel} is missing")
    if ckpt.sha256 and manifest.get("sha256") != ckpt.sha256:
        problems.append("installed archive does not match the registry's sha256 pin")
    return problems


def verify_checkpoint(ckpt: Checkpoint, cache: Cache) -> VerifyReport:
    """Re-hash every installed file (and a kept archive) against the manifest, the pin and the record."""
    root = cache.model_dir(ckpt.name)
    report = VerifyReport(ckpt.name, root, installed=cache.is_installed(ckpt.name))
    if not report.installed:
        if root.exists():
            report.problems.append(f"incomplete install at {root} (no manifest/completion marker); run "
                                   f"'zoo download {ckpt.name} --force'")
        else:
            report.problems.append(f"not downloaded; run 'zoo download {ckpt.name}'")
        return report
    try:
        manifest = cache.manifest(ckpt.name) or {}
    except Exception as exc:
        report.problems.append(str(exc))
        return report
    files = manifest.get("files") or {}
    if not isinstance(files, dict) or not files:
        report.problems.append("manifest lists no files")
    for rel, info in (files.items() if isinstance(files, dict) else ()):
        path = root / rel
        if not path.is_file():
            report.problems.append(f"{rel} is missing")
            continue
        size = path.stat().st_size
        if size != info.get("size"):
            report.problems.append(f"{rel} is {size} bytes, the manifest says {info.get('size')}")
            continue
        report.bytes_checked += size
        report.files_checked += 1
        if info.get("sha256") and sha256_file(path).hexdigest() != info["sha256"]:
            report.problems.append(f"{rel} does not match its sha256 in the manifest (modified or corrupt)")
    names = [n for n in files if "/" not in n] if isinstance(files, dict) else []
    missing = contents_missing(names, ckpt.contents)
    if missing:
        report.problems.append(f"install lacks {', '.join(missing)} that the registry expects")
    listed = set(files) if isinstance(files, dict) else set()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in listed and not rel.startswith(META_DIR + "/"):
            report.extra_files.append(rel)
    sha = manifest.get("sha256")
    if ckpt.sha256 and sha != ckpt.sha256:
        report.problems.append(f"installed archive sha256 {sha} differs from the registry pin {ckpt.sha256}")
    record = None if ckpt.sha256 else cache.known_hash(ckpt.url)
    if record and record.get("sha256") != sha:
        report.problems.append(f"installed archive sha256 {sha} differs from the one recorded on first download "
                               f"({record.get('sha256')})")
    archive = cache.archive_path(ckpt)
    if archive.is_file():
        report.archive_checked = True
        if sha256_file(archive).hexdigest() != sha:
            report.problems.append(f"kept archive {archive} does not match the manifest's sha256")
    return report


def verify_checkpoints(registry: Registry, cache: Cache, names: Iterable[str] = ()) -> list[VerifyReport]:
    """``zoo verify``: :func:`verify_checkpoint` for ``names`` (names or wildcards), by default for every
    registry checkpoint with a model directory in the cache."""
    names = tuple(names)
    if names:
        ckpts = registry.resolve(names)
    else:
        ckpts = [c for c in registry if cache.model_dir(c.name).exists()]
    return [verify_checkpoint(c, cache) for c in ckpts]
