"""The `chiso` command. Every command reads the same Settings as the service."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from app.cli_retention import retention_cli
from app.db.engine import Database
from app.settings import Settings

cli = typer.Typer(
    help="chiso: real-time performance assessment of local government.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode=None)
units_cli = typer.Typer(help="The unit registry.", no_args_is_help=True, rich_markup_mode=None)
keys_cli = typer.Typer(help="API keys.", no_args_is_help=True, rich_markup_mode=None)
kpis_cli = typer.Typer(help="KPI aggregates.", no_args_is_help=True, rich_markup_mode=None)
cli.add_typer(db_cli, name="db")
cli.add_typer(units_cli, name="units")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(kpis_cli, name="kpis")


def _run(coro_fn, *args, pool_size: int = 2):
    """Run an async command against a Database built from Settings."""

    async def main():
        settings = Settings()
        db = Database(settings.database_url, pool_size=pool_size)
        try:
            return await coro_fn(db, settings, *args)
        finally:
            await db.dispose()

    return asyncio.run(main())


async def _prepare(db: Database, settings: Settings) -> None:
    from app.main import prepare_database

    await prepare_database(db, settings)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Migrate, seed the registry if empty, and serve the API and dashboard."""
    import uvicorn

    from app.export.process import ExporterProcess

    exporter = ExporterProcess() if Settings().export_enabled else None
    own_dir = None  # the metrics folder this command made, removed when it stops
    if workers > 1 or exporter is not None:  # the workers' and the exporter's metrics add up
        # Before anything imports prometheus_client (migrating below imports app.metrics): it picks
        # in-memory or file-backed values once, at import, and one worker serves in this process.
        mp_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or Path(tempfile.gettempdir()) / f"chiso-metrics-{port}")
        if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            raise RuntimeError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set")
        shutil.rmtree(mp_dir, ignore_errors=True)  # stale files of dead workers would add up forever
        mp_dir.mkdir(parents=True)
        own_dir = None if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else mp_dir
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)
    _run(_prepare)
    os.environ["MIGRATE_ON_START"] = "false"  # done once above, not by every worker
    if exporter is not None:
        exporter.start()
        os.environ["EXPORT_ENABLED"] = "false"  # the web workers leave it to that process
    try:
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")
    finally:
        if exporter is not None:
            exporter.stop()
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the current head and install this version's write pass."""

    async def go(db: Database, settings: Settings):
        from app.main import upgrade_database

        return await upgrade_database(db)

    before, after = _run(go)
    head = ", ".join(sorted(after))
    if not before:
        typer.echo(f"schema created at {head}")
    elif before != after:
        typer.echo(f"schema upgraded from {', '.join(sorted(before))} to {head}")
    else:
        typer.echo(f"schema is current ({head})")


@units_cli.command("import")
def units_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV: code,name,kind,parent_code")],
    replace: Annotated[bool, typer.Option(help="Delete units the file does not list.")] = False,
) -> None:
    """Amend (or replace) the registry from a CSV file."""
    from app.units import seed
    from app.units import service as units_service

    try:
        rows = seed.read_csv(file)
    except seed.CsvError as exc:
        typer.echo(f"error: {file}: {exc}", err=True)
        raise typer.Exit(2) from None

    async def go(db: Database, settings: Settings):
        from app.aggregates import rebuild

        await _prepare(db, settings)
        result = await units_service.import_units(db, rows, replace=replace)
        await rebuild.rebuild_rollups(db)  # provinces' and the nation's sums follow the new tree
        return result

    upserted, deleted = _run(go)
    typer.echo(f"{upserted} units imported, {deleted} deleted")


@keys_cli.command("create")
def keys_create(
    scope: Annotated[str, typer.Option(help="ingest, read or admin.")],
    name: Annotated[str, typer.Option(help="Who holds the key.")],
    unit: Annotated[str | None, typer.Option(help="For ingest keys: the unit it may post for.")] = None,
) -> None:
    """Create a key and print its token once, alone on the last line."""
    from app.keys import service as keys
    from app.units.service import RegistryCache

    async def go(db: Database, settings: Settings):
        await _prepare(db, settings)
        registry = await RegistryCache(db).refresh()
        return await keys.create_key(db, registry, scope, name, unit)

    try:
        key_id, token = _run(go)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"key {key_id} created ({scope}{' for ' + unit if unit else ''}); the token is shown once:")
    typer.echo(token)


