"""`chiso import` (SPEC section 9) on both stores: an import equals posting the same events, bad
lines are reported with their line number and field, a killed import re-run completes exactly,
imports and posts of the same units may run at once; and the set-based merge of a batch on
PostgreSQL gives the same state for any split of the events into batches, in any order."""

from __future__ import annotations

import asyncio
import csv
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from app.aggregates import rebuild
from app.aggregates.counters import DAY_COUNTERS, TOTAL_COUNTERS
from app.ingest.importer import Importer, progress_path, rejected_path
from app.ingest.validators import Chunk
from tests import reference as ref
from tests.helpers.kpis import COMMUNES_46, COMMUNES_79, PERIODS, assert_matches, post_all
from tests.streams import stream, wire

UNITS_46 = {"46": {"46", *COMMUNES_46}, COMMUNES_46[0]: {COMMUNES_46[0]}, "VN": {"VN", "46", *COMMUNES_46}}


def write_ndjson(path: Path, events: list[dict], rng: random.Random | None = None, dup_every: int = 0) -> Path:
    lines = [orjson.dumps(wire(e)) for e in events]
    if dup_every:
        lines += lines[::dup_every]  # repeats of earlier lines: duplicates
    if rng is not None:
        rng.shuffle(lines)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def importer(svc, **kw) -> Importer:
    registry = await svc.app.state.registry.refresh()
    return Importer(svc.db, registry, svc.settings, **kw)


async def answers(svc, units=("46", *COMMUNES_46, "VN")) -> list:
    token = await svc.key("read")
    out = []
    for code in units:
        for params in PERIODS:
            body = (await svc.get(f"/api/v1/units/{code}/kpis", token, **params)).json()
            out.append((code, params, body["kpis"], body["previous"]["kpis"]))
    ranking = (await svc.get("/api/v1/rankings", token, level="commune", parent="46", window="90d", sort="-on_time_rate")).json()
    out.append([(i["unit"]["code"], i["rank"], i["kpis"]) for i in ranking["items"]])
    return out


async def assert_verified(svc) -> None:
    report = await rebuild.verify(svc.db, svc.settings)
    assert report.differences == []


