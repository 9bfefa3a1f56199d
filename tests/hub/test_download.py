"""Transfers against a real, misbehaving HTTP server on 127.0.0.1: resume, retries, faults, verification."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from tests.support.archives import FULL_CONTENTS, frozen_graph_bytes, registry_yaml, zoo_archive
from tests.support.http_server import Fault, fault_server  # noqa: F401 - fixture
from zoo_cli.constants import FROZEN_GRAPH
from zoo_cli.errors import ArchiveError, ChecksumError, DownloadError
from zoo_cli.hub.cache import Cache
from zoo_cli.hub.install import install_checkpoint
from zoo_cli.hub.session import TransferPolicy
from zoo_cli.hub.transfer import fetch_file
from zoo_cli.registry.catalog import parse_registry

# Fast retries and small chunks so faults show up within a test's time budget; timeouts generous enough
# that a loaded CI machine does not add retries the tests do not expect (the stall test sets its own).
POLICY = TransferPolicy(retries=4, backoff_factor=0.01, backoff_jitter=0.01, connect_timeout=5.0,
                        read_timeout=5.0, chunk_size=16 << 10)


@pytest.fixture(scope="module")
def archive() -> bytes:
    return zoo_archive(data_size=200_000)


@pytest.fixture(scope="module")
def archive_v2() -> bytes:
    return zoo_archive(data_size=200_000, seed=1)


def make_ckpt(server, data, fault=None, *, name="m", sha256=None, contents=FULL_CONTENTS):
    url = server.add(f"models/{name}.tar.gz", data, fault)
    text = registry_yaml([{"name": name, "url": url, "sha256": sha256, "contents": contents}])
    return parse_registry(text).get(name)


def install(ckpt, home, **kwargs):
    kwargs.setdefault("policy", POLICY)
    kwargs.setdefault("progress", False)
    return install_checkpoint(ckpt, Cache(home), **kwargs)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_not_installed(home, name="m"):
    cache = Cache(home)
    assert not cache.is_installed(name)
    assert not cache.model_dir(name).exists()
    models = cache.models_dir
    assert not models.exists() or not any(p.name.startswith(".tmp-") for p in models.iterdir())


def gets(server, name="m"):
    return [r for r in server.requests(f"models/{name}.tar.gz") if r.method == "GET"]


# ---------------------------------------------------------------- the happy path


def test_download_installs_verified_and_records_manifest(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive)
    result = install(ckpt, zoo_home)
    cache = Cache(zoo_home)
    assert result.status == "installed" and result.path == cache.model_dir("m")
    assert result.sha256 == sha(archive) and result.size == len(archive) == result.bytes_transferred
    assert cache.is_installed("m")
    # The archive's single top folder is stripped: the graph sits right in models/<name>/.
    assert cache.frozen_graph_path(ckpt).read_bytes() == frozen_graph_bytes()
    manifest = cache.manifest("m")
    assert manifest["url"] == ckpt.url and manifest["size"] == len(archive) and manifest["sha256"] == sha(archive)
    assert manifest["etag"] and manifest["zoo_version"] and manifest["downloaded_at"]
    assert manifest["top_folder"] == "deeplabv3_mnv2_pascal_train_aug"
    graph = manifest["files"][FROZEN_GRAPH]
    assert graph == {"size": len(frozen_graph_bytes()), "sha256": sha(frozen_graph_bytes())}
    assert sorted(manifest["files"]) == sorted(
        [FROZEN_GRAPH, "model.ckpt.index", "model.ckpt.data-00000-of-00001"])
    # Trust on first use: the hash is recorded for the next download; the archive itself is not kept.
    assert cache.known_hash(ckpt.url)["sha256"] == sha(archive)
    assert list(cache.downloads_dir.iterdir()) == []
    # A second call transfers nothing.
    again = install(ckpt, zoo_home)
    assert again.status == "present" and again.bytes_transferred == 0
    assert len(gets(fault_server)) == 1


# ---------------------------------------------------------------- resume


def test_resume_after_dropped_connection_fetches_only_the_rest(fault_server, zoo_home, archive):
    cut = 60_000
    ckpt = make_ckpt(fault_server, archive, Fault(drop_after=cut))
    result = install(ckpt, zoo_home)
    first, second = gets(fault_server)
    assert first.range is None and first.sent == cut
    assert second.range == f"bytes={cut}-" and second.if_range and second.status == 206
    assert second.sent == len(archive) - cut < len(archive)
    assert result.sha256 == sha(archive) and Cache(zoo_home).is_installed("m")


def test_resume_across_runs_from_partial_file_and_sidecar(fault_server, zoo_home, archive):
    cut = 50_000
    ckpt = make_ckpt(fault_server, archive, Fault(drop_after=cut))
    cache = Cache(zoo_home)
    with pytest.raises(DownloadError, match="giving up.*resumes"):
        install(ckpt, zoo_home, policy=TransferPolicy(retries=0, read_timeout=5, connect_timeout=5))
    partial = cache.partial_path(ckpt)
    assert partial.stat().st_size == cut
    sidecar = json.loads(partial.with_name(partial.name + ".json").read_text())
    assert sidecar["url"] == ckpt.url and sidecar["total"] == len(archive) and sidecar["etag"]
    assert_not_installed(zoo_home)
    result = install(ckpt, zoo_home)
    last = gets(fault_server)[-1]
    assert last.range == f"bytes={cut}-" and last.sent == len(archive) - cut
    assert result.resumed_from == cut and result.bytes_transferred == len(archive) - cut
    assert result.sha256 == sha(archive) and cache.is_installed("m") and not partial.exists()


def test_server_ignoring_range_restarts_instead_of_appending(fault_server, zoo_home, archive):
    cut = 40_000
    ckpt = make_ckpt(fault_server, archive, Fault(drop_after=cut, ignore_range=True))
    messages = []
    result = install(ckpt, zoo_home, log=messages.append)
    first, second = gets(fault_server)
    assert second.range == f"bytes={cut}-" and second.status == 200 and second.sent == len(archive)
    assert any("instead of the missing range" in m for m in messages)
    # The classic hub bug would leave cut + len(archive) bytes; we hold exactly the file.
    assert result.size == len(archive) and result.sha256 == sha(archive)


def test_file_changed_between_attempts_restarts_with_the_new_file(fault_server, zoo_home, archive, archive_v2):
    ckpt = make_ckpt(fault_server, archive, Fault(drop_after=30_000, change_after=2, alt=archive_v2))
    result = install(ckpt, zoo_home)
    second = gets(fault_server)[1]
    assert second.if_range and second.status == 200  # If-Range no longer matches: the whole new file
    assert result.sha256 == sha(archive_v2) != sha(archive)
    assert Cache(zoo_home).manifest("m")["sha256"] == sha(archive_v2)


def test_416_on_a_complete_partial_goes_straight_to_verification(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive)

    def stop_at_the_end(done, total):
        if done == total:
            raise KeyboardInterrupt  # every byte is on disk, but the run never finished

    with pytest.raises(KeyboardInterrupt):
        install(ckpt, zoo_home, on_progress=stop_at_the_end)
    assert Cache(zoo_home).partial_path(ckpt).stat().st_size == len(archive)
    result = install(ckpt, zoo_home)
    last = gets(fault_server)[-1]
    assert last.status == 416 and last.range == f"bytes={len(archive)}-"
    assert result.bytes_transferred == 0 and result.sha256 == sha(archive)
    assert Cache(zoo_home).is_installed("m")


def test_interrupt_mid_transfer_leaves_a_resumable_partial_not_an_install(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive)
    cache = Cache(zoo_home)

    def interrupt(done, total):
        if done >= 80_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        install(ckpt, zoo_home, on_progress=interrupt)
    partial = cache.partial_path(ckpt)
    kept = partial.stat().st_size
    assert 80_000 <= kept < len(archive)
    assert partial.with_name(partial.name + ".json").is_file()
    assert_not_installed(zoo_home)
    assert not cache.lock_path("m").exists() or not (cache.locks_dir / "m.owner").exists()
    result = install(ckpt, zoo_home)
    assert gets(fault_server)[-1].range == f"bytes={kept}-"
    assert result.bytes_transferred == len(archive) - kept and result.sha256 == sha(archive)


def test_partial_without_validators_is_not_resumed_blindly(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(drop_after=30_000, no_validators=True))
    result = install(ckpt, zoo_home)
    # Without ETag/Last-Modified (and no pin) the bytes on disk cannot be trusted: start over, no Range.
    assert [r.range for r in gets(fault_server)] == [None, None]
    assert result.sha256 == sha(archive)


def test_partial_without_validators_resumes_when_the_hash_is_pinned(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(drop_after=30_000, no_validators=True), sha256=sha(archive))
    result = install(ckpt, zoo_home)
    assert [r.range for r in gets(fault_server)] == [None, "bytes=30000-"]
    assert result.sha256_check == "pinned"


# ---------------------------------------------------------------- retries and faults


def test_503_twice_then_success(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(fail_status=503, fail_times=2))
    messages = []
    install(ckpt, zoo_home, log=messages.append)
    assert [r.status for r in gets(fault_server)] == [503, 503, 200]
    assert sum("HTTP 503" in m and "retrying" in m for m in messages) == 2


def test_persistent_500_gives_a_clear_error_after_the_last_try(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(fail_status=500, fail_times=99))
    policy = TransferPolicy(retries=2, backoff_factor=0.01, backoff_jitter=0.0, read_timeout=5)
    with pytest.raises(DownloadError, match=r"giving up on .* after 3 attempts: HTTP 500"):
        install(ckpt, zoo_home, policy=policy)
    assert len(gets(fault_server)) == 3
    assert_not_installed(zoo_home)


def test_429_retry_after_is_honoured(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(fail_status=429, fail_times=1, retry_after="1"))
    messages = []
    start = time.monotonic()
    install(ckpt, zoo_home, log=messages.append)
    assert time.monotonic() - start >= 0.95
    assert any(m.startswith("retrying in 1.0s (HTTP 429") and "as the server's Retry-After asks" in m
               for m in messages)


def test_408_is_retried(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(fail_status=408, fail_times=1))
    install(ckpt, zoo_home)
    assert [r.status for r in gets(fault_server)] == [408, 200]


def test_404_fails_at_once_with_the_url(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive)
    fault_server._files.pop("/models/m.tar.gz")
    with pytest.raises(DownloadError, match=r"HTTP 404 .*not on the server.* for http://127\.0\.0\.1:\d+/models/m"):
        install(ckpt, zoo_home)
    assert len(fault_server.requests()) == 1


def test_stalled_server_times_out_and_resumes(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(stall_after=70_000, stall_seconds=20))
    policy = TransferPolicy(retries=4, backoff_factor=0.01, backoff_jitter=0.0, read_timeout=1.0,
                            chunk_size=16 << 10)
    start = time.monotonic()
    result = install(ckpt, zoo_home, policy=policy)
    assert time.monotonic() - start < 10  # read timeout 1 s, never the server's 20 s
    assert gets(fault_server)[1].range == "bytes=70000-"  # every byte that arrived before the stall is kept
    assert result.sha256 == sha(archive)


def test_slow_server_with_progress_reports(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(rate=800_000))
    seen = []
    install(ckpt, zoo_home, on_progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 5 and seen == sorted(seen)
    assert seen[-1] == (len(archive), len(archive))


def test_budget_resets_while_bytes_keep_arriving(fault_server, zoo_home, archive):
    # Six drops with a budget of two retries: it still completes because every attempt gets further.
    ckpt = make_ckpt(fault_server, archive, Fault(drop_after=30_000, drop_times=6))
    policy = TransferPolicy(retries=2, backoff_factor=0.01, backoff_jitter=0.0, read_timeout=5)
    result = install(ckpt, zoo_home, policy=policy)
    assert len(gets(fault_server)) == 7
    assert result.sha256 == sha(archive)


def test_connection_refused_is_retried_then_reported(zoo_home, archive):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    text = registry_yaml([{"name": "m", "url": f"http://127.0.0.1:{port}/models/m.tar.gz"}])
    ckpt = parse_registry(text).get("m")
    with pytest.raises(DownloadError, match=r"after 3 attempts: cannot connect .*Connection refused"):
        install(ckpt, zoo_home, policy=TransferPolicy(retries=2, backoff_factor=0.01, backoff_jitter=0.0, connect_timeout=1))
    assert_not_installed(zoo_home)


def _closed_port() -> int:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    return port


def test_a_server_that_is_down_fails_fast_not_after_the_whole_budget(zoo_home, archive):
    url = f"http://127.0.0.1:{_closed_port()}/models/m.tar.gz"
    ckpt = parse_registry(registry_yaml([{"name": "m", "url": url}])).get("m")
    messages, delays = [], []
    # The default policy: six retries with backoff up to a minute for a flaky transfer, but a refused
    # connection only gets its two short connect retries.
    with pytest.raises(DownloadError) as err:
        fetch_file(url, Cache(zoo_home).partial_path(ckpt), progress=False, log=messages.append,
                   sleep=delays.append)
    assert str(err.value).startswith(f"giving up on {url} after 3 attempts: cannot connect to {url}: "
                                     "[Errno 111] Connection refused; is the server up and the host name right?")
    assert str(err.value).endswith("nothing was received")
    assert len(delays) == 2 and sum(delays) < 2.5
    assert [m.split(" (")[0] for m in messages] == [f"retrying in {d:.1f}s" for d in delays]
    assert all("Connection refused" in m for m in messages)
    assert not Cache(zoo_home).downloads_dir.exists() or list(Cache(zoo_home).downloads_dir.iterdir()) == []


def test_an_unknown_host_fails_fast(zoo_home, monkeypatch):
    import socket

    real = socket.getaddrinfo

    def no_dns(host, *args, **kwargs):
        if host == "checkpoints.example.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    url = "http://checkpoints.example.test/models/m.tar.gz"
    delays = []
    with pytest.raises(DownloadError, match=r"after 3 attempts: .*Name or service not known; is the server up "
                                            r"and the host name right\?.*nothing was received"):
        fetch_file(url, zoo_home / "m.tar.gz.incomplete", progress=False, sleep=delays.append)
    assert len(delays) == 2


def test_a_server_gone_down_after_a_partial_says_the_bytes_are_kept(zoo_home, archive):
    cut = 40_000
    url = f"http://127.0.0.1:{_closed_port()}/models/m.tar.gz"
    partial = zoo_home / "downloads" / "m.tar.gz.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(archive[:cut])  # left by an earlier run, when the server was up
    partial.with_name(partial.name + ".json").write_text(json.dumps(
        {"url": url, "etag": '"abc"', "last_modified": None, "total": len(archive)}))
    with pytest.raises(DownloadError, match=rf"after 3 attempts: .*Connection refused.* — the {cut} bytes "
                                            "received so far are kept and the download resumes"):
        fetch_file(url, partial, progress=False, sleep=lambda _s: None)
    assert partial.read_bytes() == archive[:cut]


# ---------------------------------------------------------------- verification


def test_html_page_instead_of_archive_is_rejected_and_not_retried(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(html=True))
    with pytest.raises(DownloadError, match="returned an HTML page .*instead of a gzip archive"):
        install(ckpt, zoo_home)
    assert len(gets(fault_server)) == 1
    assert_not_installed(zoo_home)
    assert list(Cache(zoo_home).downloads_dir.iterdir()) == []  # the page is not kept as a "partial"


def test_gzip_encoded_html_page_is_rejected_by_its_content_type(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(html=True, html_gzip=True))
    with pytest.raises(DownloadError, match="an HTML page .*Content-Encoding gzip instead of a gzip archive"):
        install(ckpt, zoo_home)
    assert len(gets(fault_server)) == 1
    assert_not_installed(zoo_home)


def test_advertised_length_too_long_fails_cleanly(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(length_delta=+100))
    with pytest.raises(DownloadError, match="giving up"):
        install(ckpt, zoo_home,
                policy=TransferPolicy(retries=3, backoff_factor=0.01, backoff_jitter=0.0, read_timeout=5))
    assert_not_installed(zoo_home)


def test_advertised_length_too_short_is_caught_by_verification(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(length_delta=-100))
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        install(ckpt, zoo_home)
    assert_not_installed(zoo_home)
    assert not Cache(zoo_home).archive_path(ckpt).exists()
    assert Cache(zoo_home).known_hash(ckpt.url) is None  # a bad archive is never trusted


def test_advertised_length_too_short_with_pin_is_a_checksum_error(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, Fault(length_delta=-100), sha256=sha(archive))
    with pytest.raises(ChecksumError, match="registry pins"):
        install(ckpt, zoo_home)
    assert_not_installed(zoo_home)


def test_checksum_mismatch_against_pin_installs_nothing(fault_server, zoo_home, archive):
    ckpt = make_ckpt(fault_server, archive, sha256="0" * 64)
    with pytest.raises(ChecksumError, match=f"sha256 of m.tar.gz is {sha(archive)} but the registry pins 0+"):
        install(ckpt, zoo_home)
    assert_not_installed(zoo_home)
    assert list(Cache(zoo_home).downloads_dir.iterdir()) == []


def test_trust_on_first_use_catches_a_changed_file(fault_server, zoo_home, archive, archive_v2):
    from zoo_cli.hub.removal import remove_checkpoint

    ckpt = make_ckpt(fault_server, archive)
    assert install(ckpt, zoo_home).sha256_check == "recorded"
    remove_checkpoint("m", Cache(zoo_home), archive_filename=ckpt.archive_filename)
    fault_server.add("models/m.tar.gz", archive_v2)
    with pytest.raises(ChecksumError, match="recorded on the first download.*zoo rm m --forget-hash"):
        install(ckpt, zoo_home)
    assert_not_installed(zoo_home)
    remove_checkpoint("m", Cache(zoo_home), forget_url=ckpt.url)
    assert install(ckpt, zoo_home).sha256 == sha(archive_v2)
    # --force against a changed file fails, and the previous good install stays in place.
    fault_server.add("models/m.tar.gz", archive)
    with pytest.raises(ChecksumError):
        install(ckpt, zoo_home, force=True)
    assert Cache(zoo_home).manifest("m")["sha256"] == sha(archive_v2)


def test_free_space_is_checked_before_the_body_and_fails(fault_server, zoo_home, archive, monkeypatch):
    import shutil as _shutil
    from collections import namedtuple

    import zoo_cli.hub.disk

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(zoo_cli.hub.disk.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    ckpt = make_ckpt(fault_server, archive)
    with pytest.raises(DownloadError, match="not enough disk space .*only 0.0 MB free"):
        install(ckpt, zoo_home)
    assert_not_installed(zoo_home)
    assert list(Cache(zoo_home).downloads_dir.iterdir()) == []
    monkeypatch.setattr(zoo_cli.hub.disk.shutil, "disk_usage", _shutil.disk_usage)


def test_free_space_with_reported_size_fails_before_any_request(fault_server, zoo_home, archive, monkeypatch):
    from collections import namedtuple

    import zoo_cli.hub.disk

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(zoo_cli.hub.disk.shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 10**8, 10**8))
    url = fault_server.add("models/big.tar.gz", archive)
    ckpt = parse_registry(registry_yaml([{"name": "big", "url": url, "size_mb": 439.0}])).get("big")
    with pytest.raises(DownloadError, match="not enough disk space for 'big' .*439 MB archive"):
        install(ckpt, zoo_home)
    assert fault_server.requests() == []


def test_fetch_file_claims_the_partial_by_rename(fault_server, tmp_path, archive):
    # While a transfer runs, the shared partial name is free: a second writer cannot append to our bytes.
    url = fault_server.add("f.tar.gz", archive)
    partial = tmp_path / "f.tar.gz.incomplete"
    names = []

    def look(done, total):
        names.append(sorted(p.name for p in tmp_path.iterdir()))

    result = fetch_file(url, partial, policy=POLICY, on_progress=look, progress=False)
    assert all("f.tar.gz.incomplete" not in n for n in names)
    assert any(name.startswith("f.tar.gz.incomplete.") for n in names for name in n)
    assert result.path == tmp_path / "f.tar.gz" and result.path.read_bytes() == archive


def test_two_writers_without_a_working_lock_never_mix_their_bytes(fault_server, tmp_path, archive):
    # Where file locks do not work (some network filesystems) two transfers may run at once; each claims
    # the partial by rename, so both end with exactly the file, never an interleaving of the two.
    import threading

    url = fault_server.add("f.tar.gz", archive, Fault(rate=400_000, drop_after=60_000, drop_times=2))
    partial = tmp_path / "f.tar.gz.incomplete"
    results, errors = [], []

    def worker():
        try:
            results.append(fetch_file(url, partial, policy=POLICY, progress=False))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 2
    assert all(r.sha256 == sha(archive) and r.size == len(archive) for r in results)
    assert (tmp_path / "f.tar.gz").read_bytes() == archive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tar.gz"]
