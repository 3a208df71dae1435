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
# A day row holds its bucket counts as one text (hist_encode): "first bucket,its count,the next
# bucket's count,...", zero counts trimmed at both ends (hist_pack), "" when every count is zero,
# the same on both stores. Until migration e4a6c8f0b2d5 it was the list itself, an int4[] on
# PostgreSQL (a 24-byte array header on a row that most often holds one or two small counts) and
# JSON text on SQLite: HistCounts, which the migrations before it name. The SQL spelling of
# hist_encode and hist_add is app.aggregates.histogram.SQL_HIST_PACK / SQL_HIST_ADD (the PostgreSQL
# pass); SQLite calls hist_add as chiso_hist_add (app.db.engine registers it).


def hist_pack(counts: dict[int, int]) -> list[int]:
    """Bucket counts ({bucket: n}) as a list: the first bucket, then the counts from it on."""
    nonzero = [b for b, n in counts.items() if n]
    if not nonzero:
        return []
    lo, hi = min(nonzero), max(nonzero)
    return [lo, *(counts.get(b, 0) for b in range(lo, hi + 1))]


def hist_unpack(packed: list[int] | None) -> dict[int, int]:
    """{bucket: n} of a packed list, zero counts left out."""
    if not packed:
        return {}
    lo = packed[0]
    return {lo + i: n for i, n in enumerate(packed[1:]) if n}


def hist_encode(counts: dict[int, int]) -> str:
    """Bucket counts ({bucket: n}) in their stored form."""
    return ",".join(map(str, hist_pack(counts)))


def hist_decode(stored: str | None) -> dict[int, int]:
    """{bucket: n} of a stored histogram, zero counts left out."""
    return hist_unpack([int(x) for x in stored.split(",")] if stored else None)


def hist_add(a: str | None, b: str | None) -> str | None:
    """The sum of two stored histograms, stored; `a` as it is when there is nothing to add (None:
    a day row without a histogram keeps none)."""
    if b is None:
        return a
    out = hist_decode(a)
    for bucket, n in hist_decode(b).items():
        out[bucket] = out.get(bucket, 0) + n
    return hist_encode(out)


class HistCounts(TypeDecorator):
    """A packed list (hist_pack): int4[] on PostgreSQL, JSON text on SQLite; the day rows' `hist`
    until migration e4a6c8f0b2d5 (the migrations before it name this type)."""

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
