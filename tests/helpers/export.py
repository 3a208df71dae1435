"""What a central node must answer for a subordinate's units, compared query by query."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

PROVINCE = "46"  # Thành phố Huế


CALENDAR_766 = ("month", "quarter", "year")


SETTLEMENT = ("settlement_rate_766", "settlement_score", "overdue_766")


def expected_at_central(answer: dict, calendar_766: bool, has_cohort: bool = True) -> dict:
    """What a central node answers for a fed unit: the subordinate's answer (as_of aside), with the
    settlement group null outside calendar months, quarters and years (a unit that never had a
    cohort has an empty one in every period: that the central node knows)."""
    out = copy.deepcopy({k: v for k, v in answer.items() if k != "as_of"})
    if not calendar_766 and has_cohort:
        blocks = [out["kpis"], out["previous"]["kpis"], out["change"]] if "previous" in out else [out["kpis"], out["change"]]
        for block in blocks:
            for k in SETTLEMENT:
                block[k] = None
    return out


def queries(today) -> list[dict]:
    """KPI queries covering windows and every calendar period, current and past."""
    past = today - timedelta(days=40)
    qs = [{"window": w} for w in ("1d", "7d", "30d", "90d", "365d")]
    qs += [{"period": k} for k in ("day", "week", "month", "quarter", "year")]
    qs += [{"period": k, "at": past.isoformat()} for k in ("day", "week", "month", "quarter")]
    return qs


async def diff_kpis(sub_get, central_get, units: list[str], today) -> list[str]:
    """Every (unit, query) where the central's answer is not what it should be; [] when equal."""
    bad = []
    with_cohort, after = set(), 0
    while True:  # which units ever had an INDEX-766 cohort, from the subordinate's own feed
        page = await sub_get("/api/v1/export/snapshots", {"after": after, "limit": 5000})
        with_cohort |= {r["unit"] for r in page["records"] if r["kind"] == "cohort" and r["cohort_size"]}
        after = page["next_after"]
        if not page["has_more"]:
            break
    for unit in units:
        for q in queries(today):
            a = await sub_get(f"/api/v1/units/{unit}/kpis", q)
            b = await central_get(f"/api/v1/units/{unit}/kpis", q)
            fed = any(u == unit or u[:2] == unit for u in with_cohort)
            want = expected_at_central(a, q.get("period") in CALENDAR_766, fed)
            got = {k: v for k, v in b.items() if k != "as_of"}
            until = want["previous"]["period"].get("until")
            if until is not None:  # a period in progress: the subordinate's previous figures stand at t,
                # the central node's (day records) at the local midnight at or before t, which it says
                midnight = datetime.fromisoformat(until).replace(hour=0, minute=0, second=0).isoformat()
                want["previous"]["period"]["until"] = midnight
                for block in (want, got):
                    block["previous"] = {"period": block["previous"]["period"]}
                    block.pop("change")
            if got != want:
                keys = [k for k in want["kpis"] if want["kpis"][k] != got["kpis"][k]]
                bad.append(f"{unit} {q}: {keys} {[(want['kpis'][k], got['kpis'][k]) for k in keys][:4]}")
    for q in ({"window": "30d"}, {"period": "month"}, {"period": "week"}):
        params = {"level": "commune", "parent": PROVINCE, "sort": "-received", "limit": 5000, **q}
        a = await sub_get("/api/v1/rankings", params)
        b = await central_get("/api/v1/rankings", params)
        for x, y in zip(a["items"], b["items"], strict=True):
            want = expected_at_central(x, q.get("period") in CALENDAR_766, x["unit"]["code"] in with_cohort)
            if (x["rank"], x["unit"]) != (y["rank"], y["unit"]) or want["kpis"] != y["kpis"]:
                bad.append(
                    f"ranking {q} {x['unit']['code']} {x['rank']} {y['rank']} "
                    f"{[(k, want['kpis'][k], y['kpis'][k]) for k in want['kpis'] if want['kpis'][k] != y['kpis'][k]]}"
                )
                break
    return bad
