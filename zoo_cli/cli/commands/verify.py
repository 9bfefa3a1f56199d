"""``zoo verify``: re-hash installed checkpoints against their manifests and report per model."""

from __future__ import annotations

import click

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.output import emit_json
from zoo_cli.errors import CacheError


@click.command("verify")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, names: tuple[str, ...], as_json: bool) -> None:
    """Check installed checkpoints NAME... (default: all installed) file by file against their manifest.

    Re-hashes every unpacked file (and a kept archive), compares the archive hash with the registry pin or
    the hash recorded on first download, and exits non-zero when any model fails.
    """
    from zoo_cli.hub.verify import verify_checkpoints

    cache = app.cache
    reports = verify_checkpoints(app.registry, cache, names)
    failed = [r for r in reports if not r.ok]
    if as_json:
        emit_json([r.to_json() for r in reports])
    else:
        if not reports:
            others = sorted(p.name for p in cache.models_dir.glob("*")
                            if p.is_dir() and not p.name.startswith(".") and p.name not in app.registry)
            hint = (f" ({len(others)} model(s) of another registry in the cache: {', '.join(others[:5])}; "
                    "pass that registry with --registry)") if others else ""
            click.echo(f"no checkpoint of this registry is downloaded in {cache.home}; nothing to verify{hint}")
        for r in reports:
            if r.ok:
                extra = ", archive re-hashed" if r.archive_checked else ""
                click.echo(f"{r.name}: OK ({r.files_checked} files, {r.bytes_checked / 1e6:.1f} MB re-hashed"
                           f"{extra}) → {r.path}")
            else:
                click.echo(f"{r.name}: FAILED — " + "; ".join(r.problems))
            if r.extra_files:
                click.echo(f"  note: files not in the manifest: {', '.join(r.extra_files[:5])}")
    if failed:
        click.echo(f"Error: {len(failed)} of {len(reports)} checkpoints failed verification; run "
                   f"'zoo download NAME --force' to reinstall them", err=True)
        click.get_current_context().exit(CacheError.exit_code)
