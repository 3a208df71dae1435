"""All tables. Hot tables are keyed by `unit_code` first so they can be distributed by unit."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, LargeBinary, SmallInteger, String, Text, and_, or_, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import UTCDateTime

LOCAL_SOURCE = ""  # rows computed from this node's own events; others carry a subordinate's node_id
ALL_SECTORS = "*"  # the row that sums every sector of a unit and day
NO_SECTOR = ""  # dossiers that name no sector


class Unit(Base):
    __tablename__ = "unit"

    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str | None] = mapped_column(String(16))
    parent_code: Mapped[str | None] = mapped_column(String(8), index=True)


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    unit_code: Mapped[str | None] = mapped_column(String(8))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DossierEvent(Base):
    """The raw event log: the source of truth every aggregate can be rebuilt from."""

    __tablename__ = "dossier_event"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    dossier_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(16))
    procedure_code: Mapped[str | None] = mapped_column(String(32))
    sector: Mapped[str | None] = mapped_column(String(64))
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_dossier_event_unit_dossier", "unit_code", "dossier_id"),)


UNSETTLED_SQL = text("end_at IS NULL OR end_at > eff_due_at")  # open, or settled after the deadline
OPEN_SQL = text("end_at IS NULL AND eff_due_at IS NOT NULL")  # open, with a deadline: due soon and at risk
ORPHAN_SQL = text("recv_at IS NULL")  # no receipt (yet): its events are orphans
_COVER = ("recv_at", "end_at", "ok_766", "sector")  # what today's corrections read: index-only scans on PostgreSQL


class Dossier(Base):
    """A dossier's state: a merge of its events that does not depend on their order."""

    __tablename__ = "dossier"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    dossier_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recv_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recv_event_id: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(16))
    recv_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recv_sector: Mapped[str | None] = mapped_column(String(64))
    res_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    res_event_id: Mapped[str | None] = mapped_column(String(128))
    res_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    wd_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    wd_event_id: Mapped[str | None] = mapped_column(String(128))
    chg_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    chg_event_id: Mapped[str | None] = mapped_column(String(128))
    chg_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    supplements: Mapped[int] = mapped_column(Integer, default=0)
    oth_sector: Mapped[str | None] = mapped_column(String(64))
    oth_sector_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    oth_sector_event_id: Mapped[str | None] = mapped_column(String(128))
    event_days: Mapped[str] = mapped_column(Text, default="{}")
    # Derived, kept for the few reads that need exact times within today.
    sector: Mapped[str] = mapped_column(String(64), default=NO_SECTOR)
    eff_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ok_766: Mapped[bool] = mapped_column(Boolean, default=False)

    # By deadline, only dossiers open or settled after their deadline (the others are never late
    # nor still due): the exact corrections within today; per unit first, so a commune's or a
    # province's read touches its own dossiers due today, not the nation's.
    __table_args__ = (
        Index(
            "ix_dossier_due_unsettled",
            "eff_due_at",
            postgresql_include=["unit_code", *_COVER],
            postgresql_where=UNSETTLED_SQL,
            sqlite_where=UNSETTLED_SQL,
        ),
        Index(
            "ix_dossier_unit_due_unsettled",
            "unit_code",
            "eff_due_at",
            postgresql_include=list(_COVER),
            postgresql_where=UNSETTLED_SQL,
            sqlite_where=UNSETTLED_SQL,
        ),
        # Open dossiers only, in at-risk order: due-soon counts at now and the at-risk list never
        # read an ended dossier, so their cost follows the open dossiers, not the history.
        Index(
            "ix_dossier_open_due",
            "eff_due_at",
            "unit_code",
            "dossier_id",
            postgresql_include=["recv_at", "sector"],
            postgresql_where=OPEN_SQL,
            sqlite_where=OPEN_SQL,
        ),
        # A past instant within a day (SPEC section 4, "compared at the same point"): the dossiers of
        # a unit received, ended or due within part of one day (app.aggregates.at_tau); and those
        # without a receipt, whose events are orphans.
        Index("ix_dossier_unit_recv", "unit_code", "recv_at"),
        Index("ix_dossier_unit_end", "unit_code", "end_at"),
        Index("ix_dossier_unit_due", "unit_code", "eff_due_at"),
        Index("ix_dossier_orphan", "unit_code", postgresql_where=ORPHAN_SQL, sqlite_where=ORPHAN_SQL),
        Index(
            "ix_dossier_unit_open_due",
            "unit_code",
            "eff_due_at",
            "dossier_id",
            postgresql_include=["recv_at", "sector"],
            postgresql_where=OPEN_SQL,
            sqlite_where=OPEN_SQL,
        ),
    )


class DossierFuture(Base):
    """Dossiers with an event dated after its own arrival (within the clock-skew allowance): the
    few whose receipt or end may still lie ahead of a read's *now*, so that reads judged at now can
    correct for them without scanning the dossier table. Old rows are pruned by ingest."""

    __tablename__ = "dossier_future"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    dossier_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)


def _counter() -> Mapped[int]:
    return mapped_column(BigInteger, default=0, server_default="0")


class DayFlows:
    """The additive counters of a unit's day, shared by local rows and subordinates' records."""

    received: Mapped[int] = _counter()
    received_online: Mapped[int] = _counter()
    resolved_early: Mapped[int] = _counter()
    resolved_on_time: Mapped[int] = _counter()
    resolved_late: Mapped[int] = _counter()
    resolved_unclassified: Mapped[int] = _counter()
    withdrawn: Mapped[int] = _counter()
    orphans: Mapped[int] = _counter()
    proc_n: Mapped[int] = _counter()
    proc_ms: Mapped[int] = _counter()


