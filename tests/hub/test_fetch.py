"""The fetch path end to end through the CLI: download/verify/cache/rm, locking across processes, offline,
mirror, safe refusal of hostile archives, and no TensorFlow import."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.archives import CKPT_CONTENTS, checkpoint_files, hostile_archive, registry_yaml, zoo_archive
from tests.support.http_server import Fault, fault_server  # noqa: F401 - fixture
from zoo_cli.cli.app import cli
from zoo_cli.constants import FROZEN_GRAPH
from zoo_cli.errors import ConfigError
from zoo_cli.hub.cache import Cache
from zoo_cli.hub.locks import checkpoint_lock
from zoo_cli.registry.catalog import load_registry
from zoo_cli.urls import mirror_url

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def archive() -> bytes:
    return zoo_archive(data_size=150_000)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Write a registry file, point ZOO_REGISTRY at it, return a function that (re)writes it."""
    path = tmp_path / "registry.yaml"

    def write(*entries: dict) -> Path:
        path.write_text(registry_yaml(entries))
        return path

    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return write


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gets(server, path="models/m.tar.gz"):
    return [r for r in server.requests(path) if r.method == "GET"]


# ---------------------------------------------------------------- zoo download


def test_cli_download_prints_the_model_dir_then_says_already_installed(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    first = run("download", "m")
    assert first.exit_code == 0, first.output
    model_dir = zoo_home / "models" / "m"
    assert f"→ {model_dir}" in first.stdout and "recorded now" in first.stdout
    second = run("download", "m")
    assert second.exit_code == 0 and "already installed" in second.stdout and str(model_dir) in second.stdout
    assert len(gets(fault_server)) == 1
    listed = run("list", "--downloaded", "--json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["m"]


def test_cli_download_json_all_and_checkpoint_only_archives(fault_server, registry, zoo_home, archive):
    ckpt_only = zoo_archive(top="xception_65_imagenet", files=checkpoint_files(frozen_graph=False))
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)},
             {"name": "backbone", "url": fault_server.add("models/b.tar.gz", ckpt_only),
              "contents": CKPT_CONTENTS, "sha256": sha(ckpt_only)})
    result = run("download", "--all", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # nothing but JSON on stdout
    assert [(r["name"], r["status"], r["sha256_check"]) for r in rows] == [
        ("m", "installed", "recorded"), ("backbone", "installed", "pinned")]
    assert rows[1]["sha256"] == sha(ckpt_only) and rows[1]["bytes_transferred"] == len(ckpt_only)
    assert (zoo_home / "models" / "backbone" / "model.ckpt.index").is_file()
    assert not (zoo_home / "models" / "backbone" / FROZEN_GRAPH).exists()


def test_cli_errors_are_one_line_with_exit_codes(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive), "sha256": "1" * 64},
             {"name": "n", "url": fault_server.add("models/n.tar.gz", archive)})
    bad = run("download", "m")
    assert bad.exit_code == 4 and bad.stderr.startswith("Error: sha256 of m.tar.gz") and bad.stderr.count("\n") == 1
    both = run("download", "m", "n", "--json")
    rows = json.loads(both.stdout)
    assert both.exit_code == 4 and [r["status"] for r in rows] == ["failed", "installed"]
    assert run("download").exit_code == 2
    assert run("download", "nope").exit_code == 2


def test_hostile_archive_through_the_cli_installs_nothing(fault_server, registry, zoo_home, tmp_path):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", hostile_archive("dotdot"))})
    result = run("download", "m")
    assert result.exit_code == 4 and "has a '..' component; refusing" in result.stderr
    cache = Cache(zoo_home)
    assert not cache.model_dir("m").exists() and not (zoo_home / "escaped.txt").exists()
    assert [p.name for p in cache.models_dir.iterdir()] == []  # temp dir removed too
    assert list(cache.downloads_dir.iterdir()) == [] and cache.known_hash(load_registry(os.environ["ZOO_REGISTRY"]).get("m").url) is None


