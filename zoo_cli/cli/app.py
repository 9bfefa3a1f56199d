"""The ``zoo`` command group: global options, lazy subcommands, errors turned into one-line messages.

Subcommands live one per module in ``zoo_cli.cli.commands`` and expose ``command``; they are imported only
when listed or run, and none of them imports TensorFlow at module level, so ``zoo --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click

from zoo_cli import __version__
from zoo_cli.config import Settings
from zoo_cli.errors import FileSystemError, ZooError, describe_os_error
from zoo_cli.hub.cache import Cache
from zoo_cli.registry.catalog import Registry, load_registry
from zoo_cli.urls import redact


@dataclass
class AppContext:
    """What every command needs: settings, and the registry and cache built from them on first use."""

    settings: Settings
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = load_registry(self.settings.registry_path)
        return self._registry

    @property
    def cache(self) -> Cache:
        return Cache(self.settings.home)


pass_app = click.make_pass_decorator(AppContext)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (``kill``, ``timeout``, a dropped ssh session), handled exactly like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, _frame) -> None:
    raise Terminated(signum)


@contextmanager
def signals_as_interrupt():
    """While a command runs, SIGTERM and SIGHUP unwind the stack like Ctrl-C: ``finally`` blocks run, so a
    download gives its bytes back for the next run to resume and no half-written result stays."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            signum = getattr(signal, name, None)
            if signum is not None:
                try:
                    previous[signum] = signal.signal(signum, _raise_terminated)
                except (ValueError, OSError):
                    pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _command_modules() -> dict[str, str]:
    import zoo_cli.cli.commands as pkg

    # Module 'list_' → command 'list': a trailing underscore avoids shadowing builtins in imports.
    return {m.name.rstrip("_").replace("_", "-"): m.name for m in pkgutil.iter_modules(pkg.__path__)
            if not m.name.startswith("_")}


class ZooGroup(click.Group):
    """Discovers subcommands lazily and reports ZooError as ``Error: message`` with its exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_command_modules())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = _command_modules().get(name)
        if module is None:
            return None
        return importlib.import_module(f"zoo_cli.cli.commands.{module}").command

    def invoke(self, ctx: click.Context):
        try:
            with signals_as_interrupt():
                return super().invoke(ctx)
        except (ZooError, OSError) as exc:
            app = ctx.find_object(AppContext)
            if app is not None and app.settings.debug:
                raise
            if isinstance(exc, OSError):
                # A write that failed outside the paths that report their own errors: still one line, no
                # traceback, and the fix (every final path is written atomically, so nothing half-written stays).
                exc = FileSystemError(describe_os_error(exc))
            click.echo(f"Error: {redact(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:
            # A TensorFlow runtime error that no code path turned into a ModelError (e.g. out of memory in a
            # Session.run): still one line with what went wrong, not a 50-line traceback. TensorFlow is only
            # looked up when it is already imported.
            tf = sys.modules.get("tensorflow")
            errors = getattr(tf, "errors", None) if tf is not None else None
            app = ctx.find_object(AppContext)
            if errors is None or not isinstance(exc, errors.OpError) or (app is not None and app.settings.debug):
                raise
            from zoo_cli.errors import ModelError
            from zoo_cli.graph.tf_errors import describe_tf_error

            error = ModelError(describe_tf_error(exc))
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt as exc:
            downloads = ctx.invoked_subcommand == "download"
            signum = getattr(exc, "signum", signal.SIGINT)
            how = "Interrupted" if signum == signal.SIGINT else f"Stopped by {signal.Signals(signum).name}"
            click.echo(f"{how}; partial downloads are kept and resume on the next run." if downloads
                       else f"{how}; no result was written for the unfinished work.", err=True)
            ctx.exit(128 + signum)


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zoo")
@click.option("--registry", "registry_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Registry file to use instead of the built-in one (env ZOO_REGISTRY).")
@click.pass_context
def cli(ctx: click.Context, registry_path: Path | None) -> None:
    """zoo — manage, evaluate and benchmark the TensorFlow DeepLab model-zoo checkpoints.

    Environment: ZOO_HOME (cache root), ZOO_REGISTRY, ZOO_MIRROR, ZOO_OFFLINE=1, ZOO_DEBUG=1.
    """
    try:
        settings = Settings.from_env().with_overrides(registry_path=registry_path)
    except ZooError as exc:
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(exc.exit_code)
    ctx.obj = AppContext(settings)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="zoo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
