"""The download path against a hostile or unlucky world (issue 14): downloads killed by any signal resume,
credentials never leak, silent or throttling servers fail in bounded time, odd archives get clear messages,
and the batch options (--jobs, --dry-run, --local-dir, rm wildcards and confirmation) behave."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.hub.test_fetch import archive, registry  # noqa: F401 - fixtures shared with the fetch tests
from tests.support.archives import plain_tar, two_top_folders_archive
from tests.support.http_server import Fault, fault_server  # noqa: F401 - fixture
from zoo_cli.cli.app import cli
from zoo_cli.errors import DownloadError
from zoo_cli.hub.cache import Cache
from zoo_cli.hub.locks import checkpoint_lock
from zoo_cli.hub.removal import remove_checkpoint
from zoo_cli.hub.session import TransferPolicy
from zoo_cli.hub.transfer import fetch_file
from zoo_cli.urls import mirror_url

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None, input: str | None = None):
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


def gets(server, path="models/m.tar.gz"):
    return [r for r in server.requests(path) if r.method == "GET"]


def start_download(args: list[str], server, bytes_before_stop: int = 20_000) -> subprocess.Popen:
    """``zoo download ...`` in a real process, returned once the transfer is under way."""
    proc = subprocess.Popen([sys.executable, "-m", "zoo_cli", "download", *args], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while server.bytes_sent() < bytes_before_stop:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    return proc


def _listening_but_mute() -> socket.socket:
    """A socket that accepts TCP connections (the kernel completes them) but never answers a request."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


# ---------------------------------------------------------------- a download stopped by any signal


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_a_download_stopped_by_any_signal_resumes_where_it_stopped(fault_server, registry, zoo_home, archive, sig):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive, Fault(rate=60_000))})
    proc = start_download(["m"], fault_server)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    downloads = zoo_home / "downloads"
    if sig == signal.SIGKILL:
        # No handler runs: the bytes stay under the dead process's private claim name.
        assert proc.returncode == -signal.SIGKILL
        [left] = [p for p in downloads.iterdir() if not p.name.endswith(".json")]
        assert left.name.startswith(f"m.tar.gz.incomplete.{proc.pid}-")
    else:
        # Handled like Ctrl-C: the bytes are given back under the shared name, with their sidecar.
        assert proc.returncode == 128 + sig, err
        assert f"Stopped by {sig.name}; partial downloads are kept and resume on the next run." in err
        left = downloads / "m.tar.gz.incomplete"
        assert sorted(p.name for p in downloads.iterdir()) == [left.name, left.name + ".json"]
    kept = left.stat().st_size
    assert kept >= 16_000 and left.read_bytes() == archive[:kept]
    assert not Cache(zoo_home).model_dir("m").exists()
    usage = json.loads(run("cache", "--json").stdout)
    assert [(e["file"], e["resumable"]) for e in usage["partials"]] == [(left.name, True)]
    assert usage["leftovers"] == []
    fault_server.set_fault("models/m.tar.gz", None)
    again = run("download", "m")
    assert again.exit_code == 0, again.output
    assert gets(fault_server)[-1].range == f"bytes={kept}-"  # resumed, not started over
    assert f"resumed after {kept / 1e6:.1f} MB" in again.stdout
    assert Cache(zoo_home).manifest("m")["sha256"] and list(downloads.iterdir()) == []


def test_sigterm_stops_parallel_downloads_and_keeps_every_partial(fault_server, registry, zoo_home, archive):
    registry(*({"name": n, "url": fault_server.add(f"models/{n}.tar.gz", archive, Fault(rate=60_000))}
               for n in ("a", "b")))
    proc = start_download(["--all", "--jobs", "2"], fault_server, bytes_before_stop=30_000)
    deadline = time.monotonic() + 10
    while fault_server.max_active < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - stopped < 5  # the workers stop at their next chunk
    assert proc.returncode == 143, err
    downloads = zoo_home / "downloads"
    names = sorted(p.name for p in downloads.iterdir())
    assert names == ["a.tar.gz.incomplete", "a.tar.gz.incomplete.json", "b.tar.gz.incomplete",
                     "b.tar.gz.incomplete.json"]
    for n in "ab":
        kept = (downloads / f"{n}.tar.gz.incomplete").read_bytes()
        assert kept and archive.startswith(kept)


# ---------------------------------------------------------------- credentials