def test_force_failure_keeps_the_previous_good_copy(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    assert run("download", "m").exit_code == 0
    graph = (zoo_home / "models" / "m" / FROZEN_GRAPH).read_bytes()
    fault_server.set_fault("models/m.tar.gz", Fault(html=True))
    result = run("download", "m", "--force")
    assert result.exit_code == 3 and "HTML page" in result.stderr
    assert (zoo_home / "models" / "m" / FROZEN_GRAPH).read_bytes() == graph
    assert run("verify", "m").exit_code == 0
    fault_server.set_fault("models/m.tar.gz", None)
    again = run("download", "m", "--force")
    assert again.exit_code == 0 and "matches the hash recorded" in again.stdout
    assert [p.name for p in (zoo_home / "models").iterdir()] == ["m"]  # the old copy was swapped out


def test_broken_install_is_reinstalled_not_trusted(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    assert run("download", "m").exit_code == 0
    (zoo_home / "models" / "m" / "model.ckpt.index").write_bytes(b"truncated")
    result = run("download", "m")
    assert result.exit_code == 0 and "downloaded" in result.stdout
    assert len(gets(fault_server)) == 2
    # A directory that merely exists and is non-empty is not an install.
    (zoo_home / "models" / "m" / ".zoo" / "complete").unlink()
    assert not Cache(zoo_home).is_installed("m")
    assert run("download", "m").exit_code == 0 and len(gets(fault_server)) == 3


# ---------------------------------------------------------------- verify / cache / rm / prune


def test_verify_reports_per_model_and_fails_on_tampering(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)},
             {"name": "n", "url": fault_server.add("models/n.tar.gz", archive)})
    assert run("download", "m", "n", "--keep-archive").exit_code == 0
    ok = run("verify", "--json")
    reports = json.loads(ok.stdout)
    assert ok.exit_code == 0 and [(r["name"], r["ok"], r["files_checked"], r["archive_checked"])
                                  for r in reports] == [("m", True, 3, True), ("n", True, 3, True)]
    data = zoo_home / "models" / "n" / "model.ckpt.data-00000-of-00001"
    content = bytearray(data.read_bytes())
    content[100] ^= 1  # same size, different bytes: only a re-hash notices
    data.write_bytes(bytes(content))
    bad = run("verify")
    assert bad.exit_code == 5
    assert "m: OK (3 files" in bad.stdout
    assert "n: FAILED — model.ckpt.data-00000-of-00001 does not match its sha256" in bad.stdout
    assert "1 of 2 checkpoints failed" in bad.stderr