class Totals:
    """Starts and stops of pending and overdue (app.aggregates.counters.TOTALS)."""

    p_in: Mapped[int] = _counter()
    p_out: Mapped[int] = _counter()
    o_in: Mapped[int] = _counter()
    o_out: Mapped[int] = _counter()


class DayCounters(DayFlows, Totals):
    """Every counter of a day row (app.aggregates.counters.DAY_COUNTERS)."""

    c_size: Mapped[int] = _counter()
    c_final_ok: Mapped[int] = _counter()
    # Due soon at a past midnight, by local day of the deadline (app.aggregates.counters.DUE).
    due_c0: Mapped[int] = _counter()
    due_c1: Mapped[int] = _counter()
    due_c2: Mapped[int] = _counter()


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

    # National and ranking reads take every unit's rows of a few recent days.
    __table_args__ = (Index("ix_unit_day_sector_day", "sector", "day"),)


class UnitDayHist(Base):
    """Processing-time histogram of dossiers resolved on a day, per unit and sector."""

    __tablename__ = "unit_day_hist"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True, default=LOCAL_SOURCE)
    n: Mapped[int] = _counter()

    __table_args__ = (Index("ix_unit_day_hist_sector_day", "sector", "day"),)


class UnitCohortDue(Base):
    """INDEX-766 cohort members not (yet) settled on time, by day of receipt and of deadline."""

    __tablename__ = "unit_cohort_due"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    recv_day: Mapped[date] = mapped_column(Date, primary_key=True)
    due_day: Mapped[date] = mapped_column(Date, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True, default=LOCAL_SOURCE)
    n: Mapped[int] = _counter()


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


class RollupDayHist(Base):
    """Processing-time histogram of RollupDay."""

    __tablename__ = "rollup_day_hist"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    n: Mapped[int] = _counter()


class RollupCohortDue(Base):
    """UnitCohortDue of a province or the nation with every unit below it."""

    __tablename__ = "rollup_cohort_due"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    sector: Mapped[str] = mapped_column(String(64), primary_key=True)
    recv_day: Mapped[date] = mapped_column(Date, primary_key=True)
    due_day: Mapped[date] = mapped_column(Date, primary_key=True)
    slot: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    n: Mapped[int] = _counter()


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
    n: Mapped[int] = _counter()

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


class NodeMeta(Base):
    """Small named values of this node, e.g. the data version behind ETags."""

    __tablename__ = "node_meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class SharedAnswer(Base):
    """A polled KPI answer as served (app.answers): made once, read by every worker and replica.
    On PostgreSQL the table is UNLOGGED: answers are recomputed from the figures at any time, so
    they need no WAL (a crash empties the table; the next polls fill it again)."""

    __tablename__ = "shared_answer"

    key: Mapped[str] = mapped_column(String(2048), primary_key=True)  # path + sorted query
    kind: Mapped[str] = mapped_column(String(16))
    params: Mapped[str] = mapped_column(Text)  # the request's parameters as JSON, to recompute it
    body: Mapped[bytes] = mapped_column(LargeBinary)
    etag: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(BigInteger)  # the data version read before computing; -1: none yet
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when its computation started
    computed_by: Mapped[str] = mapped_column(String(64))
    polled_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # last served (to within a few seconds)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a computation runs until then
    claimed_by: Mapped[str | None] = mapped_column(String(64))


# --- central assessment network (SPEC section 6) ------------------------------------------------


class ExportDirty(Base):
    """Units whose export records may have changed, from the earliest affected local day on."""

    __tablename__ = "export_dirty"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    gen: Mapped[int] = mapped_column(BigInteger, default=0)  # bumped by every mark, so a reset never loses one


class ExportState(Base):
    """The hash of the figures last put in the outbox, per record key."""

    __tablename__ = "export_state"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # day, month, quarter, year
    key: Mapped[date] = mapped_column(Date, primary_key=True)  # the day, or the period's first day
    digest: Mapped[str] = mapped_column(String(64))


class ExportOutbox(Base):
    """Produced records in sequence order: the pull feed and the push queue."""

    __tablename__ = "export_outbox"

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    unit_code: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(8))
    key: Mapped[date] = mapped_column(Date)
    body: Mapped[str] = mapped_column(Text)  # the record as JSON, exactly as sent and served
    state: Mapped[str] = mapped_column(String(8), default="pending")  # pending, sent, parked
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_export_outbox_state_sequence", "state", "sequence"),)


class ExportLease(Base):
    """Which process exports, on stores without advisory locks (SQLite)."""

    __tablename__ = "export_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NetworkSource(Base):
    """A subordinate node whose snapshots this node received."""

    __tablename__ = "network_source"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NetworkDay(DayFlows, Base):
    """The newest day record received per (unit, source node, day), as the subordinate sent it."""

    __tablename__ = "network_day"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    pending: Mapped[int] = _counter()
    overdue: Mapped[int] = _counter()
    due_24h: Mapped[int] = _counter()
    due_48h: Mapped[int] = _counter()
    due_72h: Mapped[int] = _counter()
    histogram: Mapped[str] = mapped_column(Text, default="[]")  # [[bucket, n], ...]


class NetworkCohort(Base):
    """The newest INDEX-766 cohort record per (unit, source node, calendar month|quarter|year)."""

    __tablename__ = "network_cohort"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[date] = mapped_column(Date, primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    c_size: Mapped[int] = _counter()
    c_ok: Mapped[int] = _counter()


UNSETTLED = or_(Dossier.end_at.is_(None), Dossier.end_at > Dossier.eff_due_at)  # the same, as an expression
OPEN = and_(Dossier.end_at.is_(None), Dossier.eff_due_at.is_not(None))  # OPEN_SQL as an expression
