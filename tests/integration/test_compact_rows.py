"""The compact store (issue 24): a day row's zero counters are stored as NULL (migration
d2f4a6c8e0b3), and a store whose rows hold zeros, as an earlier version wrote them, reads and takes
writes the same; the dossiers' and the event log's columns are in the order that pads nothing."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import text

from app.aggregates import periods
from app.aggregates import rebuild as verify
from app.aggregates.counters import DAY_COUNTERS
from app.scoring import service
from app.scoring.context import Reader
from tests.helpers.kpis import COMMUNES_46, post_all
from tests.integration.test_import import table_rows
from tests.streams import stream

DAY_TABLES = ("unit_day", "rollup_day")
UNITS = (COMMUNES_46[0], COMMUNES_46[1], "46", "VN")


async def figures(svc, now: datetime) -> list:
    """KPIs of communes, their province and the nation over several windows, computed from the rows
    (no stored answer, no memo) at `now`."""
    registry = await svc.app.state.registry.refresh()
    reader = replace(Reader.of(svc.db, registry, svc.settings), clock=lambda: now)
    today = periods.today(reader.now(), reader.tz)
    out = []
    for code in UNITS:
        for window in ("7d", "30d", "90d"):
            body = await service.unit_kpis(reader, code, periods.window(window, today), None)
            out.append((code, window, body["kpis"], body["previous"]["kpis"]))
    return out


async def counted(svc, condition: str) -> int:
    """Day rows (both tables) with a counter meeting `condition` (e.g. "= 0")."""
    async with svc.db.session() as session:
        total = 0
        for t in DAY_TABLES:
            where = " OR ".join(f"{c} {condition}" for c in DAY_COUNTERS)
            total += (await session.execute(text(f"SELECT count(*) FROM {t} WHERE {where}"))).scalar_one()
        return total


class TestSparseDayRows:
    async def test_zeros_are_stored_as_null_and_stored_zeros_read_and_add_the_same(self, make_service):
        rng = random.Random(24)
        now = datetime.now(UTC)
        events = stream(rng, [COMMUNES_46[0], COMMUNES_46[1], "46"], 160, now)
        first, rest = events[: len(events) // 2], events[len(events) // 2 :]
        async with make_service() as whole:  # every event posted to a store that stores NULLs
            await post_all(whole, await whole.key("ingest", "VN"), events, random.Random(1))
            assert await counted(whole, "= 0") == 0
            assert await counted(whole, "IS NULL") > 0
            expected, expected_rows = await figures(whole, now), await table_rows(whole)
        async with make_service() as svc:
            token = await svc.key("ingest", "VN")
            await post_all(svc, token, first, random.Random(2))
            before = await figures(svc, now)
            # the rows as an earlier version stored them: every zero a 0
            async with svc.db.transaction() as session:
                for t in DAY_TABLES:
                    sets = ", ".join(f"{c} = coalesce({c}, 0)" for c in DAY_COUNTERS)
                    await session.execute(text(f"UPDATE {t} SET {sets}"))
            assert await counted(svc, "IS NULL") == 0
            assert await figures(svc, now) == before
            assert (await verify.verify(svc.db, svc.settings)).differences == []
            # writes add to stored zeros as to NULLs: the same figures and rows as the whole store's
            await post_all(svc, token, rest, random.Random(3))
            assert await figures(svc, now) == expected
            assert await table_rows(svc) == expected_rows
            assert (await verify.verify(svc.db, svc.settings)).differences == []


PACKED_ORDER_SQL = """
SELECT a.attname, t.typlen, CAST(t.typalign AS text) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


class TestPackedColumns:
    async def test_dossiers_day_rows_and_months_of_the_log_pad_nothing(self, make_service, store):
        """PostgreSQL pads a fixed-width column to its alignment: the dossiers, the day rows and every month
        of the event log (migration f6b8d0e2a4c6 for those of the template, app.db.partitions for
        those the posts made) declare their fixed-width columns first, widest alignment first, and
        the variable-length ones last; the log holds every event posted."""
        rng = random.Random(6)
        events = stream(rng, [COMMUNES_46[0], "46"], 40, datetime.now(UTC))
        async with make_service() as svc:
            await post_all(svc, await svc.key("ingest", "VN"), events, random.Random(1))
            if store != "postgres":
                return  # SQLite pads nothing
            async with svc.db.session() as session:
                months = (await session.execute(text("SELECT relname FROM pg_class WHERE relname LIKE 'dossier_event_2%'"))).scalars()
                tables = ["dossier", "unit_day", "rollup_day", *months]
                assert len(tables) > 2
                for t in tables:
                    cols = (await session.execute(text(PACKED_ORDER_SQL), {"t": t})).all()
                    rank = [(typlen < 0, "disc".index(align)) for _, typlen, align in cols]
                    assert rank == sorted(rank), (t, [c[0] for c in cols])
                stored = (await session.execute(text("SELECT count(DISTINCT (unit_code, event_id)) FROM dossier_event"))).scalar_one()
                assert stored == len({(e["unit_code"], e["event_id"]) for e in events})

    async def test_the_time_indexes_fill_their_pages(self, make_service, store):
        """The dossiers' indexes by receipt, end and deadline time take new keys at the end of their
        range: their leaf pages are filled whole (fillfactor 100, migration a3c5e7f9b1d4)."""
        if store != "postgres":
            return  # SQLite has no fill factor
        names = ("ix_dossier_recv_unit", "ix_dossier_end_unit", "ix_dossier_due_unit")
        async with make_service() as svc, svc.db.session() as session:
            stmt = text("SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names)")
            options = dict((await session.execute(stmt, {"names": list(names)})).all())
            assert options == {name: ["fillfactor=100"] for name in names}