def test_cache_shows_sizes_and_rm_removes_cleanly(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    assert run("download", "m").exit_code == 0
    usage = json.loads(run("cache", "--json").stdout)
    model = usage["models"][0]
    installed_bytes = sum(p.stat().st_size for p in (zoo_home / "models" / "m").rglob("*") if p.is_file())
    assert model["name"] == "m" and model["installed"] and model["bytes"] == installed_bytes
    assert usage["free_bytes"] > 0 and usage["total_bytes"] == installed_bytes
    text = run("cache").stdout
    assert "m" in text and f"{installed_bytes / 1e6:,.1f} MB" in text
    removed = run("rm", "m")
    assert removed.exit_code == 0 and "removed m" in removed.stdout
    assert list((zoo_home / "models").iterdir()) == []
    again = run("rm", "m")
    assert again.exit_code == 5 and "not downloaded; nothing to remove" in again.stderr


def test_prune_removes_stale_partials_but_not_held_ones(fault_server, registry, zoo_home, archive):
    from zoo_cli.hub.install import install_checkpoint

    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    ckpt = load_registry(os.environ["ZOO_REGISTRY"]).get("m")
    cache = Cache(zoo_home)

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        install_checkpoint(ckpt, cache, on_progress=interrupt, progress=False)
    partial = cache.partial_path(ckpt)
    assert partial.exists()
    leftover = cache.models_dir / ".tmp-m-999999999-abcdef"  # an install interrupted by a process now gone
    leftover.mkdir(parents=True)
    (leftover / "junk").write_bytes(b"x" * 10)
    with checkpoint_lock(cache, "m"):
        held = json.loads(run("cache", "prune", "--json").stdout)
    assert partial.exists() and [Path(e["path"]).name for e in held] == [leftover.name]
    listing = run("cache").stdout
    assert "partial downloads" in listing and partial.name in listing
    pruned = run("cache", "prune")
    assert pruned.exit_code == 0 and "removed 2 items" in pruned.stdout  # the partial and its sidecar
    assert list(cache.downloads_dir.iterdir()) == []


# ---------------------------------------------------------------- offline / mirror


def test_offline_fails_fast_naming_url_and_path_then_installs_a_hand_fetched_file(
        fault_server, registry, zoo_home, archive):
    url = fault_server.add("models/m.tar.gz", archive)
    registry({"name": "m", "url": url})
    result = run("download", "m", env={"ZOO_OFFLINE": "1"})
    target = zoo_home / "downloads" / "m.tar.gz"
    assert result.exit_code == 3
    assert "offline mode (ZOO_OFFLINE=1)" in result.stderr and url in result.stderr and str(target) in result.stderr
    assert fault_server.requests() == []
    target.parent.mkdir(parents=True)
    target.write_bytes(archive)  # the user fetched it by hand
    by_hand = run("download", "m", env={"ZOO_OFFLINE": "1"})
    assert by_hand.exit_code == 0 and "installed from the archive already in the cache" in by_hand.stdout
    assert fault_server.requests() == [] and Cache(zoo_home).is_installed("m")


def test_mirror_rewrites_scheme_and_host_keeping_the_path(fault_server, registry, zoo_home, archive):
    fault_server.add("prefix/models/deeplab_m.tar.gz", archive)
    # The registry's host does not exist; only the mirror is contacted.
    registry({"name": "m", "url": "http://download.invalid/models/deeplab_m.tar.gz"})
    result = run("download", "m", env={"ZOO_MIRROR": fault_server.url("prefix")})
    assert result.exit_code == 0, result.output
    assert [r.path for r in fault_server.requests()] == ["/prefix/models/deeplab_m.tar.gz"]
    manifest = Cache(zoo_home).manifest("m")
    assert manifest["url"] == fault_server.url("prefix/models/deeplab_m.tar.gz")
    assert manifest["registry_url"] == "http://download.invalid/models/deeplab_m.tar.gz"
    run("rm", "m")
    fault_server.add("models/deeplab_m.tar.gz", archive)
    assert run("download", "m", "--mirror", fault_server.base_url + "/").exit_code == 0
    assert fault_server.requests()[-1].path == "/models/deeplab_m.tar.gz"


def test_http_proxy_from_the_environment_is_used(fault_server, registry, zoo_home, archive, monkeypatch):
    fault_server.add("models/m.tar.gz", archive)
    registry({"name": "m", "url": "http://download.invalid/models/m.tar.gz"})
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("no_proxy")
    result = run("download", "m", env={"HTTP_PROXY": fault_server.base_url, "http_proxy": fault_server.base_url})
    assert result.exit_code == 0, result.output
    assert [r.proxied_for for r in fault_server.requests()] == ["http://download.invalid/models/m.tar.gz"]


def test_mirror_url_rules():
    url = "http://download.tensorflow.org/models/deeplabv3_pascal_train_aug_2018_01_04.tar.gz"
    assert mirror_url(url, None) == url
    assert mirror_url(url, "https://m.example/zoo/") == \
        "https://m.example/zoo/models/deeplabv3_pascal_train_aug_2018_01_04.tar.gz"
    assert mirror_url("http://h/a/b.tar.gz?x=1", "http://127.0.0.1:8080") == "http://127.0.0.1:8080/a/b.tar.gz?x=1"
    with pytest.raises(ConfigError, match="not an http"):
        mirror_url(url, "ftp://mirror")


# ---------------------------------------------------------------- processes


_WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from zoo_cli.hub.cache import Cache
    from zoo_cli.hub.install import install_checkpoint
    from zoo_cli.registry.catalog import load_registry
    ckpt = load_registry(os.environ["ZOO_REGISTRY"]).get("m")
    Path(sys.argv[2]).touch()
    while not Path(sys.argv[1]).exists():
        time.sleep(0.005)
    r = install_checkpoint(ckpt, Cache(Path(os.environ["ZOO_HOME"])), progress=False,
                           log=lambda m: print("LOG", m, file=sys.stderr, flush=True))
    print(r.status, r.path, r.bytes_transferred)
""")


def test_two_processes_download_the_same_model_with_one_transfer(fault_server, registry, zoo_home, archive,
                                                                 tmp_path):
    # A slow body (~0.6 s) makes the two processes overlap for sure.
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive, Fault(rate=250_000))})
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(go), str(tmp_path / f"ready{i}")],
                              cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    statuses = sorted(out.split()[0] for out, _ in outs)
    assert statuses == ["installed", "present"]
    assert {out.split()[1] for out, _ in outs} == {str(zoo_home / "models" / "m")}
    assert len(gets(fault_server)) == 1  # one transfer
    waiter_log = next(err for out, err in outs if out.startswith("present"))
    assert "waiting for 'm': held by pid" in waiter_log and "installed by another process" in waiter_log
    assert Cache(zoo_home).is_installed("m")


def test_download_never_imports_tensorflow(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    code = textwrap.dedent("""
        import sys
        from zoo_cli.cli.app import cli
        for args in (["download", "m"], ["verify"], ["cache"], ["cache", "prune"], ["rm", "m"]):
            try:
                cli.main(args, prog_name="zoo", standalone_mode=False)
            except SystemExit as exc:
                assert not exc.code, (args, exc.code)
        print("tensorflow" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert len(gets(fault_server)) == 1


def test_lock_wait_names_the_holder_and_times_out_clearly(fault_server, registry, zoo_home, archive):
    from zoo_cli.errors import DownloadError
    from zoo_cli.hub.install import install_checkpoint

    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    ckpt = load_registry(os.environ["ZOO_REGISTRY"]).get("m")
    cache = Cache(zoo_home)
    messages = []
    with checkpoint_lock(cache, "m"):
        with pytest.raises(DownloadError, match=rf"'m' is still locked after 1s \(held by pid {os.getpid()} on "):
            install_checkpoint(ckpt, cache, progress=False, log=messages.append, lock_timeout=1.0)
    assert messages and messages[0].startswith(f"waiting for 'm': held by pid {os.getpid()} on ")
    assert fault_server.requests() == []
    assert install_checkpoint(ckpt, cache, progress=False).status == "installed"  # free again


def test_rm_all_forget_hash_and_prune_archives_dry_run(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)},
             {"name": "n", "url": fault_server.add("models/n.tar.gz", archive)})
    assert run("download", "m", "n", "--keep-archive", "--quiet").exit_code == 0
    cache = Cache(zoo_home)
    assert sorted(p.name for p in cache.downloads_dir.iterdir()) == ["m.tar.gz", "n.tar.gz"]
    dry = json.loads(run("cache", "prune", "--archives", "--dry-run", "--json").stdout)
    assert sorted(Path(e["path"]).name for e in dry) == ["m.tar.gz", "n.tar.gz"]
    assert not any(e["removed"] for e in dry) and len(list(cache.downloads_dir.iterdir())) == 2
    assert run("rm", "n", "--forget-hash").exit_code == 0
    assert cache.known_hash(load_registry(os.environ["ZOO_REGISTRY"]).get("n").url) is None
    assert sorted(p.name for p in cache.downloads_dir.iterdir()) == ["m.tar.gz"]  # n's kept archive went too
    refused = run("rm", "--all", "--json")  # no terminal to ask on: refuse, naming the fix
    assert refused.exit_code == 2 and "add --yes to confirm (stdin is not a terminal" in refused.stderr
    assert cache.is_installed("m")
    rows = json.loads(run("rm", "--all", "--yes", "--json").stdout)
    assert [r["name"] for r in rows] == ["m"] and list(cache.models_dir.iterdir()) == []
    assert list(cache.downloads_dir.iterdir()) == []


