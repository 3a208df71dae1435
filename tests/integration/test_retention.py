"""Retention of the event log (SPEC section 9) on both stores: 20 months of history imported, months
out of RETAIN_EVENTS_MONTHS=14 archived to gzip NDJSON and dropped; every answer unchanged, archived
events still duplicates, a late event for a dossier of an archived month merged exactly, `kpis
verify` clean, the archives with the events still stored imported into an empty database giving the
same answers, and a run killed midway run again archiving each event once."""

from __future__ import annotations

import gzip
import random
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError
from sqlalchemy import text

from app.aggregates import rebuild
from app.db import partitions
from app.retention import archive, repository
from app.retention import service as retention
from app.scoring import service as scoring
from app.settings import Settings
from tests.conftest import clone_database_url, new_database_url, start_service
from tests.helpers.kpis import COMMUNES_46, PERIODS
from tests.helpers.server import cli
from tests.integration.test_import import importer, write_ndjson
from tests.reference import TZ
from tests.streams import stream

UNITS = [*COMMUNES_46, "46"]


def history(seed: int = 24) -> list[dict]:
    """About 20 months of events of Huế's units; receipts name a procedure."""
    rng = random.Random(seed)
    events = stream(rng, UNITS, 150, datetime.now(UTC), days=600)
    for e in events:
        if e["type"] == "received":
            e["procedure_code"] = f"1.00{rng.randrange(1000, 1010)}"
    return events


async def answers(svc) -> list:
    """What a reader sees: every KPI (unit, period and window, with the previous one), the monthly
    series of two years, the ranking and the at-risk list with the overdue."""
    token = await svc.key("read")
    out: list = []
    for code in ("VN", "46", *COMMUNES_46):
        for params in PERIODS:
            body = (await svc.get(f"/api/v1/units/{code}/kpis", token, **params)).json()
            out.append((code, params, body["kpis"], body["previous"]["kpis"]))
        for kpi in ("received", "on_time_rate", "pending", "overdue", "orphans"):
            params = {"kpi": kpi, "interval": "month", "from": (datetime.now(TZ) - timedelta(days=700)).date().isoformat()}
            out.append((code, kpi, (await svc.get(f"/api/v1/units/{code}/series", token, **params)).json()["points"]))
        risk = (await svc.get(f"/api/v1/units/{code}/at-risk", token, within="720h", include_overdue="true", limit=1000)).json()
        out.append((code, risk["total"], [{k: v for k, v in it.items() if k != "hours_left"} for it in risk["items"]]))  # moves with now
    ranking = (await svc.get("/api/v1/rankings", token, level="commune", parent="46", window="90d", sort="-on_time_rate")).json()
    out.append([(i["unit"]["code"], i["rank"], i["kpis"]) for i in ranking["items"]])
    return out


async def stored(svc) -> int:
    async with svc.db.session() as session:
        return (await session.execute(text("SELECT count(*) FROM dossier_event"))).scalar()


async def dump_stored(svc, path: Path) -> Path:
    """The events still stored, as one NDJSON file."""
    async with svc.db.session() as session:
        rows = (await session.execute(text("SELECT unit_code, event_id FROM dossier_event"))).all()
    assert rows
    lines = []
    async with svc.db.session() as session:
        for month in sorted((await repository.read_stored_months(session, svc.settings.tz)).keys()):
            lines += [archive.line(e) async for e in repository.stream_month_events(session, month, svc.settings.tz)]
    path.write_bytes(b"".join(lines))
    assert len(lines) == len(rows)
    return path


def archive_lines(folder: Path) -> list[dict]:
    return [orjson.loads(raw) for f in sorted(folder.glob("*.ndjson.gz")) for raw in gzip.open(f).read().splitlines()]


async def verified(svc) -> rebuild.Report:
    report = await rebuild.verify(svc.db, svc.settings)
    assert report.differences == []
    return report


@pytest.fixture
def archive_dir(tmp_path) -> Path:
    return tmp_path / "archive"


