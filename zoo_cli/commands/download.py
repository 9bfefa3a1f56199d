"""``zoo download``: fetch, verify, unpack and record checkpoints; print where each one is installed."""

from __future__ import annotations

import click

from zoo_cli.cli import AppContext, pass_app
from zoo_cli.errors import UsageError
from zoo_cli.output import emit_json

_CHECK_TEXT = {
    "pinned": "matches the registry's pin",
    "recorded": "recorded now — no pin in the registry, later downloads must match it",
    "matches-record": "matches the hash recorded on the first download",
}


@click.command("download")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Download every checkpoint of the registry.")
@click.option("--force", is_flag=True, help="Download and reinstall even when installed (the old copy stays "
              "until the new one is verified and in place).")
@click.option("--mirror", metavar="BASE_URL", help="Replace scheme+host of every URL with this base "
              "(env ZOO_MIRROR), e.g. http://mirror.local/zoo.")
@click.option("--keep-archive", is_flag=True, help="Keep the .tar.gz in the cache's downloads/ after unpacking.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or status messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, names: tuple[str, ...], all_: bool, force: bool, mirror: str | None,
            keep_archive: bool, quiet: bool, as_json: bool) -> None:
    """Download, verify and unpack checkpoints NAME... (names or wildcards; see 'zoo list').

    Transfers resume after an interruption; nothing is installed unless the archive verifies.
    Env: ZOO_HOME, ZOO_MIRROR, ZOO_OFFLINE=1, HTTPS_PROXY, REQUESTS_CA_BUNDLE.
    """
    from zoo_cli.fetch import install_checkpoints

    if all_ and names:
        raise UsageError("give checkpoint names or --all, not both")
    if not all_ and not names:
        raise UsageError("name at least one checkpoint (or use --all); run 'zoo list' to see the names")
    ckpts = list(app.registry) if all_ else app.registry.resolve(names)
    silent = quiet or as_json
    outcome = install_checkpoints(
        ckpts, app.cache, mirror=mirror or app.settings.mirror, offline=app.settings.offline, force=force,
        keep_archive=keep_archive, progress=False if silent else None,
        log=None if silent else (lambda msg: click.echo(msg, err=True)),
        stop_on_error=len(ckpts) == 1 and not as_json,
        on_installed=None if as_json else (lambda result: click.echo(_describe(result))),
        on_failed=lambda name, exc: click.echo(f"Error: {name}: {exc}", err=True))
    if as_json:
        emit_json(outcome.rows)
    if outcome.first_error is not None:
        click.get_current_context().exit(outcome.first_error.exit_code)


def _describe(r) -> str:
    if r.status == "present":
        return f"{r.name}: already installed (files present, sizes match; 'zoo verify' re-hashes) → {r.path}"
    if r.bytes_transferred:
        rate = r.bytes_transferred / r.seconds / 1e6 if r.seconds > 0 else 0.0
        how = f"downloaded {r.bytes_transferred / 1e6:.1f} MB in {r.seconds:.1f} s ({rate:.1f} MB/s)"
        if r.resumed_from:
            how += f", resumed after {r.resumed_from / 1e6:.1f} MB"
    else:
        how = "installed from the archive already in the cache"
    return f"{r.name}: {how}; sha256 {r.sha256[:16]}… {_CHECK_TEXT.get(r.sha256_check, r.sha256_check)} → {r.path}"
