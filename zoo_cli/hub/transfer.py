"""HTTP transfer of one file: streamed, hashed in the same pass, resumable, retried, never silently corrupt.

``fetch_file(url, partial)`` downloads ``url`` into ``partial`` (``downloads/<file>.incomplete``) and, when
every byte has arrived, renames it to ``downloads/<file>``. Rules it keeps:

* Before appending, the partial is *claimed* by an atomic rename to a per-process name (``claims.py``), so
  two processes never append to the same file; bytes a dead process left are taken over.
* Each attempt resumes what is on disk with a validated Range request, or starts over when the server or
  the file changed (``attempt.py``); a body that is a web page, not the archive, is rejected at once.
* Connection errors, timeouts, broken bodies, 408, 429 (Retry-After honoured) and 5xx are retried with
  exponential backoff + jitter (urllib3's ``Retry`` holds the budget); the budget starts afresh whenever a
  transfer gets further into the file than any attempt before it. Connect and read timeouts are always set
  (``session.py``'s ``TransferPolicy``).
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import requests
from urllib3.exceptions import MaxRetryError

from zoo_cli.errors import DownloadError
from zoo_cli.hub.attempt import ContentError, ProgressCallback, Retryable, TransferState
from zoo_cli.hub.cache import PARTIAL_SUFFIX
from zoo_cli.hub.claims import Claim
from zoo_cli.hub.disk import write_error
from zoo_cli.hub.session import TransferPolicy, duration_text, make_session
from zoo_cli.urls import redact


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


def fetch_file(
    url: str,
    partial: Path,
    *,
    session: requests.Session | None = None,
    policy: TransferPolicy | None = None,
    progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
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
    if not partial.name.endswith(PARTIAL_SUFFIX):
        raise ValueError(f"partial path must end with {PARTIAL_SUFFIX}: {partial}")
    final = partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX))
    policy = policy or TransferPolicy()
    own_session = session is None
    session = session or make_session()
    log = log or (lambda _msg: None)
    started = time.monotonic()
    try:
        claim = Claim.take(partial)
    except OSError as exc:
        raise write_error(exc, partial) from None
    if claim.taken_from is not None and claim.size:
        log(f"taking over the {claim.size} bytes left by process {claim.taken_from}, which is no longer running")
    state = TransferState(url, claim, session, policy, log, on_progress, check_space, can_resume_without_validator,
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
            except Retryable as exc:
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
                        raise _give_up(url, state, exc, f"the server asks to retry in {duration_text(exc.retry_after)}"
                                       f" (zoo waits at most {duration_text(policy.retry_after_max)}); giving up",
                                       fix="use another mirror (ZOO_MIRROR), or run the command again later") \
                            from None
                    delay, why = exc.retry_after, ", as the server's Retry-After asks"
                else:
                    # urllib3 returns 0 for the first retry; keep a small jittered floor so a burst of
                    # clients does not hammer a server that has just failed.
                    floor = policy.backoff_factor * (0.5 + random.random() / 2)
                    delay, why = max(retry.get_backoff_time(), floor), ""
                if spent + delay > policy.time_budget:
                    raise _give_up(url, state, exc, f"no progress for {duration_text(spent)}, and the next try "
                                   f"would pass the {duration_text(policy.time_budget)} budget") from None
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


def _give_up(url: str, state: TransferState, exc: Retryable, why: str | None = None,
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


def _progress_bar(name: str, progress: bool | None, position: int | None):
    enabled = sys.stderr.isatty() if progress is None else progress
    if not enabled:
        return None
    from tqdm import tqdm

    # ``position``: the line of this bar when several downloads run at once (``--jobs``).
    return tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=name[:40], mininterval=0.25,
                leave=False, file=sys.stderr, dynamic_ncols=True, position=position)
