"""The central assessment network (SPEC section 6): what a node exports, and what a central node received."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.models.aggregates import DayFlows, counter_column
from app.db.types import UTCDateTime


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
    pending: Mapped[int] = counter_column()
    overdue: Mapped[int] = counter_column()
    due_24h: Mapped[int] = counter_column()
    due_48h: Mapped[int] = counter_column()
    due_72h: Mapped[int] = counter_column()
    histogram: Mapped[str] = mapped_column(Text, default="[]")  # [[bucket, n], ...]


class NetworkCohort(Base):
    """The newest INDEX-766 cohort record per (unit, source node, calendar month|quarter|year)."""

    __tablename__ = "network_cohort"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[date] = mapped_column(Date, primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    c_size: Mapped[int] = counter_column()
    c_ok: Mapped[int] = counter_column()