async def work_tables(svc) -> list[str]:
    if svc.db.is_sqlite:
        return []
    async with svc.db.session() as session:
        return list((await session.execute(text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'chiso_bulk_%'"))).scalars())


async def stored_events(svc) -> int:
    async with svc.db.session() as session:
        return (await session.execute(text("SELECT count(*) FROM dossier_event"))).scalar()


class TestImport:
    @pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "chunked"])
    async def test_import_equals_posting(self, make_service, tmp_path, store, bulk):
        if store == "sqlite" and not bulk:
            pytest.skip("SQLite has one path (bulk is PostgreSQL's)")
        rng = random.Random(21)
        now = datetime.now(UTC)
        events = stream(rng, [*COMMUNES_46, "46"], 250, now)
        async with make_service() as posted:
            await post_all(posted, await posted.key("ingest", "VN"), events, random.Random(1))
            expected = await answers(posted)
            await assert_verified(posted)
        path = write_ndjson(tmp_path / "history.ndjson", events, random.Random(2), dup_every=9)
        async with make_service() as imported:
            # bulk: several build groups of whole units, so that rollup rows are written more than once
            report = await (await importer(imported, chunk_lines=97, bulk=bulk, group_events=120)).import_file(path)
            assert (report.accepted, report.rejected) == (len(events), 0)
            assert report.duplicates == report.lines - len(events) > 0
            assert await answers(imported) == expected
            await assert_verified(imported)
            assert not progress_path(path).exists()  # complete: nothing to resume
            assert await work_tables(imported) == []  # the bulk path's work table is dropped when complete
            again = await (await importer(imported, bulk=bulk)).import_file(path)  # a second run stores nothing
            assert (again.accepted, again.duplicates) == (0, again.lines)
            assert await stored_events(imported) == len(events)

    async def test_bad_lines_are_reported_with_line_and_field(self, make_service, tmp_path):
        now = datetime.now(UTC)
        good = {"event_id": "g1", "type": "received", "dossier_id": "D1", "unit_code": COMMUNES_46[0],
                "occurred_at": (now - timedelta(days=3)).isoformat(), "channel": "online",
                "due_at": (now + timedelta(days=3)).isoformat()}  # fmt: skip
        old = good | {"event_id": "g2", "dossier_id": "D2", "occurred_at": (now - timedelta(days=500)).isoformat()}
        lines = [
            orjson.dumps(good),  # 1
            b"{not json",  # 2
            b"",  # 3: blank, skipped
            orjson.dumps({k: v for k, v in good.items() if k != "dossier_id"} | {"event_id": "g3"}),  # 4
            orjson.dumps(good | {"event_id": "g4", "unit_code": "99999"}),  # 5
            orjson.dumps(good | {"event_id": "g5", "due_at": "2026-01-01T00:00:00"}),  # 6: no offset
            orjson.dumps(good),  # 7: a repeat of line 1
            orjson.dumps(old),  # 8: older than the API's horizon: an import takes it
            orjson.dumps({k: v for k, v in good.items() if k not in ("event_id", "channel")} | {"unit_code": "99999"}),  # 9
        ]
        path = tmp_path / "bad.ndjson"
        path.write_bytes(b"\n".join(lines) + b"\n")
        async with make_service() as svc:
            report = await (await importer(svc)).import_file(path)
            assert (report.lines, report.accepted, report.duplicates, report.rejected) == (8, 2, 1, 5)
            rejected = [orjson.loads(x) for x in rejected_path(path).read_bytes().splitlines()]
            got = {r["line"]: [(e["loc"], e["msg"]) for e in r["errors"]] for r in rejected}
            assert got == {
                2: [([], "line is not JSON")],
                4: [(["dossier_id"], "Field required")],
                5: [(["unit_code"], "unknown unit")],
                6: [(["due_at"], "timestamp needs an offset")],
                9: [(["event_id"], "Field required"), (["channel"], "Field required on a received event"), (["unit_code"], "unknown unit")],
            }
            assert rejected[0]["text"] == "{not json"
            # with a horizon, the old line is rejected naming occurred_at
            path2 = tmp_path / "old.ndjson"
            path2.write_bytes(orjson.dumps(old | {"event_id": "g6"}) + b"\n")
            r2 = await (await importer(svc, horizon_days=400)).import_file(path2)
            assert (r2.accepted, r2.rejected) == (0, 1)
            (line,) = rejected_path(path2).read_bytes().splitlines()
            assert orjson.loads(line)["errors"][0]["loc"] == ["occurred_at"]

    async def test_progress_of_another_database_is_not_resumed(self, make_service, tmp_path):
        """The progress file beside the input names its database: a file imported (or half imported)
        into one store and then into another starts there from its first line."""
        events = stream(random.Random(12), COMMUNES_46[:3], 120, datetime.now(UTC))
        path = write_ndjson(tmp_path / "twice.ndjson", events)
        async with make_service() as first:
            imp = await importer(first, chunk_lines=40)
            await imp.import_file(path)
            last = Chunk(seq=0, end_offset=path.stat().st_size, end_line=len(events))
            imp._advance(path, {0: last}, {"next": 0})  # as if a run into this store stopped after its last chunk
            assert progress_path(path).exists()
        async with make_service() as second:
            report = await (await importer(second, chunk_lines=40)).import_file(path)
            assert report.resumed_at_line == 0
            assert await stored_events(second) == len(events)

    async def test_csv(self, make_service, tmp_path):
        rng = random.Random(5)
        events = stream(rng, [COMMUNES_46[1]], 60, datetime.now(UTC))
        cols = ["event_id", "type", "dossier_id", "unit_code", "occurred_at", "channel", "due_at", "reason", "outcome", "sector"]
        path = tmp_path / "history.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for e in events:
                w.writerow([wire(e).get(c) or "" for c in cols])
            w.writerow(["x1", "received", "D-x", COMMUNES_46[1], "not a time", "online", "", "", "", ""])
            w.writerow(["only", "three", "cells"])
        async with make_service() as svc:
            report = await (await importer(svc, fmt="csv")).import_file(path)
            assert (report.accepted, report.rejected) == (len(events), 2)
            rejected = [orjson.loads(x) for x in rejected_path(path).read_bytes().splitlines()]
            assert [r["line"] for r in rejected] == [len(events) + 2, len(events) + 3]
            assert ["occurred_at"] in [e["loc"] for e in rejected[0]["errors"]]
            body = (await svc.get(f"/api/v1/units/{COMMUNES_46[1]}/kpis", await svc.key("read"), window="365d")).json()
            expected = ref.kpis(ref.dossiers(events), {COMMUNES_46[1]}, *_window_days(body), datetime.now(UTC))
            assert_matches(body["kpis"], expected, "commune 365d after a CSV import")
            await assert_verified(svc)

    @pytest.mark.slow
    async def test_killed_import_is_completed_by_a_rerun(self, make_service, tmp_path):
        rng = random.Random(8)
        events = stream(rng, [*COMMUNES_46, *COMMUNES_79], 1500, datetime.now(UTC))
        path = write_ndjson(tmp_path / "big.ndjson", events, random.Random(3))
        async with make_service() as svc:
            env = {**os.environ, "DATABASE_URL": svc.url, "SEED_REGISTRY": "false"}
            cmd = [sys.executable, "-m", "app.cli", "import", str(path), "--chunk", "300", "--writers", "1", "--no-bulk"]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                deadline = time.monotonic() + 120
                while not progress_path(path).exists() and proc.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert proc.poll() is None, proc.stdout.read().decode()  # still running: kill it midway
                os.killpg(proc.pid, signal.SIGKILL)
            finally:
                proc.wait(30)
                proc.stdout.close()
            partial = await stored_events(svc)
            assert 0 < partial < len(events)
            report = await (await importer(svc, chunk_lines=300, bulk=False)).import_file(path)
            assert report.resumed_at_line > 0
            assert await stored_events(svc) == len(events)
            assert report.accepted == len(events) - partial
            await assert_verified(svc)
            body = (await svc.get("/api/v1/units/VN/kpis", await svc.key("read"), window="90d")).json()
            expected = ref.kpis(ref.dossiers(events), {"VN", "46", "79", *COMMUNES_46, *COMMUNES_79},
                                *_window_days(body), datetime.now(UTC))  # fmt: skip
            assert_matches(body["kpis"], expected, "VN 90d after the re-run")

    @pytest.mark.slow
    async def test_bulk_import_killed_while_building_is_completed_by_a_rerun(self, make_service, tmp_path, store):
        if store == "sqlite":
            pytest.skip("the bulk path is PostgreSQL's")
        rng = random.Random(9)
        events = stream(rng, [*COMMUNES_46, *COMMUNES_79], 1500, datetime.now(UTC))
        path = write_ndjson(tmp_path / "big.ndjson", events, random.Random(6), dup_every=7)
        async with make_service() as svc:
            env = {**os.environ, "DATABASE_URL": svc.url, "SEED_REGISTRY": "false"}
            cmd = [sys.executable, "-m", "app.cli", "import", str(path), "--chunk", "300", "--writers", "1", "--group", "60"]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                deadline = time.monotonic() + 120
                while await stored_events(svc) == 0 and proc.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert proc.poll() is None, proc.stdout.read().decode()  # building: kill it midway
                os.killpg(proc.pid, signal.SIGKILL)
            finally:
                proc.wait(30)
                proc.stdout.close()
            partial = await stored_events(svc)
            assert 0 < partial < len(events)
            assert len(await work_tables(svc)) == 1  # what is left to build survived the kill
            await assert_verified(svc)  # each group is whole: what is stored is exact
            report = await (await importer(svc, chunk_lines=300, group_events=60)).import_file(path)
            assert report.resumed_at_line > 0
            assert await stored_events(svc) == len(events)
            assert report.accepted == len(events) - partial
            assert await work_tables(svc) == []
            await assert_verified(svc)
            body = (await svc.get("/api/v1/units/VN/kpis", await svc.key("read"), window="90d")).json()
            expected = ref.kpis(ref.dossiers(events), {"VN", "46", "79", *COMMUNES_46, *COMMUNES_79},
                                *_window_days(body), datetime.now(UTC))  # fmt: skip
            assert_matches(body["kpis"], expected, "VN 90d after the re-run")

    async def test_a_bulk_import_bringing_much_of_the_store_rebuilds_its_indexes(self, make_service, tmp_path, store):
        """An import that stored a third or more of the events rebuilds the indexes of the dossiers,
        the day rows and the event log's partitions (new files, every index valid), the invalid copy
        an interrupted rebuild left dropped; a smaller one leaves them as they are, unless it finds
        such a copy: the interrupted rebuild is done again. The figures are those of posting."""
        if store == "sqlite":
            pytest.skip("the bulk path is PostgreSQL's")

        async def files() -> dict[str, int]:
            async with svc.db.session() as session:
                sql = (
                    "SELECT c.relname, c.relfilenode FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE i.indrelid IN ('dossier'::regclass, 'unit_day'::regclass)"
                    " OR i.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'dossier_event'::regclass)"
                )
                return dict((await session.execute(text(sql))).all())

        events = stream(random.Random(14), COMMUNES_46, 600, datetime.now(UTC))
        later = stream(random.Random(15), COMMUNES_79, 60, datetime.now(UTC))
        async with make_service() as svc:

            async def interrupted() -> None:  # what REINDEX CONCURRENTLY killed midway leaves
                async with svc.db.autocommit(write=True) as session:
                    await session.execute(text("CREATE INDEX CONCURRENTLY ix_dossier_recv_unit_ccnew ON dossier (recv_at, unit_code)"))
                    sql = "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_dossier_recv_unit_ccnew'::regclass"
                    await session.execute(text(sql))

            await interrupted()
            before = await files()
            report = await (await importer(svc, chunk_lines=200)).import_file(write_ndjson(tmp_path / "much.ndjson", events))
            assert report.compacted
            after = await files()
            assert set(after) == set(before) - {"ix_dossier_recv_unit_ccnew"}
            assert all(after[name] != before[name] for name in after)  # every index a new file
            async with svc.db.session() as session:
                assert (await session.execute(text("SELECT count(*) FROM pg_index WHERE NOT indisvalid"))).scalar() == 0
            report = await (await importer(svc, chunk_lines=200)).import_file(write_ndjson(tmp_path / "little.ndjson", later))
            assert report.accepted == len(later) and not report.compacted
            assert await files() == after
            await interrupted()
            again = stream(random.Random(16), COMMUNES_79, 20, datetime.now(UTC))
            report = await (await importer(svc, chunk_lines=200)).import_file(write_ndjson(tmp_path / "again.ndjson", again))
            assert report.compacted  # the interrupted rebuild, done again
            rebuilt = await files()
            assert set(rebuilt) == set(after) and all(rebuilt[n] != after[n] for n in after)
            later += again
            await assert_verified(svc)
            body = (await svc.get("/api/v1/units/VN/kpis", await svc.key("read"), window="90d")).json()
            expected = ref.kpis(ref.dossiers(events + later), {"VN", "46", "79", *COMMUNES_46, *COMMUNES_79},
                                *_window_days(body), datetime.now(UTC))  # fmt: skip
            assert_matches(body["kpis"], expected, "VN 90d after both imports")

    async def test_a_rebuild_kept_from_its_lock_is_left_and_the_import_completes(self, make_service, tmp_path, store, monkeypatch):
        """A compaction meeting a transaction that holds a conflicting lock on one table (a service's
        ANALYZE of it, say) gives that table up after its tries, leaves no invalid index, rebuilds
        the others, and the import completes: every event stored, the figures those of posting."""
        if store == "sqlite":
            pytest.skip("the bulk path is PostgreSQL's")
        from app.ingest import bulk

        monkeypatch.setattr(bulk, "COMPACT_LOCK_TIMEOUT", "200ms")
        monkeypatch.setattr(bulk, "COMPACT_PAUSE", 0.0)
        compact = bulk.BulkLoad.compact
        events = stream(random.Random(17), COMMUNES_46, 300, datetime.now(UTC))
        async with make_service() as svc:

            async def beside_a_lock(load, accepted: int) -> bool:
                async with svc.db.transaction() as session:
                    await session.execute(text("LOCK TABLE unit_day IN SHARE UPDATE EXCLUSIVE MODE"))
                    return await compact(load, accepted)

            monkeypatch.setattr(bulk.BulkLoad, "compact", beside_a_lock)
            files = "SELECT c.relname, c.relfilenode FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            files += " WHERE i.indrelid = CAST(:t AS regclass)"
            async with svc.db.session() as session:
                before = {t: dict((await session.execute(text(files), {"t": t})).all()) for t in ("dossier", "unit_day")}
            report = await (await importer(svc, chunk_lines=100)).import_file(write_ndjson(tmp_path / "locked.ndjson", events))
            assert not report.compacted and report.accepted > 0
            async with svc.db.session() as session:
                after = {t: dict((await session.execute(text(files), {"t": t})).all()) for t in ("dossier", "unit_day")}
                assert (await session.execute(text("SELECT count(*) FROM pg_index WHERE NOT indisvalid"))).scalar() == 0
            assert after["unit_day"] == before["unit_day"]  # given up: as it was
            assert set(after["dossier"]) == set(before["dossier"])
            assert all(after["dossier"][n] != before["dossier"][n] for n in before["dossier"])  # rebuilt
            await assert_verified(svc)
            body = (await svc.get("/api/v1/units/46/kpis", await svc.key("read"), window="90d")).json()
            expected = ref.kpis(ref.dossiers(events), {"46", *COMMUNES_46}, *_window_days(body), datetime.now(UTC))
            assert_matches(body["kpis"], expected, "46 90d")

    async def test_import_while_the_same_units_post(self, make_service, tmp_path):
        rng = random.Random(13)
        events = stream(rng, [*COMMUNES_46, "46"], 400, datetime.now(UTC))
        imported = events[: len(events) * 2 // 3]
        posted = events[len(events) // 3 :]  # the middle third arrives both ways
        path = write_ndjson(tmp_path / "overlap.ndjson", imported, random.Random(4))
        async with make_service() as svc:
            token = await svc.key("ingest", "46")
            # bulk (PostgreSQL): builds of 40 events' units at a time, two at once, beside the posts; a
            # dossier gets events from both, in either order
            job = asyncio.create_task((await importer(svc, chunk_lines=50, writers=2, group_events=40)).import_file(path))
            await post_all(svc, token, posted, random.Random(5))
            report = await job
            assert report.rejected == 0
            assert await stored_events(svc) == len(events)
            await assert_verified(svc)
            read = await svc.key("read")
            ds = ref.dossiers(events)
            for code, units in UNITS_46.items():
                body = (await svc.get(f"/api/v1/units/{code}/kpis", read, window="90d")).json()
                assert_matches(body["kpis"], ref.kpis(ds, units, *_window_days(body), datetime.now(UTC)), code)

    async def test_import_into_stored_and_fresh_units_equals_posting(self, make_service, tmp_path, store):
        """Some units hold posted events before the import (the pass merges into them), the others
        nothing (PostgreSQL: the fresh path's plain inserts, app.ingest.fresh); both end as posting
        everything would, row for row."""
        rng = random.Random(41)
        events = stream(rng, [*COMMUNES_46, *COMMUNES_79, "46"], 300, datetime.now(UTC))
        stored_units = {COMMUNES_46[0], "46"}
        before = [e for i, e in enumerate(events) if e["unit_code"] in stored_units and i % 3 != 0]  # part of their events
        fresh_events = sum(1 for e in events if e["unit_code"] not in stored_units)
        async with make_service() as posted:
            await post_all(posted, await posted.key("ingest", "VN"), events, random.Random(1))
            expected, expected_rows = await answers(posted), await table_rows(posted)
        path = write_ndjson(tmp_path / "history.ndjson", events, random.Random(2), dup_every=11)
        async with make_service() as imported:
            await post_all(imported, await imported.key("ingest", "VN"), before, random.Random(3))
            # lines screened by two processes; groups of several whole units, two built at once
            report = await (await importer(imported, chunk_lines=101, group_events=400, writers=2, validators=2)).import_file(path)
            assert (report.accepted, report.rejected) == (len(events) - len(before), 0)
            assert report.fresh == (0 if store == "sqlite" else fresh_events) and fresh_events > 0
            assert await answers(imported) == expected
            assert await table_rows(imported) == expected_rows
            await assert_verified(imported)

    async def test_fresh_build_meeting_stored_rows_falls_back_to_the_pass(self, make_service, store):
        """The fresh path looks again under the units' locks: a unit that holds rows (the first look
        bypassed) fails the group whole, and the group is built by the pass; an event dated after now
        (within the clock skew) also sends its group to the pass, which marks it in dossier_future."""
        if store == "sqlite":
            pytest.skip("the bulk path is PostgreSQL's")
        from app.aggregates.writes import STAGE_COLUMNS
        from app.ingest import fresh
        from app.ingest.bulk import BulkLoad
        from app.ingest.service import screen

        now = datetime.now(UTC)
        a, b, c = COMMUNES_46[:3]
        events = stream(random.Random(43), [a, b], 80, now)
        ahead = {"event_id": "ahead-1", "type": "received", "dossier_id": "D-ahead", "unit_code": c,
                 "occurred_at": now + timedelta(seconds=90), "channel": "online", "due_at": now + timedelta(days=5)}  # fmt: skip
        async with make_service() as posted:
            await post_all(posted, await posted.key("ingest", "VN"), [*events, ahead], random.Random(1))
            expected_rows = await table_rows(posted)
        async with make_service() as svc:
            await post_all(svc, await svc.key("ingest", "VN"), [e for e in events if e["unit_code"] == a][::2], random.Random(2))
            registry = await svc.app.state.registry.refresh()
            screened = screen([wire(e) for e in [*events, ahead]], registry, now, timedelta(seconds=300), None, set())
            valid = [(*(got[c] for c in STAGE_COLUMNS), n) for n, (status, _, got) in enumerate(screened, 1) if status == "valid"]
            load = BulkLoad(svc.db, registry, svc.settings, "chiso_bulk_test_fallback")
            await load.open()
            await load.load(valid)
            with pytest.raises(fresh.NotFresh):  # bypassing the first look: the second, under the locks, refuses
                await load._build_fresh([a], 0)
            assert await stored_events(svc) == (sum(1 for e in events if e["unit_code"] == a) + 1) // 2  # rolled back whole
            got = await load.build([a, b], 0)  # a through the pass, b fresh
            assert got.fresh == sum(1 for e in events if e["unit_code"] == b) > 0
            async with svc.db.session() as session:
                assert await fresh.stale(session, [a, b, c]) == {a, b}
            got = await load.build([c], 1)  # fresh, but dated ahead: the pass
            assert (got.fresh, got.accepted) == (0, 1)
            async with svc.db.session() as session:
                assert (await session.execute(text("SELECT count(*) FROM dossier_future"))).scalar() == 1
            await load.close()
            assert await table_rows(svc) == expected_rows
            await assert_verified(svc)


async def table_rows(svc) -> dict:
    """The stored state, as TestSetBasedMerge compares it (rollup rows summed over their slots)."""
    async with svc.db.session() as session:
        return {name: [tuple(row) for row in (await session.execute(text(sql))).all()] for name, sql in TestSetBasedMerge.TABLES.items()}


def _window_days(body: dict):
    from datetime import date

    return date.fromisoformat(body["period"]["start"]), date.fromisoformat(body["period"]["end"])


class TestSetBasedMerge:
    """Any split of the same events into batches, posted in any order, leaves identical dossier rows
    and aggregate rows (on PostgreSQL this is the one-pass write, app.aggregates.pgpass)."""

    # rows whose counters all went back to 0 (a correction moved them away) may exist in one order
    # and not in another: the state is the non-zero rows (a day row's zero counter is NULL, or 0 as
    # an earlier version stored it: both read as 0)
    _DAY = " + ".join(f"abs(coalesce({c}, 0))" for c in DAY_COUNTERS)
    _TOT = " + ".join(f"abs({c})" for c in TOTAL_COUNTERS)
    _SUMS = ", ".join(f"coalesce(sum({c}), 0)" for c in DAY_COUNTERS)
    _SUMS_NONZERO = " + ".join(f"abs(coalesce(sum({c}), 0))" for c in DAY_COUNTERS)
    TABLES = {
        "dossier": "SELECT * FROM dossier ORDER BY unit_code, dossier_id",
        "unit_day": f"SELECT unit_code, sector, day, source, {', '.join(f'coalesce({c}, 0)' for c in DAY_COUNTERS)} FROM unit_day "
        f"WHERE {_DAY} > 0 "
        "ORDER BY unit_code, sector, day, source",
        # packed histograms of the day rows: none, or all-zero as an empty text
        "unit_day_hist": "SELECT unit_code, sector, day, source, hist FROM unit_day WHERE hist <> '' "
        "ORDER BY unit_code, sector, day, source",
        "unit_cohort_due": "SELECT * FROM unit_cohort_due WHERE n <> 0 ORDER BY unit_code, sector, recv_day, due_day, source",
        "unit_total": f"SELECT * FROM unit_total WHERE {_TOT} > 0 ORDER BY unit_code, sector, source",
        "rollup_day": f"SELECT unit_code, sector, day, {_SUMS} FROM rollup_day GROUP BY 1, 2, 3 "
        f"HAVING {_SUMS_NONZERO} > 0 ORDER BY 1, 2, 3",
    }

    @pytest.mark.parametrize("seed", [31, pytest.param(32, marks=pytest.mark.extra_seed)])
    async def test_any_batches_any_order(self, make_service, seed):
        rng = random.Random(seed)
        events = [wire(e) for e in stream(rng, [COMMUNES_46[0], COMMUNES_46[2], "46"], 120, datetime.now(UTC))]
        states = []
        for _ in range(3):
            order = list(events) + rng.sample(events, len(events) // 8)
            rng.shuffle(order)
            async with make_service() as svc:
                token = await svc.key("ingest", "46")
                i = 0
                while i < len(order):
                    size = rng.choice([1, 2, 5, 17, 60, 250])
                    r = await svc.post(order[i : i + size], token)
                    assert r.status_code == 202 and r.json()["rejected"] == 0, r.text
                    i += size
                async with svc.db.session() as session:
                    states.append(
                        {name: [tuple(row) for row in (await session.execute(text(sql))).all()] for name, sql in self.TABLES.items()}
                    )
                await assert_verified(svc)
        for name in self.TABLES:
            assert states[1][name] == states[0][name], name
            assert states[2][name] == states[0][name], name
