"""``zoo cache``: what the cache holds and how big it is; ``zoo cache prune`` removes stale leftovers."""

from __future__ import annotations

import click

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.output import emit_json
from zoo_cli.units import mb


@click.group("cache", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """Show the cache: installed models and their sizes, partial downloads, leftovers, free space."""
    if ctx.invoked_subcommand is not None:
        return
    from zoo_cli.hub.removal import cache_usage

    app = ctx.find_object(AppContext)
    usage = cache_usage(app.cache, app.registry)
    if as_json:
        emit_json(usage)
        return
    click.echo(f"cache: {usage['home']}  (total {mb(usage['total_bytes'])}, {mb(usage['free_bytes'])} free)")
    if not usage["models"]:
        click.echo("  no models downloaded")
    for m in usage["models"]:
        state = "" if m["installed"] else "  [incomplete: no manifest/marker — 'zoo rm' or 'zoo download --force']"
        note = "" if m["in_registry"] else "  [not in the registry]"
        click.echo(f"  {m['name']:<45} {mb(m['bytes']):>12}{state}{note}")
    for title, key, hint in (("partial downloads", "partials", "resume with 'zoo download'"),
                             ("archives", "archives", "'zoo cache prune --archives' removes them"),
                             ("leftovers", "leftovers", "'zoo cache prune' removes them")):
        if usage[key]:
            click.echo(f"{title} ({hint}):")
            for e in usage[key]:
                if e.get("in_progress"):
                    note = "  [being downloaded now]"
                elif e.get("left_by_pid") is not None:
                    note = f"  [left by stopped process {e['left_by_pid']}; resumable]" if e.get("resumable") \
                        else f"  [left by stopped process {e['left_by_pid']}; no sidecar, restarts]"
                elif key == "partials":
                    note = "  [resumable]" if e.get("resumable") else "  [no sidecar: the next download restarts]"
                else:
                    note = ""
                click.echo(f"  {e.get('file') or e['path']:<45} {mb(e['bytes']):>12}{note}")


@command.command("prune")
@click.option("--archives", is_flag=True, help="Also remove complete archives kept in downloads/.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def prune_command(app: AppContext, archives: bool, dry_run: bool, as_json: bool) -> None:
    """Remove partial downloads and interrupted-install leftovers that no running zoo holds."""
    from zoo_cli.hub.removal import prune

    removed = prune(app.cache, app.registry, archives=archives, dry_run=dry_run)
    if as_json:
        emit_json(removed)
        return
    verb = "would remove" if dry_run else "removed"
    for e in removed:
        click.echo(f"{verb} {e['path']} ({mb(e['bytes'])}): {e['reason']}")
    click.echo(f"{verb} {len(removed)} items, {mb(sum(e['bytes'] for e in removed))}")
