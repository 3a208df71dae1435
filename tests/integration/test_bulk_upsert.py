"""dialect.bulk_upsert's conflict rules on both stores: the conditional update (`newer`), least and
greatest, RETURNING only the rows written; on PostgreSQL a row kept is still locked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from app.db import dialect
from app.db.engine import Database
from app.db.models import ExportDirty, NetworkCohort
from tests.conftest import new_database_url

KEYS = ("unit_code", "source", "kind", "start")
MAY, JUNE = date(2026, 5, 1), date(2026, 6, 1)


@pytest.fixture
async def db(store, templates, pg_server, tmp_path) -> AsyncIterator[Database]:
    database = Database(await new_database_url(store, templates, pg_server, tmp_path), pool_size=4)
    yield database
    await database.dispose()


def cohort(unit: str, start: date, sequence: int, size: int) -> dict:
    return {"unit_code": unit, "source": "n1", "kind": "month", "start": start, "sequence": sequence, "c_size": size, "c_ok": 0}


async def newer_in(session, rows: list[dict]) -> list[tuple]:
    """Rows replace the stored ones of a lower sequence; the keys of the rows written."""
    replace = ("sequence", "c_size")
    return await dialect.bulk_upsert(session, NetworkCohort, rows, list(KEYS), replace=replace, returning=KEYS, newer="sequence")


async def newer(db: Database, rows: list[dict]) -> list[tuple]:
    async with db.transaction() as session:
        return await newer_in(session, rows)


async def stored(db: Database) -> dict[tuple, tuple[int, int]]:
    async with db.session() as session:
        rows = await session.execute(select(NetworkCohort.unit_code, NetworkCohort.start, NetworkCohort.sequence, NetworkCohort.c_size))
        return {(u, s): (q, n) for u, s, q, n in rows.all()}


class TestNewer:
    async def test_replaces_a_row_only_when_the_new_one_is_newer_and_returns_only_rows_written(self, db):
        assert await newer(db, [cohort("A", MAY, 5, 1), cohort("B", MAY, 5, 2), cohort("C", MAY, 5, 3)]) == [
            ("A", "n1", "month", MAY),
            ("B", "n1", "month", MAY),
            ("C", "n1", "month", MAY),
        ]
        got = await newer(db, [cohort("A", MAY, 6, 10), cohort("B", MAY, 4, 20), cohort("C", MAY, 5, 30), cohort("C", JUNE, 1, 40)])
        assert got == [("A", "n1", "month", MAY), ("C", "n1", "month", JUNE)]
        assert await stored(db) == {("A", MAY): (6, 10), ("B", MAY): (5, 2), ("C", MAY): (5, 3), ("C", JUNE): (1, 40)}

    async def test_a_push_of_stale_rows_writes_and_returns_nothing(self, db):
        await newer(db, [cohort("A", MAY, 9, 1)])
        assert await newer(db, [cohort("A", MAY, 8, 2)]) == []
        assert await stored(db) == {("A", MAY): (9, 1)}

    async def test_needs_an_update_to_be_a_condition_of(self, db):
        async with db.transaction() as session:
            with pytest.raises(ValueError):
                await dialect.bulk_upsert(session, NetworkCohort, [cohort("A", MAY, 1, 1)], list(KEYS), newer="sequence")

    async def test_a_row_kept_is_locked_until_the_writer_commits(self, db, store):
        if store != "postgres":
            pytest.skip("SQLite: a write transaction holds the whole database")
        await newer(db, [cohort("A", MAY, 9, 1)])
        async with db.transaction() as session:
            assert await newer_in(session, [cohort("A", MAY, 8, 2)]) == []
            async with db.session() as other:
                with pytest.raises(DBAPIError, match="could not obtain lock"):
                    await other.execute(text("SELECT 1 FROM network_cohort WHERE unit_code = 'A' FOR UPDATE NOWAIT"))


class TestLeastAndGreatest:
    async def test_keep_the_least_or_the_greatest_of_the_stored_and_the_new_value(self, db):
        first = [{"unit_code": "A", "day": JUNE, "gen": 1}, {"unit_code": "B", "day": MAY, "gen": 1}]
        later = [{"unit_code": "A", "day": MAY, "gen": 1}, {"unit_code": "B", "day": JUNE, "gen": 1}]
        for fn, want in (("least", {"A": (MAY, 2), "B": (MAY, 2)}), ("greatest", {"A": (JUNE, 2), "B": (JUNE, 2)})):
            async with db.transaction() as session:
                await session.execute(ExportDirty.__table__.delete())
                for rows in (first, later):
                    await dialect.bulk_upsert(session, ExportDirty, rows, ["unit_code"], add=("gen",), combine=(("day", fn),))
                got = await session.execute(select(ExportDirty.unit_code, ExportDirty.day, ExportDirty.gen))
                assert {u: (d, g) for u, d, g in got.all()} == want, fn
