"""One Alembic chain for both stores: one head, no drift from the models, down and up with data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from app.aggregates import rebuild
from app.db import migrate, partitions
from app.db.base import Base
from app.db.engine import Database
from app.db.models import DossierEvent, EventKey
from app.db.models.event_log import event_key_of
from app.db.types import hist_decode, hist_unpack


class TestMigrations:
    def test_exactly_one_head(self):
        assert len(migrate.head_revisions()) == 1

    async def test_models_and_migrations_agree(self, fresh_service):
        def diff(sync_conn):
            opts = {"compare_type": True, "include_name": partitions.include_name}  # as migrations/env.py
            ctx = MigrationContext.configure(sync_conn, opts=opts)
            return compare_metadata(ctx, Base.metadata)

        async with fresh_service.db.engine.connect() as conn:
            assert await migrate.schema_is_current(conn)
            assert await conn.run_sync(diff) == []

    async def test_down_to_base_and_up_again_with_data(self, fresh_service):
        svc = fresh_service
        now = datetime.now(UTC)
        event = {
            "event_id": "m1",
            "type": "received",
            "dossier_id": "d",
            "unit_code": "19777",
            "occurred_at": (now - timedelta(hours=1)).isoformat(),
            "channel": "online",
            "due_at": (now + timedelta(days=1)).isoformat(),
        }
        assert (await svc.post([event], await svc.key("ingest", "46"))).json()["accepted"] == 1
        db = Database(svc.url)
        try:
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, migrate.head_revisions()[0] + "-1")
            async with db.engine.connect() as conn:
                assert not await migrate.schema_is_current(conn)
                assert (await conn.execute(text("SELECT count(*) FROM dossier_event"))).scalar_one() == 1
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, "base")
            async with db.engine.begin() as conn:
                await migrate.upgrade(conn)
            async with db.engine.connect() as conn:
                assert await migrate.schema_is_current(conn)
                assert (await conn.execute(text("SELECT count(*) FROM dossier_event"))).scalar_one() == 0
        finally:
            await db.dispose()

    async def test_upgrade_from_the_previous_head_moves_the_events_into_monthly_partitions(self, fresh_service):
        svc = fresh_service
        tz = svc.settings.tz
        at = [
            datetime(2024, 12, 15, 12, tzinfo=tz),
            datetime(2025, 4, 1, 3, tzinfo=tz),  # still 31 March in UTC: the month is local
            datetime.now(UTC) - timedelta(hours=1),
        ]
        rows = [
            {"unit_code": "19777", "event_id": f"old{i}", "type": "withdrawn", "dossier_id": f"d{i}", "occurred_at": t, "ingested_at": t}
            for i, t in enumerate(at)
        ]
        db = Database(svc.url)
        try:
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, "b8d0f2a4c6e8-1")  # before the event log's retention (no longer the head)
                await conn.execute(DossierEvent.__table__.insert(), rows)
            async with db.engine.begin() as conn:
                await migrate.upgrade(conn)
            async with db.engine.connect() as conn:
                # every event still stored: the log decides, no key kept (a7c9e1b3d5f7)
                assert (await conn.execute(text("SELECT count(*) FROM event_key"))).scalar_one() == 0
                if conn.dialect.name == "postgresql":
                    stmt = text("SELECT tableoid::regclass::text, event_id FROM dossier_event ORDER BY event_id")
                    got = [tuple(r) for r in (await conn.execute(stmt)).all()]
                    this = partitions.month_of(at[2], tz)
                    assert got == [("dossier_event_202412", "old0"), ("dossier_event_202504", "old1"), (partitions.name(this), "old2")]
                else:
                    assert (await conn.execute(text("SELECT count(*) FROM dossier_event"))).scalar_one() == 3
        finally:
            await db.dispose()
        again = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in rows[2].items()}  # a repeat is still a duplicate
        body = (await svc.post([again | {"occurred_at": datetime.now(UTC).isoformat()}], await svc.key("ingest", "46"))).json()
        assert (body["accepted"], body["duplicates"]) == (0, 1)

    async def test_the_compact_event_log_keeps_its_events_and_their_keys(self, fresh_service):
        """e2a4c6e8f0b2 (on PostgreSQL the log's key goes: event_key decides duplicates) and
        f4b6d8e0a2c4 (event_key hashed): the events stay, each stored key (an archived event's
        included) still makes its event a duplicate; down again, the log's key comes back."""
        svc = fresh_service
        now = datetime.now(UTC)
        events = [
            {
                "event_id": f"k:{i}-é",
                "type": "received",
                "dossier_id": f"d{i}",
                "unit_code": "19777",
                "occurred_at": now - timedelta(hours=i + 1),
            }
            | {"channel": "online", "due_at": now + timedelta(days=1), "ingested_at": now}
            for i in range(4)
        ]
        key = await svc.key("ingest", "46")
        db = Database(svc.url)

        async def key_columns(conn) -> list[str]:
            stmt = text(
                "SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)"
                " WHERE c.conrelid = 'dossier_event'::regclass AND c.contype = 'p' ORDER BY array_position(c.conkey, a.attnum)"
            )
            return list((await conn.execute(stmt)).scalars())

        def as_json(e: dict) -> dict:
            return {k: v.isoformat() for k, v in e.items() if k != "ingested_at" and isinstance(v, datetime)} | {
                k: v for k, v in e.items() if not isinstance(v, datetime)
            }

        try:
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, "e2a4c6e8f0b2-1")
                await conn.execute(DossierEvent.__table__.insert(), events[:2])
                keys = [{"u": e["unit_code"], "e": e["event_id"]} for e in events[:3]]  # the third: an archived event's
                await conn.execute(text("INSERT INTO event_key (unit_code, event_id) VALUES (:u, :e)"), keys)
            async with db.engine.begin() as conn:
                await migrate.upgrade(conn)
            async with db.engine.connect() as conn:
                assert (await conn.execute(text("SELECT count(*) FROM dossier_event"))).scalar_one() == 2
                assert (await conn.execute(text("SELECT count(*) FROM event_key"))).scalar_one() == 1  # the archived one's (a7c9e1b3d5f7)
                if conn.dialect.name == "postgresql":
                    assert await key_columns(conn) == []
            body = (await svc.post([as_json(e) for e in events], key)).json()
            assert (body["accepted"], body["duplicates"]) == (1, 3), body
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, "e2a4c6e8f0b2-1")
            async with db.engine.connect() as conn:
                assert (await conn.execute(text("SELECT count(*) FROM dossier_event"))).scalar_one() == 3
                assert (await conn.execute(text("SELECT count(*) FROM event_key"))).scalar_one() == 3  # the stored events'
                if conn.dialect.name == "postgresql":
                    assert await key_columns(conn) == ["unit_code", "event_id", "occurred_at"]
            async with db.engine.begin() as conn:
                await migrate.upgrade(conn)
        finally:
            await db.dispose()

    async def test_event_keys_kept_for_archived_months_only_and_back(self, fresh_service):
        """a7c9e1b3d5f7: the keys of the events still stored leave `event_key` (the log decides for
        them), an archived event's key stays; every one of them is still a duplicate; down again, the
        stored events' keys come back."""
        svc = fresh_service
        now = datetime.now(UTC)
        key = await svc.key("ingest", "46")
        events = [
            {"event_id": f"a:{i}-é", "type": "received", "dossier_id": f"d{i}", "unit_code": "19777", "channel": "online"}
            | {"occurred_at": (now - timedelta(days=40 * i + 1)).isoformat(), "due_at": (now + timedelta(days=1)).isoformat()}
            for i in range(3)
        ]
        assert (await svc.post(events[:2], key)).json()["accepted"] == 2
        db = Database(svc.url)

        async def keys(conn) -> set:
            return set((await conn.execute(select(EventKey.key))).scalars())

        stored = {event_key_of("19777", e["event_id"]) for e in events[:2]}
        archived = event_key_of("19777", events[2]["event_id"])  # an event of an archived month
        try:
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, "a7c9e1b3d5f7-1")
            async with db.engine.begin() as conn:
                assert await keys(conn) == stored
                await conn.execute(EventKey.__table__.insert(), [{"key": archived}])
            async with db.engine.begin() as conn:
                await migrate.upgrade(conn)
            async with db.engine.connect() as conn:
                assert await keys(conn) == {archived}
                assert (await conn.execute(text("SELECT count(*) FROM dossier_event"))).scalar_one() == 2
            body = (await svc.post(events, key)).json()
            assert (body["accepted"], body["duplicates"]) == (0, 3), body
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, "a7c9e1b3d5f7-1")
            async with db.engine.connect() as conn:
                assert await keys(conn) == stored | {archived}
            async with db.engine.begin() as conn:
                await migrate.upgrade(conn)
            async with db.engine.connect() as conn:
                assert await keys(conn) == {archived}
        finally:
            await db.dispose()

    async def test_histograms_move_into_the_day_rows_and_back(self, fresh_service):
        """f3a5c7e9b1d4 (issue 24's compact store): the histogram tables' rows become the `hist` of the
        day rows of their keys (a day row made where there was none), the tables go; every figure and
        `kpis verify` stay; down again, the tables come back with the same histograms."""
        svc = fresh_service
        now = datetime.now(UTC)
        events = []
        for i in range(6):
            recv = now - timedelta(days=3 + i % 3, hours=i)
            base = {"dossier_id": f"h{i}", "unit_code": "19777", "sector": ("land", "justice")[i % 2]}
            events.append(base | {"event_id": f"h{i}r", "type": "received", "occurred_at": recv.isoformat()})
            events[-1] |= {"channel": "online", "due_at": (recv + timedelta(days=2)).isoformat()}
            end = recv + timedelta(hours=5 + 20 * i)
            events.append(base | {"event_id": f"h{i}x", "type": "resolved", "occurred_at": end.isoformat(), "outcome": "approved"})
        assert (await svc.post(events, await svc.key("ingest", "46"))).json()["accepted"] == 12
        hists = {
            "unit_day": "SELECT unit_code, sector, day, source, hist FROM {t} WHERE hist IS NOT NULL",
            "rollup_day": "SELECT unit_code, sector, day, slot, hist FROM {t} WHERE hist IS NOT NULL",
        }

        async def stored(conn, suffix: str) -> dict:
            out = {}
            for day, sql in hists.items():
                rows = (await conn.execute(text(sql.format(t=day + suffix)))).all()
                out[day] = sorted((tuple(r[:4]), _bucket_counts(r[4])) for r in rows)
            return out

        token = await svc.key("read")
        answers = await _answers(svc, token)
        db = Database(svc.url)
        try:
            async with db.engine.connect() as conn:
                before = await stored(conn, "")
                assert all(before.values()), before
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, "f3a5c7e9b1d4-1")
            async with db.engine.connect() as conn:
                assert await stored(conn, "_hist") == before
                if conn.dialect.name == "postgresql":
                    fill = "SELECT reloptions FROM pg_class WHERE relname = 'unit_day'"
                    assert "fillfactor=80" in (await conn.execute(text(fill))).scalar_one()
            async with db.engine.begin() as conn:
                await migrate.upgrade(conn)
            async with db.engine.connect() as conn:
                assert await migrate.schema_is_current(conn)
                assert await stored(conn, "") == before
                if conn.dialect.name == "postgresql":
                    fill = "SELECT reloptions FROM pg_class WHERE relname = 'unit_day'"
                    options = (await conn.execute(text(fill))).scalar_one()
                    assert "fillfactor=100" in options and "autovacuum_vacuum_scale_factor=0.01" in options, options
        finally:
            await db.dispose()
        assert await _answers(svc, token) == answers
        await _assert_verified(svc)

    async def test_day_rows_compacted_in_place_and_back(self, fresh_service):
        """e4a6c8f0b2d5 (issue 24's compact store): a store whose day rows hold zeros (as before
        d2f4a6c8e0b3) and int4[] histograms (JSON lists on SQLite) is rewritten with every zero a NULL
        and every histogram text; figures, histograms and `kpis verify` stay; down again, the lists
        come back."""
        from app.aggregates.counters import DAY_COUNTERS

        svc = fresh_service
        now = datetime.now(UTC)
        events = []
        for i in range(8):
            recv = now - timedelta(days=2 + i % 4, hours=i)
            base = {"dossier_id": f"z{i}", "unit_code": ("19777", "19900")[i % 2], "sector": ("land", "justice")[i % 2]}
            events.append(base | {"event_id": f"z{i}r", "type": "received", "occurred_at": recv.isoformat()})
            events[-1] |= {"channel": "online", "due_at": (recv + timedelta(days=1)).isoformat()}
            end = recv + timedelta(hours=3 + 9 * i)
            events.append(base | {"event_id": f"z{i}x", "type": "resolved", "occurred_at": end.isoformat(), "outcome": "approved"})
        assert (await svc.post(events, await svc.key("ingest", "46"))).json()["accepted"] == 16
        token = await svc.key("read")
        answers = await _answers(svc, token)
        hists = "SELECT unit_code, sector, day, {slot}, hist FROM {t} WHERE hist IS NOT NULL"
        zeros = " OR ".join(f"{c} = 0" for c in DAY_COUNTERS)
        nulls = " OR ".join(f"{c} IS NULL" for c in DAY_COUNTERS)

        async def stored(conn) -> dict:
            out = {}
            for t, slot in (("unit_day", "source"), ("rollup_day", "slot")):
                rows = (await conn.execute(text(hists.format(t=t, slot=slot)))).all()
                out[t] = sorted((tuple(r[:4]), _bucket_counts(r[4])) for r in rows)
            return out

        async def count(conn, where: str) -> int:
            return sum(
                [(await conn.execute(text(f"SELECT count(*) FROM {t} WHERE {where}"))).scalar_one() for t in ("unit_day", "rollup_day")]
            )

        db = Database(svc.url)
        try:
            async with db.engine.connect() as conn:
                before = await stored(conn)
                assert all(before.values()), before
            async with db.engine.begin() as conn:
                await migrate.downgrade(conn, "e4a6c8f0b2d5-1")
                for t in ("unit_day", "rollup_day"):  # the rows as the version before d2f4a6c8e0b3 wrote them
                    await conn.execute(text(f"UPDATE {t} SET " + ", ".join(f"{c} = coalesce({c}, 0)" for c in DAY_COUNTERS)))
            await db.engine.dispose()  # statements prepared before the schema changed are not reused
            async with db.engine.connect() as conn:
                assert await stored(conn) == before
                assert await count(conn, zeros) > 0
                raw = (await conn.execute(text("SELECT hist FROM unit_day WHERE hist IS NOT NULL LIMIT 1"))).scalar_one()
                assert isinstance(raw, list) if conn.dialect.name == "postgresql" else raw.startswith("["), raw
            async with db.engine.begin() as conn:
                await migrate.upgrade(conn)
            await db.engine.dispose()
            async with db.engine.connect() as conn:
                assert await migrate.schema_is_current(conn)
                assert await stored(conn) == before
                assert await count(conn, zeros) == 0 and await count(conn, nulls) > 0
                raw = (await conn.execute(text("SELECT hist FROM unit_day WHERE hist IS NOT NULL LIMIT 1"))).scalar_one()
                assert isinstance(raw, str) and not raw.startswith("["), raw
        finally:
            await db.dispose()
        assert await _answers(svc, token) == answers
        await _assert_verified(svc)


def _bucket_counts(stored) -> dict[int, int]:
    """A stored histogram as {bucket: n}, in any of its stored forms: a list (int4[], before
    e4a6c8f0b2d5), its JSON text (SQLite, before it), or the text of app.db.types.hist_encode."""
    if isinstance(stored, str) and not stored.startswith("["):
        return hist_decode(stored)
    return hist_unpack(json.loads(stored) if isinstance(stored, str) else stored)


async def _answers(svc, token: str) -> list:
    """The KPI answers of a commune, its province and the nation (30 days)."""
    return [(await svc.get(f"/api/v1/units/{u}/kpis", token, window="30d")).json() for u in ("19777", "46", "VN")]


async def _assert_verified(svc) -> None:
    registry = await svc.app.state.registry.refresh()
    report = await rebuild.verify(svc.db, svc.settings, registry=registry)
    assert report.differences == [], report.differences
