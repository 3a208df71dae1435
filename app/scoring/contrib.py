"""What one dossier adds to the aggregates. Aggregates are sums of these, so they depend only on
the set of events: ingest applies (new contribution - old contribution) for each touched dossier.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo

from app.db.models import ALL_SECTORS
from app.ingest.dossier import DossierState
from app.scoring.histogram import bucket_of


@dataclass
class Delta:
    """Signed changes to the aggregate tables, keyed as their primary keys are."""

    day: dict[tuple, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    hist: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))
    cohort_due: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))
    total: dict[tuple, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def add(self, state: DossierState, tz: tzinfo, sign: int) -> None:
        """Add (sign=1) or take away (sign=-1) what `state` contributes."""
        unit = state.unit_code
        sectors = (ALL_SECTORS, state.sector() or "")

        def local(dt: datetime) -> date:
            return dt.astimezone(tz).date()

        def bump(day: date, name: str, n: int = 1) -> None:
            for s in sectors:
                self.day[(unit, s, day)][name] += sign * n

        def bump_total(name: str) -> None:
            for s in sectors:
                self.total[(unit, s)][name] += sign

        recv = state.recv_at
        due = state.effective_due()
        term = state.terminal()
        end = term[1] if term else None

        if recv is not None:
            rday = local(recv)
            bump(rday, "received")
            if state.channel == "online":
                bump(rday, "received_online")
            bump(rday, "p_in")
            bump_total("p_in")
            bump(rday, "c_size")
            if state.ok_766():
                if end is not None and end <= due:
                    bump(rday, "c_final_ok")
                else:
                    for s in sectors:
                        self.cohort_due[(unit, s, rday, local(due))] += sign
            if end is not None:
                bump(local(max(recv, end)), "p_out")
                bump_total("p_out")
            if due is not None:
                start = max(recv, due)
                bump(local(start), "o_in")
                bump_total("o_in")
                if end is not None:
                    bump(local(max(start, end)), "o_out")
                    bump_total("o_out")
        else:
            for day_s, n in state.event_days.items():
                bump(date.fromisoformat(day_s), "orphans", n)
            ignored = state.ignored_terminal_at()
            if ignored is not None:
                bump(local(ignored), "orphans", -1)

        if term is not None:
            kind, at = term
            eday = local(at)
            if kind == "withdrawn":
                bump(eday, "withdrawn")
            else:
                if due is None:
                    bump(eday, "resolved_unclassified")
                elif at > due:
                    bump(eday, "resolved_late")
                elif eday < local(due):
                    bump(eday, "resolved_early")
                else:
                    bump(eday, "resolved_on_time")
                if recv is not None:
                    ms = int((at - recv).total_seconds() * 1000)
                    bump(eday, "proc_n")
                    bump(eday, "proc_ms", ms)
                    for s in sectors:
                        self.hist[(unit, s, eday, bucket_of(ms))] += sign

    def nonzero(self) -> Delta:
        """The same changes without the keys that cancel out."""
        out = Delta()
        for k, cols in self.day.items():
            cols = {c: v for c, v in cols.items() if v}
            if cols:
                out.day[k] = cols
        out.hist = {k: v for k, v in self.hist.items() if v}
        out.cohort_due = {k: v for k, v in self.cohort_due.items() if v}
        for k, cols in self.total.items():
            cols = {c: v for c, v in cols.items() if v}
            if cols:
                out.total[k] = cols
        return out
