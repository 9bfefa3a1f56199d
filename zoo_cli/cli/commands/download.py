"""``zoo download``: fetch, verify, unpack and record checkpoints; print where each one is installed."""

from __future__ import annotations

from pathlib import Path

import click

from zoo_cli.cli.app import AppContext, pass_app
from zoo_cli.cli.output import emit_json
from zoo_cli.config import MAX_DOWNLOAD_JOBS
from zoo_cli.errors import UsageError
from zoo_cli.units import mb
from zoo_cli.urls import redact

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
@click.option("--local-dir", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Install the checkpoint's files into DIR (new or empty) instead of the cache's models/NAME.")
@click.option("--jobs", "-j", type=click.IntRange(1, MAX_DOWNLOAD_JOBS), default=2, show_default=True,
              help=f"Download up to this many archives at once (1-{MAX_DOWNLOAD_JOBS}).")
@click.option("--timeout", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True, envvar="ZOO_TIMEOUT",
              metavar="SECONDS", callback=lambda _ctx, _param, v: _finite(v), help="Give a try up after this many seconds without data (env ZOO_TIMEOUT).")
@click.option("--dry-run", is_flag=True, help="Only show what would be fetched and its size (no network).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: only when stderr is a terminal).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no status messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@pass_app
def command(app: AppContext, names: tuple[str, ...], all_: bool, force: bool, mirror: str | None,
            keep_archive: bool, local_dir: Path | None, jobs: int, timeout: float, dry_run: bool,
            progress: bool | None, quiet: bool, as_json: bool) -> None:
    """Download, verify and unpack checkpoints NAME... (names or wildcards; see 'zoo list').

    Transfers resume after an interruption; nothing is installed unless the archive verifies.
    Env: ZOO_HOME, ZOO_MIRROR, ZOO_OFFLINE=1, ZOO_TIMEOUT, HTTPS_PROXY, REQUESTS_CA_BUNDLE, NETRC.
    """
    from zoo_cli.hub.batch import install_checkpoints, plan_downloads
    from zoo_cli.hub.session import TransferPolicy

    if all_ and names:
        raise UsageError("give checkpoint names or --all, not both")
    if not all_ and not names:
        raise UsageError("name at least one checkpoint (or use --all); run 'zoo list' to see the names")
    ckpts = list(app.registry) if all_ else app.registry.resolve(names)
    if local_dir is not None and len(ckpts) > 1:
        raise UsageError(f"--local-dir takes one checkpoint, but {len(ckpts)} were named; name only one")
    mirror = mirror or app.settings.mirror
    if dry_run:
        rows = plan_downloads(ckpts, app.cache, mirror=mirror, offline=app.settings.offline, force=force,
                              target=local_dir)
        if as_json:
            emit_json(rows)
        else:
            _print_plan(rows)
        return
    silent = quiet or as_json
    outcome = install_checkpoints(
        ckpts, app.cache, mirror=mirror, offline=app.settings.offline, force=force,
        keep_archive=keep_archive, progress=False if silent else progress,
        log=None if silent else (lambda msg: click.echo(msg, err=True)),
        stop_on_error=len(ckpts) == 1 and not as_json, jobs=jobs, policy=TransferPolicy.with_timeout(timeout),
        target=local_dir,
        on_installed=None if as_json else (lambda result: click.echo(_describe(result))),
        on_failed=lambda name, exc: click.echo(f"Error: {name}: {redact(str(exc))}", err=True))
    if as_json:
        emit_json(outcome.rows)
    elif len(ckpts) > 1:
        _print_summary(outcome)
    if outcome.first_error is not None:
        click.get_current_context().exit(outcome.first_error.exit_code)


def _finite(value: float) -> float:
    # FloatRange lets nan through (every comparison with nan is false).
    if value != value:
        raise click.BadParameter("nan is not a number of seconds; give e.g. 30")
    return value



def _print_plan(rows: list[dict]) -> None:
    fetch = [r for r in rows if r["action"] in ("download", "resume")]
    for r in rows:
        size = mb(r["size"]) if r["size"] is not None else "size unknown"
        if r["action"] == "present":
            line = f"already installed → {r['path']}"
        elif r["action"] == "install-archive":
            line = f"would install from the archive already in the cache ({mb(r['have'])}) → {r['path']}"
        elif r["action"] == "unavailable":
            line = f"not available offline (ZOO_OFFLINE=1); fetch {r['url']} by hand first"
        elif r["action"] == "resume":
            line = f"would resume after {mb(r['have'])} of {size} (registry size) from {r['url']} → {r['path']}"
        else:
            line = f"would download {size} (registry size) from {r['url']} → {r['path']}"
        click.echo(f"{r['name']}: {line}")
    known = sum(r["to_fetch"] for r in fetch if r["to_fetch"] is not None)
    unknown = sum(1 for r in fetch if r["to_fetch"] is None)
    total = f"~{mb(known)}" + (f" + {unknown} of unknown size" if unknown else "")
    click.echo(f"dry run: {len(fetch)} of {len(rows)} to fetch, {total}; nothing was downloaded")


def _print_summary(outcome) -> None:
    installed = sum(1 for r in outcome.results if r.status == "installed")
    present = sum(1 for r in outcome.results if r.status == "present")
    click.echo(f"summary: {installed} installed, {present} already present, {len(outcome.failures)} failed")
    for name, exc in outcome.failures:
        reason = redact(str(exc))
        click.echo(f"  failed {name}: {reason}")


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
