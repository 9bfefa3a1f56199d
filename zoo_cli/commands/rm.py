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
    from zoo_cli.fetch import remove_checkpoint

    cache = app.cache
    if all_ and names:
        raise UsageError("give checkpoint names or --all, not both")
    if not all_ and not names:
        raise UsageError("name at least one checkpoint to remove (or use --all); see 'zoo cache'")
    targets: list[tuple[str, str | None, str | None]] = []  # name, archive filename, registry URL
    if all_:
        if cache.models_dir.is_dir():
            for d in sorted(cache.models_dir.iterdir()):
                if d.is_dir() and not d.name.startswith("."):
                    c = app.registry.get(d.name) if d.name in app.registry else None
                    targets.append((d.name, c.archive_filename if c else None, c.url if c else None))
    else:
        for name in names:
            if name not in app.registry and cache.model_dir(name).exists():
                targets.append((name, None, None))  # installed from another registry: remove by name
                continue
            c = app.registry.get(name)
            targets.append((c.name, c.archive_filename, c.url))
    results = [remove_checkpoint(name, cache, archive_filename=archive, forget_url=url if forget_hash else None)
               for name, archive, url in targets]
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