def test_mirror_credentials_never_reach_a_file_or_an_output(fault_server, registry, zoo_home, archive):
    user, password, token = "zoouser", "S3cretPassw0rd", "T0kenValue42"
    data_url = fault_server.add("sub/models/m.tar.gz", archive, Fault(rate=60_000, auth=f"{user}:{password}"))
    fault_server.add("sub/models/gone.tar.gz", archive)
    fault_server._files.pop("/sub/models/gone.tar.gz")  # → 404
    registry({"name": "m", "url": "http://download.invalid/models/m.tar.gz"},
             {"name": "gone", "url": "http://download.invalid/models/gone.tar.gz"})
    host = data_url.split("/")[2]
    mirror = f"http://{user}:{password}@{host}/sub?x=1&token={token}"
    outputs = []

    # 1. stopped mid-transfer: the sidecar of the partial is on disk
    proc = start_download(["m", "--mirror", mirror], fault_server)
    owner = (zoo_home / "locks" / "m.owner").read_text()  # who holds the lock, and how it was started
    assert "--mirror http://***@" in owner and password not in owner and token not in owner
    proc.send_signal(signal.SIGTERM)
    outputs += proc.communicate(timeout=30)
    assert (zoo_home / "downloads" / "m.tar.gz.incomplete.json").exists()
    fault_server.set_fault("sub/models/m.tar.gz", Fault(auth=f"{user}:{password}"))
    # 2. resumed and installed (manifest, known hash, JSON rows); 3. a failure (error line)
    for args in (["download", "m", "--mirror", mirror],
                 ["download", "m", "gone", "--mirror", mirror, "--json"],
                 ["download", "gone", "--mirror", mirror],
                 ["download", "gone", "--mirror", mirror, "--dry-run", "--json"],
                 ["download", "gone", "--mirror", mirror, "--dry-run"],
                 ["info", "m", "--json"], ["info", "m"], ["cache", "--json"], ["verify", "--json"]):
        result = run(*args, env={"ZOO_MIRROR": mirror})
        outputs += [result.stdout, result.stderr]
    assert Cache(zoo_home).is_installed("m")
    # The credentials were used: Basic auth and the token reached the server.
    last = gets(fault_server, "sub/models/m.tar.gz")[-1]
    assert last.authorization and last.query == f"x=1&token={token}"
    assert gets(fault_server, "sub/models/m.tar.gz")[1].range  # and the transfer resumed
    manifest = Cache(zoo_home).manifest("m")
    assert manifest["url"] == f"http://***@{host}/sub/models/m.tar.gz?x=1&token=***"
    assert any("Error: gone: HTTP 404" in o for o in outputs)
    assert any("Error: HTTP 404" in o and "http://***@" in o for o in outputs)
    for secret in (password, token):
        assert not any(secret in o for o in outputs), secret
        leaked = [p for p in zoo_home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert leaked == []


def test_netrc_credentials_are_used_and_survive_a_redirect(fault_server, registry, zoo_home, archive, tmp_path,
                                                          monkeypatch):
    fault_server.add("store/m.tar.gz", archive, Fault(auth="netrcuser:netrcpass"))
    url = fault_server.add("models/m.tar.gz", b"", Fault(redirect="/store/m.tar.gz"))
    registry({"name": "m", "url": url})
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrcuser password netrcpass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    result = run("download", "m")
    assert result.exit_code == 0, result.output
    assert [r.status for r in fault_server.requests()] == [302, 200]
    assert Cache(zoo_home).is_installed("m")


def test_401_says_where_credentials_go_and_echoes_none(fault_server, registry, zoo_home, archive):
    url = fault_server.add("models/m.tar.gz", archive, Fault(auth="right:secret"))
    registry({"name": "m", "url": url})
    mirror = url.rsplit("/models/", 1)[0].replace("http://", "http://wrong:WrongPass99@")
    result = run("download", "m", "--mirror", mirror)
    assert result.exit_code == 3
    assert "HTTP 401" in result.stderr and "~/.netrc" in result.stderr and "WrongPass99" not in result.stderr


# ---------------------------------------------------------------- servers that stall, fail or throttle


def test_a_silent_server_fails_in_bounded_time_and_says_what_happened(registry, zoo_home):
    sock = _listening_but_mute()
    try:
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/models/m.tar.gz"
        policy = TransferPolicy(read_timeout=0.4, connect_timeout=0.4)
        messages = []
        start = time.monotonic()
        with pytest.raises(DownloadError) as err:
            fetch_file(url, zoo_home / "m.tar.gz.incomplete", policy=policy, progress=False, log=messages.append)
        took = time.monotonic() - start
        # Two tries of 0.4 s and one short pause — not seven tries with backoff.
        assert took < 3.0
        assert str(err.value).startswith(f"giving up on {url} after 2 attempts: connected to 127.0.0.1:{port}, "
                                         "but no response in 0.4 s; the server (or a proxy) accepts connections")
        assert "cannot connect" not in str(err.value)
        assert len(messages) == 1 and "connected to" in messages[0]
        # The same through the command line, with --timeout.
        registry({"name": "m", "url": url})
        start = time.monotonic()
        result = run("download", "m", "--timeout", "0.4")
        assert time.monotonic() - start < 3.0
        assert result.exit_code == 3 and "but no response in 0.4 s" in result.stderr
    finally:
        sock.close()


def test_a_stall_mid_body_says_so_and_keeps_the_bytes(fault_server, zoo_home, archive):
    url = fault_server.add("m.tar.gz", archive, Fault(stall_after=40_000, stall_seconds=10))
    messages = []
    result = fetch_file(url, zoo_home / "m.tar.gz.incomplete", progress=False, log=messages.append,
                        policy=TransferPolicy(read_timeout=0.5, backoff_factor=0.01, chunk_size=16 << 10))
    assert result.resumed_from == 0 and result.size == len(archive)
    assert any("transfer stalled at 40000 of" in m and "no data for 0.5 s" in m for m in messages)


def test_a_persistent_500_gets_a_short_budget(fault_server, zoo_home, archive):
    url = fault_server.add("m.tar.gz", archive, Fault(fail_status=500, fail_times=99))
    delays, messages = [], []
    with pytest.raises(DownloadError, match=r"after 4 attempts: HTTP 500"):
        fetch_file(url, zoo_home / "m.tar.gz.incomplete", progress=False, sleep=delays.append,
                   log=messages.append)  # the default policy, with the waits recorded instead of slept
    assert len(delays) == 3 and sum(delays) < 12  # was 6 retries and ~66 s
    assert messages[-1].endswith("retry 3 of 3)")


def test_a_long_retry_after_is_refused_at_once_and_announced(fault_server, zoo_home, archive):
    url = fault_server.add("m.tar.gz", archive, Fault(fail_status=429, fail_times=99, retry_after="100000"))
    delays = []
    with pytest.raises(DownloadError) as err:
        fetch_file(url, zoo_home / "m.tar.gz.incomplete", progress=False, sleep=delays.append)
    assert "HTTP 429 Too Many Requests" in str(err.value)
    assert "the server asks to retry in 28 h (zoo waits at most 2 min); giving up" in str(err.value)
    assert delays == [] and len(gets(fault_server, "m.tar.gz")) == 1


def test_waiting_without_progress_is_capped_by_the_time_budget(fault_server, zoo_home, archive):
    url = fault_server.add("m.tar.gz", archive, Fault(fail_status=503, fail_times=99, retry_after="5"))
    delays = []
    policy = TransferPolicy(time_budget=12, status_retries=10, retries=10)
    with pytest.raises(DownloadError, match=r"no progress for 10 s, and the next try would pass the 12 s budget"):
        fetch_file(url, zoo_home / "m.tar.gz.incomplete", progress=False, sleep=delays.append, policy=policy)
    assert delays == [5, 5]


# ---------------------------------------------------------------- mirror URLs


def test_a_mirror_with_a_path_and_a_query_builds_a_correct_url(fault_server, registry, zoo_home, archive):
    assert mirror_url("http://d.org/models/a.tar.gz", "http://h/sub?x=1") == "http://h/sub/models/a.tar.gz?x=1"
    assert mirror_url("http://d.org/models/a.tar.gz?v=2", "https://h/sub/?x=1") == \
        "https://h/sub/models/a.tar.gz?x=1&v=2"
    fault_server.add("sub/models/m.tar.gz", archive)
    registry({"name": "m", "url": "http://download.invalid/models/m.tar.gz"})
    result = run("download", "m", "--mirror", fault_server.url("sub") + "?x=1")
    assert result.exit_code == 0, result.output
    [req] = fault_server.requests()
    assert (req.path, req.query) == ("/sub/models/m.tar.gz", "x=1")


# ---------------------------------------------------------------- archives that are not what they should be


def test_an_uncompressed_tar_is_named_as_such(fault_server, registry, zoo_home):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", plain_tar())})
    result = run("download", "m")
    assert result.exit_code == 3 and result.stderr.count("\n") == 1
    assert "returned an uncompressed tar archive instead of a gzip archive; it is not the checkpoint" \
        in result.stderr
    assert "\\x00" not in result.stderr and "captive portal" not in result.stderr
    # The same file placed by hand for offline use.
    placed = zoo_home / "downloads" / "m.tar.gz"
    placed.write_bytes(plain_tar())
    offline = run("download", "m", env={"ZOO_OFFLINE": "1"})
    assert offline.exit_code == 4 and "m.tar.gz is an uncompressed tar archive, not a .tar.gz archive" \
        in offline.stderr
    assert "\\x00" not in offline.stderr and "error page" not in offline.stderr


def test_two_top_folders_are_named_not_a_missing_graph(fault_server, registry, zoo_home):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", two_top_folders_archive())})
    result = run("download", "m")
    assert result.exit_code == 4
    assert "m.tar.gz has 2 top-level folders (a, b) where a checkpoint archive has one" in result.stderr
    assert not Cache(zoo_home).model_dir("m").exists()


def test_offline_a_wrong_archive_placed_by_hand_is_to_be_replaced(registry, zoo_home, archive):
    import hashlib

    url = "http://download.invalid/models/m.tar.gz"
    registry({"name": "m", "url": url, "sha256": hashlib.sha256(b"the real one").hexdigest()})
    placed = zoo_home / "downloads" / "m.tar.gz"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(archive)
    result = run("download", "m", env={"ZOO_OFFLINE": "1"})
    assert result.exit_code == 4
    assert result.stderr.rstrip().endswith(f"{placed} is not the expected archive (nothing was installed) — replace "
                                           f"it with a good copy of {url}, or unset ZOO_OFFLINE to download it")
    assert "run the command again" not in result.stderr and "ZOO_MIRROR" not in result.stderr


# ---------------------------------------------------------------- rm / info / download options


def test_rm_and_info_take_wildcards_like_download(fault_server, registry, zoo_home, archive):
    registry(*({"name": n, "url": fault_server.add(f"models/{n}.tar.gz", archive)} for n in ("ab1", "ab2", "cd")))
    assert run("download", "ab*", "cd", "-q").exit_code == 0
    info = json.loads(run("info", "AB?", "--json").stdout)
    assert [i["name"] for i in info] == ["ab1", "ab2"] and all(i["downloaded"] for i in info)
    assert "ab1" in run("info", "ab*").stdout and run("info", "zz*").exit_code == 2
    result = run("rm", "ab*", "--yes")
    assert result.exit_code == 0 and result.stdout.count("removed ab") == 2
    cache = Cache(zoo_home)
    assert not cache.is_installed("ab1") and not cache.is_installed("ab2") and cache.is_installed("cd")
    none = run("rm", "ab*", "--yes")
    assert none.exit_code == 5 and "no downloaded checkpoint matches 'ab*'" in none.stderr


def test_rm_all_asks_first_and_keeps_everything_on_no(fault_server, registry, zoo_home, archive, monkeypatch):
    from zoo_cli.cli.commands import rm

    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    assert run("download", "m", "-q").exit_code == 0
    monkeypatch.setattr(rm, "stdin_is_terminal", lambda: True)
    declined = run("rm", "--all", input="n\n")
    assert declined.exit_code == 2 and "remove 1 checkpoint(s): m?" in declined.stderr
    assert Cache(zoo_home).is_installed("m")
    accepted = run("rm", "--all", input="y\n")
    assert accepted.exit_code == 0 and "removed m" in accepted.stdout and not Cache(zoo_home).is_installed("m")


def test_rm_says_it_waits_for_a_download_holding_the_lock(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)})
    assert run("download", "m", "-q").exit_code == 0
    cache = Cache(zoo_home)
    held, release = threading.Event(), threading.Event()

    def holder():
        with checkpoint_lock(cache, "m"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    messages = []
    with pytest.raises(DownloadError, match="'m' is still locked after 1s"):
        remove_checkpoint("m", cache, lock_timeout=0.6, log=messages.append)
    assert messages and messages[0].startswith(f"waiting for 'm': held by pid {os.getpid()}")
    threading.Timer(0.5, release.set).start()
    result = run("rm", "m")
    t.join(5)
    assert result.exit_code == 0 and "waiting for 'm': held by pid" in result.stderr
    assert not cache.model_dir("m").exists()


def test_local_dir_installs_there_and_never_clobbers_other_files(fault_server, registry, zoo_home, archive,
                                                                 tmp_path):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive)},
             {"name": "n", "url": fault_server.add("models/n.tar.gz", archive)})
    target = tmp_path / "mine" / "m"
    result = run("download", "m", "--local-dir", str(target))
    assert result.exit_code == 0, result.output
    assert (target / "frozen_inference_graph.pb").is_file() and f"→ {target}" in result.stdout
    assert not Cache(zoo_home).model_dir("m").exists()
    again = run("download", "m", "--local-dir", str(target))
    assert "already installed" in again.stdout and len(gets(fault_server)) == 1
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    refused = run("download", "m", "--local-dir", str(busy))
    assert refused.exit_code == 2 and "already holds other files" in refused.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    two = run("download", "m", "n", "--local-dir", str(tmp_path / "x"))
    assert two.exit_code == 2 and "--local-dir takes one checkpoint" in two.stderr


