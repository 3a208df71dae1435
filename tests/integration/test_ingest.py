"""POST /api/v1/events on both stores: every rule, every status, duplicates, authorisation."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.db.models import DossierEvent
from tests.helpers.dossiers import uid
from tests.helpers.events import received
from tests.streams import wire

COMMUNE = "19777"  # in province 46
OTHER_COMMUNE = "19900"  # also in 46
FOREIGN_COMMUNE = "26506"  # in province 79


def ev(**fields) -> dict:
    now = datetime.now(UTC)
    base = {
        "event_id": f"e-{uuid.uuid4().hex}",
        "type": "received",
        "dossier_id": f"d-{uuid.uuid4().hex[:12]}",
        "unit_code": COMMUNE,
        "occurred_at": (now - timedelta(hours=1)).isoformat(),
        "channel": "online",
        "due_at": (now + timedelta(days=3)).isoformat(),
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


async def stored(svc, event_ids: list[str]) -> int:
    async with svc.db.session() as session:
        q = select(func.count()).select_from(DossierEvent).where(DossierEvent.event_id.in_(event_ids))
        return (await session.execute(q)).scalar_one()


@pytest.fixture
async def ingest(shared_service):
    return await shared_service.key("ingest", "46")


class TestAccept:
    async def test_accepts_and_stores(self, shared_service, ingest):
        events = [ev(), ev(type="resolved", channel=..., due_at=..., outcome="approved")]
        r = await shared_service.post(events, ingest)
        assert r.status_code == 202
        assert r.json() == {"accepted": 2, "duplicates": 0, "rejected": 0, "items": []}
        assert await stored(shared_service, [e["event_id"] for e in events]) == 2

    async def test_ndjson(self, shared_service, ingest):
        events = [ev(), ev()]
        body = "\n".join(json.dumps(e) for e in events[:1]) + "\n\n" + "not json\n" + json.dumps(events[1]) + "\n"
        r = await shared_service.client.post(
            "/api/v1/events",
            content=body.encode(),
            headers={"Authorization": f"Bearer {ingest}", "Content-Type": "application/x-ndjson"},
        )
        assert r.status_code == 202
        body = r.json()
        assert body["accepted"] == 2 and body["rejected"] == 1
        assert body["items"] == [{"index": 1, "event_id": None, "status": "rejected", "errors": [{"loc": [], "msg": "line is not JSON"}]}]

    async def test_dry_run_stores_nothing_and_reports_duplicates(self, shared_service, ingest):
        first = ev()
        await shared_service.post([first], ingest)
        fresh = ev()
        r = await shared_service.post([first, fresh, fresh], ingest, dry_run="true")
        assert r.status_code == 202
        assert r.json()["accepted"] == 1 and r.json()["duplicates"] == 2
        assert [i["index"] for i in r.json()["items"]] == [0, 2]
        assert await stored(shared_service, [fresh["event_id"]]) == 0

    async def test_one_bad_event_does_not_block_the_batch(self, shared_service, ingest):
        good, bad = ev(), ev(channel="fax")
        r = await shared_service.post([bad, good], ingest)
        assert r.json()["accepted"] == 1 and r.json()["rejected"] == 1
        assert r.json()["items"][0]["errors"][0]["loc"] == ["channel"]
        assert await stored(shared_service, [good["event_id"], bad["event_id"]]) == 1


class TestDuplicates:
    async def test_within_a_batch(self, shared_service, ingest):
        e = ev()
        r = await shared_service.post([e, dict(e)], ingest)
        assert r.json()["accepted"] == 1 and r.json()["duplicates"] == 1
        assert r.json()["items"] == [{"index": 1, "event_id": e["event_id"], "status": "duplicate"}]

    async def test_across_batches_even_with_another_payload(self, shared_service, ingest):
        e = ev()
        await shared_service.post([e], ingest)
        r = await shared_service.post([{**e, "channel": "postal"}], ingest)
        assert r.json()["duplicates"] == 1 and r.json()["accepted"] == 0
        async with shared_service.db.session() as session:
            channel = (await session.execute(select(DossierEvent.channel).where(DossierEvent.event_id == e["event_id"]))).scalar_one()
        assert channel == "online"

    async def test_across_months_of_the_log(self, shared_service, ingest):
        """A copy dated in another month (another partition of the log on PostgreSQL) is still the
        stored event: the log is looked up by (unit_code, event_id) in every month."""
        e = ev()
        await shared_service.post([e], ingest)
        older = {**e, "occurred_at": (datetime.now(UTC) - timedelta(days=70)).isoformat(), "dossier_id": "another"}
        dry = await shared_service.post([older], ingest, dry_run="true")
        assert (dry.json()["accepted"], dry.json()["duplicates"]) == (0, 1)
        r = await shared_service.post([older], ingest)
        assert (r.json()["accepted"], r.json()["duplicates"]) == (0, 1)
        assert await stored(shared_service, [e["event_id"]]) == 1

    async def test_same_event_id_in_another_unit_is_another_event(self, shared_service, ingest):
        e = ev()
        r = await shared_service.post([e, {**e, "unit_code": OTHER_COMMUNE}], ingest)
        assert r.json()["accepted"] == 2

    async def test_concurrent_requests(self, shared_service, ingest):
        events = [ev() for _ in range(50)]
        results = await asyncio.gather(*(shared_service.post(events, ingest) for _ in range(4)))
        assert all(r.status_code == 202 for r in results)
        assert sum(r.json()["accepted"] for r in results) == 50
        assert sum(r.json()["duplicates"] for r in results) == 150
        assert await stored(shared_service, [e["event_id"] for e in events]) == 50

    async def test_concurrent_requests_dating_the_same_events_in_different_months(self, shared_service, ingest):
        """Each copy of a batch lands in another month of the log: no unique index spans the months,
        the units' locks keep the writers' looks apart."""
        events = [ev() for _ in range(30)]
        now = datetime.now(UTC)
        copies = [[{**e, "occurred_at": (now - timedelta(days=1 + 35 * k)).isoformat()} for e in events] for k in range(4)]
        results = await asyncio.gather(*(shared_service.post(batch, ingest) for batch in copies))
        assert all(r.status_code == 202 for r in results)
        assert sum(r.json()["accepted"] for r in results) == 30
        assert sum(r.json()["duplicates"] for r in results) == 90
        assert await stored(shared_service, [e["event_id"] for e in events]) == 30


REJECTIONS = [
    ({"event_id": ...}, ["event_id"]),
    ({"event_id": ""}, ["event_id"]),
    ({"event_id": "x" * 129}, ["event_id"]),
    ({"event_id": 12}, ["event_id"]),
    ({"type": "opened"}, ["type"]),
    ({"dossier_id": ...}, ["dossier_id"]),
    ({"dossier_id": "d" * 65}, ["dossier_id"]),
    ({"unit_code": ...}, ["unit_code"]),
    ({"unit_code": "12345"}, ["unit_code"]),
    ({"occurred_at": ...}, ["occurred_at"]),
    ({"occurred_at": "2025-09-30T10:00:00"}, ["occurred_at"]),
    ({"occurred_at": "yesterday"}, ["occurred_at"]),
    ({"occurred_at": 1759200000}, ["occurred_at"]),
    ({"occurred_at": "FUTURE"}, ["occurred_at"]),
    ({"occurred_at": "ANCIENT"}, ["occurred_at"]),
    ({"channel": ...}, ["channel"]),
    ({"channel": "fax"}, ["channel"]),
    ({"due_at": ...}, ["due_at"]),
    ({"due_at": "2025-10-01T10:00:00"}, ["due_at"]),
    ({"type": "due_changed", "reason": ...}, ["reason"]),
    ({"type": "due_changed", "reason": "mood"}, ["reason"]),
    ({"type": "due_changed", "due_at": ...}, ["due_at"]),
    ({"type": "resolved", "outcome": "maybe"}, ["outcome"]),
    ({"procedure_code": "p" * 33}, ["procedure_code"]),
    ({"procedure_code": ""}, ["procedure_code"]),
    ({"sector": "s" * 65}, ["sector"]),
    ({"sector": "*"}, ["sector"]),
]


class TestRejections:
    @pytest.mark.parametrize("fields,loc", REJECTIONS, ids=[f"{list(f)[0]}={f[list(f)[0]]!r}"[:40] for f, _ in REJECTIONS])
    async def test_rule(self, shared_service, ingest, fields, loc):
        now = datetime.now(UTC)
        special = {"FUTURE": (now + timedelta(minutes=6)).isoformat(), "ANCIENT": (now - timedelta(days=401)).isoformat()}
        fields = {k: special.get(v, v) if isinstance(v, str) else v for k, v in fields.items()}
        e = ev(**fields)
        r = await shared_service.post([e], ingest)
        assert r.status_code == 202
        body = r.json()
        assert body["rejected"] == 1 and body["accepted"] == 0
        assert loc in [err["loc"] for err in body["items"][0]["errors"]], body

    async def test_every_problem_of_an_item_in_one_answer(self, shared_service, ingest):
        future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        e = ev(event_id=..., channel=..., due_at="2026-01-01T00:00:00", sector="*", occurred_at=future)
        other = ev(dossier_id=..., unit_code="99999", channel="fax")
        r = await shared_service.post([e, other], ingest)
        assert r.status_code == 202 and r.json()["rejected"] == 2
        first, second = (sorted(tuple(err["loc"]) for err in item["errors"]) for item in r.json()["items"])
        # types (event_id missing, due_at without offset) and rules (channel required on a receipt,
        # the future, the reserved sector) together
        assert first == [("channel",), ("due_at",), ("event_id",), ("occurred_at",), ("sector",)]
        assert second == [("channel",), ("dossier_id",), ("unit_code",)]

    async def test_small_skew_is_allowed(self, shared_service, ingest):
        e = ev(occurred_at=(datetime.now(UTC) + timedelta(minutes=4)).isoformat())
        assert (await shared_service.post([e], ingest)).json()["accepted"] == 1

    async def test_unknown_fields_are_ignored(self, shared_service, ingest):
        assert (await shared_service.post([ev(colour="blue")], ingest)).json()["accepted"] == 1

    async def test_a_non_object_event(self, shared_service, ingest):
        r = await shared_service.post([42], ingest)
        assert r.json()["items"][0]["errors"] == [{"loc": [], "msg": "an event must be a JSON object"}]


class TestWholeRequest:
    async def _raw(self, svc, token, content: bytes, content_type="application/json", **headers):
        return await svc.client.post(
            "/api/v1/events",
            content=content,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type, **headers},
        )

    async def test_not_json_is_400(self, shared_service, ingest):
        assert (await self._raw(shared_service, ingest, b"{nope")).status_code == 400

    async def test_not_utf8_is_400(self, shared_service, ingest):
        assert (await self._raw(shared_service, ingest, b'{"events": ["\xff"]}')).status_code == 400

    async def test_wrong_content_type_is_415(self, shared_service, ingest):
        assert (await self._raw(shared_service, ingest, b"{}", "text/plain")).status_code == 415

    @pytest.mark.parametrize("body", [b"[]", b'{"evts": []}', b'{"events": {}}'])
    async def test_bad_envelope_is_422(self, shared_service, ingest, body):
        r = await self._raw(shared_service, ingest, body)
        assert r.status_code == 422 and r.json()["errors"]
        assert r.headers["content-type"].startswith("application/problem+json")

    async def test_too_many_events_is_413_and_stores_nothing(self, shared_service, ingest):
        events = [ev() for _ in range(5001)]
        r = await shared_service.post(events, ingest)
        assert r.status_code == 413
        assert await stored(shared_service, [events[0]["event_id"]]) == 0

    async def _post_100_mib(self, svc, token, **headers) -> tuple[int, int]:
        """Stream a 100 MiB body one MiB at a time; (status, MiB the server pulled)."""
        sent = 0

        async def body():
            nonlocal sent
            for _ in range(100):
                sent += 1
                yield b" " * 1024 * 1024

        r = await svc.client.post(
            "/api/v1/events",
            content=body(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
        )
        return r.status_code, sent

    async def test_large_body_refused_by_content_length_before_reading(self, shared_service, ingest):
        status, sent = await self._post_100_mib(shared_service, ingest, **{"Content-Length": str(100 * 1024 * 1024)})
        assert status == 413
        assert sent < 100

    async def test_large_body_without_length_refused_while_streaming(self, shared_service, ingest):
        status, sent = await self._post_100_mib(shared_service, ingest)
        assert status == 413
        assert sent <= 7  # stopped just past 5 MiB, not after reading 100 MiB

    async def test_rate_limit_is_429_with_retry_after(self, make_service):
        async with make_service(ingest_rate_per_minute=6) as svc:
            token = await svc.key("ingest", "46")
            statuses = [(await svc.post([ev()], token)) for _ in range(3)]
            assert statuses[0].status_code == 202
            limited = statuses[-1]
            assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0


class TestAuthorisation:
    """BOLA: a key posts only for its unit and below; one foreign event refuses the whole request."""

    CASES = [
        (COMMUNE, OTHER_COMMUNE),  # commune for a sibling commune
        (COMMUNE, "46"),  # commune for its province
        (COMMUNE, "VN"),  # commune for the nation
        (COMMUNE, FOREIGN_COMMUNE),  # commune for a commune elsewhere
        ("46", "79"),  # province for another province
        ("46", FOREIGN_COMMUNE),  # province for another province's commune
        ("46", "VN"),  # province for the nation
    ]

    @pytest.mark.parametrize("key_unit,target", CASES)
    async def test_refused(self, shared_service, key_unit, target):
        token = await shared_service.key("ingest", key_unit)
        own = ev(unit_code=key_unit)
        foreign = ev(unit_code=target)
        r = await shared_service.post([own, foreign], token)
        assert r.status_code == 403
        assert target in r.json()["detail"]
        assert await stored(shared_service, [own["event_id"], foreign["event_id"]]) == 0

    @pytest.mark.parametrize("key_unit,target", [(COMMUNE, COMMUNE), ("46", COMMUNE), ("46", "46"), ("VN", FOREIGN_COMMUNE), ("VN", "VN")])
    async def test_allowed(self, shared_service, key_unit, target):
        token = await shared_service.key("ingest", key_unit)
        assert (await shared_service.post([ev(unit_code=target)], token)).json()["accepted"] == 1


class TestDatabaseDown:
    async def test_unreachable_database_is_503(self, store, tmp_path):
        from tests.conftest import start_service

        url = f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db" if store == "sqlite" else "postgresql+asyncpg://postgres@127.0.0.1:1/none"
        async for svc in start_service(url, public_read=True):
            r = await svc.client.post("/api/v1/events", json={"events": []}, headers={"Authorization": "Bearer x"})
            assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0

    async def test_connection_lost_mid_request_stores_nothing(self, store, fresh_service):
        if store != "postgres":
            pytest.skip("needs a server whose connections can be killed")
        import asyncpg

        from tests.conftest import PG_ADMIN

        svc = fresh_service
        token = await svc.key("ingest", "46")
        dbname = svc.url.rsplit("/", 1)[1]
        blocker = await asyncpg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname)
        await blocker.execute("BEGIN; LOCK TABLE unit_day IN ACCESS EXCLUSIVE MODE")
        events = [ev(), ev()]
        request = asyncio.create_task(svc.post(events, token))
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            for _ in range(100):  # wait until the request is inside its transaction, blocked on the lock
                waiting = await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname=$1 AND application_name='chiso' AND wait_event_type='Lock'",
                    dbname,
                )
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting, "the request never reached the database"
            for row in waiting:
                await admin.execute("SELECT pg_terminate_backend($1)", row["pid"])
            r = await request
        finally:
            await blocker.execute("ROLLBACK")
            await blocker.close()
            await admin.close()
        assert r.status_code == 503 and "Retry-After" in r.headers
        assert await stored(svc, [e["event_id"] for e in events]) == 0
        r = await svc.post(events, token)  # the pool recovers, and the retry stores it once
        assert r.json()["accepted"] == 2


class TestWholeRequestsAndNdjson:
    async def _raw(self, svc, token, content: bytes, content_type: str):
        return await svc.client.post(
            "/api/v1/events", content=content, headers={"Authorization": f"Bearer {token}", "Content-Type": content_type}
        )

    async def _stored(self, svc, ids) -> int:
        async with svc.db.session() as session:
            q = select(func.count()).select_from(DossierEvent).where(DossierEvent.event_id.in_(ids))
            return (await session.execute(q)).scalar_one()

    def _event(self, **kw) -> dict:
        now = datetime.now(UTC)
        return wire(received(COMMUNE, uid(), now - timedelta(hours=1), now + timedelta(days=1), event_id=f"n-{uid()}", **kw))

    async def test_ndjson_lines_that_are_not_objects_are_items_and_blank_lines_are_skipped(self, shared_service):
        token = await shared_service.key("ingest", "46")
        good = [self._event(), self._event()]
        body = "\n".join([json.dumps(good[0]), "", "   ", "[1, 2]", "not json", "\t", json.dumps(good[1]), ""]) + "\r\n"
        r = await self._raw(shared_service, token, body.encode(), "application/x-ndjson")
        assert r.status_code == 202
        assert r.json() == {
            "accepted": 2,
            "duplicates": 0,
            "rejected": 2,
            "items": [
                {"index": 1, "event_id": None, "status": "rejected", "errors": [{"loc": [], "msg": "an event must be a JSON object"}]},
                {"index": 2, "event_id": None, "status": "rejected", "errors": [{"loc": [], "msg": "line is not JSON"}]},
            ],
        }

    async def test_ndjson_lines_end_only_at_newline(self, shared_service):
        token = await shared_service.key("ingest", "46")
        events = [self._event(dossier_id=f"a\u2028b-{uid()}"), self._event(dossier_id=f"c\u0085d-{uid()}")]
        body = "\n".join(json.dumps(e, ensure_ascii=False) for e in events)
        r = await self._raw(shared_service, token, body.encode(), "application/x-ndjson")
        assert r.json()["accepted"] == 2, r.json()

    async def test_ndjson_not_utf8_is_400_and_stores_nothing(self, shared_service):
        token = await shared_service.key("ingest", "46")
        good = self._event()
        r = await self._raw(shared_service, token, json.dumps(good).encode() + b"\n\xff\xfe\n", "application/x-ndjson")
        assert r.status_code == 400 and await self._stored(shared_service, [good["event_id"]]) == 0

    async def test_a_foreign_unit_in_an_invalid_event_refuses_the_request_naming_it(self, shared_service):
        token = await shared_service.key("ingest", "46")
        good = self._event()
        foreign = {"unit_code": "26506", "type": "nonsense"}
        r = await shared_service.post([good, foreign], token)
        assert r.status_code == 403 and r.json()["unit"] == "26506" and "26506" in r.json()["detail"]
        assert await self._stored(shared_service, [good["event_id"]]) == 0
