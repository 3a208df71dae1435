"""What one answer costs to compute again, and its figures at now alone, on a loaded database:
`python -m bench.at_now DATABASE_URL [--repeat 15]` (e.g. one a `bench.shared_answers --keep-db`
run left behind).

Per case, the median wall time of a warm computation, in this process: a commune's, a province's
and the nation's KPIs (30 days), the ranking of all communes (the per-unit memos warm), and the
figures at now of a province alone; the commune is the one with the most dossiers, the province
its own. "after a change" marks that commune changed before each call (its `unit_change` count moves, no figure does), as a batch
would: what a refresh costs under a feed that touches a unit at a time. With the per-unit figures at
now (app.aggregates.live_memo) when `--no-memo` is not given.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import defaultdict

from sqlalchemy import text

from app.aggregates import periods
from app.aggregates.silent import DEFAULT_AFTER_HOURS
from app.aggregates.sums import Sums, span_for
from app.db.engine import Database
from app.db.models import ALL_SECTORS
from app.scoring import service
from app.scoring.context import Reader
from app.scoring.ranking import RankingMemo, ranking
from app.settings import Settings
from app.units.service import RegistryCache

try:  # the per-unit figures at now, where this tree has them
    from app.aggregates import live_memo
except ImportError:  # pragma: no cover - the tree before them
    live_memo = None


async def main(url: str, repeat: int, memo_on: bool) -> None:
    db = Database(url, pool_size=2)
    tz = Settings().tz
    registry = await RegistryCache(db).refresh()
    reader = Reader(db, registry, tz)
    now = reader.now()
    w30 = periods.window("30d", periods.today(now, tz))
    province = "01"
    async with db.session() as session:  # a commune with dossiers (the first of the province may have none)
        busy = (await session.execute(text("SELECT unit_code FROM dossier GROUP BY unit_code ORDER BY count(*) DESC LIMIT 1"))).scalar()
    commune = busy or registry.at_level("commune", province)[0].code
    province = registry.get(commune).parent_code if busy else province
    rankings = RankingMemo()
    live = getattr(rankings, "live", None) if memo_on else None
    if not memo_on:
        rankings.live = None

    async def touch(code: str) -> None:
        async with db.transaction() as session:
            await session.execute(text("UPDATE unit_change SET changes = changes + 1 WHERE unit_code = :u"), {"u": code})

    async def at_now_of_province() -> None:
        from app.aggregates.at_now import _read_silent, _read_today

        scope = service.scope_of(registry, province)
        sp = span_for(w30, reader.now(), tz)
        out = defaultdict(lambda: [Sums(silent=0)])
        async with db.session() as session:
            if live is not None:
                await live_memo.read_live(session, scope, [(0, sp)], ALL_SECTORS, DEFAULT_AFTER_HOURS, out, memo=live)
            else:
                await _read_today(session, scope, [(0, sp)], ALL_SECTORS, out)
                await _read_silent(session, scope, [(0, sp)], DEFAULT_AFTER_HOURS, out)

    def kpis(code: str):
        return lambda: service.unit_kpis(reader, code, w30, None)

    def communes():
        return ranking(reader, "commune", None, w30, "-on_time_rate", 50, 0, memo=rankings)

    cases = {
        "commune KPI": (kpis(commune), None),
        "commune KPI, after a change": (kpis(commune), commune),
        "province KPI": (kpis(province), None),
        "province KPI, after a change": (kpis(province), commune),
        "national KPI": (kpis("VN"), None),
        "national KPI, after a change": (kpis("VN"), commune),
        "province figures at now": (at_now_of_province, None),
        "province figures at now, after a change": (at_now_of_province, commune),
        "ranking of communes": (communes, None),
        "ranking of communes, after a change": (communes, commune),
    }
    token = live_memo.LIVE.set(live) if live_memo is not None else None
    try:
        for name, (call, changed) in cases.items():
            await call()
            took = []
            for _ in range(repeat):
                if changed:
                    await touch(changed)
                t0 = time.perf_counter()
                await call()
                took.append(time.perf_counter() - t0)
            print(f"{name:42} median {1000 * statistics.median(took):7.1f} ms   min {1000 * min(took):7.1f} ms")
    finally:
        if token is not None:
            live_memo.LIVE.reset(token)
    await db.dispose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--no-memo", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.url, a.repeat, not a.no_memo))