@keys_cli.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List keys (never their tokens)."""
    from app.keys import service as keys

    async def go(db: Database, settings: Settings):
        await _prepare(db, settings)
        return await keys.list_keys(db)

    rows = _run(go)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        typer.echo("no keys yet: chiso keys create --scope ingest|read|admin [--unit CODE] --name NAME")
        return
    line = "{:>4}  {:<6} {:<5} {:<16} {:<16} {}"
    typer.echo(line.format("ID", "SCOPE", "UNIT", "CREATED (UTC)", "REVOKED (UTC)", "NAME"))
    for k in rows:
        typer.echo(line.format(k["id"], k["scope"], k["unit"] or "-", _minute(k["created_at"]), _minute(k["revoked_at"]) or "-", k["name"]))


def _minute(stamp: str | None) -> str | None:
    """An ISO timestamp to the minute, in UTC, for a table."""
    if stamp is None:
        return None
    return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (see keys list).")]) -> None:
    """Revoke a key; it gets 401 from then on."""
    from app.keys import service as keys

    if not _run(lambda db, settings: keys.revoke(db, key_id)):
        typer.echo(f"error: no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"key {key_id} revoked")


@kpis_cli.command("verify")
def kpis_verify(repair: Annotated[bool, typer.Option(help="Replace the live state with the rebuilt one.")] = False) -> None:
    """Rebuild every aggregate from the stored events; exit 1 on any difference."""
    from app.aggregates import rebuild as verify

    report = _run(lambda db, settings: verify.verify(db, settings, repair=repair))
    typer.echo(f"{report.units} units, {report.dossiers} dossiers, {report.events} events checked")
    for line in report.differences:
        typer.echo(f"DIFFERENCE {line}")
    if report.repaired:
        typer.echo(f"repaired {len(report.repaired)} units: {', '.join(report.repaired)}")
    if report.differences and not repair:
        raise typer.Exit(1)
    typer.echo("live state matches the events" if not report.differences else "live state rebuilt from the events")


@cli.command("import")
def import_events(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="NDJSON (one event per line) or CSV files.")],
    fmt: Annotated[str | None, typer.Option("--format", help="ndjson or csv (default: by the file's suffix).")] = None,
    horizon_days: Annotated[int | None, typer.Option(help="Reject events older than this many days (default: no horizon).")] = None,
    chunk: Annotated[int, typer.Option(help="Lines per transaction.")] = 20_000,
    writers: Annotated[int, typer.Option(help="Connections storing chunks at once.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report per file.")] = False,
    bulk: Annotated[
        bool, typer.Option("--bulk/--no-bulk", help="PostgreSQL: load by COPY, then build each unit's rows once (app.ingest.bulk).")
    ] = True,
    group: Annotated[int, typer.Option(help="--bulk: events per build transaction (whole units).")] = 250_000,
    validators: Annotated[
        int, typer.Option(help="--bulk: processes parsing and validating lines (more than 1 pays only with idle CPUs).")
    ] = 1,
) -> None:
    """Back-fill history: every line under the API's rules; rejected lines to FILE.rejected; resumable."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from app.ingest.importer import Importer, rejected_path, report_dict
    from app.units.service import RegistryCache

    if fmt not in (None, "ndjson", "csv"):
        typer.echo("error: --format must be ndjson or csv", err=True)
        raise typer.Exit(2)

    async def main(db: Database, settings: Settings):
        await _prepare(db, settings)
        registry = await RegistryCache(db).refresh()
        reports = []
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[rate]:>9,.0f} events/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not sys.stderr.isatty() or as_json, transient=False) as bar:
            for path in files:
                kind = fmt or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
                task = bar.add_task(path.name, total=path.stat().st_size, rate=0.0)
                t0 = time.perf_counter()

                def progress(done: int, total: int, events: int, task=task, t0=t0) -> None:
                    bar.update(task, completed=done, total=total, rate=events / max(1e-9, time.perf_counter() - t0))

                importer = Importer(
                    db,
                    registry,
                    settings,
                    kind,
                    horizon_days,
                    chunk,
                    writers,
                    on_progress=progress,
                    bulk=bulk,
                    group_events=group,
                    validators=validators,
                )
                reports.append(await importer.import_file(path))
        return reports

    reports = _run(main, pool_size=2 * max(1, writers) + 1)
    for r in reports:
        if as_json:
            typer.echo(json.dumps(report_dict(r), ensure_ascii=False))
            continue
        resumed = f" (resumed after line {r.resumed_at_line})" if r.resumed_at_line else ""
        typer.echo(
            f"{r.path}{resumed}: {r.lines} lines, {r.accepted} accepted, {r.duplicates} duplicates, {r.rejected} rejected "
            f"in {r.seconds:.1f} s ({r.events_per_s:,.0f} events/s)"
        )
        if r.rejected:
            typer.echo(f"  rejected lines, with line number and field: {rejected_path(Path(r.path))}")


cli.add_typer(retention_cli(_run, _prepare), name="retention")

export_cli = typer.Typer(help="The central assessment network: export outbox.", no_args_is_help=True, rich_markup_mode=None)
cli.add_typer(export_cli, name="export")