def test_dry_run_shows_what_would_be_fetched_without_any_request(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive), "size_mb": 8.0},
             {"name": "n", "url": fault_server.add("models/n.tar.gz", archive), "size_mb": 3.0},
             {"name": "p", "url": fault_server.add("models/p.tar.gz", archive)})
    assert run("download", "p", "-q").exit_code == 0
    partial = zoo_home / "downloads" / "n.tar.gz.incomplete"
    partial.write_bytes(archive[:1_000_000 // 1000])
    before = len(fault_server.requests())
    rows = json.loads(run("download", "--all", "--dry-run", "--json").stdout)
    assert [(r["name"], r["action"], r["size"], r["have"], r["to_fetch"]) for r in rows] == [
        ("m", "download", 8_000_000, 0, 8_000_000), ("n", "resume", 3_000_000, 1000, 2_999_000),
        ("p", "present", None, 0, 0)]
    text = run("download", "--all", "--dry-run").stdout
    assert "m: would download 8.0 MB (registry size) from http://127.0.0.1:" in text
    assert "n: would resume after 0.0 MB of 3.0 MB" in text and "p: already installed" in text
    assert text.rstrip().endswith("dry run: 2 of 3 to fetch, ~11.0 MB; nothing was downloaded")
    assert len(fault_server.requests()) == before and not Cache(zoo_home).model_dir("m").exists()


def test_download_all_runs_in_parallel_and_ends_with_a_summary(fault_server, registry, zoo_home, archive):
    slow = Fault(rate=300_000)  # ~0.5 s per archive, so parallel transfers overlap
    registry(*({"name": n, "url": fault_server.add(f"models/{n}.tar.gz", archive, slow)} for n in ("a", "b", "c")),
             {"name": "gone", "url": fault_server.url("models/gone.tar.gz")})
    assert run("download", "c", "-q").exit_code == 0
    result = run("download", "--all", "--jobs", "3")
    assert result.exit_code == 3
    assert fault_server.max_active >= 2
    lines = result.stdout.strip().splitlines()
    assert lines[-2:] == ["summary: 2 installed, 1 already present, 1 failed",
                          lines[-1]] and lines[-1].startswith("  failed gone: HTTP 404")
    assert "Error: gone: HTTP 404" in result.stderr
    assert all(Cache(zoo_home).is_installed(n) for n in "abc")


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "0 is not in the range 1<=x<=8"), (["--jobs", "99"], "99 is not in the range 1<=x<=8"),
    (["--timeout", "0"], "0.0 is not in the range 0.1<=x<=3600"), (["--timeout", "nan"], "nan"),
])
def test_download_options_are_bounded(registry, args, message):
    registry({"name": "m", "url": "http://127.0.0.1:9/models/m.tar.gz"})
    result = run("download", "m", *args)
    assert result.exit_code == 2 and message in result.stderr


def test_progress_flags_and_quiet_alias(fault_server, registry, zoo_home, archive):
    registry({"name": "m", "url": fault_server.add("models/m.tar.gz", archive, Fault(fail_status=503, fail_times=1))})
    shown = run("download", "m", "--progress")
    assert shown.exit_code == 0 and "m.tar.gz" in shown.stderr and "B/s" in shown.stderr  # a bar, even untty'd
    run("rm", "m")
    fault_server.set_fault("models/m.tar.gz", Fault(fail_status=503, fail_times=1))
    plain = run("download", "m", "--no-progress")
    assert "retrying in" in plain.stderr and "B/s" not in plain.stderr  # status lines, no bar
    run("rm", "m")
    fault_server.set_fault("models/m.tar.gz", Fault(fail_status=503, fail_times=1))
    quiet = run("download", "m", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""
