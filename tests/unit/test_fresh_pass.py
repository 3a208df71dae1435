"""The fresh path of `chiso import` (app.ingest.fresh) is the write pass's own statements: every
statement of the pass's steps 4 to 7 is there, the upserts of the units' own rows are plain inserts,
the rollup upserts read the collapsed contribution tables, and nothing else is changed."""

from __future__ import annotations

import re

from app.aggregates import pgpass
from app.ingest import fresh


def _pass_tail() -> list[str]:
    fn = pgpass.current()
    (create,) = [s for s in fn.statements if f"FUNCTION {fn.ingest_staged}(" in s]
    return fresh._statements(create[create.index("-- 4.") : create.index("RETURN QUERY")])


def test_every_statement_of_the_pass_tail_is_taken():
    fp, tail = fresh.current(), _pass_tail()
    assert len(fp.tail) == len(tail) > 15
    for mine, theirs in zip(fp.tail, tail, strict=True):
        target = fresh._target(theirs)
        if target in fresh.OWN_TABLES:
            assert "ON CONFLICT" in theirs and "ON CONFLICT" not in mine
            assert theirs.startswith(mine)  # only the clause cut off
        elif target and target.startswith("rollup_"):
            assert "ON CONFLICT" in mine and not re.search(r"\bchiso_d(day|hist|due|tot|open)\b", mine)
            assert re.sub(r"\bchiso_x", "chiso_", mine) == theirs
        else:
            assert mine == theirs
    assert {fresh._target(s) for s in fp.tail} >= set(fresh.OWN_TABLES) | {"rollup_day", "unit_change", "node_meta"}


def test_head_states_and_dossiers_from_the_pass_fragments():
    (states,) = [s for s in fresh.current().head if "INSERT INTO chiso_st" in s]
    assert "chiso_new" in states and "@" not in states  # BATCH_STATES rendered, every placeholder filled
    assert not any("ON CONFLICT" in s for s in fresh.current().head)


def test_parameters_become_literals():
    from datetime import UTC, datetime

    sql = fresh.bind("SELECT p_tz, p_now, p_slot, p_rollup, p_tzx", "Asia/Ho_Chi_Minh", datetime(2026, 1, 2, tzinfo=UTC), 3, '[{"u":"1"}]')
    assert sql == "SELECT 'Asia/Ho_Chi_Minh', '2026-01-02T00:00:00+00:00'::timestamptz, 3, '[{\"u\":\"1\"}]'::json, p_tzx"


def test_collapse_sums_every_counter_and_groups_by_every_key():
    """The collapsed tables (chiso_x*) sum exactly the counter columns of the pass's contribution
    tables, whatever their type (counts are int, a bucket too): the others are its group keys."""
    (temp,) = [s for s in pgpass.current().statements if "CREATE TEMP TABLE chiso_dday" in s]
    keys = {"unit_code", "sector", "day", "bucket", "recv_day", "due_day", "hour"}
    for table in fresh.current().collapsed:
        body = re.search(rf"CREATE TEMP TABLE {table} \((.*?)\) ON COMMIT", temp).group(1)
        cols = [c.split()[0] for c in body.split(", ")]
        assert {c for c in cols if c not in keys} == {c for c in cols if c in fresh.SUMMED}
        assert not keys & set(fresh.SUMMED)
