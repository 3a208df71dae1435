"""The shared answers (app.answers)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import UTCDateTime


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
    # its change number: every store and restamp gives a new one (workers follow the rows above the last they saw)
    seq: Mapped[int] = mapped_column(BigInteger, index=True, server_default="0")
    # an answer of one unit's figures (app.answers.kinds.scope_of): that unit, the sum of the change
    # counts of it and the units under it, and the registry version, read before its figures
    scope: Mapped[str | None] = mapped_column(String(8))
    stamp: Mapped[int | None] = mapped_column(BigInteger)
    stamp_registry: Mapped[int | None] = mapped_column(BigInteger)
