"""Central mode: accept signed snapshots from known subordinates and merge them into the aggregates.

Received records are kept as sent (newest sequence per key wins; older ones and repeats change
nothing). Day records are then written into the aggregate tables as rows with `source` = the
subordinate's node_id, so the one read path serves merged figures:
- the day's counters and histogram as they are;
- pending (and overdue) as differences of end-of-day figures, p_in = pending(d) and
  p_out = pending(d - 1), so the sums of the read path telescope: pending at the end of any day,
  and now, is the subordinate's figure. A day after a record with no record of its own (up to the
  latest record) gets a row that closes the previous day's figures.
- due soon at the end of day d (the midnight starting d + 1) as the counters.DUE the read path
  sums there: due_c0(d + 1) = due_24h(d), due_c1(d + 2) = due_48h(d) - due_24h(d),
  due_c2(d + 3) = due_72h(d) - due_48h(d). At now the read path takes the latest record's figures.
Cohort records stay in network_cohort, which the read path adds for calendar months, quarters and
years.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import orjson

from app.aggregates import writes
from app.db import meta
from app.db.engine import Database
from app.db.models import ALL_SECTORS, NetworkCohort, NetworkDay
from app.errors import BadRequest, Unauthorized, Unprocessable
from app.export import records
from app.export import repository as repo
from app.export.signing import verify
from app.settings import Settings
from app.units.service import Registry

MAX_RECORDS = 20_000


def authenticate(settings: Settings, node: str | None, signature: str | None, body: bytes) -> str:
    """The sending node when it is a known subordinate and signed exactly these bytes; 401 otherwise."""
    secret = settings.subordinates.get(node or "")
    if secret is None or not verify(body, secret.get_secret_value(), signature):
        raise Unauthorized("unknown node or bad signature")
    return node


def parse(body: bytes, node: str) -> tuple[list[dict], list[dict]]:
    """Day and cohort rows of a snapshot; a malformed snapshot is refused whole (nothing stored)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise Unprocessable("expected an object with a records array", [{"loc": ["records"], "msg": "expected an array"}])
    if doc.get("node_id") != node:
        raise Unprocessable("node_id differs from X-Chiso-Node", [{"loc": ["node_id"], "msg": "not the signing node"}])
    bounds = doc.get("histogram_bounds_seconds")
    ours = records.histogram_bounds()
    if not isinstance(bounds, list) or bounds[: len(ours)] != ours[: len(bounds)] or not bounds:
        raise Unprocessable("histogram bounds differ from this node's", [{"loc": ["histogram_bounds_seconds"], "msg": "bounds differ"}])
    if len(doc["records"]) > MAX_RECORDS:
        raise Unprocessable(f"more than {MAX_RECORDS} records", [{"loc": ["records"], "msg": "too many records"}])
    days: dict[tuple, dict] = {}
    cohorts: dict[tuple, dict] = {}
    errors = []
    for i, rec in enumerate(doc["records"]):
        try:
            parsed = records.parse_record(rec, node)
        except records.RecordError as exc:
            errors.append({"loc": ["records", i], "msg": str(exc)})
            continue
        row = parsed["row"]
        if parsed["kind"] == "day":
            key, into = (row["unit_code"], row["day"]), days
        else:
            key, into = (row["unit_code"], row["kind"], row["start"]), cohorts
        if key not in into or into[key]["sequence"] < row["sequence"]:
            into[key] = row
    if errors:
        raise Unprocessable("malformed records", errors[:50])
    return list(days.values()), list(cohorts.values())


async def receive(db: Database, settings: Settings, registry: Registry, node: str | None, signature: str | None, body: bytes) -> dict:
    """Verify, then merge a snapshot in one transaction; answers how many records took effect."""
    node = authenticate(settings, node, signature, body)
    day_rows, cohort_rows = parse(body, node)
    total = len(day_rows) + len(cohort_rows)
    now = datetime.now(UTC)
    async with db.transaction() as session:
        top = max((r["sequence"] for r in day_rows + cohort_rows), default=0)
        await repo.lock_source(session, node, top, now)
        by_unit: dict[str, list[dict]] = {}
        for r in day_rows:
            by_unit.setdefault(r["unit_code"], []).append(r)
        old_max = {u: await repo.read_max_network_day(session, node, u) for u in sorted(by_unit)}
        stored_days = await repo.upsert_newer(session, NetworkDay, ("unit_code", "source", "day"), day_rows)
        stored_cohorts = await repo.upsert_newer(session, NetworkCohort, ("unit_code", "source", "kind", "start"), cohort_rows)
        earliest: dict[str, date] = {}
        for unit, _source, day in stored_days:
            earliest[unit] = min(day, earliest.get(unit, day))
        for unit in sorted(earliest):
            since = earliest[unit]
            if old_max[unit] is not None:  # a gap row after the old latest day may now be due
                since = min(since, old_max[unit] + timedelta(days=1))
            await _materialise(session, registry, node, unit, since)
        if stored_days or stored_cohorts:
            await meta.bump_data_version(session)
    applied = len(stored_days) + len(stored_cohorts)
    return {"node_id": node, "received": total, "applied": applied, "ignored": total - applied}


async def _materialise(session, registry: Registry, source: str, unit: str, since: date) -> None:
    """Rewrite the source's aggregate rows of one unit from day `since` on."""
    one = timedelta(days=1)
    recs = {r.day: r for r in await repo.read_network_days(session, source, unit, since - 3 * one)}
    if not recs:
        return
    last = max(recs)
    # days with a record, the day after each (closing its pending, up to the latest record; due soon
    # at its end) and the two after that (due soon at its end)
    days = {d + k * one for d in recs for k in range(4)}
    rows, hist = [], {}
    for d in sorted(x for x in days if x >= since):
        r, prev = recs.get(d), recs.get(d - one)
        row = {"unit_code": unit, "sector": ALL_SECTORS, "day": d, "source": source}
        for c in records.DAY_FLOWS:
            row[c] = getattr(r, c) if r else 0
        closes = prev is not None and d <= last
        row["p_in"] = r.pending if r else 0
        row["p_out"] = prev.pending if closes else 0
        row["o_in"] = r.overdue if r else 0
        row["o_out"] = prev.overdue if closes else 0
        due = [
            (0, *(getattr(x, c) for c in records.DUE_FIGURES)) if x else (0, 0, 0, 0) for x in (recs.get(d - k * one) for k in (1, 2, 3))
        ]
        row["due_c0"] = due[0][1] - due[0][0]
        row["due_c1"] = due[1][2] - due[1][1]
        row["due_c2"] = due[2][3] - due[2][2]
        row["c_size"] = row["c_final_ok"] = 0  # cohorts come as cohort records
        rows.append(row)
        if r is not None:
            hist[d] = orjson.loads(r.histogram)
    await writes.replace_source_rows(session, registry, source, unit, rows, hist)