@dataclass
class Archived:
    """The history imported (`imported`, a database never archived) and then a retention run at 14
    months (`archived` and its `archive`), with the answers before the run at the frozen `now`."""

    events: list
    imported: str
    archived: str
    archive: Path
    before: list
    done: list
    now: datetime


RETAIN = {"retain_events_months": 14}


@pytest.fixture(scope="module")
async def archived_once(store, templates, pg_server, tmp_path_factory) -> Archived:
    """Built once a module (an import of 20 months and a run: seconds), copied for each test. The
    scoring clock stands still at one instant for the module's answers, so the answers before the run
    and after it compare however far apart the tests run."""
    tmp = tmp_path_factory.mktemp("retention")
    events, now = history(), datetime.now(UTC)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scoring, "_now", lambda: now)
        url = await new_database_url(store, templates, pg_server, tmp)
        async for svc in start_service(url, **RETAIN, archive_dir=str(tmp / "archive")):
            report = await (await importer(svc)).import_file(write_ndjson(tmp / "history.ndjson", events))
            assert report.accepted == len(events)
        imported = await clone_database_url(store, url, pg_server, tmp)
        async for svc in start_service(url, **RETAIN, archive_dir=str(tmp / "archive")):
            before = await answers(svc)
            done = await retention.run(svc.db, svc.settings)
    return Archived(events, imported, url, tmp / "archive", before, done, now)


@pytest.fixture
async def frozen(archived_once, monkeypatch) -> None:
    monkeypatch.setattr(scoring, "_now", lambda: archived_once.now)


@pytest.fixture
async def archived(archived_once, frozen, store, pg_server, archive_dir, tmp_path):
    """A copy of the archived database and of its archive: a service on it, with the events, the
    answers before the run and what it archived."""
    shutil.copytree(archived_once.archive, archive_dir)
    url = await clone_database_url(store, archived_once.archived, pg_server, tmp_path)
    async for svc in start_service(url, **RETAIN, archive_dir=str(archive_dir)):
        yield svc, archived_once.events, archived_once.before, archived_once.done


