"""The event log (the source of truth) and the dossiers merged from it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, and_, or_, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.models.event_log import INDEX_EVENT_HASH
from app.db.types import UTCDateTime

NO_SECTOR = ""  # dossiers that name no sector


class DossierEvent(Base):
    """The raw event log: the source of truth every aggregate can be rebuilt from. On PostgreSQL its
    key is not a constraint (migration e2a4c6e8f0b2); duplicates of the events it holds are found by
    (unit_code, event_id) in every month, under the unit's lock (app.db.models.event_log), those of
    archived months in `event_key`. Its indexes on PostgreSQL: (unit_code, dossier_id) and the hash of
    (unit_code, event_id) (SQL_EVENT_HASH). SQLite keeps the key as its conflict target, and finds
    an event by it."""

    __tablename__ = "dossier_event"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    dossier_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)  # the partition key (app.db.models.event_log)
    channel: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(16))
    procedure_code: Mapped[str | None] = mapped_column(String(32))
    sector: Mapped[str | None] = mapped_column(String(64))
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_dossier_event_unit_dossier", "unit_code", "dossier_id"),
        # duplicates (migration a7c9e1b3d5f7): PostgreSQL only, SQLite finds an event by the key
        Index("ix_dossier_event_event_hash", text(INDEX_EVENT_HASH)).ddl_if(dialect="postgresql"),
    )


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
        # the nation, or of a unit, received, ended or due within part of one day (time first: the
        # nation's read needs no list of units; a unit's filters within the range) (app.aggregates.at_tau); and those
        # without a receipt, whose events are orphans. Their keys are times that mostly arrive at the end of the
        # range (a receipt, an end, a deadline weeks ahead), and the past ones stay as they are: leaf pages filled
        # whole (fillfactor 100, migration a3c5e7f9b1d4; PostgreSQL's default leaves 10 % free in each).
        Index("ix_dossier_recv_unit", "recv_at", "unit_code", postgresql_with={"fillfactor": 100}),
        Index("ix_dossier_end_unit", "end_at", "unit_code", postgresql_with={"fillfactor": 100}),
        Index("ix_dossier_due_unit", "eff_due_at", "unit_code", postgresql_with={"fillfactor": 100}),
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


UNSETTLED = or_(Dossier.end_at.is_(None), Dossier.end_at > Dossier.eff_due_at)  # the same, as an expression
OPEN = and_(Dossier.end_at.is_(None), Dossier.eff_due_at.is_not(None))  # OPEN_SQL as an expression
