"""What a file's bytes are: a gzip archive, a web page sent instead, another archive format — and their sha256.

The transfer sniffs the first chunk of a body with these, and ``archive.py`` the first bytes of a file on
disk, so both describe a wrong file in the same words.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> "hashlib._Hash":
    """A sha256 object fed with the bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        while n := fh.readinto(view):
            h.update(view[:n])
    return h


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def describe_non_archive(head: bytes, content_type: str | None) -> str | None:
    """A description when ``head`` (the first bytes of a body) is clearly a web page, not a gzip file."""
    ctype = _media_type(content_type)
    text = head.lstrip()[:64].lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")) or ctype in (
            "text/html", "application/xhtml+xml"):
        return f"an HTML page (Content-Type {ctype or 'unset'})"
    if text.startswith((b"{", b"[")) or ctype == "application/json":
        return f"a JSON document (Content-Type {ctype or 'unset'})"
    if ctype.startswith("text/"):
        return f"a text document (Content-Type {ctype})"
    return None


def is_page_type(content_type: str | None) -> bool:
    """Whether a Content-Type names a web page or a JSON document (what a portal or error page is sent as)."""
    return _media_type(content_type) in ("text/html", "application/xhtml+xml", "application/json")


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
