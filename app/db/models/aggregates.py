"""The aggregate rows kept by the write pass: own figures per unit (`unit_*`), figures with every
unit below (`rollup_*`), and the change and silent-source bookkeeping. Hot tables are keyed by
`unit_code` first so they can be distributed by unit."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import UTCDateTime

LOCAL_SOURCE = ""  # rows computed from this node's own events; others carry a subordinate's node_id
ALL_SECTORS = "*"  # the row that sums every sector of a unit and day


def counter_column() -> Mapped[int]:
    """An all-time sum, or a sum of durations: 64 bits."""
    return mapped_column(BigInteger, default=0, server_default="0")


def count_column() -> Mapped[int]:
    """Dossiers (or their events) of one unit and one day or hour: 32 bits. A province's or the
    nation's day counts what it received, resolved or held open that day, at most a few hundred
    thousand (a national year is ~85M events): 2^31 is thousands of times that, and PostgreSQL
    refuses an overflow rather than wrapping. Reads sum them as bigint (SUM of an integer)."""
    return mapped_column(Integer, default=0, server_default="0")


class DayFlows:
    """The additive counters of a unit's day, shared by local rows and subordinates' records."""

    received: Mapped[int] = counter_column()
    received_online: Mapped[int] = counter_column()
    resolved_early: Mapped[int] = counter_column()
    resolved_on_time: Mapped[int] = counter_column()
    resolved_late: Mapped[int] = counter_column()
    resolved_unclassified: Mapped[int] = counter_column()
    withdrawn: Mapped[int] = counter_column()
    orphans: Mapped[int] = counter_column()
    proc_n: Mapped[int] = counter_column()
    proc_ms: Mapped[int] = counter_column()


class Totals:
    """Starts and stops of pending and overdue (app.aggregates.counters.TOTALS)."""

    p_in: Mapped[int] = counter_column()
    p_out: Mapped[int] = counter_column()
    o_in: Mapped[int] = counter_column()
    o_out: Mapped[int] = counter_column()


def day_count_column(bits: type = Integer) -> Mapped[int | None]:
    """A counter of a day row (unit_day, rollup_day): NULL where it is zero. Most of a day row's
    counters are zero (a sector's day of a commune holds a dossier or two: 13.7 of its 19 counters
    were zero at a year of the nation), and PostgreSQL stores a NULL as one bit of the row's null
    bitmap instead of 4 bytes (migration d2f4a6c8e0b3). Writers store nullif(value, 0); readers
    take NULL as 0 (SUM skips it, `int(v or 0)`, coalesce where it is subtracted). A zero stored by
    an earlier version reads the same."""
    return mapped_column(bits, nullable=True, default=None)


class DayCounters(DayFlows, Totals):
    """Every counter of a day row (app.aggregates.counters.DAY_COUNTERS): counts of one day in 32
    bits (count_column), the summed processing time in 64; zero stored as NULL (day_count_column)."""

    received: Mapped[int | None] = day_count_column()
    received_online: Mapped[int | None] = day_count_column()
    resolved_early: Mapped[int | None] = day_count_column()
    resolved_on_time: Mapped[int | None] = day_count_column()
    resolved_late: Mapped[int | None] = day_count_column()
    resolved_unclassified: Mapped[int | None] = day_count_column()
    withdrawn: Mapped[int | None] = day_count_column()
    orphans: Mapped[int | None] = day_count_column()
    proc_n: Mapped[int | None] = day_count_column()
    proc_ms: Mapped[int | None] = day_count_column(BigInteger)
    p_in: Mapped[int | None] = day_count_column()
    p_out: Mapped[int | None] = day_count_column()
    o_in: Mapped[int | None] = day_count_column()
    o_out: Mapped[int | None] = day_count_column()
    c_size: Mapped[int | None] = day_count_column()
    c_final_ok: Mapped[int | None] = day_count_column()
    # Due soon at a past midnight, by local day of the deadline (app.aggregates.counters.DUE).
    due_c0: Mapped[int | None] = day_count_column()
    due_c1: Mapped[int | None] = day_count_column()
    due_c2: Mapped[int | None] = day_count_column()


def hist_column() -> Mapped[str | None]:
    """The processing-time histogram of the dossiers resolved on the row's day, packed as text
    (app.db.types.hist_encode, migration e4a6c8f0b2d5), in the day row itself (migration f3a5c7e9b1d4:
    a row of its own cost a tuple header, its key again and a primary-key index for each): null on
    a day nothing resolved."""
    return mapped_column(Text, nullable=True, default=None)


class UnitDay(DayCounters, Base):
    """Own figures of one unit (not those below it) per sector and local day.

    `source` is LOCAL_SOURCE for figures of this node's events, or the node_id of a subordinate
    whose snapshots a central node merged; reads sum every source.
    """

    __tablename__ = "unit_day"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True, default=LOCAL_SOURCE)
    hist: Mapped[str | None] = hist_column()

    # National and ranking reads take every unit's rows of a few recent days.
    __table_args__ = (Index("ix_unit_day_sector_day", "sector", "day"),)


class UnitCohortDue(Base):
    """INDEX-766 cohort members not (yet) settled on time, by day of receipt and of deadline."""

    __tablename__ = "unit_cohort_due"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    recv_day: Mapped[date] = mapped_column(Date, primary_key=True)
    due_day: Mapped[date] = mapped_column(Date, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True, default=LOCAL_SOURCE)
    n: Mapped[int] = count_column()


class UnitTotal(Totals, Base):
    """All-time sums of the pending and overdue starts and stops, so a point in time costs few rows."""

    __tablename__ = "unit_total"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True, default=LOCAL_SOURCE)


class RollupDay(DayCounters, Base):
    """Figures of a province or the nation with every unit below it (all sources), per sector and
    local day: what a province's or the nation's answer reads instead of summing its communes.

    Kept in the ingest transaction (and by the receiver on a central node) as deltas. `slot`
    spreads each unit's hot rows (today's) over a few rows, so concurrent batches seldom wait
    for each other; reads sum the slots."""

    __tablename__ = "rollup_day"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    hist: Mapped[str | None] = hist_column()


class RollupCohortDue(Base):
    """UnitCohortDue of a province or the nation with every unit below it."""

    __tablename__ = "rollup_cohort_due"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    recv_day: Mapped[date] = mapped_column(Date, primary_key=True)
    due_day: Mapped[date] = mapped_column(Date, primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    n: Mapped[int] = count_column()


class RollupTotal(Totals, Base):
    """UnitTotal of a province or the nation with every unit below it."""

    __tablename__ = "rollup_total"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)


class RollupOpenDue(Base):
    """Open dossiers (received, not ended) with a deadline, by UTC hour of the deadline, of a
    province or the nation with every unit below it (local dossiers): due-soon counts at now and
    the at-risk totals of a province or the nation sum whole hours here and count only the two
    partial hours at the window's ends from the dossier index. Slots as in RollupDay; only rows
    with n <> 0 are in the index the reads take, so closed hours cost nothing."""

    __tablename__ = "rollup_open_due"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    n: Mapped[int] = count_column()

    __table_args__ = (
        Index(
            "ix_rollup_open_due_live",
            "unit_code",
            "sector",
            "hour",
            postgresql_include=["n"],
            postgresql_where=text("n <> 0"),
            sqlite_where=text("n <> 0"),
        ),
    )


class UnitChange(Base):
    """How many times each unit's own aggregate rows changed, and when last: a ranking recomputes
    only the units whose count moved since it last read them."""

    __tablename__ = "unit_change"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    changes: Mapped[int] = mapped_column(BigInteger, default=0)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UnitSource(Base):
    """Silent-source bookkeeping (SPEC section 4 "Silent"): per unit, when the last event accepted
    for it was accepted, the local day of that acceptance and the first day of the 14 local days up
    to it. Written by ingest (app/aggregates/silent.py), never by anything else."""

    __tablename__ = "unit_source"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_day: Mapped[date] = mapped_column(Date)
    window_from: Mapped[date] = mapped_column(Date)  # last_day - 13 days

    __table_args__ = (Index("ix_unit_source_last_at", "last_at"),)


class UnitEventDay(Base):
    """The local days (of `occurred_at`) on which a unit's stored events are dated: one row per
    unit and day, for the 3-of-14-days test of a silent source."""

    __tablename__ = "unit_event_day"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
