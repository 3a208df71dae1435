"""The producer: recomputes the records of changed units and appends those whose figures moved to
the outbox (SPEC section 6), in bounded, paced steps. It sends nothing (app.export.pusher does)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from operator import itemgetter

import orjson

from app import metrics
from app.aggregates import periods, reads
from app.aggregates.counters import DUE, TOTALS
from app.aggregates.pending import Backlog
from app.aggregates.reads import read_sums
from app.aggregates.sums import Scope, Sums, span_for
from app.db import meta
from app.db.engine import Database
from app.export import records
from app.export import repository as repo
from app.export.outbox import PENDING
from app.settings import Settings

SPANS_PER_QUERY = 40
UNITS_PER_QUERY = 500
PRODUCE_RECORDS = 20_000  # day records computed, compared and committed together by one produce step
YIELD_EVERY = 500  # records handled between two yields to the event loop the exporter shares with requests


class Producer:
    """Makes the snapshot records of one node: what changed since the last call goes into the outbox."""

    def __init__(self, db: Database, settings: Settings):
        self.db = db
        self.settings = settings
        self._resume_after = ""  # the unit a produce() cut short by its budget stopped after
        self._complete_at: datetime | None = None  # when a produce() last reached every unit
        self.step_records = PRODUCE_RECORDS

    async def produce(self, budget: float | None = None) -> int:
        """Recompute the records of dirty units (from their marked day) and of units with pending
        dossiers (today's figures move with time); append those that changed to the outbox.

        With a `budget` (seconds), no new step starts once it is spent: the units not reached keep
        their marks and come first at the next call, so every unit is reached in turn.
        """
        started = time.monotonic()
        tz = self.settings.tz
        now = datetime.now(UTC)
        today = periods.today(now, tz)
        async with self.db.session() as session:
            last = await meta.read_meta(session, repo.LAST_DAY)
        if not last:  # the first run exports everything already stored
            async with self.db.transaction() as session:
                await repo.seed_dirty_from_aggregates(session)
                await meta.set_meta(session, repo.LAST_DAY, today.toordinal())
            last = today.toordinal()
        async with self.db.session() as session:
            dirty = await repo.read_dirty(session)
            if self._complete_at is None or last != today.toordinal():
                # A new day (or a new exporter): every unit with pending dossiers gets its day records.
                pending = await repo.read_pending_units(session)
            else:
                # Within the day, today's figures of a unit without events move only when one of its
                # deadlines passes (overdue, the cohort) or a future-dated event comes due.
                pending = await reads.read_units_due_between(session, self._complete_at, now)
        base = min(date.fromordinal(last), today - timedelta(days=1))
        starts: dict[str, date] = {}
        cleared: dict[str, int] = {}
        for unit, (day, gen) in dirty.items():
            if day <= today:  # a mark for a day still to come waits for it
                starts[unit], cleared[unit] = day, gen
        for unit in pending:
            starts[unit] = min(starts.get(unit, base), base)
        # Round robin from where the last cut-short call stopped.
        items = sorted(starts.items(), key=lambda it: (it[0] <= self._resume_after, it[0]))
        produced, done = 0, 0
        # In bounded steps (about PRODUCE_RECORDS day records each), each committed with its dirty
        # marks cleared: memory stays bounded when every unit is dirty over a long history.
        while done < len(items):
            if budget is not None and done and time.monotonic() - started > budget:  # one step at least
                break
            step_started = time.monotonic()
            step, size = [], 0
            while done < len(items) and (not step or size < self.step_records):
                step.append(items[done])
                size += (today - items[done][1]).days + 1
                done += 1
            by_start: dict[date, list[str]] = defaultdict(list)
            for unit, day in step:
                by_start[day].append(unit)
            computed: dict[tuple[str, str, date], tuple[dict, dict | None]] = {}
            for start, units in sorted(by_start.items()):
                await self._compute(sorted(units), start, today, now, computed)
            changed = await self._changed(computed, min(day for _, day in step))
            async with self.db.transaction() as session:
                if changed:
                    await self._append(session, changed, now)
                await repo.delete_dirty(session, {u: cleared[u] for u, _ in step if u in cleared})
            produced += len(changed)
            self._resume_after = step[-1][0]
            if budget is not None and done < len(items):
                # Paced: at most EXPORT_PRODUCE_SHARE of the time busy, so that a big recomputation
                # (a new day, a new exporter, a back-fill) never crowds out ingest and dashboards on
                # the database, whose backends the exporter process's niceness does not reach.
                share = min(1.0, max(0.05, self.settings.export_produce_share))
                await asyncio.sleep((time.monotonic() - step_started) * (1 - share) / share)
        if done == len(items):
            self._resume_after = ""
            self._complete_at = now
            async with self.db.transaction() as session:
                await meta.set_meta(session, repo.LAST_DAY, today.toordinal())
        if produced:
            metrics.EXPORT_PRODUCED.inc(produced)
        return produced

    async def _append(self, session, changed: list, now: datetime) -> None:
        """Give changed records their sequences and put them in the outbox."""
        first = await repo.allocate_sequences(session, len(changed))
        outbox, digests = [], []
        node = self.settings.node_id
        for i, ((unit, kind, key), (figures, period), h) in enumerate(changed):
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            seq = first + i
            rec = (
                records.day_record(node, seq, unit, key, figures)
                if kind == "day"
                else records.cohort_record(node, seq, unit, period, figures)
            )
            outbox.append(
                {
                    "sequence": seq,
                    "unit_code": unit,
                    "kind": kind,
                    "key": key,
                    "body": orjson.dumps(rec).decode(),
                    "state": PENDING,
                    "attempts": 0,
                    "created_at": now,
                }
            )
            digests.append({"unit_code": unit, "kind": kind, "key": key, "digest": h})
        await repo.insert_outbox(session, outbox)
        await repo.upsert_digests(session, digests)

    async def _compute(self, units: list[str], start: date, today: date, now: datetime, out: dict) -> None:
        """Figures of every day from `start` to today and of every calendar period touching them.

        Past days come from one grouped read of the day rows (pending and overdue at the end of day
        d by the read path's rule, aggregates.pending.Backlog); today and the cohort periods go
        through the read path itself, for its exact figures at now.
        """
        tz = self.settings.tz
        ps: list[periods.Period] = [periods.containing("day", today)]
        seen = set()
        d = start
        while d <= today:
            for kind in records.COHORT_KINDS:
                p = periods.containing(kind, d)
                if (kind, p.start) not in seen:
                    seen.add((kind, p.start))
                    ps.append(p)
            d += timedelta(days=1)
        for u0 in range(0, len(units), UNITS_PER_QUERY):
            chunk_units = tuple(units[u0 : u0 + UNITS_PER_QUERY])
            if start < today:
                async with self.db.session() as session:
                    days, totals, hist = await repo.read_day_sums(session, list(chunk_units), start)
                starts_stops = itemgetter(*TOTALS)
                changes: dict[str, list[tuple]] = defaultdict(list)
                for (u, day), row in days.items():
                    changes[u].append((day, *starts_stops(row)))
                for unit in chunk_units:
                    await asyncio.sleep(0)  # a unit's year of days at a time: requests on this loop go on
                    backlog = Backlog(changes[unit], totals.get(unit, (0, 0)))
                    for day, pending, overdue in backlog.ends(start, today - timedelta(days=1)):
                        row = days.get((unit, day))
                        figures = {c: (row[c] if row else 0) for c in records.DAY_FLOWS}
                        figures["pending"], figures["overdue"] = pending, overdue
                        # due soon at the midnight ending the day: counters.DUE of the next three days
                        due = [(days.get((unit, day + timedelta(days=k + 1))) or {}).get(c, 0) for k, c in enumerate(DUE)]
                        figures.update(zip(records.DUE_FIGURES, accumulate(due), strict=True))
                        figures["histogram"] = [[b, n] for b, n in sorted(hist.get((unit, day), {}).items())]
                        out[(unit, "day", day)] = (figures, None)
            for p0 in range(0, len(ps), SPANS_PER_QUERY):
                chunk = ps[p0 : p0 + SPANS_PER_QUERY]
                async with self.db.session() as session:
                    scope = Scope(codes=chunk_units, level="unit")
                    spans = [span_for(p, now, tz) for p in chunk]
                    parts = []
                    if p0 == 0:  # ps[0] is today's day record: every figure
                        parts.append((await read_sums(session, scope, spans[:1], "*"), 1))
                        spans = spans[1:]
                    if spans:  # calendar periods: their INDEX-766 cohort counts only
                        parts.append((await read_sums(session, scope, spans, "*", cohort_only=True), len(spans)))
                for unit in chunk_units:
                    group = [x for part, n in parts for x in (part.get(unit) or [Sums() for _ in range(n)])]
                    for p, s in zip(chunk, group, strict=True):
                        if p.kind == "day":
                            out[(unit, "day", p.start)] = (records.day_figures(s), None)
                        else:
                            out[(unit, p.kind, p.start)] = (records.cohort_figures(s), p.as_dict())

    async def _changed(self, computed: dict, since: date) -> list:
        """The computed records whose figures differ from those last produced (new zeros are not records)."""
        if not computed:
            return []
        async with self.db.session() as session:
            known = await repo.read_digests(session, sorted({k[0] for k in computed}), since)
        changed = []
        for i, key in enumerate(sorted(computed)):
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            figures, period = computed[key]
            h = records.digest(figures)
            old = known.get(key)
            if old == h or (old is None and records.is_zero(figures)):
                continue
            changed.append((key, (figures, period), h))
        return changed