def test_offline_hand_fetched_error_page_is_refused(fault_server, registry, zoo_home):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", b"unused")})
    target = zoo_home / "downloads" / "m.tar.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"<html>")  # what a browser behind a login portal saves
    result = run("download", "m", env={"ZOO_OFFLINE": "1"})
    assert result.exit_code == 4 and "m.tar.gz is an HTML page" in result.stderr
    assert not target.exists() and not Cache(zoo_home).model_dir("m").exists()
    assert fault_server.requests() == []


def test_ctrl_c_in_the_real_cli_keeps_a_resumable_partial(fault_server, registry, zoo_home, archive, tmp_path):
    import signal

    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive, Fault(rate=60_000))})
    proc = subprocess.Popen([sys.executable, "-m", "zoo_cli", "download", "m"], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while fault_server.bytes_sent() < 20_000:  # the transfer is under way
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Interrupted; partial downloads are kept and resume on the next run." in err
    cache = Cache(zoo_home)
    partial = zoo_home / "downloads" / "m.tar.gz.incomplete"
    assert partial.stat().st_size >= 16_000 and not cache.is_installed("m") and not cache.model_dir("m").exists()
    kept = partial.stat().st_size
    fault_server.set_fault("models/m.tar.gz", None)
    assert run("download", "m").exit_code == 0
    assert gets(fault_server)[-1].range == f"bytes={kept}-"


# ---------------------------------------------------------------- a full or read-only disk


def test_disk_filling_up_mid_download_is_one_line_and_the_next_run_resumes(fault_server, registry, zoo_home,
                                                                           archive, monkeypatch):
    import errno

    from zoo_cli.hub import attempt, claims

    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive, Fault(rate=400_000))})
    room = 50_000  # bytes the "disk" takes before it is full
    written = {"n": 0}
    real_write_all, real_write_text = attempt._write_all, claims.write_text_atomic

    def filling_write(out, data):
        if written["n"] + len(data) > room:
            # Like the kernel: what fits is written, then the disk is full.
            real_write_all(out, data[: room - written["n"]])
            written["n"] = room
            raise OSError(errno.ENOSPC, "No space left on device")
        written["n"] += len(data)
        real_write_all(out, data)

    def full_disk_text(path, text, **kw):
        if written["n"] >= room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(path, text, **kw)

    monkeypatch.setattr(attempt, "_write_all", filling_write)
    monkeypatch.setattr(claims, "write_text_atomic", full_disk_text)
    failed = run("download", "m")
    partial = zoo_home / "downloads" / "m.tar.gz.incomplete"
    assert failed.exit_code == 8
    assert failed.stderr == (f"Error: no space left on device while writing {partial}; free some space or point "
                             "ZOO_HOME at a larger disk\n")
    # The bytes are given back under the shared name (not this process's private one), with their sidecar.
    assert sorted(p.name for p in partial.parent.iterdir()) == [partial.name, partial.name + ".json"]
    assert partial.read_bytes() == archive[:room]
    listing = run("cache").stdout
    assert "partial downloads (resume with 'zoo download')" in listing and partial.name in listing

    monkeypatch.setattr(attempt, "_write_all", real_write_all)
    monkeypatch.setattr(claims, "write_text_atomic", real_write_text)
    again = run("download", "m", "--quiet")
    assert again.exit_code == 0, again.output
    assert gets(fault_server)[-1].range == f"bytes={room}-"
    assert Cache(zoo_home).is_installed("m") and list(partial.parent.iterdir()) == []