@pytest.mark.xdist_group("retention")  # under --dist loadgroup one process builds archived_once
class TestRetentionRun:
    async def test_months_out_of_retention_are_archived_and_every_answer_stays(self, archived, archive_dir):
        svc, events, before, done = archived
        keep = retention.first_kept(datetime.now(UTC), svc.settings)
        months = {partitions.month_of(e["occurred_at"], TZ) for e in events}
        old = sorted(m for m in months if m < keep)
        assert len(old) >= 4 and [d["month"] for d in done] == [f"{m:%Y-%m}" for m in old]
        assert sorted(p.name for p in archive_dir.iterdir()) == [archive.file_name(m) for m in old]
        lines = archive_lines(archive_dir)
        assert all(partitions.month_of(datetime.fromisoformat(e["occurred_at"]), TZ) < keep for e in lines)
        # archives plus stored events are the whole log, each event once
        assert len(lines) + await stored(svc) == len(events)
        assert {(e["unit_code"], e["event_id"]) for e in lines} <= {(e["unit_code"], e["event_id"]) for e in events}
        assert await answers(svc) == before
        async with svc.db.session() as session:  # the at-risk list above named procedures of archived receipts
            assert (await session.execute(text("SELECT count(*) FROM archived_receipt"))).scalar() > 0
            # the keys of the archived events, and of them alone: the log decides for the others
            assert (await session.execute(text("SELECT count(*) FROM event_key"))).scalar() == len(lines)
        report = await verified(svc)
        assert report.archived_events == len(lines) and report.events == len(events) - len(lines)
        assert await retention.run(svc.db, svc.settings) == []  # safe to run again: nothing left to do

    async def test_archived_events_sent_again_are_duplicates(self, archived, archive_dir):
        svc, events, before, _ = archived
        for path in sorted(archive_dir.glob("*.gz")):  # as they are, by `chiso import`
            report = await (await importer(svc)).import_file(path)
            assert report.accepted == 0 and report.duplicates == report.lines > 0
        # through the API (within its horizon): same ids, another time and payload
        first = archive_lines(archive_dir)[:20]
        now = datetime.now(UTC)
        again = [e | {"occurred_at": (now - timedelta(days=1)).isoformat(), "dossier_id": "X"} for e in first]
        body = (await svc.post(again, await svc.key("ingest", "VN"))).json()
        assert (body["accepted"], body["duplicates"]) == (0, len(again))
        assert await answers(svc) == before
        await verified(svc)

    @pytest.mark.slow  # a second history database, posted to again (make test-fast leaves it out)
    async def test_a_late_event_for_a_dossier_of_an_archived_month_merges_exactly(
        self, archived, archived_once, archive_dir, store, pg_server, tmp_path
    ):
        svc, events, _, _ = archived
        lines = archive_lines(archive_dir)
        archived_ids = {(e["unit_code"], e["dossier_id"]) for e in lines}
        ended = {(e["unit_code"], e["dossier_id"]) for e in events if e["type"] in ("resolved", "withdrawn")}
        open_old = sorted({(e["unit_code"], e["dossier_id"]) for e in lines if e["type"] == "received"} - ended)
        done_old = sorted(archived_ids & ended)
        assert open_old and done_old
        now = datetime.now(UTC)
        late = [  # a resolution of an old open dossier, a correction of an ended one's deadline and of its receipt
            {"event_id": "late-1", "type": "resolved", "dossier_id": open_old[0][1], "unit_code": open_old[0][0],
             "occurred_at": (now - timedelta(hours=3)).isoformat(), "outcome": "approved"},
            {"event_id": "late-2", "type": "due_changed", "dossier_id": done_old[0][1], "unit_code": done_old[0][0],
             "occurred_at": (now - timedelta(hours=2)).isoformat(), "due_at": (now + timedelta(days=2)).isoformat(),
             "reason": "legal_extension"},
            {"event_id": "late-3", "type": "received", "dossier_id": done_old[-1][1], "unit_code": done_old[-1][0],
             "occurred_at": (now - timedelta(hours=1)).isoformat(), "channel": "postal",
             "due_at": (now + timedelta(days=1)).isoformat(), "sector": "land"},
        ]  # fmt: skip
        body = (await svc.post(late, await svc.key("ingest", "VN"))).json()
        assert body["accepted"] == 3, body
        await verified(svc)
        got = await answers(svc)
        # the whole log in one database, never archived (a copy of the one the run started from)
        url = await clone_database_url(store, archived_once.imported, pg_server, tmp_path)
        async for whole in start_service(url):
            assert await stored(whole) == len(events)
            assert (await whole.post(late, await whole.key("ingest", "VN"))).json()["accepted"] == 3
            assert got == await answers(whole)

    async def test_the_archives_and_the_stored_events_are_the_whole_log(self, archived, archive_dir, make_service, tmp_path):
        svc, events, before, _ = archived
        rest = await dump_stored(svc, tmp_path / "stored.ndjson")
        async with make_service() as fresh:
            for path in [*sorted(archive_dir.glob("*.gz")), rest]:
                report = await (await importer(fresh)).import_file(path)
                assert report.rejected == 0 and report.duplicates == 0
            assert await stored(fresh) == len(events)
            assert await answers(fresh) == before
            await verified(fresh)


