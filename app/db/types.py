"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, Text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Aware datetimes stored in UTC; SQLite keeps naive UTC text, so it compares like PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# --- packed histograms ---------------------------------------------------------------------------
# A histogram row holds its bucket counts as one list: [first bucket, its count, the next bucket's
# count, ...], zero counts trimmed at both ends, [] when every count is zero. The SQL spelling of
# hist_pack and hist_add is app.aggregates.histogram.SQL_HIST_FUNCTIONS (the PostgreSQL pass);
# SQLite calls hist_add as chiso_hist_add (app.db.engine registers it).


def hist_pack(counts: dict[int, int]) -> list[int]:
    """Bucket counts ({bucket: n}) in their stored form."""
    nonzero = [b for b, n in counts.items() if n]
    if not nonzero:
        return []
    lo, hi = min(nonzero), max(nonzero)
    return [lo, *(counts.get(b, 0) for b in range(lo, hi + 1))]


def hist_unpack(packed: list[int] | None) -> dict[int, int]:
    """{bucket: n} of a stored histogram, zero counts left out."""
    if not packed:
        return {}
    lo = packed[0]
    return {lo + i: n for i, n in enumerate(packed[1:]) if n}


def hist_add(a: list[int] | None, b: list[int] | None) -> list[int] | None:
    """The sum of two stored histograms, stored; `a` as it is when there is nothing to add (None:
    a day row without a histogram keeps none)."""
    if b is None:
        return a
    out = hist_unpack(a)
    for bucket, n in hist_unpack(b).items():
        out[bucket] = out.get(bucket, 0) + n
    return hist_pack(out)


def sqlite_hist_add(a: str | None, b: str | None) -> str | None:
    """hist_add on SQLite's JSON text."""
    if b is None:
        return a
    return json.dumps(hist_add(json.loads(a) if a else [], json.loads(b) if b else []), separators=(",", ":"))


class HistCounts(TypeDecorator):
    """A packed histogram (hist_pack): int4[] on PostgreSQL, JSON text on SQLite."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(Integer))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name == "postgresql":
            return value
        return json.dumps(list(value), separators=(",", ":"))

    def process_result_value(self, value, dialect):
        if value is None or dialect.name == "postgresql":
            return value
        return json.loads(value)
