"""``zoo rm``: remove installed checkpoints (and their partial or kept archives) cleanly."""

from __future__ import annotations

import click

from zoo_cli.cli import AppContext, pass_app
from zoo_cli.errors import CacheError, UsageError
from zoo_cli.output import emit_json


@click.command("rm")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Remove every installed checkpoint.")
@click.option("--forget-hash", is_flag=True, help="Also forget the sha256 recorded on first download "
              "(for an unpinned archive that legitimately changed on the server).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, names: tuple[str, ...], all_: bool, forget_hash: bool, as_json: bool) -> None:
    """Remove the installed checkpoints NAME... from the cache."""
    from zoo_cli.fetch import remove_checkpoints

    if all_ and names:
        raise UsageError("give checkpoint names or --all, not both")
    if not all_ and not names:
        raise UsageError("name at least one checkpoint to remove (or use --all); see 'zoo cache'")
    results = remove_checkpoints(app.registry, app.cache, names, everything=all_, forget_hash=forget_hash)
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
