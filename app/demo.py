"""`chiso demo`: a living dashboard fed by a simulated stream from all 3,321 communes.

The simulator makes dossiers the way one-stop centres see them: mostly online submissions (Huế
about 96 %), legal deadlines of a few working days by sector, a mix of early, on-time and late
resolutions that differs between provinces and communes and improves over the weeks, withdrawals,
supplement requests, legal extensions and apologies (`due_changed`), refusals, a few sources that
lose receipts (orphans), a few that went silent (stale sources: their history is accepted as they
sent it, day by day, until they stopped nine days ago) and a few backlogged communes whose open
dossiers are due within the next 72 hours or already overdue (the at-risk list).

It back-fills the last `days` days in passes that are each uniform over communes and days (so the
figures are consistent while they fill in), as many dossiers as fit in a time budget unless a
volume is given, and then streams live at `rate` events per second. Events go through the real
ingest service (`accept_batch`) in batches of about 1,000, and so obey every validation rule.

`run()` serves the API and dashboard with public reads in this process and feeds from a second
process, so that the server answers at once while the back-fill runs on the other core.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import math
import os
import random
import secrets
import time as _time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path

from app.units.model import NATION, UnitRow

HUE = "46"
WORK_PERIODS = ((time(7, 30), time(11, 30)), (time(13, 30), time(17, 0)))
CLOSE = time(17, 0)
BATCH_EVENTS = 1000
EVENTS_PER_DOSSIER = 2.08  # measured mean of the simulator


@dataclass(frozen=True, slots=True)
class Sector:
    name: str
    weight: float
    days: tuple[int, ...]  # legal deadlines in working days after the day of receipt
    late: float  # how prone to lateness, relative to the average
    quick: bool = False  # settled within hours (certified copies)


SECTORS = (
    Sector("civil_status", 0.29, (0, 1, 1, 3), 0.7),
    Sector("certification", 0.22, (0,), 0.3, quick=True),
    Sector("land", 0.13, (5, 10), 2.6),
    Sector("business", 0.09, (3,), 0.9),
    Sector("social_welfare", 0.09, (5, 7), 1.2),
    Sector("labour", 0.07, (3, 5), 1.0),
    Sector("construction", 0.05, (10,), 2.0),
    Sector("", 0.03, (3,), 1.0),  # sources that send no sector
)
_SECTOR_CUM = list(itertools.accumulate(s.weight for s in SECTORS))

BASE_LATE = 0.085  # the national share of late resolutions before the trend
WITHDRAWN = 0.015
REFUSED = 0.03
SUPPLEMENT = 0.06
SECOND_SUPPLEMENT = 0.15  # of those with one
EXTENSION = 0.02
APOLOGY = 0.4  # of late dossiers
LOST_RECEIPT = 0.001  # a receipt that never arrives (an orphan), anywhere
FLAKY_LOST = 0.25  # the same at the few flaky sources
FLAKY_SOURCES = 5
STALE_SOURCES = 3
STALE_DAYS = 9  # silent for this long
PROBLEM_FLOOR = 3.0  # dossiers per day at least, at the silent and the flaky sources
AT_RISK_SOURCES = 6  # backlogged communes: open dossiers due within the next 72 h or already overdue
AT_RISK_DOSSIERS = 12  # per backlogged commune, deadlines spread from 48 h ago to 72 h ahead
REPLAY_MINUTES = 5  # a silent source's events were accepted this long after the last of their day
WARMUP_DAYS = 21
WARMUP_SHARE = 1.03  # the warm-up's dossiers, still open on the first day, add about this much


@dataclass
class DemoConfig:
    days: int = 180  # two quarters, so that the previous quarter compares too
    per_commune_per_day: float = 0.0  # dossiers per commune per day; 0: fit the back-fill into backfill_seconds
    backfill_seconds: float = 60.0
    rate: float = 0.5  # live events per second
    seed: int | None = None
    batch_events: int = BATCH_EVENTS


@dataclass
class _Unit:
    code: str
    province: str
    weight: float  # relative volume
    online: float  # share of online submissions
    late: float  # lateness multiplier
    slope: float  # change of the multiplier over the back-fill (negative: improving)
    lost: float  # share of receipts lost on the way
    silent_from: datetime | None = None
    backlog: bool = False  # has open dossiers about to go late (and some already late)


@dataclass(order=True)
class _Scheduled:
    at: datetime
    seq: int
    event: dict = field(compare=False)


# --- working time ------------------------------------------------------------------------------


def is_working_day(d: date) -> bool:
    return d.weekday() < 5


def next_working_day(d: date, k: int = 1) -> date:
    """The k-th working day after d (k = 0: d itself if it is one, else the next)."""
    if k == 0:
        while not is_working_day(d):
            d += timedelta(days=1)
        return d
    while k > 0:
        d += timedelta(days=1)
        if is_working_day(d):
            k -= 1
    return d


def in_working_hours(t: datetime) -> bool:
    if not is_working_day(t.date()):
        return False
    return any(a <= t.time() < b for a, b in WORK_PERIODS)


def deadline(recv: datetime, k: int, tz: tzinfo) -> datetime:
    """17:00 of the k-th working day counted from the day of receipt (a receipt after hours or on
    a day off counts from the next working day)."""
    d = recv.date()
    if not is_working_day(d) or recv.time() >= CLOSE:
        d = next_working_day(d)
    return datetime.combine(next_working_day(d, k), CLOSE, tz)


def _work_moment(rng: random.Random, d: date, tz: tzinfo, not_before: datetime | None = None, not_after: time = CLOSE) -> datetime | None:
    """A random moment in the working hours of day d, within [not_before, not_after]."""
    spans = []
    for a, b in WORK_PERIODS:
        lo = datetime.combine(d, a, tz)
        hi = datetime.combine(d, min(b, not_after), tz)
        if not_before is not None and not_before > lo:
            lo = not_before
        if hi > lo:
            spans.append((lo, hi))
    if not spans:
        return None
    total = sum((hi - lo).total_seconds() for lo, hi in spans)
    x = rng.random() * total
    for lo, hi in spans:
        length = (hi - lo).total_seconds()
        if x <= length:
            return lo + timedelta(seconds=x)
        x -= length
    return spans[-1][1]


def _work_between(rng: random.Random, start: datetime, end: datetime, tz: tzinfo) -> datetime:
    """A random working moment in (start, end); start itself when there is none."""
    days = []
    d = start.date()
    while d <= end.date() and len(days) < 60:
        if is_working_day(d):
            days.append(d)
        d += timedelta(days=1)
    rng.shuffle(days)
    for d in days:
        cap = end.time() if d == end.date() else CLOSE
        t = _work_moment(rng, d, tz, not_before=start, not_after=min(cap, CLOSE))
        if t is not None and start < t < end:
            return t
    return start + (end - start) / 2 if end > start else start


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


# --- the simulator -----------------------------------------------------------------------------


class Simulator:
    """Makes dossier events for the communes of a registry. Deterministic for a given seed and now."""

    def __init__(self, communes: list[UnitRow], tz: tzinfo, config: DemoConfig, now: datetime | None = None):
        if not communes:
            raise ValueError("no communes in the registry")
        self.tz = tz
        self.config = config
        self.now = (now or datetime.now(UTC)).astimezone(tz)
        self.rng = random.Random(config.seed)
        self.run_id = f"{self.rng.getrandbits(24):06x}" if config.seed is not None else secrets.token_hex(3)
        # from the Monday on or before the first day, so that the first week of the trend is whole
        first = self.now.date() - timedelta(days=config.days - 1)
        first -= timedelta(days=first.weekday())
        self.start = datetime.combine(first, time(0), tz)
        self.span_days = (self.now.date() - first).days + 1
        self._span = max((self.now - self.start).total_seconds(), 1.0)
        self._heap: list[_Scheduled] = []
        self._seq = itertools.count()
        self._live_counter = itertools.count(1)
        self._backfill_counter = itertools.count(1)
        self._pass = 0
        self._live_due = 0.0
        self.units = self._make_units(communes)
        self._cum = list(itertools.accumulate(u.weight for u in self.units if u.silent_from is None))
        self._live_units = [u for u in self.units if u.silent_from is None]

    # the population ------------------------------------------------------------------------

    def _make_units(self, communes: list[UnitRow]) -> list[_Unit]:
        rng = self.rng
        provinces = sorted({c.parent_code or NATION for c in communes})
        p_online, p_late, p_slope = {}, {}, {}
        for p in provinces:
            p_online[p] = min(0.95, max(0.5, rng.gauss(0.8, 0.08)))
            p_late[p] = math.exp(rng.gauss(0, 0.5))
            p_slope[p] = rng.gauss(-0.35, 0.25)
        if HUE in p_online:  # Huế: 95.9 % online, among the best
            p_online[HUE], p_late[HUE], p_slope[HUE] = 0.96, 0.45, -0.3
        kind_weight = {"phuong": 1.6, "xa": 1.0, "dac_khu": 0.5}
        units = []
        for c in sorted(communes, key=lambda u: u.code):
            p = c.parent_code or NATION
            spread = 0.015 if p == HUE else 0.06
            units.append(
                _Unit(
                    code=c.code,
                    province=p,
                    weight=kind_weight.get(c.kind or "xa", 1.0) * math.exp(rng.gauss(0, 0.4)),
                    online=min(0.99, max(0.3, rng.gauss(p_online[p], spread))),
                    late=p_late[p] * math.exp(rng.gauss(0, 0.4)),
                    slope=p_slope[p] + rng.gauss(0, 0.35),
                    lost=LOST_RECEIPT,
                )
            )
        mean = sum(u.weight for u in units) / len(units)
        for u in units:
            u.weight /= mean
        special = rng.sample(units, min(len(units), FLAKY_SOURCES + STALE_SOURCES))
        for u in special[:FLAKY_SOURCES]:
            u.lost = FLAKY_LOST
        silent_from = self.now - timedelta(days=STALE_DAYS)
        if self.config.days > STALE_DAYS + 7:
            for u in special[FLAKY_SOURCES:]:
                u.silent_from = silent_from
        chosen = {u.code for u in special}
        for u in rng.sample([u for u in units if u.code not in chosen], min(AT_RISK_SOURCES, len(units) - len(chosen))):
            u.backlog = True
        return units

    @staticmethod
    def _is_problem(unit: _Unit) -> bool:
        return unit.silent_from is not None or unit.lost >= FLAKY_LOST

    @property
    def stale_units(self) -> list[str]:
        return [u.code for u in self.units if u.silent_from is not None]

    @property
    def flaky_units(self) -> list[str]:
        return [u.code for u in self.units if u.lost >= FLAKY_LOST]

    @property
    def at_risk_units(self) -> list[str]:
        return [u.code for u in self.units if u.backlog]

    # one dossier ---------------------------------------------------------------------------

    def _late_probability(self, unit: _Unit, sector: Sector, recv: datetime) -> float:
        progress = min(1.0, max(0.0, (recv - self.start).total_seconds() / self._span))
        trend = math.exp(unit.slope * (progress - 0.5))
        return min(0.6, BASE_LATE * sector.late * unit.late * trend)

    def dossier(self, unit: _Unit, recv: datetime, dossier_id: str) -> list[tuple[datetime, dict]]:
        """Every event of one dossier received at `recv`, past and future, with its time."""
        rng, tz = self.rng, self.tz
        sector = SECTORS[bisect.bisect_left(_SECTOR_CUM, rng.random() * _SECTOR_CUM[-1])]
        k = rng.choice(sector.days)
        due = deadline(recv, k, tz)
        if not in_working_hours(recv) or rng.random() < unit.online:
            channel = "online"
        else:
            channel = "postal" if rng.random() < 0.04 else "in_person"
        base = {"dossier_id": dossier_id, "unit_code": unit.code}
        if sector.name:
            base["sector"] = sector.name
        n = itertools.count()

        def event(kind: str, at: datetime, **fields) -> tuple[datetime, dict]:
            return at, {"event_id": f"{dossier_id}-{next(n)}", "type": kind, **base, "occurred_at": _iso(at), **fields}

        out = []
        lost = rng.random() < unit.lost
        if not lost:
            out.append(event("received", recv, channel=channel, due_at=_iso(due)))

        if rng.random() < WITHDRAWN:
            out.append(event("withdrawn", _work_between(rng, recv, due, tz)))
            return out

        cur_due, last = due, recv
        if rng.random() < SUPPLEMENT:
            times = 2 if rng.random() < SECOND_SUPPLEMENT else 1
            for _ in range(times):
                at = _work_between(rng, last, cur_due, tz)
                cur_due = datetime.combine(next_working_day(cur_due.date(), rng.randint(2, 6)), CLOSE, tz)
                out.append(event("due_changed", at, due_at=_iso(cur_due), reason="supplement_requested"))
                last = at
        if rng.random() < EXTENSION * sector.late:
            at = _work_between(rng, last, cur_due, tz)
            cur_due = datetime.combine(next_working_day(cur_due.date(), rng.randint(2, 5)), CLOSE, tz)
            out.append(event("due_changed", at, due_at=_iso(cur_due), reason="legal_extension"))
            last = at

        r = rng.random()
        p_late = self._late_probability(unit, sector, recv)
        if r < p_late:
            lateness = min(15, 1 + int(rng.expovariate(0.6)))
            day = next_working_day(cur_due.date(), lateness - 1) if lateness > 1 else next_working_day(cur_due.date())
            done = _work_moment(rng, day, tz) or cur_due + timedelta(hours=20)
            if rng.random() < APOLOGY:
                at = _work_between(rng, cur_due, done, tz)
                appointment = datetime.combine(done.date(), CLOSE, tz)
                out.append(event("due_changed", at, due_at=_iso(appointment), reason="apology"))
        elif sector.quick:
            done = recv + timedelta(minutes=rng.uniform(10, 180))
            if not in_working_hours(recv) or done > cur_due:
                done = _work_moment(rng, cur_due.date(), tz, not_before=max(last, cur_due - timedelta(hours=9))) or cur_due
        else:
            on_the_day = rng.random() < 0.3
            first_day = max(last, recv).date()
            if not on_the_day and first_day < cur_due.date():
                done = _work_between(rng, max(last, recv), datetime.combine(cur_due.date(), time(0), tz), tz)
            else:
                done = _work_moment(rng, cur_due.date(), tz, not_before=max(last, recv)) or cur_due
        done = max(done, last + timedelta(minutes=5))
        fields: dict = {"outcome": "refused" if rng.random() < REFUSED else "approved"}
        if lost and rng.random() < 0.7:
            fields["due_at"] = _iso(cur_due)  # a source that lost the receipt may still tell the deadline
        out.append(event("resolved", done, **fields))
        return out

    def _keep(self, unit: _Unit, at: datetime) -> bool:
        return unit.silent_from is None or at < unit.silent_from

    def _split(self, unit: _Unit, events: list[tuple[datetime, dict]], now: datetime) -> list[dict]:
        """Events that happened by `now`; the rest wait for the live stream."""
        past = []
        for at, ev in events:
            if not self._keep(unit, at):
                continue
            if at <= now:
                past.append(ev)
            else:
                heapq.heappush(self._heap, _Scheduled(at, next(self._seq), ev))
        return past

    # the back-fill -------------------------------------------------------------------------

    def _day_factor(self, d: date) -> float:
        return (1.0, 1.0, 1.0, 1.0, 1.0, 0.3, 0.15)[d.weekday()] * 7 / 5.45

    def _receipt_time(self, d: date) -> datetime:
        rng, tz = self.rng, self.tz
        if is_working_day(d) and rng.random() < 0.8:
            t = _work_moment(rng, d, tz)
            if t is not None:
                return t
        # online around the clock, mostly by day
        hour = min(23.99, max(0.0, rng.gauss(14, 4.5)))
        return datetime.combine(d, time(0), tz) + timedelta(hours=hour)

    def backfill(self, density: float | None = None) -> Iterator[list[dict]]:
        """One pass over every commune (in random order) and every day of the back-fill: batches
        of about `batch_events` past events, whole dossiers together. `density` is the mean number
        of dossiers per commune and day (default: the config's). Passes add up: each is a uniform
        sample of the same population.

        A warm-up before the first day adds the dossiers received then that were still open on
        the first day, so that the first weeks look like any other (no ramp-up in the trend)."""
        cfg = self.config
        density = cfg.per_commune_per_day if density is None else density
        self._pass += 1
        days = [self.now.date() - timedelta(days=i) for i in range(self.span_days + WARMUP_DAYS)]
        factors = [self._day_factor(d) for d in days]
        units = list(self.units)
        self.rng.shuffle(units)
        batch: list[dict] = []
        for unit in units:
            # the problem sources are busy ones, so that their problems show (first pass only)
            floor = PROBLEM_FLOOR if self._is_problem(unit) and self._pass == 1 else 0.0
            for d, f in zip(days, factors, strict=True):
                n = _poisson(self.rng, max(density * unit.weight, floor) * f)
                for _ in range(n):
                    recv = self._receipt_time(d)
                    if recv > self.now:
                        continue
                    dossier_id = f"HS{d:%y%m%d}-{next(self._backfill_counter):06d}-{self.run_id}"
                    events = self.dossier(unit, recv, dossier_id)
                    if recv < self.start and events[-1][0] < self.start:
                        continue  # warm-up: only the dossiers still open on the first day
                    batch.extend(self._split(unit, events, self.now))
            if len(batch) >= cfg.batch_events:
                yield batch
                batch = []
        if self._pass == 1:
            for unit in units:
                if unit.backlog:
                    batch.extend(self._at_risk(unit))
        if batch:
            yield batch

    def _at_risk(self, unit: _Unit) -> list[dict]:
        """The past events of a backlogged commune's open dossiers: deadlines spread from 48 hours ago
        to 72 hours ahead (a third overdue, the rest due within 24, 48 and 72 hours), each to be
        settled late, by the live stream, 12 to 72 hours after its deadline or now."""
        rng, out = self.rng, []
        for j in range(AT_RISK_DOSSIERS):
            due = self.now + timedelta(hours=-48 + 120 * (j + rng.random()) / AT_RISK_DOSSIERS)
            recv = min(due - timedelta(hours=rng.uniform(30, 120)), self.now - timedelta(hours=1))
            dossier_id = f"HS{recv:%y%m%d}-R{next(self._backfill_counter):06d}-{self.run_id}"
            sector = rng.choice([s for s in SECTORS if s.name and not s.quick])
            base = {"dossier_id": dossier_id, "unit_code": unit.code, "sector": sector.name}
            done = max(due, self.now) + timedelta(hours=rng.uniform(12, 72))
            events = [
                (
                    recv,
                    {
                        "event_id": f"{dossier_id}-0",
                        "type": "received",
                        **base,
                        "occurred_at": _iso(recv),
                        "channel": "online",
                        "due_at": _iso(due),
                    },
                ),
                (done, {"event_id": f"{dossier_id}-1", "type": "resolved", **base, "occurred_at": _iso(done), "outcome": "approved"}),
            ]
            out.extend(self._split(unit, events, self.now))
        return out

    def acceptance(self, batch: list[dict]) -> tuple[list[dict], list[tuple[datetime, list[dict]]]]:
        """A back-fill batch split by when its events were accepted: those of sources still sending
        are accepted now; a silent source sent in real time and then stopped, so its events come in
        groups, each accepted REPLAY_MINUTES after the last event of its local day (of its week for
        events older than the 16 days before it fell silent), oldest group first."""
        silent = {u.code: u.silent_from for u in self.units if u.silent_from is not None}
        now_events, groups = [], defaultdict(list)
        for ev in batch:
            since = silent.get(ev["unit_code"])
            if since is None:
                now_events.append(ev)
                continue
            day = datetime.fromisoformat(ev["occurred_at"]).astimezone(self.tz).date()
            if day < since.astimezone(self.tz).date() - timedelta(days=16):
                day -= timedelta(days=day.weekday())
            groups[day].append(ev)
        replayed = []
        for _, events in sorted(groups.items()):
            last = max(datetime.fromisoformat(e["occurred_at"]) for e in events)
            replayed.append((min(last + timedelta(minutes=REPLAY_MINUTES), self.now), events))
        return now_events, replayed

    def expected_events(self, density: float | None = None, first_pass: bool = True) -> int:
        """About how many events a back-fill pass of `density` makes (the first pass also makes
        the busy days of the silent sources)."""
        cfg = self.config
        density = cfg.per_commune_per_day if density is None else density
        days = sum(self._day_factor(self.now.date() - timedelta(days=i)) for i in range(self.span_days))
        floor = PROBLEM_FLOOR if first_pass else 0.0
        dossiers = sum(max(density * u.weight, floor if self._is_problem(u) else 0.0) for u in self.units)
        return int(days * dossiers * EVENTS_PER_DOSSIER * WARMUP_SHARE)

    # the live stream -----------------------------------------------------------------------

    def live(self, now: datetime, seconds: float) -> list[dict]:
        """About `rate × seconds` events: scheduled events now due, topped up by new dossiers."""
        now = now.astimezone(self.tz)
        out = []
        while self._heap and self._heap[0].at <= now:
            out.append(heapq.heappop(self._heap).event)
        self._live_due += self.config.rate * seconds - len(out)
        self._live_due = max(self._live_due, -self.config.rate * 10)  # don't hold back forever
        while self._live_due >= 1:
            unit = self._live_units[bisect.bisect_left(self._cum, self.rng.random() * self._cum[-1])]
            recv = now - timedelta(seconds=self.rng.uniform(0, min(seconds, 60)))
            dossier_id = f"HS{recv:%y%m%d}-L{next(self._live_counter):06d}-{self.run_id}"
            past = self._split(unit, self.dossier(unit, recv, dossier_id), now)
            out.extend(past)
            self._live_due -= max(1, len(past))
        return out

    @property
    def scheduled(self) -> int:
        return len(self._heap)


# --- feeding the ingest service ----------------------------------------------------------------


async def _registry_communes(db):
    from app.units.service import RegistryCache

    registry = await RegistryCache(db).refresh()
    return registry, registry.at_level("commune")


async def has_data(db, registry, settings) -> bool:
    """Whether the store already holds events of the last year (through the KPI service)."""
    from app.aggregates.periods import today, window
    from app.scoring import service as scoring
    from app.scoring.context import Reader

    p = window("365d", today(datetime.now(UTC), settings.tz))
    k = (await scoring.unit_kpis(Reader(db, registry, settings.tz), NATION, p, None))["kpis"]
    return bool(k["received"] or k["resolved"] or k["withdrawn"] or k["orphans"])


async def feed(
    settings,
    config: DemoConfig,
    backfill: bool = True,
    live: bool = True,
    progress: Callable[[int, float, int], None] | None = None,
    announce: Callable[[Simulator, object], None] | None = None,
) -> dict:
    """Back-fill, then stream live until cancelled. Returns counts (when live is False)."""
    from app.db.engine import Database
    from app.ingest.service import accept_batch
    from app.keys.service import Principal

    principal = Principal(None, "ingest", NATION)
    db = Database(settings.database_url, pool_size=2)
    stats = {"events": 0, "accepted": 0, "rejected": 0, "batches": 0, "seconds": 0.0}
    try:
        registry, communes = await _registry_communes(db)
        sim = Simulator(communes, settings.tz, config)
        stats["stale_units"], stats["flaky_units"], stats["at_risk_units"] = sim.stale_units, sim.flaky_units, sim.at_risk_units
        if announce:
            announce(sim, registry)

        async def send(events: list[dict], accepted_at: datetime | None = None) -> None:
            result = await accept_batch(db, registry, settings, principal, events, now=accepted_at)
            stats["events"] += len(events)
            stats["accepted"] += result["accepted"]
            stats["rejected"] += result["rejected"]
            stats["batches"] += 1
            if result["rejected"]:
                first = next(i for i in result["items"] if i["status"] == "rejected")
                raise RuntimeError(f"the demo made an invalid event: {first}")

        if backfill:
            await _backfill(sim, send, config, stats, progress)
        if not live:
            return stats
        tick = 1.0
        last = _time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, tick - (_time.monotonic() - last)))
            now_m = _time.monotonic()
            events = sim.live(datetime.now(UTC), now_m - last)
            last = now_m
            for i in range(0, len(events), config.batch_events):
                await send(events[i : i + config.batch_events])
    finally:
        await db.dispose()


ASSUMED_RATE = 800.0  # events/s that a first back-fill pass assumes before measuring
# Reads slow down as the store grows: the time budget fills at most this many events, so that the
# dashboard of the demo stays quick on a fast machine too.
MAX_AUTO_EVENTS = 150_000


async def _backfill(sim: Simulator, send, config: DemoConfig, stats: dict, progress) -> None:
    """One pass at the configured density, or two that fit the time budget: a first at a guessed
    rate, then one sized by the rate measured. Each pass is uniform over communes and days."""
    per_density = max(1, sim.expected_events(1.0, first_pass=False))
    started = _time.perf_counter()
    fixed = config.per_commune_per_day > 0
    budget = config.backfill_seconds
    if fixed:
        densities = [config.per_commune_per_day]
    else:
        densities = [min(ASSUMED_RATE * budget * 0.3, MAX_AUTO_EVENTS / 2) / per_density]
    total = sim.expected_events(densities[0])
    shown = 0.0

    def report(finished: int = 0) -> None:
        # by events where the total is known; by the time budget while the first pass measures
        nonlocal shown
        if not progress:
            return
        if fixed or len(densities) > 1 or finished:
            fraction = stats["events"] / max(total, 1)
        else:
            fraction = (_time.perf_counter() - started) / budget
        shown = 1.0 if finished else max(shown, min(0.99, fraction))
        progress(stats["events"], shown, finished)

    i = 0
    while i < len(densities):
        for batch in sim.backfill(densities[i]):
            current, replayed = sim.acceptance(batch)
            if current:
                await send(current)
            for accepted_at, group in replayed:  # the silent sources, as they sent before they stopped
                await send(group, accepted_at)
            report()
        if not fixed and i == 0:
            elapsed = _time.perf_counter() - started
            remaining = budget - elapsed
            if remaining > 0.1 * budget:
                rate = stats["events"] / max(elapsed, 1e-6)
                more = min(0.8 * rate * remaining, MAX_AUTO_EVENTS - stats["events"])  # the rate drops as the store grows
                if more > 0.1 * stats["events"]:
                    densities.append(more / per_density)
                    total = stats["events"] + sim.expected_events(densities[-1], first_pass=False)
        i += 1
    stats["seconds"] = _time.perf_counter() - started
    stats["per_commune_per_day"] = sum(densities)
    report(finished=1)


def _feeder_main(database_url: str, config: DemoConfig, backfill: bool, show_progress: bool) -> None:
    """The feeding process: a progress bar while back-filling, then the live stream."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server; the server then ends this process
    os.environ["DATABASE_URL"] = database_url
    from app.settings import Settings

    settings = Settings()
    bar = _ProgressBar() if show_progress else None

    def announce(sim: Simulator, registry) -> None:
        def names(codes: list[str]) -> str:
            out = []
            for code in codes:
                u = registry.get(code)
                p = registry.get(u.parent_code) if u and u.parent_code else None
                out.append(f"{code} {u.name if u else ''}{f' ({p.name})' if p else ''}")
            return "; ".join(out) or "none"

        print(
            f"simulated data problems to look for on the dashboard:\n"
            f"  silent for {STALE_DAYS} days: {names(sim.stale_units)}\n"
            f"  losing receipts (orphans): {names(sim.flaky_units)}\n"
            f"  open dossiers due within 72 hours or overdue: {names(sim.at_risk_units)}",
            flush=True,
        )

    try:
        asyncio.run(
            feed(
                settings,
                config,
                backfill=backfill,
                progress=bar.update if bar else None,
                announce=announce if backfill else None,
            )
        )
    except KeyboardInterrupt:
        pass
    finally:
        if bar:
            bar.close()  # gives the terminal its cursor back


class _ProgressBar:
    """rich's progress bar on a terminal; a line every 10 % elsewhere."""

    def __init__(self):
        import sys

        self.tty = sys.stdout.isatty()
        self.t0 = _time.perf_counter()
        self.task = None
        self.progress = None
        self.printed = -1

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def update(self, done: int, fraction: float, finished: int) -> None:
        """`done` events sent, about `fraction` of the back-fill."""
        elapsed = _time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.tty:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            if self.progress is None:
                self.progress = Progress(
                    TextColumn("back-fill"),
                    BarColumn(),
                    TaskProgressColumn(),
                    TextColumn("{task.fields[events]:,} events, {task.fields[rate]:,.0f}/s"),
                    TimeRemainingColumn(),
                )
                self.progress.start()
                self.task = self.progress.add_task("back-fill", total=1000, events=0, rate=0.0)
            self.progress.update(self.task, completed=int(1000 * fraction), events=done, rate=rate)
            if finished:
                self.close()
        else:
            tenth = int(10 * fraction)
            if tenth > self.printed or finished:
                self.printed = tenth
                print(f"back-fill: {done:,} events ({10 * tenth} %), {rate:,.0f}/s", flush=True)
        if finished:
            print(f"back-fill done: {done:,} events in {elapsed:.0f} s; streaming live now", flush=True)


# --- chiso demo ------------------------------------------------------------------------------

DEMO_DB = "./var/demo.db"


def database_url(keep: bool) -> tuple[str, bool]:
    """The demo's store: DATABASE_URL when configured, else a fresh SQLite file under ./var/.
    Returns (url, is_the_demo_file)."""
    from app.settings import Settings

    configured = Settings().database_url
    if configured != Settings.model_fields["database_url"].default:
        return configured, False
    path = Path(DEMO_DB)
    if not keep:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}", True


