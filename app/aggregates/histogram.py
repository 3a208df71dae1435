"""A mergeable log-bucketed histogram of processing times, published with the export feed.

Bucket 0 holds everything under one minute; bucket i >= 1 holds [60 s * 1.1^(i-1), 60 s * 1.1^i).
Reading a bucket as its geometric middle is off by at most sqrt(1.1) - 1 = 4.9 %.
"""

from __future__ import annotations

import math

BASE_MS = 60_000
RATIO = 1.1
_LOG_RATIO = math.log(RATIO)


def bucket_of(ms: int) -> int:
    """The bucket of a duration in milliseconds."""
    if ms < BASE_MS:
        return 0
    i = int(math.log(ms / BASE_MS) / _LOG_RATIO) + 1
    # Guard float rounding at the exact bounds.
    while ms < lower_ms(i):
        i -= 1
    while ms >= lower_ms(i + 1):
        i += 1
    return i


# The SQL spelling of bucket_of (the PostgreSQL pass, app.aggregates.pgpass names it): the same float
# arithmetic, C's log and pow on both sides, the same guards at the bounds.
SQL_BUCKET = f"""
CREATE OR REPLACE FUNCTION @BUCKET@(ms bigint) RETURNS int LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE i int;
BEGIN
  IF ms < {BASE_MS} THEN RETURN 0; END IF;
  i := trunc(ln(ms::float8 / {BASE_MS}) / ln({RATIO!r}::float8))::int + 1;
  WHILE i > 0 AND ms < (CASE WHEN i <= 0 THEN 0.0 ELSE {BASE_MS} * power({RATIO!r}::float8, i - 1) END) LOOP i := i - 1; END LOOP;
  WHILE ms >= {BASE_MS} * power({RATIO!r}::float8, i) LOOP i := i + 1; END LOOP;
  RETURN i;
END $$
"""


def lower_ms(i: int) -> float:
    """Lower bound of bucket i (0 for bucket 0)."""
    return 0.0 if i <= 0 else BASE_MS * RATIO ** (i - 1)


def estimate_ms(i: int) -> float:
    """The value a bucket stands for: its geometric middle (half a minute for bucket 0)."""
    if i <= 0:
        return BASE_MS / 2
    return BASE_MS * RATIO ** (i - 1) * math.sqrt(RATIO)


def percentile_ms(counts: dict[int, int], p: float) -> float | None:
    """Nearest-rank percentile p (0-1] from bucket counts; None when empty."""
    return percentiles_ms(counts, (p,))[0]


def percentiles_ms(counts: dict[int, int], ps: tuple[float, ...]) -> list[float | None]:
    """Nearest-rank percentiles (ascending p, each in (0, 1]) from bucket counts, in one pass."""
    n = sum(counts.values())
    if n <= 0:
        return [None] * len(ps)
    ranks = [max(1, math.ceil(p * n)) for p in ps]
    out: list[float | None] = []
    seen = 0
    for i in sorted(counts):
        seen += counts[i]
        while len(out) < len(ranks) and seen >= ranks[len(out)]:
            out.append(estimate_ms(i))
    return out + [estimate_ms(max(counts))] * (len(ranks) - len(out))


def bounds_seconds(up_to: int = 160) -> list[float]:
    """The published upper bounds of buckets 0..up_to-1, in seconds."""
    return [round(lower_ms(i + 1) / 1000, 6) for i in range(up_to)]
