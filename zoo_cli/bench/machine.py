"""Where a measurement ran: the CPU, this process's memory, and the machine key in result file names."""

from __future__ import annotations

import hashlib
import platform
import re
import socket
import sys
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform module says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    except (ImportError, OSError):
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / (1024 * 1024)


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)


def machine_info(threads: int = 0) -> dict[str, Any]:
    """Where the measurement ran: CPU, cores, threads asked for, OS, Python, TensorFlow."""
    import psutil

    info = {
        "cpu": cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "threads": threads or "all (TensorFlow default)",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "host": socket.gethostname(),
    }
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        info["tensorflow"] = getattr(tf, "__version__", "?")
    return info


def machine_key(info: dict[str, Any]) -> str:
    """Short stable id of a machine + thread setting, for result file names."""
    text = f"{info.get('host')}|{info.get('cpu')}|{info.get('threads')}"
    slug = re.sub(r"[^a-z0-9]+", "-", str(info.get("host", "host")).lower()).strip("-")[:24] or "host"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
