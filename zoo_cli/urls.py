"""URLs as the download path builds, shows and stores them: mirror rewriting and secret redaction.

A mirror may carry credentials (``http://user:secret@host/``) or a token in its query string
(``?token=…``, a pre-signed ``X-Amz-Signature=…``). They are sent to the server, and never shown or
written anywhere else: every message, ``--json`` row, manifest, sidecar and hash record goes through
:func:`redact`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from zoo_cli.errors import ConfigError

MASK = "***"
# Query parameters whose value is a credential: names containing one of these words (case-insensitive),
# which covers token, access_token, api_key, apikey, key, secret, password, passwd, pwd, auth, sig,
# signature, credential, session and the X-Amz-* / X-Goog-* pre-signed parameters.
_SECRET_PARAM = r"[A-Za-z0-9_.\-]*(?:token|key|secret|pass|pwd|auth|sig|credential|session)[A-Za-z0-9_.\-]*"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"<>]+@")
# A value ends at the next parameter, fragment, blank, quote or the punctuation a message puts after a URL.
_QUERY_SECRET = re.compile(rf"(?i)([?&;]{_SECRET_PARAM}=)[^&;#\s'\"<>:,)]*")


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL and token-like query values replaced by ``***``."""
    if not text:
        return text
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    return _QUERY_SECRET.sub(rf"\1{MASK}", text)


def mirror_url(url: str, mirror: str | None) -> str:
    """``url`` with scheme+host replaced by ``mirror``, a base URL that may carry a path prefix, credentials
    and a query string: the registry URL's path is joined to the mirror's path and both queries are kept
    (``http://h/sub?x=1`` + ``…/models/a.tar.gz`` → ``http://h/sub/models/a.tar.gz?x=1``)."""
    if not mirror:
        return url
    base = urlsplit(mirror.strip())
    if base.scheme not in ("http", "https") or not base.hostname:
        raise ConfigError(f"mirror '{redact(mirror)}' is not an http(s) base URL; set ZOO_MIRROR (or --mirror) like "
                          "http://mirror.example.org/zoo")
    parts = urlsplit(url)
    path = base.path.rstrip("/") + "/" + parts.path.lstrip("/")
    query = "&".join(q for q in (base.query, parts.query) if q)
    return urlunsplit((base.scheme, base.netloc, path, query, ""))


__all__ = ["redact", "mirror_url", "MASK"]
