"""HTTP transfer of one file: streamed, hashed in the same pass, resumable, retried, never silently corrupt.

``fetch_file(url, partial)`` downloads ``url`` into ``partial`` (``downloads/<file>.incomplete``) and, when
every byte has arrived, renames it to ``downloads/<file>``. Rules it keeps:

* A partial file carries a sidecar (``<partial>.json``: url, ETag, Last-Modified, total length). A later run
  resumes with ``Range: bytes=N-`` + ``If-Range`` + ``Accept-Encoding: identity`` and re-hashes the N bytes
  already on disk. A 206 must carry ``Content-Range: bytes N-(T-1)/T`` with the recorded total T; a 200 means
  the server ignored the range or the file changed, so the partial is truncated and the transfer restarts —
  a full body is never appended to a partial one. A 416 on a complete file goes straight to verification.
* Before appending, the partial is *claimed* by an atomic rename to a per-process name, so two processes can
  never append to the same file even where file locks do not work (network filesystems).
* Connection errors, timeouts, broken bodies, 408, 429 (Retry-After honoured) and 5xx are retried with
  exponential backoff + jitter (urllib3's ``Retry`` holds the budget); the budget starts afresh whenever a
  transfer gets further into the file than any attempt before it. Connect and read timeouts are always set.
* A body that is an HTML/JSON page (a proxy or portal answering instead of the server) is rejected at once.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import random
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.util.retry import Retry

from zoo_cli import __version__
from zoo_cli.atomic import write_text_atomic
from zoo_cli.errors import DownloadError, FileSystemError, ZooError
from zoo_cli.hub.cache import PARTIAL_SUFFIX
from zoo_cli.urls import redact

GZIP_MAGIC = b"\x1f\x8b"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.I)

ProgressCallback = Callable[[int, "int | None"], None]
LogCallback = Callable[[str], None]


@dataclass(frozen=True)
class TransferPolicy:
    """Timeouts, retry budgets and buffer size of a transfer (defaults suit a 500 MB file on a flaky link).

    Every budget counts failures *without progress*: whenever an attempt gets further into the file than any
    before it, the counts and the clock start afresh, so a flaky link that keeps delivering bytes finishes.
    """

    retries: int = 6                 # broken or stalled transfers, 408/429/5xx: at most this many retries ...
    status_retries: int = 3          # ... of which at most this many for an HTTP error status (a 500 that stays)
    # A refused connection, an unknown host or a connect timeout (before any byte of this run arrived) means
    # the server is down or the name is wrong; that does not fix itself in a minute: a short budget of its own.
    connect_retries: int = 2
    # A server that accepts the connection but never answers is retried once, then reported as such.
    silent_retries: int = 1
    connect_backoff: float = 0.5     # delays ~ connect_backoff * 2**(n-1) seconds
    backoff_factor: float = 1.0      # delays ~ factor * 2**(n-1) seconds, plus jitter
    backoff_max: float = 60.0
    backoff_jitter: float = 1.0
    retry_after_max: float = 120.0   # a server asking to wait longer than this is not waited for: give up
    time_budget: float = 300.0       # failed attempts + waits without progress: give up beyond this many seconds
    connect_timeout: float = 10.0    # to establish the TCP (+TLS) connection
    read_timeout: float = 30.0       # longest silence tolerated: before the response starts, and mid-body
    chunk_size: int = 1 << 20

    def new_retry(self) -> Retry:
        return Retry(total=self.retries, connect=None, read=None, status=self.status_retries, other=None,
                     redirect=None, backoff_factor=self.backoff_factor, backoff_max=self.backoff_max,
                     backoff_jitter=self.backoff_jitter, status_forcelist=RETRY_STATUSES,
                     allowed_methods=None, respect_retry_after_header=True,
                     retry_after_max=_NO_CAP, raise_on_status=False)

    @classmethod
    def with_timeout(cls, seconds: float) -> "TransferPolicy":
        """The default policy with read timeout ``seconds`` (``--timeout``); the connect timeout is not longer."""
        return cls(read_timeout=seconds, connect_timeout=min(cls.connect_timeout, seconds))


_NO_CAP = 10.0 ** 9  # parse Retry-After uncapped: a long wait is reported and refused, not silently shortened


@dataclass
class FetchResult:
    """What arrived: the complete file, its length and sha256, and what it took."""

    path: Path
    url: str
    size: int
    sha256: str
    etag: str | None
    last_modified: str | None
    bytes_transferred: int       # bytes received over the network in this call
    resumed_from: int            # bytes already on disk when this call started (0 = fresh)
    attempts: int
    seconds: float


class ContentError(DownloadError):
    """The server answered with something that is not the archive (an HTML/JSON page); never retried."""


class _Retryable(Exception):
    """A failed attempt worth retrying; ``kind`` picks the budget: connect, silent, status or transfer."""

    def __init__(self, reason: str, kind: str = "transfer", retry_after: float | None = None,
                 response: Any = None) -> None:
        super().__init__(redact(reason))
        self.kind = kind
        self.retry_after = retry_after
        self.response = response    # the urllib3 response of an HTTP error status (counts in its budget)

    @property
    def connect(self) -> bool:
        """No connection could be made (refused, unknown host, connect timeout)."""
        return self.kind == "connect"


def make_session() -> requests.Session:
    """A requests session for archive downloads.

    ``trust_env`` stays on, so ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` and ``REQUESTS_CA_BUNDLE`` apply.
    urllib3's own retries are off (``max_retries=0``): ``fetch_file`` retries whole attempts itself, because
    a body that breaks half-way must resume with a Range request, which urllib3 cannot do.
    """
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=Retry(0, read=False), pool_connections=4, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"zoo/{__version__} python-requests/{requests.__version__}"
    return session


# ---------------------------------------------------------------- partial file + sidecar


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


_CLAIM_TOKEN = re.compile(r"\.(\d+)-[0-9a-f]{6,8}$")


def pid_alive(pid: int, not_after: float | None = None) -> bool:
    """Whether process ``pid`` runs (a zombie does not). With ``not_after`` (a timestamp), a process started
    later than that is another one that reused the pid, so the original counts as gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if not_after is not None and proc.create_time() > not_after + 1.0:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell (access denied): assume it runs, the safe side
    return True


def claim_owner(path: Path) -> int | None:
    """The pid in a claimed partial's name (``<file>.incomplete.<pid>-<hex>``), or None."""
    m = _CLAIM_TOKEN.search(path.name)
    return int(m.group(1)) if m and PARTIAL_SUFFIX + "." in path.name else None


def claim_is_abandoned(path: Path) -> bool:
    """True for a claimed partial whose process is gone (killed by a signal, ``kill -9``, a crash, a reboot).

    Such bytes are resumable: the next transfer of the file takes them over. A claim made on another host
    (its sidecar names the host) is never judged from here, where that host's pids mean nothing.
    """
    pid = claim_owner(path)
    if pid is None:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    meta = _read_json(_sidecar(path))
    if meta.get("host") not in (None, socket.gethostname()):
        return False
    # A rename (which is how a claim is made) updates ctime: the owner existed at max(mtime, ctime).
    return not pid_alive(pid, not_after=max(st.st_mtime, st.st_ctime))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class _Claim:
    """A partial download owned by this process under a private name (``<partial>.<pid>-<random>``)."""

    partial: Path
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    taken_from: int | None = None   # pid of the dead process whose partial this claim took over

    @classmethod
    def take(cls, partial: Path) -> "_Claim":
        """Claim the bytes already downloaded — the shared partial, or the largest one a dead process left
        under its private name — or start an empty file."""
        token = f"{os.getpid()}-{os.urandom(4).hex()}"
        path = partial.with_name(f"{partial.name}.{token}")
        partial.parent.mkdir(parents=True, exist_ok=True)
        abandoned = [p for p in partial.parent.glob(glob.escape(partial.name) + ".*")
                     if not p.name.endswith((".json", ".tmp")) and claim_is_abandoned(p)]
        candidates = ([partial] if partial.exists() else []) + abandoned

        def rank(p: Path) -> tuple[bool, int]:
            try:
                return _sidecar(p).exists(), p.stat().st_size
            except OSError:
                return False, -1

        for source in sorted(candidates, key=rank, reverse=True):
            try:
                # The atomic rename is the claim: if two processes race, exactly one gets the bytes.
                os.rename(source, path)
            except FileNotFoundError:
                continue
            side = _sidecar(source)
            if not side.exists() and not partial.exists():
                # Killed between the two renames of a claim: its sidecar is still under the shared name.
                side = _sidecar(partial)
            meta: dict[str, Any] = {}
            try:
                os.rename(side, _sidecar(path))
            except OSError:
                pass
            else:
                meta = _read_json(_sidecar(path))
            for other in abandoned:
                if other != source:  # older copies of the same bytes whose owners are gone
                    other.unlink(missing_ok=True)
                    _sidecar(other).unlink(missing_ok=True)
            return cls(partial, path, meta, taken_from=claim_owner(source))
        path.touch()
        return cls(partial, path, {})

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def save_meta(self) -> None:
        # The host lets another machine sharing this cache (network FS) tell that pids here are not its own.
        self.meta["host"] = socket.gethostname()
        try:
            write_text_atomic(_sidecar(self.path), json.dumps(self.meta))
        except OSError as exc:
            raise write_error(exc, _sidecar(self.path)) from None

    def release(self) -> None:
        """Give the bytes back under the shared partial name so the next run resumes from them."""
        if not self.path.exists():
            return
        if self.size == 0:
            self.discard()
            return
        try:
            self.save_meta()
        except ZooError:
            # A full disk cannot take the sidecar either; the copy written when the body started holds
            # the same validators, so the bytes stay resumable without it (without any, the next run
            # starts over, which is still better than leaving them under this process's private name).
            pass
        # Renames need no free space, so this works on a full disk too.
        os.replace(self.path, self.partial)
        if _sidecar(self.path).exists():
            os.replace(_sidecar(self.path), _sidecar(self.partial))
        else:
            _sidecar(self.partial).unlink(missing_ok=True)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        _sidecar(self.path).unlink(missing_ok=True)

    def finish(self, final: Path) -> None:
        # No fsync: the archive is re-verified (hash, gzip CRC) before anything is built from it, and a
        # flush of hundreds of MB would double the time of a download on loopback.
        os.replace(self.path, final)
        _sidecar(self.path).unlink(missing_ok=True)


def sha256_file(path: Path, limit: int | None = None, chunk_size: int = 1 << 20) -> "hashlib._Hash":
    """A sha256 object fed with the first ``limit`` bytes of ``path`` (all of it when None)."""
    h = hashlib.sha256()
    remaining = limit
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        while remaining is None or remaining > 0:
            n = fh.readinto(view if remaining is None else view[: min(chunk_size, remaining)])
            if not n:
                break
            h.update(view[:n])
            if remaining is not None:
                remaining -= n
    return h


def describe_non_archive(head: bytes, content_type: str | None) -> str | None:
    """A description when ``head`` (the first bytes of a body) is clearly a web page, not a gzip file."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    text = head.lstrip()[:64].lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")) or ctype in (
            "text/html", "application/xhtml+xml"):
        return f"an HTML page (Content-Type {ctype or 'unset'})"
    if text.startswith((b"{", b"[")) or ctype == "application/json":
        return f"a JSON document (Content-Type {ctype or 'unset'})"
    if ctype.startswith("text/"):
        return f"a text document (Content-Type {ctype})"
    return None


def _is_page_type(content_type: str | None) -> bool:
    ctype = (content_type or "").split(";")[0].strip().lower()
    return ctype in ("text/html", "application/xhtml+xml", "application/json")


_ARCHIVE_MAGIC = ((b"PK\x03\x04", "a zip archive"), (b"BZh", "a bzip2 archive"), (b"\xfd7zXZ\x00", "an xz archive"),
                  (b"\x28\xb5\x2f\xfd", "a zstd archive"), (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"))


def describe_other_format(head: bytes) -> str | None:
    """What a non-gzip file is when its first bytes say so: an uncompressed tar, a zip, ... or None."""
    if head[257:262] == b"ustar":
        return "an uncompressed tar archive"
    for magic, what in _ARCHIVE_MAGIC:
        if head.startswith(magic):
            return what
    return None


def not_gzip_reason(head: bytes, content_type: str | None) -> tuple[str, str, str]:
    """(what ``head`` is, a quote of it or "", what to do) for data that should have been a .tar.gz.

    A web page gets a short quote and the proxy/portal hint; an archive of another format or other binary
    data is named by its format or first bytes (never a dump of escaped binary bytes)."""
    page = describe_non_archive(head, content_type)
    if page:
        snippet = re.sub(rb"\s+", b" ", head[:80]).decode("ascii", "replace").strip()
        return (page, f" (starts with {snippet!r})" if snippet else "",
                "a proxy, captive portal or wrong URL answered — open the URL in a browser, or fix ZOO_MIRROR / "
                "HTTPS_PROXY")
    fix = "it is not the checkpoint archive the registry names — check the URL in the registry or ZOO_MIRROR"
    other = describe_other_format(head)
    if other:
        return other, "", fix
    first = " ".join(f"{b:02x}" for b in head[:8]) or "nothing"
    return f"data that is not gzip (first bytes {first})", "", fix


def _not_archive_error(url: str, head: bytes, content_type: str | None, note: str = "") -> ContentError:
    what, quote, fix = not_gzip_reason(head, content_type)
    return ContentError(redact(f"{url} returned {what}{note} instead of a gzip archive{quote}; {fix}"))


def _strong_etag(etag: str | None) -> str | None:
    # If-Range needs a strong validator; a weak ETag (W/"...") could match changed bytes.
    if etag and not etag.strip().startswith("W/"):
        return etag.strip()
    return None


# ---------------------------------------------------------------- the transfer


def fetch_file(
    url: str,
    partial: Path,
    *,
    session: requests.Session | None = None,
    policy: TransferPolicy | None = None,
    progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
    check_space: Callable[[int], None] | None = None,
    can_resume_without_validator: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    meta: dict[str, Any] | None = None,
    progress_position: int | None = None,
) -> FetchResult:
    """Download ``url`` into ``partial`` and rename it to ``partial`` minus ``.incomplete`` when complete.

    ``progress``: show a tqdm bar on stderr (None → only when stderr is a TTY). ``on_progress(done, total)``
    is called after every chunk (a KeyboardInterrupt raised there behaves like Ctrl-C). ``check_space(n)``
    is called with the number of bytes still to come once the server has told the length. A partial
    without a strong ETag or Last-Modified is only resumed when ``can_resume_without_validator`` (the caller
    pins a sha256). Raises DownloadError after the last retry; the partial stays, resumable.
    """
    if not partial.name.endswith(".incomplete"):
        raise ValueError(f"partial path must end with .incomplete: {partial}")
    final = partial.with_name(partial.name[: -len(".incomplete")])
    policy = policy or TransferPolicy()
    own_session = session is None
    session = session or make_session()
    log = log or (lambda _msg: None)
    started = time.monotonic()
    try:
        claim = _Claim.take(partial)
    except OSError as exc:
        raise write_error(exc, partial) from None
    if claim.taken_from is not None and claim.size:
        log(f"taking over the {claim.size} bytes left by process {claim.taken_from}, which is no longer running")
    state = _Transfer(url, claim, session, policy, log, on_progress, check_space, can_resume_without_validator,
                      dict(meta or {}))
    high_water = claim.size
    retry = policy.new_retry()
    bar = _progress_bar(final.name, progress, progress_position)
    state.bar = bar
    if bar is not None:
        plain_log = log

        def log(msg: str) -> None:
            # Messages printed over a live bar would be garbled: clear it, print, draw it again.
            bar.clear()
            plain_log(msg)
            bar.refresh()

        state.log = log
    keep = True
    quick_failures = {"connect": 0, "silent": 0}   # before any byte of this run: their own short budgets
    spent = 0.0                                      # seconds of failed attempts and waits without progress
    try:
        while True:
            state.attempts += 1
            tried = time.monotonic()
            try:
                state.attempt()
                break
            except _Retryable as exc:
                if claim.size > high_water:
                    # Bytes are arriving: this is a flaky link, not a dead server; start a fresh budget.
                    high_water = claim.size
                    retry = policy.new_retry()
                    spent = 0.0
                else:
                    spent += time.monotonic() - tried
                if exc.kind in quick_failures and state.transferred == 0:
                    # Nothing has come from this server in this run: it is down, mute, or the host is wrong.
                    quick_failures[exc.kind] += 1
                    allowed = policy.connect_retries if exc.connect else policy.silent_retries
                    if quick_failures[exc.kind] > allowed:
                        raise _give_up(url, state, exc) from None
                    delay = policy.connect_backoff * 2 ** (quick_failures[exc.kind] - 1) * (0.75 + random.random() / 2)
                    log(f"retrying in {delay:.1f}s ({exc}; retry {quick_failures[exc.kind]} of {allowed})")
                    sleep(delay)
                    spent += delay
                    continue
                try:
                    if exc.kind == "status" and exc.response is not None:
                        retry = retry.increment(method="GET", url=url, response=exc.response)
                    else:
                        retry = retry.increment(method="GET", url=url, error=exc)
                except MaxRetryError:
                    raise _give_up(url, state, exc) from None
                if exc.retry_after is not None:
                    if exc.retry_after > policy.retry_after_max:
                        raise _give_up(url, state, exc, f"the server asks to retry in {_duration(exc.retry_after)}"
                                       f" (zoo waits at most {_duration(policy.retry_after_max)}); giving up",
                                       fix="use another mirror (ZOO_MIRROR), or run the command again later") \
                            from None
                    delay, why = exc.retry_after, ", as the server's Retry-After asks"
                else:
                    # urllib3 returns 0 for the first retry; keep a small jittered floor so a burst of
                    # clients does not hammer a server that has just failed.
                    floor = policy.backoff_factor * (0.5 + random.random() / 2)
                    delay, why = max(retry.get_backoff_time(), floor), ""
                if spent + delay > policy.time_budget:
                    raise _give_up(url, state, exc, f"no progress for {_duration(spent)}, and the next try "
                                   f"would pass the {_duration(policy.time_budget)} budget") from None
                limit = policy.status_retries if exc.kind == "status" else policy.retries
                used = (len(retry.history) if exc.kind != "status" else
                        sum(1 for h in retry.history if h.status is not None))
                log(f"retrying in {delay:.1f}s ({exc}{why}; retry {used} of {limit})")
                sleep(delay)
                spent += delay
    except ContentError:
        keep = False
        raise
    except OSError as exc:
        if isinstance(exc, requests.RequestException):
            raise
        # Opening, truncating or renaming in downloads/ failed (full or read-only disk, a file in the way).
        raise write_error(exc, claim.partial) from None
    finally:
        if bar is not None:
            bar.close()
        if own_session:
            session.close()
        try:
            if keep and claim.path.exists():
                if state.done:
                    claim.finish(final)
                else:
                    claim.release()
            else:
                claim.discard()
        except OSError as exc:
            if state.done:
                raise write_error(exc, final) from None
            # Already failing: that error is the one to report, not this clean-up's.
    return FetchResult(path=final, url=url, size=state.size, sha256=state.hasher.hexdigest(),
                       etag=claim.meta.get("etag"), last_modified=claim.meta.get("last_modified"),
                       bytes_transferred=state.transferred, resumed_from=state.resumed_from or 0,
                       attempts=state.attempts, seconds=time.monotonic() - started)


def _give_up(url: str, state: "_Transfer", exc: _Retryable, why: str | None = None,
             fix: str | None = None) -> DownloadError:
    kept = state.claim.size
    if kept:
        tail = f"the {kept} bytes received so far are kept and the download resumes"
    else:
        tail = "nothing was received"
    if fix is None:
        if exc.kind == "connect" and state.transferred == 0:
            fix = "is the server up and the host name right? check the network, ZOO_MIRROR / HTTPS_PROXY"
        elif exc.kind == "silent":
            fix = ("the server (or a proxy) accepts connections but does not answer; try another mirror "
                   "(ZOO_MIRROR) or a longer --timeout")
        else:
            fix = "check the network (or HTTPS_PROXY / ZOO_MIRROR)"
        fix += " and run the command again"
    what = f"{exc}: {why}" if why else str(exc)
    return DownloadError(redact(f"giving up on {url} after {state.attempts} "
                                f"attempt{'s' if state.attempts != 1 else ''}: {what}; {fix} — {tail}"))


def _duration(seconds: float) -> str:
    """A short human duration: 0.5 s, 45 s, 2 min, 27 h."""
    if seconds < 10:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + " s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _is_connect_failure(exc: BaseException) -> bool:
    """True when no connection was made at all: refused, unknown host, unreachable, connect timeout, proxy down."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.ProxyError)):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _progress_bar(name: str, progress: bool | None, position: int | None = None):
    enabled = sys.stderr.isatty() if progress is None else progress
    if not enabled:
        return None
    from tqdm import tqdm

    # ``position``: the line of this bar when several downloads run at once (``--jobs``).
    return tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=name[:40], mininterval=0.25,
                leave=False, file=sys.stderr, dynamic_ncols=True, position=position)


class _Transfer:
    """One file's transfer state across attempts."""

    def __init__(self, url, claim, session, policy, log, on_progress, check_space, resume_unvalidated, meta):
        self.url = url
        self.shown = redact(url)      # the URL as it may be printed or stored: no credentials
        self.claim: _Claim = claim
        self.session: requests.Session = session
        self.policy: TransferPolicy = policy
        self.log = log
        self.on_progress = on_progress
        self.check_space = check_space
        self.resume_unvalidated = resume_unvalidated
        self.extra_meta = meta
        self.hasher = hashlib.sha256()
        self.size = 0
        self.transferred = 0
        self.attempts = 0
        self.done = False
        self.bar = None
        self.resumed_from: int | None = None
        self.magic = GZIP_MAGIC

    # -- helpers

    def _truncate(self, why: str | None) -> None:
        if why and self.claim.size:
            self.log(why)
        with open(self.claim.path, "wb"):
            pass
        self.claim.meta = {}
        self.hasher = hashlib.sha256()
        self.size = 0

    def _resume_headers(self) -> dict[str, str]:
        """Range headers for the bytes on disk, or {} (after truncating) when they cannot be trusted."""
        meta = self.claim.meta
        offset = self.claim.size
        if offset == 0:
            return {}
        total = meta.get("total")
        validator = _strong_etag(meta.get("etag")) or meta.get("last_modified")
        if not meta:
            self._truncate("partial file has no readable sidecar; starting over")
            return {}
        if meta.get("url") not in (self.shown, self.url):
            self._truncate(f"partial file came from another URL ({redact(str(meta.get('url')))}); starting over")
            return {}
        if not validator and not self.resume_unvalidated:
            self._truncate("partial file has no ETag/Last-Modified to resume safely; starting over")
            return {}
        if isinstance(total, int) and offset > total:
            self._truncate("partial file is longer than the file on the server; starting over")
            return {}
        with open(self.claim.path, "rb") as fh:
            head = fh.read(2)
        if self.magic and head != self.magic:
            self._truncate("partial file does not start like a gzip archive; starting over")
            return {}
        headers = {"Range": f"bytes={offset}-"}
        if validator:
            headers["If-Range"] = validator
        return headers

    def _rehash_prefix(self, offset: int) -> None:
        # The hash covers the whole file, so the bytes already on disk are hashed again (one read pass).
        self.hasher = sha256_file(self.claim.path, chunk_size=self.policy.chunk_size)
        self.size = self.claim.size
        if self.resumed_from is None:
            self.resumed_from = offset

    def _fail_status(self, resp: requests.Response) -> None:
        status = resp.status_code
        hint = {401: "the server wants credentials", 403: "access is forbidden",
                404: "the file is not on the server", 410: "the file was removed"}.get(status, "")
        hint = f" ({hint})" if hint else ""
        fix = "check the URL in the registry, ZOO_MIRROR, or your proxy settings"
        if status in (401, 407):
            fix = ("give credentials in ~/.netrc (machine HOST login USER password SECRET) or in the mirror URL "
                   "(http://USER:SECRET@HOST/...)") if status == 401 else "set the proxy's credentials in HTTPS_PROXY"
        raise DownloadError(redact(f"HTTP {status} {resp.reason or ''}{hint} for {self.url}; {fix}".replace("  ", " ")))

    # -- one attempt

    def attempt(self) -> None:
        headers = {"Accept-Encoding": "identity"}
        headers.update(self._resume_headers())
        offset = self.claim.size
        timeout = (self.policy.connect_timeout, self.policy.read_timeout)
        try:
            resp = self.session.get(self.url, headers=headers, stream=True, timeout=timeout)
        except requests.ConnectTimeout:
            raise _Retryable(f"cannot connect to {self.url}: no answer to the connection request in "
                             f"{_duration(self.policy.connect_timeout)}", kind="connect") from None
        except requests.ReadTimeout:
            # The TCP connection was made; the server (or a proxy) then said nothing at all.
            raise _Retryable(f"connected to {_host(self.url)}, but no response in "
                             f"{_duration(self.policy.read_timeout)}", kind="silent") from None
        except requests.ConnectionError as exc:
            connect = _is_connect_failure(exc)
            what = "cannot connect to" if connect else "connection to"
            raise _Retryable(f"{what} {self.url}{'' if connect else ' failed'}: {_short(exc)}",
                             kind="connect" if connect else "transfer") from None
        except requests.RequestException as exc:
            raise DownloadError(redact(f"request to {self.url} failed: {_short(exc)}; check the URL and "
                                       "ZOO_MIRROR")) from None
        with resp:
            self._handle(resp, offset, "Range" in headers)

    def _handle(self, resp: requests.Response, offset: int, ranged: bool) -> None:
        status = resp.status_code
        meta = self.claim.meta
        probe = self.policy.new_retry()
        if probe.is_retry("GET", status, "Retry-After" in resp.headers):
            retry_after = None
            try:
                retry_after = probe.get_retry_after(resp.raw)
            except InvalidHeader:
                pass
            raise _Retryable(f"HTTP {status} {resp.reason or ''}".strip() + f" from {self.url}",
                             kind="status", response=resp.raw, retry_after=retry_after)
        if status == 416 and ranged:
            m = _UNSATISFIED_RANGE.match(resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset == meta.get("total"):
                # Everything is already here; only the hash of the bytes on disk is missing.
                self._rehash_prefix(offset)
                self.done = True
                return
            self._truncate(None)
            raise _Retryable(f"server refused the range bytes={offset}- (file changed?); starting over")
        if status == 206 and ranged:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            total = meta.get("total")
            if not m or int(m.group(1)) != offset or m.group(3) == "*" or int(m.group(3)) != total \
                    or int(m.group(2)) != total - 1:
                self._truncate(None)
                raise _Retryable(f"server answered the range bytes={offset}- with Content-Range "
                                 f"{resp.headers.get('Content-Range')!r} (expected bytes {offset}-"
                                 f"{(total or 0) - 1}/{total}); starting over")
            self._rehash_prefix(offset)
            self.log(f"resuming at {offset} of {total} bytes")
        elif status == 200:
            if offset:
                self._truncate("server sent the whole file instead of the missing range (Range ignored or the "
                               "file changed); starting over")
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            self.claim.meta = {**self.extra_meta, "url": self.shown, "etag": resp.headers.get("ETag"),
                               "last_modified": resp.headers.get("Last-Modified"), "total": total}
            self.claim.save_meta()
            if self.resumed_from is None:
                self.resumed_from = 0
        elif status == 206:
            raise DownloadError(redact(f"{self.url} answered 206 Partial Content to a request for the whole file; "
                                       "the server or proxy is misbehaving — try again or set ZOO_MIRROR"))
        else:
            self._fail_status(resp)
        total = self.claim.meta.get("total")
        if self.check_space is not None and total is not None:
            self.check_space(total - self.size)
        self._stream(resp, total)

    def _stream(self, resp: requests.Response, total: int | None) -> None:
        if self.bar is not None:
            self.bar.reset(total=total)
            # Bytes already on disk count as done but not towards the transfer rate.
            self.bar.n = self.bar.initial = self.bar.last_print_n = self.size
            self.bar.refresh()
        first = self.size == 0
        try:
            with open(self.claim.path, "ab", buffering=0) as out:
                # read1: whatever has arrived (up to chunk_size), so a slow link still writes, reports
                # progress and keeps its bytes on Ctrl-C. decode_content=False: store the bytes exactly as
                # served, even if a server wrongly labels the .tar.gz with Content-Encoding: gzip.
                while chunk := resp.raw.read1(self.policy.chunk_size, decode_content=False):
                    if first:
                        first = False
                        ctype = resp.headers.get("Content-Type")
                        if self.magic and not chunk.startswith(self.magic):
                            raise _not_archive_error(self.url, chunk, ctype)
                        if self.magic and _is_page_type(ctype):
                            # A gzip-*encoded* web page also starts with the gzip magic bytes.
                            encoding = resp.headers.get("Content-Encoding", "none")
                            raise _not_archive_error(self.url, b"", ctype, f" sent with Content-Encoding {encoding}")
                    try:
                        _write_all(out, chunk)
                    except OSError as exc:
                        raise write_error(exc, self.claim.partial) from None
                    self.hasher.update(chunk)
                    self.size += len(chunk)
                    self.transferred += len(chunk)
                    if self.bar is not None:
                        self.bar.update(len(chunk))
                    if self.on_progress is not None:
                        self.on_progress(self.size, total)
        except (Urllib3HTTPError, requests.RequestException, ConnectionError, TimeoutError) as exc:
            at = f"{self.size} of {total if total is not None else '?'} bytes"
            if isinstance(exc, (ReadTimeoutError, TimeoutError, requests.Timeout)):
                raise _Retryable(f"transfer stalled at {at}: no data for {_duration(self.policy.read_timeout)}") \
                    from None
            raise _Retryable(f"transfer broke at {at}: {_short(exc)}") from None
        if total is not None and self.size != total:
            raise _Retryable(f"server announced {total} bytes but the body ended after {self.size}")
        self.done = True


def _write_all(out: Any, data: bytes) -> None:
    # An unbuffered write may store only part of ``data`` (a disk filling up) and return the count.
    view = memoryview(data)
    while view:
        n = out.write(view)
        if not n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def write_error(exc: OSError, path: Path | str) -> ZooError:
    """The user-facing error for an OSError raised while writing ``path`` in the cache (full, read-only...)."""
    where = exc.filename or path
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return FileSystemError(f"{what} while writing {where}; free some space or point ZOO_HOME at a larger disk")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return FileSystemError(f"{where} is not writable ({exc.strerror}); point ZOO_HOME at a writable directory")
    return FileSystemError(f"cannot write {where}: {exc.strerror or exc}; check that ZOO_HOME is a writable "
                           "directory with free space, or point ZOO_HOME elsewhere")


def _short(exc: BaseException) -> str:
    """The part of a (deeply nested) requests/urllib3 error message that says what happened."""
    args = getattr(exc, "args", ())
    text = args[0] if args and isinstance(args[0], str) else str(exc)
    m = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if m:
        return m.group(0).strip()
    if "timed out" in text.lower():
        return "timed out"
    text = re.sub(r"\s+", " ", text)
    return text if len(text) < 160 else text[:157] + "..."


__all__ = ["TransferPolicy", "FetchResult", "ContentError", "fetch_file", "make_session", "sha256_file",
           "describe_non_archive", "not_gzip_reason", "write_error", "GZIP_MAGIC", "claim_is_abandoned",
           "claim_owner", "pid_alive"]
