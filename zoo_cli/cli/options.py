"""Click parameter types shared by the commands (validation itself lives in importable functions)."""

from __future__ import annotations

from typing import Any

import click

from zoo_cli.errors import UsageError


class ThreadCount(click.ParamType):
    """``--threads`` / ``--inter-threads`` / ``--jobs``: a whole number from ``minimum`` to a few per CPU
    (:func:`zoo_cli.config.check_count`), refused by click before the command body runs."""

    name = "integer"

    def __init__(self, minimum: int = 0) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from zoo_cli.config import check_count

        if isinstance(value, int):
            number: Any = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        option = param.opts[0] if param is not None and param.opts else "value"
        try:
            return check_count(number, option, minimum=self.minimum)
        except UsageError as exc:
            # click already prefixes "Invalid value for '--threads':"
            self.fail(str(exc).removeprefix(f"{option} "), param, ctx)