def run(host: str, port: int, config: DemoConfig, keep: bool = False) -> None:
    """Serve the dashboard with public reads and feed it from a second process."""
    import multiprocessing

    import uvicorn

    from app.db.engine import Database
    from app.main import prepare_database
    from app.settings import Settings
    from app.units.service import RegistryCache

    url, own_file = database_url(keep)
    os.environ["DATABASE_URL"] = url
    os.environ["PUBLIC_READ"] = "true"
    settings = Settings()

    async def prepare() -> bool:
        db = Database(url, pool_size=2)
        try:
            await prepare_database(db, settings)
            registry = await RegistryCache(db).refresh()
            return await has_data(db, registry, settings)
        finally:
            await db.dispose()

    already = asyncio.run(prepare())
    os.environ["MIGRATE_ON_START"] = "false"
    where = url if not own_file else f"{DEMO_DB} (a fresh SQLite file; --keep keeps it)"
    print(f"chiso demo: store {where}")
    if already:
        print("the store already holds data: no back-fill, live stream only")
    else:
        volume = (
            f"about {config.per_commune_per_day:g} dossiers per commune per day"
            if config.per_commune_per_day > 0
            else f"as many dossiers as fit in about {config.backfill_seconds:g} s"
        )
        print(f"back-filling {config.days} days with {volume}, then {config.rate:g} events/s live")
    print(f"dashboard: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/  (public reads; Ctrl-C stops)", flush=True)

    ctx = multiprocessing.get_context("spawn")
    feeder = ctx.Process(target=_feeder_main, args=(url, config, not already, True), daemon=True, name="chiso-demo-feeder")
    feeder.start()
    try:
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port, log_level="warning", access_log=False)
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then raises it again
        pass
    finally:
        if feeder.is_alive():
            feeder.terminate()
            feeder.join(5)