def test_read_only_cache_names_zoo_home_and_the_fix(fault_server, registry, zoo_home, archive, monkeypatch):
    import errno

    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    real_mkdir = os.mkdir

    def read_only_mkdir(path, *args, **kwargs):
        if str(path).startswith(str(zoo_home)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    result = run("download", "m")
    assert result.exit_code == 8
    assert result.stderr.startswith(f"Error: ZOO_HOME {zoo_home} is not writable (Read-only file system: "
                                    f"{zoo_home / 'locks'}); point ZOO_HOME at a writable directory")
    assert result.stderr.count("\n") == 1 and not gets(fault_server)


def test_cache_home_under_a_file_is_a_one_line_error(fault_server, registry, tmp_path, archive, monkeypatch):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("ZOO_HOME", str(blocker / "zoo"))
    result = run("download", "m")
    assert result.exit_code == 8 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: cannot write {blocker / 'zoo' / 'locks'}: Not a directory; check that "
                                    "ZOO_HOME is a writable directory")


def test_cache_lists_a_partial_claimed_by_a_dead_process_as_resumable(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    downloads = zoo_home / "downloads"
    downloads.mkdir(parents=True)
    cut = 30_000
    orphan = downloads / "m.tar.gz.incomplete.999999999-abcdef01"  # its process is gone (killed, kill -9)
    orphan.write_bytes(archive[:cut])
    head = fault_server.url("models/m.tar.gz")
    import requests

    validators = requests.head(head, timeout=5).headers
    orphan.with_name(orphan.name + ".json").write_text(json.dumps(
        {"url": head, "etag": validators["ETag"], "last_modified": None, "total": len(archive)}))
    mine = downloads / f"m.tar.gz.incomplete.{os.getpid()}-abcdef02"  # a process downloading right now
    mine.write_bytes(b"\x1f\x8b" + b"y" * 98)
    usage = json.loads(run("cache", "--json").stdout)
    by_file = {e["file"]: e for e in usage["partials"]}
    assert set(by_file) == {mine.name, orphan.name} and usage["leftovers"] == []
    assert by_file[mine.name]["in_progress"]
    assert by_file[orphan.name]["resumable"] and by_file[orphan.name]["left_by_pid"] == 999999999
    text = run("cache").stdout
    assert "being downloaded now" in text and "[left by stopped process 999999999; resumable]" in text
    mine.unlink()
    result = run("download", "m")
    assert result.exit_code == 0, result.output
    assert "taking over the 30000 bytes left by process 999999999" in result.stderr
    assert gets(fault_server)[-1].range == f"bytes={cut}-"
    assert list(downloads.iterdir()) == []


def test_prune_removes_a_partial_left_by_a_dead_process_but_not_a_live_one(registry, zoo_home):
    registry({"name": "m", "url": "http://127.0.0.1:9/models/m.tar.gz"})
    downloads = zoo_home / "downloads"
    downloads.mkdir(parents=True)
    orphan = downloads / "m.tar.gz.incomplete.999999999-abcdef01"
    orphan.write_bytes(b"\x1f\x8b" + b"x" * 998)
    mine = downloads / f"m.tar.gz.incomplete.{os.getpid()}-abcdef02"
    mine.write_bytes(b"\x1f\x8b" + b"y" * 98)
    pruned = json.loads(run("cache", "prune", "--json").stdout)
    assert [Path(e["path"]).name for e in pruned] == [orphan.name] and mine.exists()


def test_cli_says_why_it_retries_unless_quiet(registry, zoo_home):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    registry({"name": "m", "url": f"http://127.0.0.1:{port}/models/m.tar.gz"})
    loud = run("download", "m")
    lines = loud.stderr.splitlines()
    assert loud.exit_code == 3 and len(lines) == 3
    assert all(line.startswith("retrying in ") and "Connection refused" in line for line in lines[:2])
    assert lines[2].startswith("Error: giving up on") and lines[2].endswith("nothing was received")
    quiet = run("download", "m", "--quiet")
    assert quiet.exit_code == 3 and quiet.stderr.count("\n") == 1 and quiet.stderr.startswith("Error: giving up")


# ---------------------------------------------------------------- a damaged archive


@pytest.mark.parametrize("offline", [False, True])
def test_truncated_archive_is_deleted_and_the_message_says_so(fault_server, registry, zoo_home, archive, offline):
    url = fault_server.add("models/m.tar.gz", archive)
    registry({"name": "m", "url": url})
    kept = zoo_home / "downloads" / "m.tar.gz"  # fetched by hand, or left by an earlier run, and cut short
    kept.parent.mkdir(parents=True)
    kept.write_bytes(archive[: len(archive) * 2 // 3])
    env = {"ZOO_OFFLINE": "1"} if offline else None
    result = run("download", "m", "--quiet", env=env)
    assert result.exit_code == 4 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: m.tar.gz is corrupt or truncated (")
    if offline:
        assert result.stderr.endswith(f"; it was deleted — fetch {url} by hand to {kept} again, or unset "
                                      "ZOO_OFFLINE\n")
    else:
        assert result.stderr.endswith("; it was deleted — run the command again to download it afresh\n")
    assert "delete it" not in result.stderr and not kept.exists()
    assert not gets(fault_server)  # the kept file was used, not the network
    again = run("download", "m", "--quiet", env=env)
    if offline:
        assert again.exit_code == 3 and "offline mode" in again.stderr
    else:
        assert again.exit_code == 0 and Cache(zoo_home).is_installed("m") and len(gets(fault_server)) == 1
