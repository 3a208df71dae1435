"""The figures at now kept per unit (app.aggregates.live_memo): answers computed with one memo kept
across writes and across the seconds in which deadlines pass, enter the 24/48/72 h windows, events
dated ahead come due and units fall silent, equal answers computed without any memo."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.answers.dependencies import Dependencies
from app.answers.kinds import ReadContext, compute
from app.db.models import UnitChange, UnitSource
from app.scoring import service as scoring
from app.scoring.ranking import RankingMemo
from tests.helpers.events import post, received, resolved
from tests.helpers.kpis import COMMUNES_46, post_all
from tests.streams import stream

C = COMMUNES_46[0]
S = timedelta(seconds=1)
H = timedelta(hours=1)
QUERIES = [
    ("kpis", {"code": "46", "period": None, "at": None, "window": "30d", "sector": None}),
    ("kpis", {"code": "VN", "period": "day", "at": None, "window": None, "sector": None}),
    ("kpis", {"code": C, "period": None, "at": None, "window": "7d", "sector": None}),
    ("kpis", {"code": "46", "period": None, "at": None, "window": "30d", "sector": "land"}),
    ("sectors", {"code": "46", "period": None, "at": None, "window": "30d"}),
    ("series", {"code": "46", "kpi": "overdue", "interval": "week", "from": None, "to": None}),
    *(
        (
            "rankings",
            {"level": level, "parent": parent, "period": None, "at": None, "window": "30d", "sort": sort}
            | {"limit": 5000, "offset": 0, "min_count": 0},
        )
        for level, parent, sort in (("commune", "46", "-overdue"), ("commune", None, "due_24h"), ("province", None, "-pending"))
    ),
]


def figures(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "as_of"}


@pytest.mark.slow  # a walk over many instants (make test-fast leaves it out)
async def test_kept_figures_at_now_equal_fresh_ones_as_time_passes_and_writes_land(fresh_service, monkeypatch):
    svc = fresh_service
    rng = random.Random(7)
    ingest = await svc.key("ingest", "VN")
    real = datetime.now(UTC)
    await post_all(svc, ingest, stream(rng, COMMUNES_46 + ["26506"], 200, real, days=20), rng)
    t0 = (real + 4 * timedelta(minutes=1)).replace(microsecond=0)  # events dated ahead lie within the skew allowance
    boundary = []
    for k in range(1, 9):  # deadlines that pass now, or enter a due-soon window, between two reads below
        unit = COMMUNES_46[k % 3]
        lead = (timedelta(0), 24 * H, 48 * H, 72 * H)[k % 4]
        boundary.append(received(unit, f"b{k}", real - H, t0 + lead + k * 2 * S))
    boundary.append(received(C, "ahead", t0 + 5 * S, t0 + 3 * H))  # received ahead of now
    boundary.append(received(C, "ends", real - 2 * H, t0 + 10 * H))
    boundary.append(resolved(C, "ends", t0 + 9 * S))  # resolved ahead of now
    await post(svc, ingest, boundary)
    async with svc.db.session() as session:
        last = (await session.execute(select(func.max(UnitSource.last_at)))).scalar()
    # units fall silent within the reads below: their last acceptance crosses the cut-off
    settings = svc.settings.model_copy(update={"silent_after_hours": (t0 + 11 * S - last).total_seconds() / 3600})
    registry = await svc.app.state.registry.refresh()
    kept = ReadContext.of(svc.db, registry, settings, RankingMemo())
    plain = RankingMemo()
    plain.live, plain.tau = None, None  # no memo at all: figures at now and corrections at t read whole
    for step in range(12):
        now = t0 + step * 1.5 * S
        monkeypatch.setattr(scoring, "_now", lambda now=now: now)
        if step in (4, 8):  # a write between reads: one commune changes
            due = now + (20 * S if step == 4 else 48 * H + 3 * S)
            await post(svc, ingest, [received(COMMUNES_46[step // 4], uuid.uuid4().hex, real - H, due)])
        for kind, params in QUERIES:
            fresh = await compute(ReadContext.of(svc.db, registry, settings, plain), kind, params)
            assert figures(await compute(kept, kind, params)) == figures(fresh), (step, kind, params)
        if step == 0:
            first = kept.rankings.live.units_read
    again = kept.rankings.live.units_read - first
    print(f"units read at the first step {first}, at the 11 others {again}")
    assert again < first, "a read re-reads what moved, not every unit"


async def changes_of(svc, unit: str) -> int:
    async with svc.db.session() as session:
        return (await session.execute(select(UnitChange.changes).where(UnitChange.unit_code == unit))).scalar() or 0


@pytest.mark.parametrize("hour", ["same", "other"])
async def test_a_deadline_moved_within_its_day_is_in_the_next_read_of_kept_figures(fresh_service, monkeypatch, hour):
    """A deadline moved within its local day, across now, changes no day row (and within its UTC hour
    no open-deadline row either), only the figures at now: the batch moves the unit's change count,
    so the kept figures of the unit, its province and the nation, and the refresher's dependencies,
    see it at the next read, not up to `max_age` later."""
    svc = fresh_service
    ingest = await svc.key("ingest", "VN")
    real = datetime.now(UTC)
    t0 = real.replace(minute=30, second=0, microsecond=0) + H  # reads at the middle of the next UTC hour
    tz = svc.settings.tz
    if hour == "same":
        old, new = t0 + 10 * 60 * S, t0 - 10 * 60 * S
    elif (t0 - 40 * 60 * S).astimezone(tz).date() == t0.astimezone(tz).date():
        old, new = t0 + 10 * 60 * S, t0 - 40 * 60 * S
    else:  # the hour before starts another local day: the one after
        old, new = t0 + 40 * 60 * S, t0 - 10 * 60 * S
    assert old.astimezone(tz).date() == new.astimezone(tz).date() and new < t0 < old
    await post(svc, ingest, [received(C, "moved", real - H, old)])
    monkeypatch.setattr(scoring, "_now", lambda: t0)
    registry = await svc.app.state.registry.refresh()
    kept = ReadContext.of(svc.db, registry, svc.settings, RankingMemo())
    plain = RankingMemo()
    plain.live, plain.tau = None, None
    queries = [("kpis", {"code": code, "period": "day", "at": None, "window": None, "sector": None}) for code in (C, "46", "VN")]
    for kind, params in queries:
        got = (await compute(kept, kind, params))["kpis"]
        assert (got["overdue"], got["due_24h"]) == (0, 1), params
    deps = Dependencies(svc.settings.tz)
    async with svc.db.session() as session:
        await deps.tick(session, registry, t0, None, svc.settings.silent_after_hours)
    before = await changes_of(svc, C)
    moved = {"event_id": "c-moved", "type": "due_changed", "dossier_id": "moved", "unit_code": C}
    await post(svc, ingest, [moved | {"occurred_at": real - H / 2, "due_at": new, "reason": "legal_extension"}])
    assert await changes_of(svc, C) == before + 1
    async with svc.db.session() as session:
        _, touched = await deps.tick(session, registry, t0 + S, t0, svc.settings.silent_after_hours)
    assert touched is not None and {C, "46", "VN"} <= touched
    monkeypatch.setattr(scoring, "_now", lambda: t0 + S)
    for kind, params in queries:
        got = await compute(kept, kind, params)
        assert (got["kpis"]["overdue"], got["kpis"]["due_24h"]) == (1, 0), params
        fresh = await compute(ReadContext.of(svc.db, registry, svc.settings, plain), kind, params)
        assert figures(got) == figures(fresh), params
