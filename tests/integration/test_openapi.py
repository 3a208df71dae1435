"""The OpenAPI document against the code, on both stores.

Every answer any test receives through `Service.client` is validated against the schema that
/openapi.json documents for that path, method, status and media type (tests/openapi_check.py,
installed by tests/conftest.py): a status the document does not list, a key an answer model does not
know, or a type that differs fails the test that got it, so the document and the code cannot diverge.
The calls below exercise every operation with its success and error statuses, and check that the
checker sees them all.
"""

from __future__ import annotations

from collections import Counter
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from app.export.producer import Producer
from app.export.records import snapshot_body
from app.export.signing import sign
from app.ingest.answers import EVENT_EXAMPLES
from app.scoring.kpis import KPI, KPI_NAMES
from tests.helpers.feed import Feed, on_days
from tests.openapi_check import Conformance, NonConformingAnswer

SECRET = "conformance-secret"


def operations(spec: dict) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}


def ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def lifecycle(tag: str, unit: str, now: datetime) -> list[dict]:
    """A received, a moved deadline and a resolution of one dossier, and a withdrawn one."""
    d = f"{tag}-1"
    return [
        {
            "event_id": f"{d}-r",
            "type": "received",
            "dossier_id": d,
            "unit_code": unit,
            "occurred_at": ts(now - timedelta(days=6)),
            "channel": "online",
            "due_at": ts(now - timedelta(days=3)),
            "sector": "land",
            "procedure_code": "1.001612",
        },
        {
            "event_id": f"{d}-d",
            "type": "due_changed",
            "dossier_id": d,
            "unit_code": unit,
            "occurred_at": ts(now - timedelta(days=5)),
            "due_at": ts(now - timedelta(days=1)),
            "reason": "supplement_requested",
        },
        {
            "event_id": f"{d}-x",
            "type": "resolved",
            "dossier_id": d,
            "unit_code": unit,
            "occurred_at": ts(now - timedelta(days=2)),
            "outcome": "approved",
        },
        {
            "event_id": f"{tag}-2-r",
            "type": "received",
            "dossier_id": f"{tag}-2",
            "unit_code": unit,
            "occurred_at": ts(now - timedelta(days=4)),
            "channel": "in_person",
            "due_at": ts(now + timedelta(days=1)),
        },
        {
            "event_id": f"{tag}-2-w",
            "type": "withdrawn",
            "dossier_id": f"{tag}-2",
            "unit_code": unit,
            "occurred_at": ts(now - timedelta(days=1)),
        },
        {
            "event_id": f"{tag}-3-r",
            "type": "received",
            "dossier_id": f"{tag}-3",
            "unit_code": unit,
            "occurred_at": ts(now - timedelta(days=9)),
            "channel": "postal",
            "due_at": ts(now - timedelta(days=2)),
        },
    ]


@pytest.fixture
def pair(make_service):
    """A province node ("hue", small ingest limits) and a central node it can push to, each checked (conftest)."""

    @asynccontextmanager
    async def factory():
        async with (
            make_service(node_id="hue", max_batch_events=50, max_body_bytes=200_000) as node,
            make_service(node_id="vn", subordinates={"hue": SECRET}) as central,
        ):
            assert (await node.client.get("/openapi.json")).json() == node.conformance.spec == central.conformance.spec
            yield node, central, node.conformance

    return factory