@export_cli.command("status")
def export_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Export lag, backlog and parked records (exit 1 when records are parked)."""
    from app.export import service as export_service

    async def go(db: Database, settings: Settings):
        await _prepare(db, settings)
        return await export_service.status(db, settings)

    st = _run(go)
    if as_json:
        typer.echo(json.dumps(st, ensure_ascii=False))
    else:
        typer.echo(f"node {st['node_id']}, push to {st['push'] or '(not configured: pull only)'}")
        typer.echo(f"lag {st['lag_seconds']} s, backlog {st['backlog']} records, parked {st['parked']}")
        typer.echo(f"last sequence {st['last_sequence']}, last sent {st['last_sent_at'] or 'never'}")
        if st["parked"]:
            typer.echo(f"parked because: {st['parked_error']}  (fix it, then: chiso export retry-parked)")
        for name, seen in (st.get("subordinates") or {}).items():
            typer.echo(
                f"subordinate {name}: " + (f"sequence {seen['last_sequence']} at {seen['received_at']}" if seen else "nothing received")
            )
    if st["parked"]:
        raise typer.Exit(1)


@export_cli.command("run")
def export_run() -> None:
    """Run the exporter loop in the foreground (`chiso serve` starts one itself)."""
    from app.export.process import run_exporter

    run_exporter()


@export_cli.command("retry-parked")
def export_retry_parked() -> None:
    """Queue parked records for delivery again."""
    from app.export import service as export_service

    n = _run(lambda db, settings: export_service.retry_parked(db))
    typer.echo(f"{n} parked records queued again")


@cli.command("report")
def report(
    code: Annotated[str, typer.Argument(help="The unit: VN, a province (46) or a commune.")] = "VN",
    period: Annotated[str, typer.Option(help="week, month, quarter or year.")] = "week",
    at: Annotated[str | None, typer.Option(help="A local date (YYYY-MM-DD) in the period; default the last whole one.")] = None,
    all_provinces: Annotated[bool, typer.Option("--all-provinces", help="Also every province's report (35 with VN).")] = False,
    out: Annotated[Path, typer.Option(help="The folder the workbooks are written to.")] = Path("."),
    lang: Annotated[str, typer.Option(help="Titles: vi or en.")] = "vi",
) -> None:
    """Write the period report of a unit (and with --all-provinces of the nation and every province) as XLSX workbooks."""
    from datetime import date

    from app.api.report_book import report_filename, write_report
    from app.scoring import report as report_service
    from app.scoring import service as scoring
    from app.scoring.context import Reader
    from app.units.service import RegistryCache

    async def go(db: Database, settings: Settings):
        registry = await RegistryCache(db).refresh()
        day = date.fromisoformat(at) if at else None
        reader = Reader.of(db, registry, settings)
        p = report_service.report_period(reader, period, day)
        codes = [code]
        if all_provinces:
            codes = ["VN", *sorted(u.code for u in registry.at_level("province", None))]
        out.mkdir(parents=True, exist_ok=True)
        memo = scoring.RankingMemo()
        for unit in codes:
            t0 = time.perf_counter()
            answer = await report_service.report(reader, unit, p, memo=memo)
            path = out / report_filename(answer)
            request = f"chiso report {unit} --period {period}" + (f" --at {at}" if at else "")
            write_report(answer, lang, request, str(path))
            typer.echo(f"{path}  ({time.perf_counter() - t0:.2f} s)")

    _run(go)


@cli.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    days: Annotated[int, typer.Option(min=1, max=365, help="Days to back-fill.")] = 180,
    per_commune_per_day: Annotated[
        float, typer.Option(min=0, help="Dossiers per commune per day in the back-fill; 0 fits it into --backfill-seconds.")
    ] = 0.0,
    backfill_seconds: Annotated[float, typer.Option(min=1, help="Time budget of the back-fill when the volume is 0.")] = 60.0,
    rate: Annotated[float, typer.Option(min=0, help="Live events per second after the back-fill.")] = 0.5,
    seed: Annotated[int | None, typer.Option(help="Random seed, for a repeatable stream.")] = None,
    keep: Annotated[bool, typer.Option(help="Reuse ./var/demo.db instead of starting afresh.")] = False,
) -> None:
    """Serve a living dashboard (public reads) fed by a simulated stream from all 3,321 communes."""
    from app import demo as demo_mod

    config = demo_mod.DemoConfig(
        days=days, per_commune_per_day=per_commune_per_day, backfill_seconds=backfill_seconds, rate=rate, seed=seed
    )
    demo_mod.run(host, port, config, keep=keep)


def main() -> None:
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp_dir:  # prometheus-client writes there as soon as a metric exists; a missing folder would crash
        Path(mp_dir).mkdir(parents=True, exist_ok=True)
    cli()


if __name__ == "__main__":
    main()
