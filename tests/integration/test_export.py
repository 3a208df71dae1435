"""Export records, the outbox, pull, push and the central receiver, on both stores.

The central node here is a real chiso app on its own database, reached in-process over ASGI; the
system test (tests/system/test_network.py) runs the same topology as two real processes.
"""

from __future__ import annotations

import random
import socket
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from app.aggregates import periods
from app.db.models import NetworkDay
from app.export import service as export_service
from app.export.exporter import Exporter
from app.export.producer import Producer
from app.export.records import snapshot_body
from app.export.signing import sign
from tests import reference as ref
from tests.helpers.dossiers import COMMUNE, past_day
from tests.helpers.events import at_local, post, received, resolved
from tests.helpers.export import CALENDAR_766, PROVINCE, diff_kpis
from tests.reference import TZ
from tests.streams import stream, wire

SECRET = "s3cret-of-hue"


def fresh_stream(rng: random.Random, units: list[str], n: int, now: datetime) -> list[dict]:
    return [wire(e) for e in stream(rng, units, n, now, days=120)]


class Net:
    """A province node and a central node, each a real app on its own database."""

    def __init__(self, prov, central, exporter):
        self.prov, self.central, self.exporter = prov, central, exporter

    async def setup(self):
        self.ingest = await self.prov.key("ingest", PROVINCE)
        self.read_p = await self.prov.key("read")
        self.read_c = await self.central.key("read")
        registry = await self.prov.app.state.registry.refresh()
        self.communes = [u.code for u in registry.at_level("commune", PROVINCE)]
        return self

    async def post(self, events: list[dict]) -> None:
        for i in range(0, len(events), 1000):
            r = await self.prov.post(events[i : i + 1000], self.ingest)
            assert r.status_code == 202, r.text
            assert r.json()["rejected"] == 0, r.text  # a test's own events are all valid, whatever the hour

    async def sub_get(self, path, params):
        r = await self.prov.get(path, self.read_p, **params)
        assert r.status_code == 200, r.text
        return r.json()

    async def central_get(self, path, params):
        r = await self.central.get(path, self.read_c, **params)
        assert r.status_code == 200, r.text
        return r.json()

    async def feed(self, after=0, limit=5000) -> dict:
        return await self.sub_get("/api/v1/export/snapshots", {"after": after, "limit": limit})


@pytest.fixture
def network(make_service):
    @asynccontextmanager
    async def factory(central_url="http://chiso.test", secret=SECRET, node_id="hue"):
        async with make_service(node_id=node_id) as prov, make_service(node_id="vn", subordinates={"hue": SECRET}) as central:
            settings = prov.settings.model_copy(
                update={"central_url": central_url, "export_secret": SecretStr(secret), "export_batch_records": 300}
            )
            exporter = Exporter(prov.db, settings, client=central.client)
            try:
                yield await Net(prov, central, exporter).setup()
            finally:
                await exporter.close()

    return factory


def ev(kind, unit, dossier, at, **fields) -> dict:
    e = {
        "event_id": f"{dossier}-{kind}-{at.timestamp()}",
        "type": kind,
        "dossier_id": dossier,
        "unit_code": unit,
        "occurred_at": at.isoformat(),
    }
    e.update({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()})
    return e


def local_noon(days_ago: int) -> datetime:
    d = datetime.now(TZ).date() - timedelta(days=days_ago)
    return datetime(d.year, d.month, d.day, 12, tzinfo=TZ)