async def test_the_document_describes_every_endpoint(make_service):
    async with make_service() as svc:
        r = await svc.client.get("/openapi.json")
        assert r.status_code == 200
        spec = r.json()
    assert spec["openapi"].startswith("3.1")
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    schemas = spec["components"]["schemas"]
    # the KPI block names every KPI of the code, each with a (Vietnamese) description
    assert set(schemas["Kpis"]["properties"]) == set(KPI_NAMES) == set(schemas["Kpis"]["required"])
    assert set(schemas["Change"]["properties"]) == set(KPI_NAMES)
    for name in KPI_NAMES:
        assert schemas["Kpis"]["properties"][name]["description"] == KPI[name].description, name
    assert schemas["Kpis"]["additionalProperties"] is False
    # the event contract, for the body that POST /api/v1/events reads raw
    assert set(schemas["Event"]["required"]) == {"event_id", "type", "dossier_id", "unit_code", "occurred_at"}
    assert schemas["EventBatch"]["properties"]["events"]["items"] == {"$ref": "#/components/schemas/Event"}
    assert "HTTPValidationError" not in schemas
    ops = {(m, p): op for p, o in spec["paths"].items() for m, op in o.items()}
    assert len(ops) == 16  # 12 + at-risk + silent (revision 3) + drivers + report (revision 4)
    for (method, path), op in ops.items():
        where = f"{method} {path}"
        assert op.get("summary") and op.get("description"), where
        for param in op.get("parameters", []):
            assert param.get("description"), (where, param["name"])
            assert param.get("example") is not None or param["schema"].get("examples") or param.get("examples"), (where, param["name"])
        success = [s for s in op["responses"] if s.startswith("2")]
        assert len(success) == 1, where
        content = op["responses"][success[0]]["content"]
        if path != "/metrics":
            assert content["application/json"]["schema"]["$ref"].startswith("#/components/schemas/"), where
        for status, response in op["responses"].items():
            if status[0] in "45" and not (path == "/readyz" and status == "503"):
                assert list(response["content"]) == ["application/problem+json"], (where, status)
                assert response["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
        if method == "get":
            assert "304" in op["responses"], where
        if path.startswith("/api/v1/") and path != "/api/v1/network/snapshots":
            assert op["security"] == [{"bearer": []}], where
            assert "401" in op["responses"] and "403" in op["responses"], where
        if "{code}" in path or path == "/api/v1/rankings":
            assert "404" in op["responses"], where
    body = ops[("post", "/api/v1/events")]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/EventBatch"}
    examples = body["application/json"]["examples"]
    assert {e["type"] for ex in examples.values() for e in ex["value"]["events"]} == set(EVENT_EXAMPLES)
    assert body["application/x-ndjson"]["example"].count("\n") == len(EVENT_EXAMPLES)


async def test_the_event_examples_are_accepted(make_service):
    """What /docs shows as examples is what the service accepts ("Try it out" works)."""
    async with make_service() as svc:
        spec = (await svc.client.get("/openapi.json")).json()
        token = await svc.key("ingest", "46")
        body = spec["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]
        r = await svc.client.post(
            "/api/v1/events",
            json=body["application/json"]["examples"]["lifecycle"]["value"],
            headers={"Authorization": f"Bearer {token}"},
            params={"dry_run": "true"},
        )
        assert r.status_code == 202 and r.json()["accepted"] == len(EVENT_EXAMPLES), r.text
        r = await svc.client.post(
            "/api/v1/events",
            content=body["application/x-ndjson"]["example"],
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        )
        assert r.status_code == 202 and r.json()["accepted"] == len(EVENT_EXAMPLES), r.text


@pytest.mark.slow
async def test_every_answer_matches_the_document(pair):
    async with pair() as (node, central, conformance):
        spec = conformance.spec
        now = datetime.now(UTC)
        ingest, read, admin = await node.key("ingest", "46"), await node.key("read"), await node.key("admin")
        auth = {"Authorization": f"Bearer {ingest}"}
        registry = await node.app.state.registry.refresh()
        unit = sorted(u.code for u in registry.at_level("commune", "46"))[0]  # a commune of Huế
        events = lifecycle("oa", unit, now)

        async def get(path: str, token: str | None = read, status: int = 200, **params) -> httpx.Response:
            r = await node.get(path, token, **params)
            assert r.status_code == status, (path, params, r.text)
            return r

        # --- ingest: accepted, duplicates, rejections, NDJSON, dry run, and every whole-request error
        r = await node.client.post("/api/v1/events", json={"events": events}, headers=auth)
        assert r.status_code == 202 and r.json()["accepted"] == len(events), r.text
        bad = {**events[0], "event_id": "oa-bad", "due_at": "2025-09-30T10:00:00"}
        r = await node.client.post("/api/v1/events", json={"events": [events[0], bad, {"type": "received"}]}, headers=auth)
        assert r.status_code == 202 and r.json()["duplicates"] == 1 and r.json()["rejected"] == 2, r.text
        ndjson = "\n".join(orjson.dumps(e).decode() for e in lifecycle("nd", unit, now)) + "\n\nnot json\n"
        r = await node.client.post("/api/v1/events", content=ndjson, headers={**auth, "Content-Type": "application/x-ndjson"})
        assert r.status_code == 202 and r.json()["items"][-1]["errors"] == [{"loc": [], "msg": "line is not JSON"}], r.text
        r = await node.client.post("/api/v1/events", json={"events": lifecycle("dry", unit, now)}, headers=auth, params={"dry_run": "true"})
        assert r.status_code == 202, r.text
        for body, headers, status in (
            (b"{not json", {"Content-Type": "application/json"}, 400),
            (b"\xff\xfe", {"Content-Type": "application/x-ndjson"}, 400),
            (b"{}", {"Content-Type": "text/plain"}, 415),
            (b"[]", {"Content-Type": "application/json"}, 422),
            (b'{"events": 1}', {"Content-Type": "application/json"}, 422),
            (orjson.dumps({"events": [events[0]] * 51}), {"Content-Type": "application/json"}, 413),
            (b" " * 200_001, {"Content-Type": "application/json"}, 413),
        ):
            r = await node.client.post("/api/v1/events", content=body, headers={**auth, **headers})
            assert r.status_code == status, (status, r.text)
        r = await node.client.post("/api/v1/events", json={"events": events}, params={"dry_run": "maybe"}, headers=auth)
        assert r.status_code == 422
        assert (await node.client.post("/api/v1/events", json={"events": events})).status_code == 401
        other = {**events[0], "unit_code": "79"}
        r = await node.client.post("/api/v1/events", json={"events": [other]}, headers=auth)
        assert r.status_code == 403 and r.json()["unit"] == "79", r.text
        r = await node.client.post("/api/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {read}"})
        assert r.status_code == 403

        # --- units
        await get("/api/v1/units")
        await get("/api/v1/units", level="commune", parent="46", limit=5000)
        await get("/api/v1/units", level="province", limit=2, offset=1)
        await get("/api/v1/units/VN")
        await get(f"/api/v1/units/{unit}")
        await get("/api/v1/units/99999", status=404)
        await get("/api/v1/units", parent="99999", status=404)
        await get("/api/v1/units", limit=0, status=422)
        await get("/api/v1/units", token=None, status=401)
        await get("/api/v1/units", token="chiso_not-a-key", status=401)
        await get("/api/v1/units", token=ingest, status=403)
        await get("/api/v1/units", token=admin)

        # --- silent sources: a commune of Huế that sent on three days and stopped three days ago
        quiet = sorted(u.code for u in registry.at_level("commune", "46"))[1]
        await Feed(node).send(quiet, on_days(now - timedelta(hours=72), 0, 1, 2), now - timedelta(hours=72))
        assert (await get("/api/v1/units/46/silent")).json()["items"][0]["unit"]["code"] == quiet
        await get("/api/v1/units/VN/silent", limit=1, offset=1)
        await get(f"/api/v1/units/{unit}/silent")
        await get("/api/v1/units/99999/silent", status=404)
        await get("/api/v1/units/46/silent", limit=5001, status=422)
        await get("/api/v1/units/46/silent", token=ingest, status=403)

        # --- KPI reads, every period kind, the cache (ETag/304) included
        for code in ("VN", "46", unit):
            for params in ({"window": w} for w in ("1d", "7d", "30d", "90d", "365d")):
                await get(f"/api/v1/units/{code}/kpis", **params)
            for kind in ("day", "week", "month", "quarter", "year"):
                await get(f"/api/v1/units/{code}/kpis", period=kind)
            await get(f"/api/v1/units/{code}/kpis", period="month", at=(now - timedelta(days=60)).date().isoformat())
            await get(f"/api/v1/units/{code}/sectors", window="30d")
            for interval in ("day", "week", "month", "quarter"):
                await get(f"/api/v1/units/{code}/series", kpi="on_time_rate", interval=interval)
            await get(
                f"/api/v1/units/{code}/series",
                kpi="received",
                interval="day",
                **{"from": (now - timedelta(days=10)).date().isoformat(), "to": now.date().isoformat()},
            )
        await get("/api/v1/units/46/kpis", window="30d", sector="land")
        await get("/api/v1/units/46/kpis", window="30d", sector="null")
        etag = (await get("/api/v1/units/46/kpis", window="30d")).headers["etag"]
        r = await node.client.get(
            "/api/v1/units/46/kpis", params={"window": "30d"}, headers={"Authorization": f"Bearer {read}", "If-None-Match": etag}
        )
        assert r.status_code == 304
        await get("/api/v1/rankings")
        await get("/api/v1/rankings", level="commune", parent="46", window="30d", sort="-on_time_rate", limit=5000)
        await get("/api/v1/rankings", level="commune", window="7d", sort="received", limit=5000)
        await get("/api/v1/rankings", level="province", period="quarter", sort="-settlement_score", limit=3, offset=2)
        await get("/api/v1/rankings", parent="99999", status=404)
        await get("/api/v1/rankings", level="commune", parent="46", sort="-on_time_rate", min_count=10)
        pending = {**events[0], "event_id": "oa-p-r", "dossier_id": "oa-p", "occurred_at": ts(now - timedelta(hours=2))}
        assert (await node.post([pending | {"due_at": ts(now + timedelta(hours=30))}], ingest)).status_code == 202
        assert (await get("/api/v1/units/46/at-risk", within="720h", include_overdue="true")).json()["items"]
        await get("/api/v1/units/VN/at-risk", limit=1, offset=1)
        await get("/api/v1/units/46/at-risk", within="0h", status=422)
        await get("/api/v1/units/99999/at-risk", status=404)
        await get("/api/v1/units/46/at-risk", token=ingest, status=403)
        await get("/api/v1/units/99999/kpis", status=404)
        await get("/api/v1/units/99999/series", status=404)
        await get("/api/v1/units/99999/sectors", status=404)
        await get("/api/v1/units/46/kpis", window="2d", status=422)
        await get("/api/v1/units/46/kpis", period="week", window="7d", status=422)
        await get("/api/v1/units/46/kpis", at="yesterday", period="day", status=422)
        await get("/api/v1/rankings", sort="-nothing", status=422)
        await get("/api/v1/rankings", limit=5001, status=422)
        await get("/api/v1/units/46/series", kpi="nothing", status=422)
        await get("/api/v1/units/46/series", interval="day", **{"from": "2020-01-01", "to": "2025-01-01"}, status=422)
        await get("/api/v1/units/46/sectors", window="1y", status=422)
        await get("/api/v1/units/46/kpis", token=None, status=401)
        await get("/api/v1/rankings", token=ingest, status=403)
        await get("/api/v1/units/46/series", token=ingest, status=403)
        await get("/api/v1/units/46/sectors", token=None, status=401)

        # --- drivers, and downloads (CSV and XLSX media types, the 422 of a bad format)
        for code in ("VN", "46", unit):
            await get(f"/api/v1/units/{code}/drivers", kpi="on_time_rate", window="30d")
            await get(f"/api/v1/units/{code}/drivers", kpi="overdue", period="week", sort="-contribution", limit=2, offset=1)
        await get("/api/v1/units/46/drivers", kpi="processing_hours_p50", status=422)
        await get("/api/v1/units/99999/drivers", status=404)
        await get("/api/v1/units/46/drivers", token=ingest, status=403)
        for path in ("/api/v1/units", "/api/v1/units/46", "/api/v1/units/46/kpis", "/api/v1/rankings", "/api/v1/units/46/series"):
            for fmt in ("csv", "xlsx"):
                await get(path, format=fmt)
        for path in ("sectors", "at-risk", "silent", "drivers"):
            await get(f"/api/v1/units/46/{path}", format="xlsx", lang="en")
            await get(f"/api/v1/units/46/{path}", format="csv", lang="key")
        await get("/api/v1/rankings", format="pdf", status=422)
        await get("/api/v1/units/46/report", period="week")
        await get(f"/api/v1/units/{unit}/report", period="month", format="xlsx")
        await get("/api/v1/units/VN/report", period="quarter", lang="en", format="xlsx")
        await get("/api/v1/units/46/report", period="day", status=422)
        await get("/api/v1/units/99999/report", status=404)
        await get("/api/v1/units/46/report", token=ingest, status=403)
        await get("/api/v1/units/99999/kpis", format="csv", status=404)
        await get("/api/v1/rankings", format="csv", token=None, status=401)

        # --- the network: the pull feed (with day and cohort records), and a signed push to the central node
        assert await Producer(node.db, node.settings).produce() > 0
        feed = (await get("/api/v1/export/snapshots", limit=5000)).json()
        assert {r["kind"] for r in feed["records"]} == {"day", "cohort"}
        await get("/api/v1/export/snapshots", after=feed["next_after"], limit=1)
        await get("/api/v1/export/snapshots", after=-1, status=422)
        await get("/api/v1/export/snapshots", token=None, status=401)
        await get("/api/v1/export/snapshots", token=ingest, status=403)
        body = snapshot_body("hue", [orjson.dumps(r).decode() for r in feed["records"]])
        headers = {"Content-Type": "application/json", "X-Chiso-Node": "hue", "Idempotency-Key": "k1"}

        async def push(raw: bytes, secret: str = SECRET) -> httpx.Response:
            signed = {**headers, "X-Chiso-Signature": sign(raw, secret)}
            return await central.client.post("/api/v1/network/snapshots", content=raw, headers=signed)

        r = await push(body)
        assert r.status_code == 200 and r.json()["applied"] == len(feed["records"]), r.text
        assert (await push(body, "wrong")).status_code == 401
        for raw, status in ((b"{not json", 400), (b'{"records": 3}', 422), (orjson.dumps({"records": [{"kind": "week"}]}), 422)):
            r = await push(raw)
            assert r.status_code == status, (status, r.text)
        central_read = await central.key("read")
        r = await central.get("/api/v1/units/46/kpis", central_read, period="month")
        assert r.status_code == 200

        # --- operations
        await get("/healthz", token=None)
        await get("/readyz", token=None)
        r = await get("/metrics", token=None)
        assert r.headers["content-type"].startswith("text/plain")

        conformance.assert_ok()
        central.conformance.assert_ok()
        # every operation of the document was exercised, and every success status seen
        seen = conformance.seen + central.conformance.seen
        assert {(m, p) for m, p, _ in seen} == operations(spec)
        for method, path in operations(spec):
            success = next(s for s in spec["paths"][path][method.lower()]["responses"] if s.startswith("2"))
            assert seen[(method, path, success)], (method, path)
        statuses = Counter(s for _, _, s in seen)
        assert {"200", "202", "304", "400", "401", "403", "404", "413", "415", "422"} <= set(statuses)


@pytest.mark.slow
async def test_public_reads_are_documented_as_optional_auth(make_service):
    async with make_service(public_read=True) as svc:
        spec = (await svc.client.get("/openapi.json")).json()
        conformance = svc.conformance
        assert conformance.spec == spec
        assert spec["paths"]["/api/v1/units"]["get"]["security"] == [{"bearer": []}, {}]
        assert spec["paths"]["/api/v1/events"]["post"]["security"] == [{"bearer": []}]
        r = await svc.client.get("/api/v1/rankings", params={"level": "commune", "limit": 5000})
        assert r.status_code == 200 and r.json()["total"] == 3321
        assert (await svc.client.get("/api/v1/units/VN/kpis")).status_code == 200
        conformance.assert_ok()


async def test_the_checker_rejects_what_the_document_does_not_describe(shared_service):
    """The suite-wide check (conftest) is strict, and catches each kind of divergence."""
    svc = shared_service
    assert svc.conformance.strict and svc.conformance.record in svc.client.event_hooks["response"]
    check = Conformance(svc.conformance.spec, svc.conformance.hidden)
    r = await svc.get("/api/v1/units/VN", await svc.key("read"))  # checked by conftest's watcher: it conforms
    assert r.status_code == 200
    assert check.problems("GET", "/api/v1/units/VN", 200, "application/json", r.content) == []
    wrong = orjson.dumps({**r.json(), "code": 1})
    ok = b'{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no unit 99999"}'
    assert check.problems("GET", "/api/v1/units/99999", 404, "application/problem+json", ok) == []
    assert check.problems("GET", "/docs", 200, "text/html", b"<html>") == []  # kept out of the document on purpose
    for method, path, status, media, body, what in (
        ("GET", "/api/v1/units/VN", 200, "application/json", wrong, "code: 1 is not of type 'string'"),
        ("GET", "/api/v1/units/VN", 418, "application/json", b"{}", "status not documented"),
        ("GET", "/api/v1/units/VN", 404, "text/html", b"<p>", "media type"),
        ("DELETE", "/api/v1/units/VN", 405, "application/json", b"{}", "method not documented"),
        ("GET", "/api/v2/units", 404, "application/json", b"{}", "path not in the OpenAPI document"),
    ):
        found = check.problems(method, path, status, media, body)
        assert len(found) == 1 and what in found[0], (method, path, status, found)
    check.strict = True
    with pytest.raises(NonConformingAnswer):
        check.check("GET", "/api/v1/units/VN", 418, "application/json", b"{}")