class TestRerun:
    async def test_a_run_killed_after_writing_the_file_archives_each_event_once(self, make_service, archive_dir, tmp_path):
        events = history(seed=7)
        async with make_service(retain_events_months=14, archive_dir=str(archive_dir)) as svc:
            await (await importer(svc)).import_file(write_ndjson(tmp_path / "h.ndjson", events))
            keep = retention.first_kept(datetime.now(UTC), svc.settings)
            async with svc.db.session() as session:
                oldest = min(await repository.read_stored_months(session, svc.settings.tz))
            # killed between the file and the drop: the file is whole, the month still stored
            written = await archive.write_merged(
                archive_dir / archive.file_name(oldest), retention._tally(svc.db, oldest, svc.settings, {})
            )
            assert written > 0
            # and a late import brings more events of an old month after its first archive
            await retention.run(svc.db, svc.settings)
            late = [e | {"event_id": f"x{i}-{e['event_id']}", "dossier_id": f"X{i}"} for i, e in enumerate(events)
                    if partitions.month_of(e["occurred_at"], TZ) == oldest][:5]  # fmt: skip
            await (await importer(svc)).import_file(write_ndjson(tmp_path / "late.ndjson", late))
            status = await retention.status(svc.db, svc.settings)
            (row,) = [m for m in status.months if m.month == oldest]
            assert (row.stored, row.due, row.archived) == (5, True, written)
            await retention.run(svc.db, svc.settings)
            lines = archive_lines(archive_dir)
            keys = [(e["unit_code"], e["event_id"]) for e in lines]
            assert len(keys) == len(set(keys))
            assert len(lines) + await stored(svc) == len(events) + 5
            async with svc.db.session() as session:
                assert min(await repository.read_stored_months(session, svc.settings.tz)) >= keep
            report = await verified(svc)
            assert report.archived_events == len(lines)


class TestOperators:
    @pytest.mark.slow  # real chiso processes
    async def test_status_run_and_the_metric(self, make_service, archive_dir, tmp_path):
        events = history(seed=3)
        async with make_service(retain_events_months=14, archive_dir=str(archive_dir), public_read=True) as svc:
            await (await importer(svc)).import_file(write_ndjson(tmp_path / "h.ndjson", events))
            env = {"DATABASE_URL": svc.url, "RETAIN_EVENTS_MONTHS": "14", "ARCHIVE_DIR": str(archive_dir), "SEED_REGISTRY": "false"}
            oldest = min(partitions.month_of(e["occurred_at"], TZ) for e in events)
            keep = retention.first_kept(datetime.now(UTC), svc.settings)
            status = cli(env, "retention", "status").splitlines()
            assert status[0].startswith(f"RETAIN_EVENTS_MONTHS=14: months from {keep:%Y-%m} are kept")
            assert status[1].split() == ["MONTH", "STORED", "ARCHIVED", "FILE"]
            assert status[2].startswith(f"{oldest:%Y-%m}") and status[2].endswith("(due: the next run archives it)")
            assert _metric(await svc.get("/metrics")) == partitions.bounds(oldest, TZ)[0].timestamp()

            out = cli(env, "retention", "run").splitlines()
            assert out[1].startswith(f"{oldest:%Y-%m}: ") and out[-1].endswith("month dropped")
            rows = [line.split() for line in cli(env, "retention", "status").splitlines()[2:]]
            archived = [r for r in rows if r[0] < f"{keep:%Y-%m}"]
            assert archived and all(r[1] == "0" and r[3].endswith(".ndjson.gz") and "due" not in r for r in archived)
            assert all(r[2] == "-" for r in rows if r[0] >= f"{keep:%Y-%m}")
            svc.app.state.kpi_gauge_cache = None  # the next scrape reads again
            assert _metric(await svc.get("/metrics")) == partitions.bounds(keep, TZ)[0].timestamp()
            await verified(svc)

    def test_less_than_the_horizon_is_refused_at_start(self):
        with pytest.raises(ValidationError, match="RETAIN_EVENTS_MONTHS=6 is refused"):
            Settings(_env_file=None, retain_events_months=6)
        with pytest.raises(ValidationError, match="cover HORIZON_DAYS=500"):
            Settings(_env_file=None, retain_events_months=14, horizon_days=500)
        assert Settings(_env_file=None, retain_events_months=14).retain_events_months == 14


def _metric(response) -> float | None:
    for line in response.text.splitlines():
        if line.startswith("chiso_event_log_oldest_month_timestamp_seconds "):
            return float(line.split()[1])
    return None
