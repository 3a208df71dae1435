"""What every read of the scoring service needs, as one: the database, the unit registry, the time
zone, the silent hours and the clock. Made once per request (app.api.deps), per refresher tick, per
scrape of the KPI gauges, and passed as the first argument of every read (service, ranking,
drivers, report, gauges) instead of each of them threaded through every call.

The clock gives the scoring instant. A computation reads it once, at its start, and every instant
it stands at (`as_of`, the figures at now, the same point of the previous period) comes from that
reading. Without a clock of its own a reader reads the scoring clock, `service._now`, looked up at
each reading: the shared answers stamp with that same clock (app.answers.service), so the tests that
stop it there stop every reader's and the stamps alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

from app.aggregates.silent import DEFAULT_AFTER_HOURS
from app.db.engine import Database
from app.settings import Settings
from app.units.service import Registry


@dataclass(frozen=True, slots=True)
class Reader:
    """The read context of the scoring service (see the module's docstring)."""

    db: Database
    registry: Registry
    tz: tzinfo
    silent_after_hours: float = DEFAULT_AFTER_HOURS
    clock: Callable[[], datetime] | None = None  # None: the scoring clock, service._now

    @classmethod
    def of(cls, db: Database, registry: Registry, settings: Settings) -> Reader:
        """The reader of a deployment's settings (its time zone and SILENT_AFTER_HOURS)."""
        return cls(db, registry, settings.tz, settings.silent_after_hours)

    def now(self) -> datetime:
        """The scoring instant, read from this reader's clock (once per computation)."""
        if self.clock is not None:
            return self.clock()
        from app.scoring import service  # it imports this module; looked up at each reading, as tests replace it

        return service._now()

    def at(self, instant: datetime) -> Reader:
        """This reader with its clock stopped at `instant`: several reads that stand at one instant
        (the pages of a download)."""
        return replace(self, clock=lambda: instant)
