"""What one tick of the answer refresher costs under a feed, on a kept database whose answers were
polled (`bench.shared_answers --keep-db --provinces 34 --communes 500`):
`python -m bench.refresher_ticks URL [--ticks 6]`.

Marks every stored answer polled now, then per tick: `--touch` units' `unit_change` counts (default
one) and the data version move (batches elsewhere, no figure changes), and the refresher runs once in
this process.
Prints per tick the answers computed and restamped (found holding), wall and CPU time. The first
tick knows nothing (every answer is computed); the others show the steady state.
"""

import argparse
import asyncio
import random
import time

from sqlalchemy import text

from app import collector
from app.answers import repository as repo
from app.answers.refresher import AnswerRefresher
from app.db.engine import Database
from app.settings import Settings


async def main(url: str, ticks: int, touch: int) -> None:
    collector.tune()  # as the refresher's process does
    db = Database(url, pool_size=4)
    async with db.transaction() as session:
        await session.execute(text("UPDATE shared_answer SET polled_at = now()"))
        units = list((await session.execute(text("SELECT unit_code FROM unit_change"))).scalars())
    refresher = AnswerRefresher(db, Settings(_env_file=None, database_url=url))
    stamp = repo.restamp

    async def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = await stamp(*args, **kwargs)
        print(f"   restamped {len(out)} of {len(args[1])} in one statement, {1000 * (time.perf_counter() - t0):.0f} ms")
        return out

    repo.restamp = timed
    rng = random.Random(1)
    steady: list[tuple[float, float]] = []  # (wall, CPU) ms of the ticks after the first
    try:
        for i in range(ticks):
            async with db.transaction() as session:  # batches elsewhere: `touch` units' counts and the version move
                moved = rng.sample(units, min(touch, len(units)))
                await session.execute(text("UPDATE unit_change SET changes = changes + 1 WHERE unit_code = ANY(:u)"), {"u": moved})
                await session.execute(text("UPDATE node_meta SET value = value + 1 WHERE name LIKE 'data_version%'"))
            t0, c0 = time.perf_counter(), time.process_time()
            computed, stamped = refresher.answers.computations, refresher.restamped
            n = await refresher.run_once()
            wall, cpu = 1000 * (time.perf_counter() - t0), 1000 * (time.process_time() - c0)
            what = f"{refresher.answers.computations - computed} computed, {refresher.restamped - stamped} restamped"
            print(f"tick {i}: {n} answers refreshed ({what}) in {wall:.0f} ms, CPU {cpu:.0f} ms")
            if i:
                steady.append((wall, cpu))
        if steady:
            walls, cpus = (sorted(x) for x in zip(*steady, strict=True))
            print(
                f"after the first, {len(steady)} ticks: wall min/median/max {walls[0]:.0f}/{walls[len(walls) // 2]:.0f}/{walls[-1]:.0f} ms,"
                f" CPU {cpus[0]:.0f}/{cpus[len(cpus) // 2]:.0f}/{cpus[-1]:.0f} ms"
            )
    finally:
        repo.restamp = stamp
        await refresher.close()
        await db.dispose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--ticks", type=int, default=6)
    ap.add_argument(
        "--touch",
        type=int,
        default=1,
        help="units whose count moves before each tick (a second of a national feed touches ~1,400 communes)",
    )
    a = ap.parse_args()
    asyncio.run(main(a.url, a.ticks, a.touch))
