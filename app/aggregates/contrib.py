"""What one dossier adds to the aggregates. Aggregates are sums of these, so they depend only on
the set of events: ingest applies (new contribution - old contribution) for each touched dossier.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from app.aggregates.counters import DUE
from app.aggregates.dossier import DossierState
from app.aggregates.histogram import bucket_of
from app.db.models import ALL_SECTORS

_DUE_SET = frozenset(DUE)
_BEFORE = tuple(timedelta(days=k) for k in range(len(DUE)))


@dataclass
class Delta:
    """Signed changes to the aggregate tables, keyed as their primary keys are."""

    day: dict[tuple, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    hist: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))
    cohort_due: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))
    total: dict[tuple, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    # open dossiers with a deadline by UTC hour of the deadline (rollup rows only: RollupOpenDue)
    open_due: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, state: DossierState, tz: tzinfo, sign: int) -> None:
        """Add (sign=1) or take away (sign=-1) what `state` contributes."""
        unit = state.unit_code
        sectors = (ALL_SECTORS, state.sector() or "")
        days: dict[datetime, date] = {}

        def local(dt: datetime) -> date:
            d = days.get(dt)
            if d is None:
                d = days[dt] = dt.astimezone(tz).date()
            return d

        bumps: list[tuple[date, str, int]] = []  # (day, counter, amount)
        totals: list[str] = []
        recv = state.recv_at
        due = state.effective_due()
        term = state.terminal()
        end = term[1] if term else None

        if recv is not None:
            rday = local(recv)
            bumps += [(rday, "received", 1), (rday, "p_in", 1), (rday, "c_size", 1)]
            totals.append("p_in")
            if state.channel == "online":
                bumps.append((rday, "received_online", 1))
            if state.ok_766():
                if end is not None and end <= due:
                    bumps.append((rday, "c_final_ok", 1))
                else:
                    for s in sectors:
                        self.cohort_due[(unit, s, rday, local(due))] += sign
            if end is not None:
                bumps.append((local(max(recv, end)), "p_out", 1))
                totals.append("p_out")
            if due is not None:
                if end is None:
                    hour = (due if due.tzinfo is UTC else due.astimezone(UTC)).replace(minute=0, second=0, microsecond=0)
                    for s in sectors:
                        self.open_due[(unit, s, hour)] += sign
                # Due soon at the midnights starting the deadline's day D and the two days before:
                # pending at the midnight starting day X <=> received on a local day before X and
                # not ended on a local day before X.
                dday = local(due)
                eday = None if end is None else local(end)
                for k, name in enumerate(DUE):
                    x = dday - _BEFORE[k]
                    if rday < x and (eday is None or eday >= x):
                        bumps.append((dday, name, 1))
                start = max(recv, due)
                bumps.append((local(start), "o_in", 1))
                totals.append("o_in")
                if end is not None:
                    bumps.append((local(max(start, end)), "o_out", 1))
                    totals.append("o_out")
        else:
            for day_s, n in state.event_days.items():
                bumps.append((date.fromisoformat(day_s), "orphans", n))
            ignored = state.ignored_terminal_at()
            if ignored is not None:
                bumps.append((local(ignored), "orphans", -1))

        if term is not None:
            kind, at = term
            eday = local(at)
            if kind == "withdrawn":
                bumps.append((eday, "withdrawn", 1))
            else:
                if due is None:
                    bumps.append((eday, "resolved_unclassified", 1))
                elif at > due:
                    bumps.append((eday, "resolved_late", 1))
                elif eday < local(due):
                    bumps.append((eday, "resolved_early", 1))
                else:
                    bumps.append((eday, "resolved_on_time", 1))
                if recv is not None:
                    ms = int((at - recv).total_seconds() * 1000)
                    bumps += [(eday, "proc_n", 1), (eday, "proc_ms", ms)]
                    bucket = bucket_of(ms)
                    for s in sectors:
                        self.hist[(unit, s, eday, bucket)] += sign

        for s in sectors:
            for day, name, n in bumps:
                self.day[(unit, s, day)][name] += sign * n
            if totals:
                row = self.total[(unit, s)]
                for name in totals:
                    row[name] += sign

    def nonzero(self) -> Delta:
        """The same changes without the keys that cancel out."""
        out = Delta()
        for k, cols in self.day.items():
            cols = {c: v for c, v in cols.items() if v}
            if cols:
                out.day[k] = cols
        out.hist = {k: v for k, v in self.hist.items() if v}
        out.cohort_due = {k: v for k, v in self.cohort_due.items() if v}
        out.open_due = {k: v for k, v in self.open_due.items() if v}
        for k, cols in self.total.items():
            cols = {c: v for c, v in cols.items() if v}
            if cols:
                out.total[k] = cols
        return out

    def units(self) -> list[str]:
        """The units whose rows this change touches."""
        keys = [k[0] for k in self.day] + [k[0] for k in self.hist] + [k[0] for k in self.cohort_due] + [k[0] for k in self.total]
        return sorted(set(keys))

    def dirty_days(self) -> dict[str, date]:
        """Per unit, the earliest local day whose export records this change can alter.

        End-of-day pending and overdue telescope, so a change on day d alters every day from d on;
        cohort records are keyed by the receipt day, which the cohort rows carry; the due-soon
        counters of deadline day D are the end-of-day figures of days D - 3 to D - 1.
        """
        out: dict[str, date] = {}
        keys = [(u, d - timedelta(days=3) if cols.keys() <= _DUE_SET else d) for (u, _s, d), cols in self.day.items()]
        keys += [(u, d) for u, _s, d, _b in self.hist]
        keys += [(u, r) for u, _s, r, _d in self.cohort_due]
        for unit, day in keys:
            if unit not in out or day < out[unit]:
                out[unit] = day
        return out
