"""One file's transfer state, and what one HTTP attempt of it does: the request, what the response means, the body.

An attempt asks for the bytes still missing (``Range: bytes=N-`` + ``If-Range`` + ``Accept-Encoding:
identity`` when the claimed partial holds N bytes its sidecar can vouch for) and judges the answer: a 206
must carry ``Content-Range: bytes N-(T-1)/T`` with the recorded total T, and the N bytes on disk are hashed
again; a 200 means the server ignored the range or the file changed, so the partial is truncated and the
body starts over — a full body is never appended to a partial one; a 416 on a complete file goes straight to
verification. A body that is an HTML/JSON page (a proxy or portal answering instead of the server) is
rejected at once (:class:`ContentError`). Anything worth another try raises :class:`Retryable`; the retry
loop and its budgets are ``transfer.py``'s.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from zoo_cli.errors import DownloadError
from zoo_cli.hub.claims import Claim
from zoo_cli.hub.content import GZIP_MAGIC, is_page_type, not_gzip_reason, sha256_file
from zoo_cli.hub.disk import write_error
from zoo_cli.hub.session import TransferPolicy, duration_text
from zoo_cli.urls import redact

ProgressCallback = Callable[[int, "int | None"], None]   # (bytes on disk, total or None), after every chunk
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.I)


class ContentError(DownloadError):
    """The server answered with something that is not the archive (an HTML/JSON page); never retried."""


class Retryable(Exception):
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


def _not_archive_error(url: str, head: bytes, content_type: str | None, note: str = "") -> ContentError:
    what, quote, fix = not_gzip_reason(head, content_type)
    return ContentError(redact(f"{url} returned {what}{note} instead of a gzip archive{quote}; {fix}"))


def _strong_etag(etag: str | None) -> str | None:
    # If-Range needs a strong validator; a weak ETag (W/"...") could match changed bytes.
    if etag and not etag.strip().startswith("W/"):
        return etag.strip()
    return None


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _is_connect_failure(exc: BaseException) -> bool:
    """True when no connection was made at all: refused, unknown host, unreachable, connect timeout, proxy down."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.ProxyError)):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


class TransferState:
    """One file's transfer state across attempts; :meth:`attempt` makes one request and streams its body."""

    def __init__(self, url: str, claim: Claim, session: requests.Session, policy: TransferPolicy,
                 log: Callable[[str], None], on_progress: ProgressCallback | None,
                 check_space: Callable[[int], None] | None, resume_unvalidated: bool, meta: dict[str, Any]) -> None:
        self.url = url
        self.shown = redact(url)      # the URL as it may be printed or stored: no credentials
        self.claim = claim
        self.session = session
        self.policy = policy
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
        if head != GZIP_MAGIC:
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
        """One request for the bytes still missing; sets ``done`` when the whole file is on disk."""
        headers = {"Accept-Encoding": "identity"}
        headers.update(self._resume_headers())
        offset = self.claim.size
        timeout = (self.policy.connect_timeout, self.policy.read_timeout)
        try:
            resp = self.session.get(self.url, headers=headers, stream=True, timeout=timeout)
        except requests.ConnectTimeout:
            raise Retryable(f"cannot connect to {self.url}: no answer to the connection request in "
                             f"{duration_text(self.policy.connect_timeout)}", kind="connect") from None
        except requests.ReadTimeout:
            # The TCP connection was made; the server (or a proxy) then said nothing at all.
            raise Retryable(f"connected to {_host(self.url)}, but no response in "
                             f"{duration_text(self.policy.read_timeout)}", kind="silent") from None
        except requests.ConnectionError as exc:
            connect = _is_connect_failure(exc)
            what = "cannot connect to" if connect else "connection to"
            raise Retryable(f"{what} {self.url}{'' if connect else ' failed'}: {_short(exc)}",
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
            raise Retryable(f"HTTP {status} {resp.reason or ''}".strip() + f" from {self.url}",
                             kind="status", response=resp.raw, retry_after=retry_after)
        if status == 416 and ranged:
            m = _UNSATISFIED_RANGE.match(resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset == meta.get("total"):
                # Everything is already here; only the hash of the bytes on disk is missing.
                self._rehash_prefix(offset)
                self.done = True
                return
            self._truncate(None)
            raise Retryable(f"server refused the range bytes={offset}- (file changed?); starting over")
        if status == 206 and ranged:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            total = meta.get("total")
            if not m or int(m.group(1)) != offset or m.group(3) == "*" or int(m.group(3)) != total \
                    or int(m.group(2)) != total - 1:
                self._truncate(None)
                raise Retryable(f"server answered the range bytes={offset}- with Content-Range "
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
                        if not chunk.startswith(GZIP_MAGIC):
                            raise _not_archive_error(self.url, chunk, ctype)
                        if is_page_type(ctype):
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
                raise Retryable(f"transfer stalled at {at}: no data for {duration_text(self.policy.read_timeout)}") \
                    from None
            raise Retryable(f"transfer broke at {at}: {_short(exc)}") from None
        if total is not None and self.size != total:
            raise Retryable(f"server announced {total} bytes but the body ended after {self.size}")
        self.done = True


def _write_all(out: Any, data: bytes) -> None:
    # An unbuffered write may store only part of ``data`` (a disk filling up) and return the count.
    view = memoryview(data)
    while view:
        n = out.write(view)
        if not n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


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
