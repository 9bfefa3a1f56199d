"""A threaded HTTP server on 127.0.0.1 that serves files and misbehaves on request.

Used by the download tests (started by fixtures) and by benchmarks/bench_download.py. It supports
``Range: bytes=N-`` / ``bytes=N-M`` with ``If-Range`` (ETag or Last-Modified), and per-path faults:

    drop the connection after N body bytes · answer 500/503/429/408 N times (optionally with Retry-After)
    ignore Range · slow body · change the file from request K on · an HTML page · wrong Content-Length ·
    stall (send N bytes, then go silent) · no validators · require Basic auth · redirect elsewhere

It also answers absolute-form requests (``GET http://host/path``), so it can stand in as an HTTP proxy.

Every request is logged (path, Range, status, body bytes sent) so tests can count transfers. The server is
bounded: it shuts itself down after ``lifetime`` seconds, stalls end when it stops, and handler threads are
daemons.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import mmap
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Proxy Authentication Required</title></head>"
             b"<body><h1>Please log in to continue</h1></body></html>\n")


@dataclass
class Fault:
    """How a path misbehaves. Counters count GET requests to that path, starting at 1."""

    drop_after: int | None = None       # close the connection after this many body bytes ...
    drop_times: int = 1                 # ... on the first this-many requests
    fail_status: int | None = None      # answer this status (500, 503, 429, 408 ...) ...
    fail_times: int = 0                 # ... on the first this-many requests
    retry_after: str | None = None      # Retry-After header sent with fail_status
    ignore_range: bool = False          # always answer 200 with the whole body
    rate: int | None = None             # body bytes per second (slow server)
    change_after: int | None = None     # from this request number on, serve ``alt`` (new ETag/date)
    alt: bytes | None = None
    html: bool = False                  # answer 200 text/html with a login page ...
    html_gzip: bool = False             # ... sent with Content-Encoding: gzip (so it starts like a gzip file)
    length_delta: int = 0               # advertise Content-Length + delta (a wrong length)
    stall_after: int | None = None      # send this many body bytes, then go silent ...
    stall_times: int = 1                # ... on the first this-many requests
    stall_seconds: float = 5.0          # ... for this long, then close
    no_validators: bool = False         # send neither ETag nor Last-Modified
    auth: str | None = None             # "user:password" required as Basic auth, else 401
    redirect: str | None = None         # answer 302 with this Location


@dataclass
class RequestLog:
    path: str
    method: str
    range: str | None
    if_range: str | None
    status: int
    sent: int = 0                       # body bytes written
    proxied_for: str | None = None      # the absolute URL when the request came through us as a proxy
    query: str = ""                     # the query string of the request target
    authorization: str | None = None    # the Authorization header received


@dataclass
class _Entry:
    data: bytes | mmap.mmap
    fault: Fault = field(default_factory=Fault)
    hits: int = 0


class FaultServer:
    """Serve ``add``-ed files on http://127.0.0.1:<port>/...; use as a context manager or start()/stop()."""

    def __init__(self, lifetime: float = 180.0) -> None:
        self.lifetime = lifetime
        self._files: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.log: list[RequestLog] = []
        self.active = 0                 # GET bodies being sent right now ...
        self.max_active = 0             # ... and the most at once (parallel downloads)
        self.stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- content

    def add(self, path: str, data: bytes | Path, fault: Fault | None = None) -> str:
        """Serve ``data`` (bytes, or a file mapped into memory) at ``path``; returns its URL."""
        path = "/" + path.lstrip("/")
        if isinstance(data, Path):
            with open(data, "rb") as fh:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        with self._lock:
            self._files[path] = _Entry(data, fault or Fault())
        return self.url(path)

    def set_fault(self, path: str, fault: Fault | None) -> None:
        with self._lock:
            entry = self._files["/" + path.lstrip("/")]
            entry.fault = fault or Fault()
            entry.hits = 0

    def url(self, path: str = "/") -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def requests(self, path: str | None = None) -> list[RequestLog]:
        with self._lock:
            return [r for r in self.log if path is None or r.path == "/" + path.lstrip("/")]

    def bytes_sent(self, path: str | None = None) -> int:
        return sum(r.sent for r in self.requests(path))

    # -- lifecycle

    def start(self) -> "FaultServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fault-server")
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._httpd is not None:
            httpd, self._httpd = self._httpd, None
            self._saved_address = httpd.server_address
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # Clients hanging up mid-request is what these tests do on purpose; anything else is reported.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)


