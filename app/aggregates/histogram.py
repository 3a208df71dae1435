"""A mergeable log-bucketed histogram of processing times, published with the export feed.

Bucket 0 holds everything under one minute; bucket i >= 1 holds [60 s * 1.1^(i-1), 60 s * 1.1^i).
Reading a bucket as its geometric middle is off by at most sqrt(1.1) - 1 = 4.9 %.
"""

from __future__ import annotations

import math

import orjson
from sqlalchemy import BigInteger, func, literal_column, select, true
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.types import NullType

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


# The SQL spelling of app.db.types.hist_encode and hist_add (the stored form of a day's bucket counts:
# the text "first bucket,its count,the next bucket's,...", zeros trimmed at both ends, '' when all
# zero). @HIST_PACK@(buckets, counts) packs pairs (a bucket may repeat: counts add up); @HIST_ADD@
# adds two packed histograms. Both add into a dense bigint[] over the buckets' range, then trim it:
# loops over small arrays, a few microseconds a row. A count beyond 32 bits is refused (the cast).
_SQL_TRIMMED = """
  i := 1; j := coalesce(cardinality(acc), 0);
  WHILE i <= j AND acc[i] = 0 LOOP i := i + 1; END LOOP;
  WHILE j >= i AND acc[j] = 0 LOOP j := j - 1; END LOOP;
  IF i > j THEN RETURN ''; END IF;
  RETURN array_to_string(array_prepend(lo + i - 1, acc[i:j]::int[]), ',');
END $$
"""
SQL_HIST_PACK = (
    """
CREATE OR REPLACE FUNCTION @HIST_PACK@(p_buckets int[], p_counts bigint[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE lo int; hi int; acc bigint[]; i int; j int; k int;
BEGIN
  FOR k IN 1 .. coalesce(cardinality(p_buckets), 0) LOOP
    lo := least(lo, p_buckets[k]); hi := greatest(hi, p_buckets[k]);
  END LOOP;
  IF lo IS NULL THEN RETURN ''; END IF;
  acc := array_fill(0::bigint, ARRAY[hi - lo + 1]);
  FOR k IN 1 .. cardinality(p_buckets) LOOP
    acc[p_buckets[k] - lo + 1] := acc[p_buckets[k] - lo + 1] + p_counts[k];
  END LOOP;"""
    + _SQL_TRIMMED
)
SQL_HIST_ADD = (
    """
CREATE OR REPLACE FUNCTION @HIST_ADD@(p_a text, p_b text) RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE lo int; hi int; acc bigint[]; i int; j int; k int;
  a int[] := string_to_array(p_a, ',')::int[]; b int[] := string_to_array(p_b, ',')::int[];
  na int := coalesce(cardinality(a), 0); nb int := coalesce(cardinality(b), 0);
BEGIN
  IF p_b IS NULL THEN RETURN p_a; END IF;  -- nothing to add: the stored value as it is (a day row without one)
  IF na > 1 THEN lo := a[1]; hi := a[1] + na - 2; END IF;
  IF nb > 1 THEN lo := least(lo, b[1]); hi := greatest(hi, b[1] + nb - 2); END IF;
  IF lo IS NULL THEN RETURN ''; END IF;
  acc := array_fill(0::bigint, ARRAY[hi - lo + 1]);
  FOR k IN 2 .. na LOOP acc[a[1] + k - 1 - lo] := acc[a[1] + k - 1 - lo] + a[k]; END LOOP;
  FOR k IN 2 .. nb LOOP acc[b[1] + k - 1 - lo] := acc[b[1] + k - 1 - lo] + b[k]; END LOOP;"""
    + _SQL_TRIMMED
)

# A stored histogram read as rows (bucket_columns, bucket_rows_sql): on PostgreSQL its counts (the
# items from the second on) as an int[] and its lowest bucket (the first item, cut from the text);
# on SQLite the text as a JSON list.
_PG_COUNTS = "(string_to_array({t}.hist, ','))[2:]::int[]"
_PG_FIRST = "split_part({t}.hist, ',', 1)::int"
_SQLITE_LIST = "'[' || {t}.hist || ']'"


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


# --- reading packed histograms as (bucket, n) rows -----------------------------------------------


def bucket_columns(table, postgres: bool) -> tuple:
    """(bucket, n, where, unpack) over the packed counts of a day table's histograms (UnitDay,
    RollupDay): a statement selecting them joins `unpack` to the table (with_buckets), one row
    per bucket of each row (zeros inside a row's range too: sums are unchanged)."""
    name = table.__tablename__
    if postgres:
        b = func.unnest(literal_column(_PG_COUNTS.format(t=name))).table_valued("n", with_ordinality="k").render_derived(f"{name}_b")
        return (literal_column(_PG_FIRST.format(t=name)) + b.c.k - 1).label("bucket"), b.c.n, [], b
    packed = literal_column(_SQLITE_LIST.format(t=name))
    b = func.json_each(packed).table_valued("key", "value").alias(f"{name}_b")
    return (func.json_extract(packed, "$[0]") + b.c.key - 1).label("bucket"), b.c.value, [b.c.key > 0], b


def with_buckets(stmt, table, unpack):
    """`stmt` with the unpacking function of bucket_columns joined to `table` (which it reads)."""
    return stmt.join_from(table, unpack, true())


def per_key(stmt, keys: int, postgres: bool):
    """`stmt`'s rows (its first `keys` columns a key, then a bucket and its counts) as one row per
    key: the key, then the list of its rows' other columns ([bucket, n, ...] each). A read of many
    buckets decodes a row per key (a unit, a day), not one per bucket: PostgreSQL returns a
    two-dimensional array, SQLite a JSON text (per_key_rows reads both)."""
    inner = stmt.subquery()
    cols = list(inner.c)
    rest = cols[keys:]
    if postgres:
        packed = func.array_agg(array([c.cast(BigInteger) for c in rest]), type_=NullType())  # asyncpg's lists as they are
    else:
        packed = func.json_group_array(func.json_array(*rest))
    return select(*cols[:keys], packed.label("rows")).group_by(*cols[:keys])


def per_key_rows(rows) -> list[tuple]:
    """The rows of a per_key statement with their lists decoded: (key..., [[bucket, n, ...], ...])."""
    return [(*r[:-1], r[-1] if isinstance(r[-1], list) else orjson.loads(r[-1])) for r in rows]


def bucket_rows_sql(name: str, keys: tuple[str, ...], postgres: bool) -> str:
    """SELECT keys..., bucket, n over the rows of histogram table `name` (text SQL)."""
    cols = ", ".join(f"t.{k}" for k in keys)
    if postgres:
        return (
            f"SELECT {cols}, {_PG_FIRST.format(t='t')} + b.k::int - 1 AS bucket, b.n AS n "
            f"FROM {name} t CROSS JOIN LATERAL unnest({_PG_COUNTS.format(t='t')}) WITH ORDINALITY AS b(n, k)"
        )
    packed = _SQLITE_LIST.format(t="t")
    return (
        f"SELECT {cols}, json_extract({packed}, '$[0]') + b.key - 1 AS bucket, b.value AS n "
        f"FROM {name} t, json_each({packed}) b WHERE b.key > 0"
    )
