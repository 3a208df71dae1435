"""The demo's simulated stream: valid events, a back-fill over the period, a realistic mix."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.aggregates.dossier import DossierState
from app.demo import HUE, DemoConfig, Simulator, deadline, next_working_day
from app.ingest.schemas import validate_event
from app.units.seed import package_units

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime.now(UTC)
SKEW, HORIZON = timedelta(seconds=300), timedelta(days=400)
DAYS = 90


# under --dist loadgroup one process builds the module's fixtures, not each
pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def communes():
    return [u for u in package_units() if u.level == "commune"]


@pytest.fixture(scope="module")
def sim(communes):
    return Simulator(communes, TZ, DemoConfig(days=DAYS, per_commune_per_day=0.02, seed=2025), now=NOW)


@pytest.fixture(scope="module")
def events(sim):
    return [ev for batch in sim.backfill() for ev in batch]


@pytest.fixture(scope="module")
def dossiers(events):
    """Each dossier's state, merged by the service's own rules."""
    states: dict[tuple[str, str], DossierState] = {}
    for raw in events:
        ev = validate_event(raw, NOW, SKEW, HORIZON)
        key = (ev["unit_code"], ev["dossier_id"])
        states.setdefault(key, DossierState(*key)).apply(ev, TZ)
    return states


def classify(state: DossierState) -> str | None:
    """early | on_time | late | unclassified, as SPEC section 3 defines them; None if not resolved."""
    term = state.terminal()
    if term is None or term[0] != "resolved":
        return None
    due = state.effective_due()
    if due is None:
        return "unclassified"
    at = term[1]
    if at > due:
        return "late"
    return "early" if at.astimezone(TZ).date() < due.astimezone(TZ).date() else "on_time"


def test_every_event_validates_and_nothing_lies_in_the_future(events):
    assert len(events) > 10_000
    for raw in events:
        validate_event(raw, NOW, SKEW, HORIZON)  # raises on any invalid event
        assert datetime.fromisoformat(raw["occurred_at"]) <= NOW
    assert len({(e["unit_code"], e["event_id"]) for e in events}) == len(events)


def test_batches_are_about_a_thousand_events_with_whole_dossiers(sim, communes):
    other = Simulator(communes, TZ, DemoConfig(days=30, per_commune_per_day=0.02, seed=1), now=NOW)
    batches = list(other.backfill())
    assert all(len(b) <= 1200 for b in batches)
    assert all(len(b) >= 1000 for b in batches[:-1])
    where = {}
    for i, batch in enumerate(batches):
        for ev in batch:
            assert where.setdefault((ev["unit_code"], ev["dossier_id"]), i) == i


def test_the_back_fill_spans_the_period(events):
    received = [datetime.fromisoformat(e["occurred_at"]).astimezone(TZ).date() for e in events if e["type"] == "received"]
    today = NOW.astimezone(TZ).date()
    first = today - timedelta(days=DAYS - 1)
    assert min(received) < first  # the warm-up: dossiers still open on the first day
    assert max(received) >= today - timedelta(days=1)
    per_week = Counter((d - first).days // 7 for d in received if d >= first)
    weeks = DAYS // 7
    assert all(per_week[w] > 0.6 * len(received) / (weeks + 1) for w in range(weeks))  # every week has its share


def test_the_mix_has_every_kind_of_event_and_outcome(events, dossiers):
    kinds = Counter(e["type"] for e in events)
    assert {"received", "resolved", "withdrawn", "due_changed"} <= set(kinds)
    reasons = Counter(e["reason"] for e in events if e["type"] == "due_changed")
    assert {"supplement_requested", "legal_extension", "apology"} <= set(reasons)
    assert len({e.get("sector") for e in events}) >= 6
    assert {"land", "civil_status", "business"} <= {e.get("sector") for e in events}
    channels = Counter(e["channel"] for e in events if e["type"] == "received")
    assert 0.7 < channels["online"] / sum(channels.values()) < 0.95
    assert channels["in_person"] > 0 and channels["postal"] > 0

    classes = Counter(c for c in map(classify, dossiers.values()) if c)
    classified = classes["early"] + classes["on_time"] + classes["late"]
    assert classes["early"] > classes["late"] and classes["on_time"] > classes["late"] > 0
    assert 0.82 < (classes["early"] + classes["on_time"]) / classified < 0.97  # about 91 % nationally
    assert sum(1 for s in dossiers.values() if s.recv_at is None) > 0  # a few orphans
    assert sum(1 for s in dossiers.values() if s.supplements >= 2) > 0  # not on time for the 766 index
    deadlines = [(s.recv_due_at - s.recv_at).total_seconds() / 86400 for s in dossiers.values() if s.recv_at and s.recv_due_at]
    assert statistics.median(deadlines) < 6 and max(deadlines) < 20  # a few working days


def test_units_differ_and_hue_is_mostly_online(sim, events, dossiers):
    by_province: dict[str, Counter] = defaultdict(Counter)
    parent = {u.code: u.parent_code for u in package_units()}
    for (unit, _), state in dossiers.items():
        c = classify(state)
        if c in ("early", "on_time", "late"):
            by_province[parent[unit]][c == "late"] += 1
    rates = [c[False] / (c[False] + c[True]) for c in by_province.values() if c.total() >= 60]
    assert len(rates) >= 20
    assert max(rates) - min(rates) > 0.08  # some provinces clearly better than others

    # communes differ too: pooled by how prone to lateness the simulator made them, the
    # quarter of most prone communes is late clearly more often than the quarter of least prone
    late_of = {u.code: u.late for u in sim.units}
    ranked = sorted(late_of, key=late_of.get)
    quarter = len(ranked) // 4
    best, worst = set(ranked[:quarter]), set(ranked[-quarter:])
    pooled = {"best": Counter(), "worst": Counter()}
    for (unit, _), state in dossiers.items():
        c = classify(state)
        if c in ("early", "on_time", "late"):
            if unit in best:
                pooled["best"][c == "late"] += 1
            elif unit in worst:
                pooled["worst"][c == "late"] += 1
    late_share = {k: c[True] / c.total() for k, c in pooled.items()}
    assert late_share["worst"] > 2 * late_share["best"], late_share

    hue = [e for e in events if e["type"] == "received" and parent[e["unit_code"]] == HUE]
    online = sum(e["channel"] == "online" for e in hue) / len(hue)
    assert 0.92 < online <= 1.0


def test_problem_sources(sim, events):
    assert len(sim.stale_units) == 3 and len(sim.flaky_units) == 5
    silent_since = NOW - timedelta(days=9)
    for e in events:
        if e["unit_code"] in sim.stale_units:
            assert datetime.fromisoformat(e["occurred_at"]) < silent_since


def test_backlogged_communes_have_dossiers_about_to_go_late(sim, dossiers):
    """Open dossiers at now whose deadline is within 24, 48, 72 hours, and some already overdue."""
    assert len(sim.at_risk_units) == 6
    assert not set(sim.at_risk_units) & (set(sim.stale_units) | set(sim.flaky_units))
    bins = Counter()
    for (unit, _), state in dossiers.items():
        if unit not in sim.at_risk_units or state.recv_at is None or state.terminal() is not None:
            continue
        hours = (state.effective_due() - NOW).total_seconds() / 3600
        bins["overdue" if hours < 0 else "24h" if hours < 24 else "48h" if hours < 48 else "72h" if hours < 72 else "later"] += 1
    for unit_bin in ("overdue", "24h", "48h", "72h"):
        assert bins[unit_bin] >= 6, bins  # about 12 per bin over the six communes


def test_silent_sources_are_replayed_as_they_sent_before_they_stopped(sim, events):
    current, replayed = sim.acceptance(events)
    stale = set(sim.stale_units)
    assert {e["unit_code"] for e in current} & stale == set()
    assert {e["unit_code"] for _, group in replayed for e in group} == stale
    assert len(current) + sum(len(g) for _, g in replayed) == len(events)
    times = [at for at, _ in replayed]
    assert times == sorted(times) and times[-1] < NOW - timedelta(days=8)  # stopped more than 48 h ago
    for at, group in replayed:
        occurred = [datetime.fromisoformat(e["occurred_at"]) for e in group]
        assert max(occurred) <= at <= max(occurred) + timedelta(minutes=5)  # accepted as they happened
    # each sent on most of the 14 days up to its last acceptance (3 of 14 make a silent source)
    last_day = times[-1].astimezone(TZ).date()
    for unit in stale:
        days = {datetime.fromisoformat(e["occurred_at"]).astimezone(TZ).date() for _, g in replayed for e in g if e["unit_code"] == unit}
        assert len({d for d in days if last_day - timedelta(days=13) <= d <= last_day}) >= 3, unit


def test_live_stream_runs_at_the_rate_with_valid_events(communes):
    live = Simulator(communes, TZ, DemoConfig(days=20, per_commune_per_day=0.01, rate=5.0, seed=3))
    for _ in live.backfill():
        pass
    now = datetime.now(UTC)
    got = []
    for i in range(10):
        got += live.live(now + timedelta(seconds=i), 1.0)
    assert 30 <= len(got) <= 70
    for raw in got:
        validate_event(raw, now + timedelta(seconds=10), SKEW, HORIZON)
        assert datetime.fromisoformat(raw["occurred_at"]) <= now + timedelta(seconds=10)
    assert any(e["type"] == "received" for e in got)


def test_working_day_deadlines():
    friday_noon = datetime(2026, 11, 20, 12, 0, tzinfo=TZ)
    assert deadline(friday_noon, 0, TZ) == datetime(2026, 11, 20, 17, 0, tzinfo=TZ)
    assert deadline(friday_noon, 1, TZ) == datetime(2026, 11, 23, 17, 0, tzinfo=TZ)  # Monday
    friday_evening = datetime(2026, 11, 20, 19, 0, tzinfo=TZ)
    assert deadline(friday_evening, 0, TZ) == datetime(2026, 11, 23, 17, 0, tzinfo=TZ)
    assert next_working_day(friday_noon.date(), 3) == datetime(2026, 11, 25).date()