class TestRecords:
    async def test_a_pending_dossier_has_a_day_record_for_every_day(self, network):
        async with network() as net:
            unit = net.communes[0]
            await net.post([ev("received", unit, "P1", local_noon(5), channel="online", due_at=local_noon(2))])
            await net.exporter.producer.produce()
            feed = await net.feed()
            days = {r["day"]: r for r in feed["records"] if r["kind"] == "day"}
            assert sorted(days) == [local_noon(n).date().isoformat() for n in range(5, -1, -1)]
            assert all(r["pending"] == 1 for r in days.values())
            assert [days[local_noon(n).date().isoformat()]["overdue"] for n in range(5, -1, -1)] == [0, 0, 0, 1, 1, 1]
            assert days[local_noon(5).date().isoformat()]["received"] == 1
            assert all(r["node_id"] == "hue" and r["unit"] == unit for r in feed["records"])
            seqs = [r["sequence"] for r in feed["records"]]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            assert feed["histogram_bounds_seconds"][:2] == [60.0, 66.0]
            cohorts = [r for r in feed["records"] if r["kind"] == "cohort"]
            assert {r["period"]["kind"] for r in cohorts} == set(CALENDAR_766)
            assert all(r["cohort_size"] == 1 and r["cohort_on_time"] == 0 for r in cohorts)

    async def test_unchanged_figures_produce_nothing_new(self, network):
        async with network() as net:
            await net.post([ev("received", net.communes[0], "P1", local_noon(3), channel="online", due_at=local_noon(-3))])
            assert await net.exporter.producer.produce() > 0
            assert await net.exporter.producer.produce() == 0
            await net.post([ev("received", net.communes[0], "P1", local_noon(3), channel="online", due_at=local_noon(-3))])  # duplicate
            assert await net.exporter.producer.produce() == 0

    @pytest.mark.slow  # waits for a deadline to pass in real time (make test-fast leaves it out)
    async def test_a_deadline_passing_sends_todays_record_again_without_any_event(self, network):
        """Within a day only units whose deadlines pass (or future-dated events come due) are
        recomputed by time; their today's record goes out again with the new overdue."""
        import asyncio

        async with network() as net:
            due_soon, calm = net.communes[0], net.communes[1]
            now = datetime.now(UTC)
            await net.post(
                [
                    ev("received", due_soon, "S1", now - timedelta(hours=1), channel="online", due_at=now + timedelta(seconds=2)),
                    ev("received", calm, "C1", now - timedelta(hours=1), channel="online", due_at=now + timedelta(days=3)),
                ]
            )
            assert await net.exporter.producer.produce() > 0
            last = (await net.feed())["next_after"]
            today = datetime.now(TZ).date().isoformat()
            before = {r["unit"]: r for r in (await net.feed())["records"] if r["kind"] == "day" and r["day"] == today}
            assert before[due_soon]["overdue"] == 0 and before[calm]["overdue"] == 0
            await asyncio.sleep(2.5)
            assert await net.exporter.producer.produce() > 0
            new = [r for r in (await net.feed(after=last))["records"] if r["kind"] == "day"]
            assert [(r["unit"], r["day"], r["overdue"], r["pending"]) for r in new] == [(due_soon, today, 1, 1)]
            assert await net.exporter.producer.produce() == 0

    async def test_a_deadline_moved_within_the_day_sends_todays_record_again(self, network):
        """An extension that moves a passed deadline to later today changes no day row, only today's
        overdue at now: the unit is marked all the same."""
        async with network() as net:
            unit = net.communes[0]
            now = datetime.now(UTC)
            received_at = now - timedelta(hours=2)
            await net.post([ev("received", unit, "X1", received_at, channel="online", due_at=now - timedelta(minutes=30))])
            await net.exporter.producer.produce()
            last = (await net.feed())["next_after"]
            today = datetime.now(TZ).date().isoformat()
            before = [r for r in (await net.feed())["records"] if r["kind"] == "day" and r["day"] == today]
            assert [r["overdue"] for r in before] == [1]
            new_due = min(now + timedelta(minutes=30), datetime.combine(datetime.now(TZ).date(), datetime.max.time(), TZ))
            await net.post([ev("due_changed", unit, "X1", now - timedelta(minutes=1), reason="legal_extension", due_at=new_due)])
            await net.exporter.producer.produce()
            new = [r for r in (await net.feed(after=last))["records"] if r["kind"] == "day" and r["day"] == today]
            assert [(r["unit"], r["overdue"], r["pending"]) for r in new] == [(unit, 0, 1)]

    async def test_a_late_event_sends_every_day_since_it_occurred_again(self, network):
        async with network() as net:
            unit = net.communes[0]
            await net.post([ev("received", unit, "P1", local_noon(6), channel="online", due_at=local_noon(-3))])
            await net.exporter.producer.produce()
            last = (await net.feed())["next_after"]
            await net.post([ev("resolved", unit, "P1", local_noon(3), outcome="approved")])
            await net.exporter.producer.produce()
            new = (await net.feed(after=last))["records"]
            days = {r["day"]: r for r in new if r["kind"] == "day"}
            assert sorted(days) == [local_noon(n).date().isoformat() for n in range(3, -1, -1)]
            assert days[local_noon(3).date().isoformat()]["resolved_early"] == 1
            assert all(r["pending"] == 0 for r in days.values())
            assert all(r["sequence"] > last for r in new)

    async def test_a_spent_budget_leaves_the_other_units_for_the_next_call_in_turn(self, network):
        async with network() as net:
            a, b, c = sorted(net.communes[:3])
            for unit in (a, b, c):
                await net.post([ev("received", unit, "P1", local_noon(4), channel="online", due_at=local_noon(1))])
            net.exporter.producer.step_records = 1  # one unit per step; budget 0: one step per call

            async def units_in_feed():
                return {r["unit"] for r in (await net.feed())["records"]}

            assert await net.exporter.producer.produce(budget=0) > 0
            assert await units_in_feed() == {a}
            await net.post([ev("resolved", a, "P1", local_noon(2), outcome="approved")])  # a is dirty again
            await net.exporter.producer.produce(budget=0)
            assert await units_in_feed() == {a, b}  # b's turn, not a's again
            await net.exporter.producer.produce(budget=0)
            assert await units_in_feed() == {a, b, c}
            before = (await net.feed())["next_after"]
            await net.exporter.producer.produce(budget=0)  # a again, with its resolution
            new = (await net.feed(after=before))["records"]
            assert {r["unit"] for r in new} == {a} and any(r.get("resolved_early") == 1 for r in new)
            assert await net.exporter.producer.produce() == 0  # nothing left

    async def test_the_pull_feed_pages_in_sequence_order(self, network):
        async with network() as net:
            await net.post([ev("received", net.communes[0], "P1", local_noon(20), channel="online", due_at=local_noon(1))])
            await net.exporter.producer.produce()
            whole = (await net.feed())["records"]
            pages, after = [], 0
            while True:
                page = await net.feed(after=after, limit=7)
                pages += page["records"]
                after = page["next_after"]
                if not page["has_more"]:
                    break
            assert pages == whole and len(whole) > 20
            r = await net.prov.get("/api/v1/export/snapshots")
            assert r.status_code == 401  # read scope needed


