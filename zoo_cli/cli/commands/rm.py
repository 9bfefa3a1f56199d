"""``zoo rm``: remove installed checkpoints (and their partial or kept archives) cleanly."""

from __future__ import annotations

import sys

import click

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.output import emit_json
from zoo_cli.errors import CacheError, UsageError
from zoo_cli.registry.catalog import is_pattern


@click.command("rm")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Remove every installed checkpoint (asks first unless --yes).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before removing several checkpoints (--all, wildcards).")
@click.option("--forget-hash", is_flag=True, help="Also forget the sha256 recorded on first download "
              "(for an unpinned archive that legitimately changed on the server).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, names: tuple[str, ...], all_: bool, yes: bool, forget_hash: bool, as_json: bool) -> None:
    """Remove the installed checkpoints NAME... (names or wildcards) from the cache."""
    from zoo_cli.hub.removal import removal_targets, remove_checkpoints

    if all_ and names:
        raise UsageError("give checkpoint names or --all, not both")
    if not all_ and not names:
        raise UsageError("name at least one checkpoint to remove (or use --all); see 'zoo cache'")
    targets = [name for name, _ in removal_targets(app.registry, app.cache, names, everything=all_)]
    if (all_ or any(is_pattern(n) for n in names)) and targets and not yes:
        _confirm(targets, "--all" if all_ else " ".join(names))
    log = None if as_json else (lambda msg: click.echo(msg, err=True))
    results = remove_checkpoints(app.registry, app.cache, targets, forget_hash=forget_hash, log=log)
    if as_json:
        emit_json(results)
    else:
        for r in results:
            if r["removed"] or r["forgot_hash"]:
                what = f"removed {r['name']} ({r['bytes_freed'] / 1e6:.1f} MB freed)" if r["removed"] else \
                    f"{r['name']}: nothing installed"
                click.echo(what + ("; forgot its recorded sha256" if r["forgot_hash"] else ""))
        if all_ and not results:
            click.echo("nothing installed")
    nothing = [r["name"] for r in results if not r["removed"] and not r["forgot_hash"]]
    if nothing and not all_:
        raise CacheError(f"{', '.join(nothing)} not downloaded; nothing to remove (see 'zoo cache')")


def stdin_is_terminal() -> bool:
    """Whether a person can answer a question (a pipe, /dev/null or a CI job cannot)."""
    return sys.stdin is not None and sys.stdin.isatty()


def _confirm(targets: list[str], asked: str) -> None:
    shown = ", ".join(targets[:6]) + (f", … ({len(targets)} in all)" if len(targets) > 6 else "")
    if not stdin_is_terminal():
        raise UsageError(f"'zoo rm {asked}' would remove {len(targets)} checkpoint(s) ({shown}); add --yes to "
                         "confirm (stdin is not a terminal, so zoo cannot ask)")
    if not click.confirm(f"remove {len(targets)} checkpoint(s): {shown}?", default=False, err=True):
        raise UsageError("nothing removed (not confirmed); add --yes to skip the question")
