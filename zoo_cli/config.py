"""Global configuration, read from the environment in one place.

| variable      | meaning                                                           |
|---------------|-------------------------------------------------------------------|
| ZOO_HOME      | cache root (default ``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``) |
| ZOO_REGISTRY  | registry file used instead of the built-in one                    |
| ZOO_MIRROR    | base URL that replaces scheme+host of every registry URL          |
| ZOO_OFFLINE   | ``1`` forbids any network use                                     |
| ZOO_DEBUG     | ``1`` shows tracebacks instead of one-line errors                 |
| ZOO_TIMEOUT   | ``zoo download --timeout``: seconds of silence before a try fails  |

It also bounds the counts a user passes (``--threads``, ``--inter-threads``, ``--jobs``) by the CPUs this
process may use, so an absurd value is a one-line usage error instead of a process killed by SIGABRT
(100000 threads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from zoo_cli.errors import ConfigError, UsageError

MAX_DOWNLOAD_JOBS = 8  # 'zoo download --jobs' upper bound: more only splits the same bandwidth further
THREADS_PER_CPU = 4  # more threads than this per CPU only adds contention (and each one has a stack)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _flag(env: dict[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={env[name]!r} is not a boolean; set it to 1 or 0")


def default_home(env: dict[str, str]) -> Path:
    """Where the cache lives when ZOO_HOME is not set."""
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "zoo"


@dataclass(frozen=True)
class Settings:
    """Everything the environment and global options decide; built once per invocation."""

    home: Path
    registry_path: Path | None
    mirror: str | None
    offline: bool
    debug: bool

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = Path(env["ZOO_HOME"]).expanduser() if env.get("ZOO_HOME") else default_home(env)
        registry = Path(env["ZOO_REGISTRY"]).expanduser() if env.get("ZOO_REGISTRY") else None
        mirror = env.get("ZOO_MIRROR") or None
        return cls(
            home=home,
            registry_path=registry,
            mirror=mirror,
            offline=_flag(env, "ZOO_OFFLINE"),
            debug=_flag(env, "ZOO_DEBUG"),
        )

    def with_overrides(self, **changes: object) -> "Settings":
        """A copy with the non-None values of ``changes`` applied (global CLI options win over env)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask when the OS has one, e.g. in a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_threads(cpus: int | None = None) -> int:
    """The largest ``--threads`` / ``--inter-threads`` / ``--jobs`` accepted: a few per CPU."""
    return THREADS_PER_CPU * (cpus or cpu_count())


def check_count(value: Any, option: str, *, minimum: int = 0, cpus: int | None = None) -> int:
    """``value`` as an int in ``minimum..max_threads()``; UsageError naming ``option``, the bound and why."""
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{option} {value!r} is not a whole number") from None
    top = max_threads(cpus)
    hint = " (0 lets TensorFlow choose)" if minimum == 0 else ""
    if number < minimum:
        why = "is negative" if number < 0 else f"is below {minimum}"
        raise UsageError(f"{option} {number} {why}; use a count from {minimum} to {top}{hint}")
    if number > top:
        raise UsageError(f"{option} {number} is more than {THREADS_PER_CPU} per CPU on this machine "
                         f"({cpus or cpu_count()} CPUs); use at most {top}{hint}")
    return number
