"""How numbers and sizes are written in tables and messages: one place, so every command prints them alike."""

from __future__ import annotations


def mb(n: int | float) -> str:
    """``1,234.5 MB`` (decimal megabytes, as download sizes are quoted)."""
    return f"{n / 1e6:,.1f} MB"


def human_bytes(count: float) -> str:
    """``1.7 TB``, ``640 GB``, ``12 MB`` (powers of 1024, as the kernel counts memory)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if count < 1024 or unit == "PB":
            return f"{count:.0f} {unit}" if unit in ("B", "KB") or count >= 100 else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.0f} PB"  # pragma: no cover


def fmt_num(value: float | None, suffix: str = "", digits: int = 2) -> str:
    """A number for a table cell, '-' for unknown (as the seed prints it)."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}{suffix}" if isinstance(value, float) else f"{value}{suffix}"


def fmt_madds(value: float | None) -> str:
    """Multiply-Adds in billions as the seed prints them (2 decimals), 3 significant digits below 1 B."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"
