"""Presentation helpers shared by the commands: JSON output and the rich console (numbers: zoo_cli.units)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
from rich.console import Console


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON and nothing else (for ``--json``)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=_default))


def _default(obj: Any) -> Any:
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


class _TrimmedLines:
    """A text stream wrapper that drops the trailing spaces rich pads table and grid rows with (to the column
    or console width): piped output carries no 160-column padding."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._stream.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:  # a line still open (print(..., end="")): written as is, it may continue
            self._stream.write(self._pending)
            self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ... of the real stream
        return getattr(self._stream, name)


def console(stderr: bool = False) -> Console:
    """A rich console on the current stdout/stderr; wide when not a terminal so tables are not squashed."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    width = None if tty else int(os.environ.get("COLUMNS", "160"))
    # Not a terminal (a pipe, a log file): plain lines are not hard-wrapped, so they stay whole for grep and
    # copy; tables and grids fit the width, and their padding is trimmed.
    return Console(file=stream if tty else _TrimmedLines(stream), width=width, highlight=False, soft_wrap=not tty)
