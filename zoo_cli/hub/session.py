"""How a transfer talks HTTP: the requests session (proxies, CA bundle, User-Agent) and the transfer policy
(connect and read timeouts, retry budgets, backoff), plus how its durations are written in messages."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from urllib3.util.retry import Retry

from zoo_cli import __version__

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


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


def duration_text(seconds: float) -> str:
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
