"""`chiso retention status|run` (SPEC section 9): app.cli adds them, handing in how a command runs
against the Database of the Settings (its `_run`) and prepares it (`_prepare`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer


def _policy(retain: int | None, first_kept) -> str:
    if retain is None:
        return "RETAIN_EVENTS_MONTHS not set: every month is kept"
    return f"RETAIN_EVENTS_MONTHS={retain}: months from {first_kept:%Y-%m} are kept, older ones archived and dropped"


def retention_cli(run: Callable, prepare: Callable) -> typer.Typer:
    """The `chiso retention` commands."""
    retention_cli = typer.Typer(help="Retention of the raw event log: monthly archives.", no_args_is_help=True, rich_markup_mode=None)

    @retention_cli.command("status")
    def retention_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """List the months stored and archived (exit 1 when an archive file recorded is missing)."""
        from app.retention import service

        async def go(db, settings):
            await prepare(db, settings)
            return await service.status(db, settings)

        st = run(go)
        if as_json:
            typer.echo(json.dumps(asdict(st), default=str, ensure_ascii=False))
        else:
            typer.echo(f"{_policy(st.retain_months, st.first_kept)}; archives in {st.archive_dir}")
            line = "{:<8} {:>12} {:>12}  {}"
            typer.echo(line.format("MONTH", "STORED", "ARCHIVED", "FILE"))
            for m in st.months:
                note = "  (due: the next run archives it)" if m.due else ""
                typer.echo(line.format(f"{m.month:%Y-%m}", m.stored, m.archived or "-", m.file or "-") + note)
            if not st.months:
                typer.echo("no events stored or archived")
            for name in st.missing_files:
                typer.echo(f"MISSING archive file {name}")
        if st.missing_files:
            raise typer.Exit(1)

    @retention_cli.command("run")
    def retention_run() -> None:
        """Archive every month out of retention to ARCHIVE_DIR, then drop it from the event log."""
        from app.retention import service

        async def go(db, settings):
            await prepare(db, settings)
            now = datetime.now(UTC)
            return settings.retain_events_months, service.first_kept(now, settings), await service.run(db, settings, now)

        retain, keep, done = run(go)
        typer.echo(_policy(retain, keep))
        for d in done:
            typer.echo(f"{d['month']}: {d['archived']} events archived to {d['file']} ({d['file_events']} in the file), month dropped")
        if retain is not None and not done:
            typer.echo("nothing to archive")

    return retention_cli