def _etag(data) -> str:
    return '"' + hashlib.sha256(data[: 1 << 16]).hexdigest()[:16] + f'-{len(data)}"'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultServer
    timeout = 15  # a client that never sends its request does not pin a thread forever

    def log_message(self, format, *args) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        owner = self.owner
        with owner._lock:
            owner.active += 1
            owner.max_active = max(owner.max_active, owner.active)
        try:
            self._serve(head=False)
        finally:
            with owner._lock:
                owner.active -= 1

    def _serve(self, head: bool) -> None:
        owner = self.owner
        path, _, query = self.path.partition("?")
        proxied = path.startswith(("http://", "https://"))
        if proxied:
            # Absolute-form request target: a client using this server as its HTTP proxy.
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        with owner._lock:
            entry = owner._files.get(path)
            if entry is not None and not head:
                entry.hits += 1
            hit = entry.hits if entry else 0
            record = RequestLog(path, self.command, self.headers.get("Range"), self.headers.get("If-Range"), 0,
                                proxied_for=self.path if proxied else None, query=query,
                                authorization=self.headers.get("Authorization"))
            owner.log.append(record)
        if entry is None:
            return self._simple(record, 404, b"not found\n", "text/plain")
        f = entry.fault
        if f.auth is not None:
            import base64

            expected = "Basic " + base64.b64encode(f.auth.encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self._simple(record, 401, b"credentials needed\n", "text/plain",
                                    {"WWW-Authenticate": 'Basic realm="zoo"'})
        if f.redirect is not None:
            return self._simple(record, 302, b"", "text/plain", {"Location": f.redirect})
        data = entry.data
        version = 0
        if f.change_after is not None and hit >= f.change_after and f.alt is not None:
            data, version = f.alt, 1
        if f.fail_status is not None and hit <= f.fail_times:
            extra = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
            return self._simple(record, f.fail_status, b"try again later\n", "text/plain", extra)
        if f.html:
            if f.html_gzip:
                return self._simple(record, 200, gzip.compress(HTML_PAGE), "text/html; charset=utf-8",
                                    {"Content-Encoding": "gzip"})
            return self._simple(record, 200, HTML_PAGE, "text/html; charset=utf-8")
        etag = _etag(data)
        last_modified = formatdate(1_600_000_000 + version * 86_400, usegmt=True)
        total = len(data)
        start, end, status = 0, total - 1, 200
        rng = self.headers.get("Range")
        if rng and not f.ignore_range:
            if_range = self.headers.get("If-Range")
            if if_range is None or (not f.no_validators and if_range.strip() in (etag, last_modified)):
                spec = rng.strip().removeprefix("bytes=")
                first, _, last = spec.partition("-")
                try:
                    start = int(first)
                    end = min(int(last), total - 1) if last else total - 1
                except ValueError:
                    start = 0
                else:
                    if start >= total:
                        return self._simple(record, 416, b"", "text/plain",
                                            {"Content-Range": f"bytes */{total}"})
                    status = 206
        self.send_response(status)
        record.status = status
        self.send_header("Content-Type", "application/x-gzip")
        self.send_header("Accept-Ranges", "bytes")
        if not f.no_validators:
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        body_len = end - start + 1
        self.send_header("Content-Length", str(body_len + f.length_delta))
        close = f.length_delta != 0
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        limit = body_len
        drop = f.drop_after is not None and hit <= f.drop_times
        stall = f.stall_after is not None and hit <= f.stall_times
        if drop:
            limit = min(limit, f.drop_after)
        if stall:
            limit = min(limit, f.stall_after)
        if f.length_delta < 0:
            limit = min(limit, body_len + f.length_delta)
        try:
            self._write_body(record, memoryview(data)[start:start + limit], f.rate)
            if stall:
                deadline = time.monotonic() + f.stall_seconds
                while time.monotonic() < deadline and not owner.stopping.is_set():
                    time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            drop = True
        if drop or stall or close or f.length_delta:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _write_body(self, record: RequestLog, body: memoryview, rate: int | None) -> None:
        step = 1 << 20 if rate is None else max(1, rate // 50)
        for i in range(0, len(body), step):
            if self.owner.stopping.is_set():
                raise BrokenPipeError
            piece = body[i:i + step]
            self.wfile.write(piece)
            record.sent += len(piece)
            if rate is not None:
                time.sleep(len(piece) / rate)

    def _simple(self, record: RequestLog, status: int, body: bytes, ctype: str,
                headers: dict[str, str] | None = None) -> None:
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            record.sent += len(body)


def main() -> None:
    """Serve the files of a directory (for benchmarks): prints the base URL, runs until killed or lifetime."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args()
    server = FaultServer(lifetime=args.lifetime).start()
    for file in sorted(args.directory.iterdir()):
        if file.is_file():
            server.add(file.name, file)
    print(server.base_url, flush=True)
    server.stopping.wait()



# ---------------------------------------------------------------- pytest fixture

try:
    import pytest
except ImportError:  # the module also runs as a plain script for the benchmarks
    pytest = None

if pytest is not None:
    @pytest.fixture
    def fault_server(monkeypatch):
        """A started FaultServer, stopped after the test; proxies are bypassed for 127.0.0.1."""
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        server = FaultServer(lifetime=120).start()
        yield server
        server.stop()


if __name__ == "__main__":
    main()
