"""The two spellings of the write rules agree: any stream, split into batches in any order, leaves the
same dossier rows and aggregate rows through the PostgreSQL pass (app/aggregates/pg/ingest.sql) and
through the Python fold (SQLite), moves the change counts (unit_change) of the same units batch by
batch, those whose stored rows the batch changed, and `chiso kpis verify` finds both clean.

The streams carry what real clients send and the suite's other streams do not: timestamps with
milliseconds and microseconds, written in any UTC offset, times at local midnights and at deadlines
(to the millisecond and the microsecond either side), receipts corrected, deadlines moved, both
terminal kinds, terminals before their receipt (negative processing times), orphans."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from app.aggregates import pgpass, rebuild
from app.db import models as m
from app.db.engine import Database
from app.db.models.event_log import SQL_EVENT_KEY, event_key_of
from app.db.types import hist_add, hist_decode, hist_encode
from app.ingest.service import screen, store_events
from app.units.service import RegistryCache
from tests import conftest
from tests.conftest import new_database_url

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")  # the settings' default time zone: days are its days
NOW = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)  # the first batch's acceptance time
UNITS = ("19777", "19900", "26506")  # two communes of province 46, one of 79
EXAMPLES = int(os.environ.get("CHISO_PROPERTY_EXAMPLES", "15"))
MS, US = timedelta(milliseconds=1), timedelta(microseconds=1)

# --- streams -------------------------------------------------------------------------------------

offsets = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
jitter = st.sampled_from([timedelta(0), MS, -MS, US, -US, 999 * US, -999 * US, timedelta(seconds=1), -timedelta(seconds=1)])


@st.composite
def instants(draw, day_from: int = 1, day_to: int = 30) -> datetime:
    """A time on one of the local days before NOW: at a local midnight (give or take a millisecond
    or a microsecond), or anywhere in the day to the millisecond or to the microsecond."""
    midnight = datetime.combine(
        NOW.astimezone(LOCAL).date() - timedelta(days=draw(st.integers(day_from, day_to))), datetime.min.time(), LOCAL
    )
    kind = draw(st.sampled_from(("midnight", "ms", "us")))
    if kind == "midnight":
        return midnight + draw(jitter)
    if kind == "ms":
        return midnight + timedelta(milliseconds=draw(st.integers(0, 86_400_000 - 1)))
    return midnight + timedelta(microseconds=draw(st.integers(0, 86_400_000_000 - 1)))


@st.composite
def near(draw, at: datetime) -> datetime:
    """Exactly at `at`, a millisecond or a microsecond either side, or a whole number of
    milliseconds later (days: long durations in milliseconds are where a float loses a digit)."""
    if draw(st.booleans()):
        return at + draw(jitter)
    return at + timedelta(milliseconds=draw(st.integers(-86_400_000, 12 * 86_400_000)))


@st.composite
def dossier_events(draw, n: int) -> list[dict]:
    unit = draw(st.sampled_from(UNITS))
    events: list[dict] = []

    def ev(kind: str, at: datetime, **fields) -> None:
        at = min(at, NOW - timedelta(hours=1))  # a time in the past of every batch's acceptance
        events.append(
            {"event_id": f"e{n}-{len(events)}", "type": kind, "dossier_id": f"D{n}", "unit_code": unit, "occurred_at": at, **fields}
        )

    recv = draw(instants())
    due = draw(st.one_of(near(recv), instants(0, 25)))
    sector = draw(st.sampled_from(("land", "civil_status", None)))
    if draw(st.integers(0, 9)) > 0:  # else an orphan: events without a receipt
        ev("received", recv, channel=draw(st.sampled_from(("online", "in_person"))), due_at=due, sector=sector)
        if draw(st.integers(0, 5)) == 0:  # a correction of the receipt
            ev("received", draw(near(recv)), channel="online", due_at=draw(near(due)), sector=draw(st.sampled_from(("land", None))))
    for _ in range(draw(st.integers(0, 2))):
        reason = draw(st.sampled_from(("supplement_requested", "legal_extension", "apology")))
        ev("due_changed", draw(near(recv)), due_at=draw(near(due)), reason=reason)
    for kind in draw(st.sampled_from(((), ("resolved",), ("resolved",), ("withdrawn",), ("resolved", "withdrawn")))):
        at = draw(st.one_of(near(due), near(recv), instants()))  # at the deadline, after (or before) the receipt
        ev(kind, at, **({"outcome": "approved"} if kind == "resolved" else {}))
    return events


@st.composite
def batches(draw) -> list[tuple[list[dict], bool]]:
    """The stream's events (some twice) in any order, cut into batches; each with whether it
    travels by COPY (`chiso import`) or as JSON (the API) on PostgreSQL."""
    events = [e for i in range(draw(st.integers(1, 14))) for e in draw(dossier_events(i))]
    assume(events)
    events += draw(st.lists(st.sampled_from(events), max_size=3))  # repeats: duplicates
    order = draw(st.permutations(events))
    out, i = [], 0
    while i < len(order):
        size = draw(st.integers(1, max(1, len(order) // 2)))
        out.append(([wire(e, draw(offsets)) for e in order[i : i + size]], draw(st.booleans())))
        i += size
    return out


def wire(e: dict, tz: timezone) -> dict:
    """The JSON form of an event, its times written in the offset `tz`."""
    return {k: v.astimezone(tz).isoformat() if isinstance(v, datetime) else v for k, v in e.items()}


# --- the stored rows, normalised ----------------------------------------------------------------------

# counter tables: rows keyed without the rollup slot (summed over slots), all-zero rows dropped
COUNTED = (
    m.UnitDay,
    m.UnitCohortDue,
    m.UnitTotal,
    m.RollupDay,
    m.RollupCohortDue,
    m.RollupTotal,
    m.RollupOpenDue,
)
KEPT = {
    m.Dossier: (),
    m.EventKey: (),
    m.UnitSource: (),
    m.UnitEventDay: (),
    m.ExportDirty: (),
    m.UnitChange: ("changed_at",),
}  # (columns left out)


async def stored_rows(db: Database) -> dict[str, object]:
    out: dict[str, object] = {}
    async with db.session() as session:
        for model in COUNTED:
            table = model.__table__
            keys = [c.name for c in table.primary_key.columns if c.name != "slot"]
            values = [c.name for c in table.columns if not c.primary_key and c.name != "hist"]
            sums: dict[tuple, list[int]] = {}
            hist: dict[tuple, list[int]] = {}
            for row in (await session.execute(select(table))).mappings():
                acc = sums.setdefault(tuple(row[k] for k in keys), [0] * len(values))
                for i, v in enumerate(values):
                    acc[i] += row[v] or 0  # a day row's zero counter is NULL
                # packed histograms of the day rows: summed by bucket, keyed with it
                for b, n in hist_decode(row.get("hist")).items():
                    hist.setdefault((*(row[k] for k in keys), b), [0])[0] += n
            out[table.name] = {k: v for k, v in sums.items() if any(v)}
            if "hist" in table.columns:
                out[f"{table.name}.hist"] = {k: v for k, v in hist.items() if any(v)}
        for model, left_out in KEPT.items():
            table = model.__table__
            rows = (await session.execute(select(table))).mappings()
            out[table.name] = sorted((tuple((c, r[c]) for c in r.keys() if c not in left_out) for r in rows), key=repr)
    return out


# a unit's stored rows: what its figures (at now, at t, of the day rows, silent) are read from
UNIT_ROWS = (m.Dossier, m.UnitDay, m.UnitCohortDue, m.UnitTotal, m.UnitSource, m.UnitEventDay)


async def unit_rows(db: Database) -> tuple[dict[str, int], dict[str, list]]:
    """(each unit's change count, each unit's stored rows)."""
    rows: dict[str, list] = defaultdict(list)
    async with db.session() as session:
        counts = {u: n for u, n in (await session.execute(select(m.UnitChange.unit_code, m.UnitChange.changes))).all()}
        for model in UNIT_ROWS:
            for row in (await session.execute(select(model.__table__))).mappings():
                rows[row["unit_code"]].append(repr(sorted(row.items())))
    return counts, {u: sorted(r) for u, r in rows.items()}


async def ingest(db: Database, url: str, stream: list[tuple[list[dict], bool]]) -> dict[str, object]:
    """Post the batches through ingest's screening and store (the API's path; `bulk`: chiso import's)
    and return the stored rows once `chiso kpis verify` has found them clean, with the units whose
    change count each batch moved: exactly those whose stored rows it changed (each new event
    changes its dossier's row), never those of its duplicates alone."""
    settings = conftest.test_settings(url)
    registry = await RegistryCache(db).refresh()
    counts, rows = await unit_rows(db)
    moved_by_batch = []
    for k, (items, bulk) in enumerate(stream):
        now = NOW + k * timedelta(minutes=7, microseconds=1234)
        screened = screen(items, registry, now, timedelta(seconds=settings.skew_seconds), None, set())
        assert all(status != "rejected" for status, _, _ in screened), screened
        valid = [got for status, _, got in screened if status == "valid"]
        inserted = await store_events(db, registry, settings, valid, now, bulk=bulk)
        after, rows_after = await unit_rows(db)
        moved = {u: n - counts.get(u, 0) for u, n in after.items() if n != counts.get(u, 0)}
        changed = {u for u in set(rows) | set(rows_after) if rows.get(u) != rows_after.get(u)}
        assert set(moved.values()) <= {1}, (k, moved)  # one change per batch
        assert set(moved) == changed == {u for u, _ in inserted}, (k, sorted(moved), sorted(changed))
        moved_by_batch.append(sorted(moved))
        counts, rows = after, rows_after
    report = await rebuild.verify(db, settings, registry=registry)
    assert report.differences == [], report.differences
    return await stored_rows(db) | {"unit_change by batch": moved_by_batch}


async def both_stores(stream, templates, pg_server, tmp: Path) -> tuple[dict, dict]:
    got = []
    for store in ("sqlite", "postgres"):
        url = await new_database_url(store, templates, pg_server, tmp)
        db = Database(url, pool_size=2)
        try:
            got.append(await ingest(db, url, stream))
        finally:
            await db.dispose()
            if store == "postgres":  # one database per example: drop it now, not at the end of the run
                name = url.rsplit("/", 1)[1]
                await pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                pg_server.created.remove(name)
    return got[0], got[1]


class TestTwoSpellings:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(stream=batches())
    def test_postgres_pass_equals_python_fold(self, templates, pg_server, tmp_path_factory, stream):
        if pg_server is None:
            pytest.skip("PostgreSQL not reachable")
        note(orjson.dumps(stream, option=orjson.OPT_INDENT_2).decode())
        python, postgres = asyncio.run(both_stores(stream, templates, pg_server, tmp_path_factory.mktemp("prop")))
        assert python["dossier"], "the stream left no dossier"
        for table in python:
            assert postgres[table] == python[table], table


class TestPackedHistogramSpellings:
    """The day rows' stored histograms (app.db.types.hist_encode / hist_add) and their SQL spelling
    (app.aggregates.histogram.SQL_HIST_PACK / SQL_HIST_ADD as installed by the pass; on SQLite the
    registered chiso_hist_add), on any counts, negative ones (corrections in one slot) included."""

    counts = st.dictionaries(st.integers(0, 170), st.integers(-5, 5), max_size=8)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(a=counts, b=counts, pairs=st.lists(st.tuples(st.integers(0, 170), st.integers(-5, 5)), max_size=10))
    def test_sql_equals_python(self, fresh_service, a, b, pairs):
        asyncio.run(self._check(fresh_service.url, hist_encode(a), hist_encode(b), pairs))

    async def _check(self, url: str, pa: str, pb: str, pairs: list[tuple[int, int]]) -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.engine.connect() as conn:
                if conn.dialect.name != "postgresql":
                    got = (await conn.execute(text("SELECT chiso_hist_add(:a, :b)"), {"a": pa, "b": pb})).scalar()
                    assert got == hist_add(pa, pb)
                    return
                fn = pgpass.current()
                got = (await conn.execute(text(f"SELECT {fn.hist_add}(:a, :b)"), {"a": pa, "b": pb})).scalar()
                assert got == hist_add(pa, pb)
                got = (await conn.execute(text(f"SELECT {fn.hist_add}(:a, NULL)"), {"a": pa})).scalar()
                assert got == hist_add(pa, None) == pa
                stmt = text(f"SELECT {fn.hist_pack}(CAST(:b AS int[]), CAST(:n AS bigint[]))")
                got = (await conn.execute(stmt, {"b": [b for b, _ in pairs], "n": [n for _, n in pairs]})).scalar()
                want: dict[int, int] = defaultdict(int)
                for bucket, n in pairs:
                    want[bucket] += n
                assert got == hist_encode(want)
        finally:
            await db.dispose()


# --- `chiso import` of sub-second timestamps ----------------------------------------------------------


def subsecond_history(seed: int, n: int) -> list[dict]:
    """n dossiers received over 300 days, resolved up to 30 days later, times to the millisecond
    as real clients send them, in several offsets."""
    rng = random.Random(seed)
    zones = [timezone(timedelta(minutes=m)) for m in (420, 0, -300, 345, 540)]
    out = []
    for i in range(n):
        unit = rng.choice(UNITS)
        recv = (NOW - timedelta(days=rng.uniform(2, 300))).replace(microsecond=rng.randrange(1000) * 1000)
        due = recv + timedelta(milliseconds=rng.randrange(1, 20 * 86_400_000))
        end = min(recv + timedelta(milliseconds=rng.randrange(1, 30 * 86_400_000)), NOW - timedelta(hours=1))
        common = {"dossier_id": f"D{i}", "unit_code": unit}
        out.append({"event_id": f"r{i}", "type": "received", "occurred_at": recv, "channel": "online", "due_at": due, **common})
        out.append({"event_id": f"s{i}", "type": "resolved", "occurred_at": end, **common})
    return [
        {k: v.astimezone(rng.choice(zones)).isoformat(timespec="milliseconds") if isinstance(v, datetime) else v for k, v in e.items()}
        for e in out
    ]


def chiso(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "EXPORT_ENABLED": "false", "SEED_REGISTRY": "false"}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
class TestImportSubsecond:
    async def test_chiso_import_then_verify_is_clean(self, store, templates, pg_server, tmp_path):
        """1,500 dossiers whose processing times are days given to the millisecond: a float on the
        way to proc_ms loses the last digit of some of them (about 1 in 160)."""
        url = await new_database_url(store, templates, pg_server, tmp_path)
        path = tmp_path / "history.ndjson"
        events = subsecond_history(17, 1500)
        path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
        imported = chiso(url, "import", str(path))
        assert imported.returncode == 0, imported.stderr
        assert f"{len(events)} accepted" in imported.stdout, imported.stdout
        verified = chiso(url, "kpis", "verify")
        assert verified.returncode == 0 and "live state matches the events" in verified.stdout, verified.stdout + verified.stderr
        assert "DIFFERENCE" not in verified.stdout
        db = Database(url, pool_size=1)
        try:
            async with db.session() as session:
                days = {(r.unit_code, r.sector, r.day): r.proc_ms for r in (await session.execute(select(m.UnitDay))).scalars()}
        finally:
            await db.dispose()
        # the reference: whole milliseconds, summed per (unit, all sectors, local day of the resolution)
        want: dict[tuple[str, str, date], int] = defaultdict(int)
        by_dossier = defaultdict(dict)
        for e in events:
            by_dossier[(e["unit_code"], e["dossier_id"])][e["type"]] = datetime.fromisoformat(e["occurred_at"])
        for (unit, _), d in by_dossier.items():
            micro = (d["resolved"] - d["received"]) // US
            want[(unit, "*", d["resolved"].astimezone(LOCAL).date())] += micro // 1000
        assert {k: days.get(k) for k in want} == dict(want)


class TestEventKeySpellings:
    """An event's key (app.db.models.event_log.event_key_of) and its SQL spelling (SQL_EVENT_KEY, in
    the pass), on any unit code and id: colons, accents, astral characters."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(
        unit=st.text(st.characters(whitelist_categories=("Nd", "Lu")), min_size=1, max_size=8),
        ids=st.lists(
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=128),
            min_size=1,
            max_size=5,
        ),
    )
    def test_sql_equals_python(self, fresh_service, unit, ids):
        if not fresh_service.url.startswith("postgresql"):
            pytest.skip("the SQL spelling runs on PostgreSQL")
        asyncio.run(self._check(fresh_service.url, unit, ids))

    async def _check(self, url: str, unit: str, ids: list[str]) -> None:
        db = Database(url, pool_size=1)
        try:
            async with db.engine.connect() as conn:
                sql = SQL_EVENT_KEY.format(a="j")
                stmt = text(f"SELECT {sql} FROM (SELECT CAST(:u AS text) AS unit_code, CAST(:e AS text) AS event_id) j")
                for event_id in ids:
                    got = (await conn.execute(stmt, {"u": unit, "e": event_id})).scalar()
                    assert uuid.UUID(str(got)) == event_key_of(unit, event_id)
        finally:
            await db.dispose()
