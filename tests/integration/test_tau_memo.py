"""The previous period's corrections at the same point t kept per unit (app.aggregates.tau_memo): as
t moves with now (forward by seconds and minutes, back once, across a midnight), and late events
and corrections land inside and after [midnight, t), the corrections a memo gives — for the nation,
a province, a commune, units one by one, a sector, and the groups of both rankings — equal a fresh
at_tau.read_at_instant; and answers computed with the memo equal answers computed without it."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from app.aggregates import periods
from app.aggregates.at_tau import read_at_instant
from app.aggregates.sums import Scope, Sums
from app.aggregates.tau_memo import TauMemo
from app.answers.kinds import ReadContext, compute
from app.db.models import ALL_SECTORS
from app.scoring import service as scoring
from app.scoring.ranking import RankingMemo
from tests import reference as ref
from tests.helpers.events import post, received, resolved
from tests.helpers.kpis import COMMUNES_46, post_all
from tests.streams import stream

S, M, H = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)
UNITS = [*COMMUNES_46, "19777", "19900"]
# seconds after the first 'now' (local 23:56:30 two days ago): t = now - 7 days crosses a midnight at
# 210 s, goes back once (90 -> 60)
STEPS = [0, 1, 17, 60, 90, 60, 150, 209, 211, 240, 400, 900]
LATE_AT = {3: "late", 5: "late", 9: "late", 11: "late"}


def normal(out: dict) -> dict:
    """What a correction sets, per group with any figure (a group with none may be absent)."""
    got = {}
    for g, sums in out.items():
        s = sums[1]
        fig = (
            {k: n for k, n in s.tau_flows.items() if n},
            {b: n for b, n in s.tau_hist.items() if n},
            s.pending_ahead,
            s.overdue_ahead,
            s.late_today,
            tuple(s.tau_due),
        )
        if any(fig):
            got[g] = fig
    return got


def late_events(rng: random.Random, t: datetime, k: int) -> list[dict]:
    """Events dated in the previous week around t: a receipt and a resolution inside [midnight, t),
    a deadline moved into it, a receipt corrected across t, an orphan's event, and dossiers just
    after t that the next steps reach."""
    unit = rng.choice(UNITS)
    out = [
        received(unit, f"L{k}a", t - 20 * M, t + 30 * M, sector="land"),
        received(unit, f"L{k}b", t - 30 * H, t - 5 * M),  # went late in [midnight, t)
        resolved(unit, f"L{k}b", t - 2 * M),
        received(unit, f"L{k}c", t + 40 * S, t + 24 * H - 10 * S),  # received after t, due soon at t + 24 h
        received(unit, f"L{k}c", t - 3 * M, t + 24 * H + 20 * S) | {"event_id": f"r2-L{k}c"},  # an earlier receipt: a correction
        resolved(unit, f"L{k}d", t - 30 * S),  # an orphan's event
        received(unit, f"L{k}e", t + 2 * M, t + 48 * H + M, channel="postal"),
        resolved(unit, f"L{k}e", t + 5 * M),
    ]
    return out


@pytest.mark.slow  # a walk over many instants (make test-fast leaves it out)
async def test_kept_corrections_equal_fresh_reads_as_t_moves(fresh_service, monkeypatch):
    svc = fresh_service
    rng = random.Random(5)
    ingest = await svc.key("ingest", "VN")
    local = ref.midnight(ref.local_day(datetime.now(UTC)) - timedelta(days=2)) - 3 * M - 30 * S
    await post_all(svc, ingest, stream(rng, UNITS, 400, local, days=14), rng)
    # dossiers with times right around every t of the steps below, so that each step moves something
    around = []
    for k, step in enumerate(STEPS):
        t = local + step * S - timedelta(days=7)
        unit = UNITS[k % len(UNITS)]
        around += [
            received(unit, f"A{k}", t - 3 * S, t + 25 * S),  # due between this step and the next
            received(unit, f"B{k}", t - 30 * H, t + 24 * H + 2 * S, sector="land"),  # entering the 24 h window
            resolved(unit, f"B{k}", t + 4 * S),
        ]
    await post(svc, ingest, around)
    registry = await svc.app.state.registry.refresh()
    tz = svc.settings.tz
    communes = tuple(u.code for u in registry.at_level("commune", "46"))
    provinces = registry.at_level("province", None)
    reads = [
        (Scope(codes=None), None, ALL_SECTORS),
        (scoring.scope_of(registry, "46"), None, ALL_SECTORS),
        (scoring.scope_of(registry, COMMUNES_46[0]), None, ALL_SECTORS),
        (scoring.scope_of(registry, "46"), None, "land"),
        (Scope(codes=tuple(UNITS), level="unit"), None, ALL_SECTORS),
        (Scope(level="commune", parent="46"), {c: (c,) for c in communes}, ALL_SECTORS),
        (Scope(level="province"), {p.code: tuple(registry.subtree(p.code)) for p in provinces}, ALL_SECTORS),
    ]
    memo = TauMemo()
    kept = ReadContext.of(svc.db, registry, svc.settings, RankingMemo())
    plain = RankingMemo()
    plain.live, plain.tau = None, None
    fresh_ctx = ReadContext.of(svc.db, registry, svc.settings, plain)
    seen, read = 0, []
    for k, step in enumerate(STEPS):
        now = local + step * S
        monkeypatch.setattr(scoring, "_now", lambda now=now: now)
        p = periods.window("7d", periods.today(now, tz))
        _, spans, t = scoring.compared(p, now, tz)
        assert t == now - timedelta(days=7)
        if k in LATE_AT:  # late events and corrections inside [midnight, t) and after t
            await post(svc, ingest, late_events(rng, t, k))
        for scope, groups, sector in reads:
            kept_out: dict = defaultdict(lambda: [Sums(), Sums()])
            fresh_out: dict = defaultdict(lambda: [Sums(), Sums()])
            async with svc.db.session() as session:
                await read_at_instant(session, scope, [(1, spans[1])], sector, kept_out, groups=groups, memo=memo)
                await read_at_instant(session, scope, [(1, spans[1])], sector, fresh_out)
            assert normal(kept_out) == normal(fresh_out), (step, scope, sector)
            assert all(s[1].until == t for s in kept_out.values()), (step, scope)
            seen += sum(1 for fig in normal(fresh_out).values() if fig[0])
        read.append(memo.units_read)
        for kind, params in (
            ("kpis", {"code": "46", "period": None, "at": None, "window": "7d", "sector": None}),
            ("kpis", {"code": "VN", "period": None, "at": None, "window": "7d", "sector": "land"}),
            (
                "rankings",
                {"level": "commune", "parent": None, "period": None, "at": None, "window": "7d", "sort": "-received"}
                | {"limit": 5000, "offset": 0, "min_count": 0},
            ),
            (
                "rankings",
                {"level": "province", "parent": None, "period": None, "at": None, "window": "7d", "sort": "-pending"}
                | {"limit": 5000, "offset": 0, "min_count": 0},
            ),
        ):
            assert await compute(kept, kind, params) == await compute(fresh_ctx, kind, params), (step, kind, params)
    assert seen > len(STEPS) * len(reads), "the corrections compared are not all empty"
    assert memo.steps_read >= len(STEPS) - 2, "t moved: the memo stepped, not read everything again"
    # t moved by 1 s, then 16 s, with no batch in between: nothing read again from the midnight
    assert read[0] > 0 and read[2] == read[0], read
    assert read[3] > read[2], "a late event: its unit is read again"