@pytest.mark.slow
class TestCentral:
    async def test_central_answers_what_the_province_answers(self, network):
        rng = random.Random(766)
        async with network() as net:
            units = [PROVINCE, *net.communes[:6]]
            now = datetime.now(UTC)
            events = fresh_stream(rng, units, 300, now)
            rng.shuffle(events)
            first, late = events[: len(events) * 3 // 4], events[len(events) * 3 // 4 :]
            await net.post(first)
            result = await net.exporter.run_once()
            assert result.leader and result.sent == result.produced > 0 and not result.failed
            today = datetime.now(TZ).date()
            assert await diff_kpis(net.sub_get, net.central_get, units[:2], today) == []
            await net.post(late + first[:50])  # late events, corrections and duplicates
            result = await net.exporter.run_once()
            assert result.sent > 0
            assert await diff_kpis(net.sub_get, net.central_get, units[:4], today) == []
            st = await export_service.status(net.prov.db, net.exporter.settings)
            assert st["backlog"] == 0 and st["parked"] == 0 and st["lag_seconds"] == 0

    async def test_replaying_the_whole_feed_changes_nothing(self, network):
        async with network() as net:
            events = fresh_stream(random.Random(1), [net.communes[0]], 60, datetime.now(UTC))
            await net.post(events)
            await net.exporter.run_once()
            before = await net.central_get(f"/api/v1/units/{PROVINCE}/kpis", {"window": "90d"})
            records = (await net.feed())["records"]
            answer = await post_snapshot(net.central, records)
            assert answer.status_code == 200 and answer.json()["applied"] == 0
            assert answer.json()["ignored"] == len(records)
            after = await net.central_get(f"/api/v1/units/{PROVINCE}/kpis", {"window": "90d"})
            assert before["kpis"] == after["kpis"]


async def post_snapshot(central, recs, node="hue", secret=SECRET, body=None, signature=None) -> httpx.Response:
    body = body if body is not None else snapshot_body(node, [orjson.dumps(r).decode() for r in recs])
    headers = {
        "Content-Type": "application/json",
        "X-Chiso-Node": node,
        "X-Chiso-Signature": signature or sign(body, secret),
        "Idempotency-Key": "k",
    }
    return await central.client.post("/api/v1/network/snapshots", content=body, headers=headers)


def day_rec(seq, received, pending=0, day=None, unit="46001"):
    return {
        "node_id": "hue",
        "sequence": seq,
        "kind": "day",
        "unit": unit,
        "day": (day or datetime.now(TZ).date()).isoformat(),
        "received": received,
        "received_online": 0,
        "resolved_early": 0,
        "resolved_on_time": 0,
        "resolved_late": 0,
        "resolved_unclassified": 0,
        "withdrawn": 0,
        "orphans": 0,
        "proc_n": 0,
        "proc_ms": 0,
        "pending": pending,
        "overdue": 0,
        "histogram": [],
    }


class TestReceive:
    async def count_days(self, central) -> int:
        async with central.db.session() as s:
            return (await s.execute(select(func.count()).select_from(NetworkDay))).scalar()

    async def test_refuses_bad_signature_unknown_node_and_tampered_body(self, network):
        async with network() as net:
            body = snapshot_body("hue", [orjson.dumps(day_rec(1, 5, 5)).decode()])
            assert (await post_snapshot(net.central, None, body=body, secret="wrong")).status_code == 401
            assert (await post_snapshot(net.central, None, node="hoa", body=body.replace(b'"hue"', b'"hoa"'))).status_code == 401
            tampered = body.replace(b'"received":5', b'"received":9')
            assert (await post_snapshot(net.central, None, body=tampered, signature=sign(body, SECRET))).status_code == 401
            r = await net.central.client.post("/api/v1/network/snapshots", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 401
            assert await self.count_days(net.central) == 0
            assert (await post_snapshot(net.central, None, body=body)).status_code == 200
            assert await self.count_days(net.central) == 1

    async def test_keeps_the_newest_sequence_and_ignores_older_ones_and_repeats(self, network):
        async with network() as net:
            unit = net.communes[0]
            r = await post_snapshot(net.central, [day_rec(5, 3, 3, unit=unit)])
            assert r.json()["applied"] == 1
            r = await post_snapshot(net.central, [day_rec(4, 9, 9, unit=unit)])  # older: replayed
            assert r.json() == {"node_id": "hue", "received": 1, "applied": 0, "ignored": 1}
            r = await post_snapshot(net.central, [day_rec(5, 3, 3, unit=unit)])  # repeat
            assert r.json()["ignored"] == 1
            k = (await net.central_get(f"/api/v1/units/{unit}/kpis", {"window": "1d"}))["kpis"]
            assert (k["received"], k["pending"]) == (3, 3)
            await post_snapshot(net.central, [day_rec(6, 4, 2, unit=unit)])  # newer
            k = (await net.central_get(f"/api/v1/units/{unit}/kpis", {"window": "1d"}))["kpis"]
            assert (k["received"], k["pending"]) == (4, 2)

    @pytest.mark.parametrize("bad", [{"pending": -1}, {"sequence": 2**63}], ids=["negative count", "sequence past bigint"])
    async def test_a_malformed_record_refuses_the_snapshot(self, network, bad):
        async with network() as net:
            r = await post_snapshot(net.central, [day_rec(2, 1, unit=net.communes[1]), day_rec(1, 1) | bad])
            assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["records", 1], r.text
            assert next(iter(bad)) in r.json()["errors"][0]["msg"]
            assert await self.count_days(net.central) == 0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestDelivery:
    async def test_a_refused_batch_is_parked_until_retry_parked(self, network):
        async with network(secret="not-the-secret") as net:
            await net.post([ev("received", net.communes[0], "P1", local_noon(2), channel="online", due_at=local_noon(-2))])
            result = await net.exporter.run_once()
            assert result.parked == result.produced > 0 and result.sent == 0
            st = await export_service.status(net.prov.db, net.exporter.settings)
            assert st["parked"] == result.parked and st["backlog"] == 0 and "401" in st["parked_error"]
            assert (await net.exporter.run_once()).sent == 0  # parked records are not retried by themselves
            net.exporter.settings.export_secret = SecretStr(SECRET)
            assert await export_service.retry_parked(net.prov.db) == result.parked
            assert (await net.exporter.run_once()).sent == result.parked
            assert (await export_service.status(net.prov.db, net.exporter.settings))["parked"] == 0
            assert await diff_kpis(net.sub_get, net.central_get, [net.communes[0]], datetime.now(TZ).date()) == []

    async def test_an_unreachable_central_keeps_records_and_backs_off(self, network):
        async with network(central_url=f"http://127.0.0.1:{closed_port()}") as net:
            net.exporter.pusher._client = None  # a real network client, to a port nobody listens on
            net.exporter.pusher._own_client = True
            await net.post([ev("received", net.communes[0], "P1", local_noon(1), channel="online", due_at=local_noon(-2))])
            result = await net.exporter.run_once()
            assert result.failed and result.sent == 0
            st = await export_service.status(net.prov.db, net.exporter.settings)
            assert st["backlog"] == result.produced > 0 and st["parked"] == 0
            assert net.exporter.pusher.backoff.failures == 1
            assert (await net.exporter.run_once()).failed is False  # waiting out the backoff: no try
            assert net.exporter.pusher.backoff.failures == 1


class TestOneExporter:
    async def test_only_one_exporter_per_database_sends_and_another_takes_over(self, network):
        async with network() as net:
            other = Exporter(net.prov.db, net.exporter.settings, client=net.central.client)
            try:
                await net.post([ev("received", net.communes[0], "P1", local_noon(2), channel="online", due_at=local_noon(-1))])
                a = await net.exporter.run_once()
                b = await other.run_once()
                assert a.leader and a.sent > 0 and not b.leader and b.sent == b.produced == 0
                resolved_at = min(local_noon(0), datetime.now(TZ) - timedelta(minutes=1))  # before noon: noon lies ahead
                await net.post([ev("resolved", net.communes[0], "P1", resolved_at, outcome="approved")])
                b = await other.run_once()
                assert not b.leader and b.produced == 0
                await net.exporter.close()  # the active exporter stops: its lock or lease goes with it
                b = await other.run_once()
                assert b.leader and b.sent == b.produced > 0
                assert await diff_kpis(net.sub_get, net.central_get, [net.communes[0]], datetime.now(TZ).date()) == []
            finally:
                await other.close()


class TestExportRecords:
    async def test_day_records_carry_counters_and_end_of_day_pending(self, make_service):
        async with make_service(node_id="p46") as svc:
            ingest, read = await svc.key("ingest", "VN"), await svc.key("read")
            day = past_day(3)
            await post(
                svc,
                ingest,
                [
                    received(COMMUNE, "a", at_local(day, 8), at_local(day, 12)),  # overdue from noon
                    received(COMMUNE, "b", at_local(day, 9), at_local(day + timedelta(days=1), 12)),
                    resolved(COMMUNE, "b", at_local(day + timedelta(days=1), 10)),
                ],
            )
            await Producer(svc.db, svc.settings).produce()
            recs = (await svc.get("/api/v1/export/snapshots", read, limit=5000)).json()["records"]
            days = {r["day"]: r for r in recs if r["kind"] == "day" and r["unit"] == COMMUNE}
            first, second = days[day.isoformat()], days[(day + timedelta(days=1)).isoformat()]
            for name in (
                "received",
                "received_online",
                "resolved_early",
                "resolved_on_time",
                "resolved_late",
                "resolved_unclassified",
                "withdrawn",
                "orphans",
                "histogram",
                "pending",
                "overdue",
            ):
                assert name in first, name
            assert (first["received"], first["pending"], first["overdue"]) == (2, 2, 1)
            assert (second["resolved_early"] + second["resolved_on_time"], second["pending"], second["overdue"]) == (1, 1, 1)
            today = ref.local_day(datetime.now(UTC))
            assert today.isoformat() in days  # pending: a record every day, today's at the snapshot
            month = periods.containing("month", day)
            cohorts = [
                r
                for r in recs
                if r["kind"] == "cohort"
                and r["unit"] == COMMUNE
                and r["period"]["start"] == month.start.isoformat()
                and r["period"]["kind"] == "month"
            ]
            assert [(c["cohort_size"], c["cohort_on_time"]) for c in cohorts] == [(2, 1)]
            assert all(r["node_id"] == "p46" for r in recs)
            assert [r["sequence"] for r in recs] == sorted({r["sequence"] for r in recs})
