"""Registry, keys, health and problem details on both stores."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app.errors import Unauthorized
from app.keys import service as keys


class TestRegistry:
    async def test_provinces_are_34(self, shared_service):
        token = await shared_service.key("read")
        r = await shared_service.get("/api/v1/units", token, level="province", limit=100)
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == 34 and len(body["items"]) == 34
        assert all(len(u["code"]) == 2 and u["parent"] == "VN" and u["kind"] is None for u in body["items"])

    async def test_communes_by_kind(self, shared_service):
        token = await shared_service.key("read")
        r = await shared_service.get("/api/v1/units", token, level="commune", limit=5000)
        items = r.json()["items"]
        assert r.json()["total"] == 3321
        kinds = {k: sum(1 for u in items if u["kind"] == k) for k in ("xa", "phuong", "dac_khu")}
        assert kinds == {"xa": 2621, "phuong": 687, "dac_khu": 13}
        assert all(len(u["code"]) == 5 and len(u["parent"]) == 2 for u in items)

    async def test_paginates_and_filters_by_parent(self, shared_service):
        token = await shared_service.key("read")
        first = (await shared_service.get("/api/v1/units", token, parent="79", limit=10)).json()
        second = (await shared_service.get("/api/v1/units", token, parent="79", limit=10, offset=10)).json()
        assert first["total"] == second["total"] > 20
        assert {u["code"] for u in first["items"]}.isdisjoint({u["code"] for u in second["items"]})
        assert all(u["parent"] == "79" for u in first["items"] + second["items"])

    async def test_unit_with_parent_chain(self, shared_service):
        token = await shared_service.key("read")
        body = (await shared_service.get("/api/v1/units/26740", token)).json()
        assert body["name"] == "Phường Sài Gòn" and body["kind"] == "phuong" and body["level"] == "commune"
        assert [p["code"] for p in body["parents"]] == ["VN", "79"]

    async def test_unknown_unit_is_404_problem(self, shared_service):
        token = await shared_service.key("read")
        r = await shared_service.get("/api/v1/units/99999", token)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 404

    async def test_bad_query_parameter_is_422_naming_it(self, shared_service):
        token = await shared_service.key("read")
        r = await shared_service.get("/api/v1/units", token, level="district")
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["level"]


class TestKeys:
    async def test_missing_key_is_401(self, shared_service):
        r = await shared_service.get("/api/v1/units")
        assert r.status_code == 401

    async def test_unknown_key_is_401(self, shared_service):
        r = await shared_service.get("/api/v1/units", "chiso_not-a-key")
        assert r.status_code == 401

    async def test_revoked_key_is_401(self, shared_service):
        registry = await shared_service.app.state.registry.refresh()
        key_id, token = await keys.create_key(shared_service.db, registry, "read", "to revoke", None)
        assert (await shared_service.get("/api/v1/units", token)).status_code == 200
        assert await keys.revoke(shared_service.db, key_id)
        assert (await shared_service.get("/api/v1/units", token)).status_code == 401

    async def test_a_key_found_valid_is_trusted_for_its_seconds_and_a_revocation_elsewhere_is_seen_after(self, shared_service):
        """KEY_CACHE_SECONDS: revoked by another process (the row changed under this one, as by the
        CLI), the key is trusted until its time runs out, then refused; never looked up in between."""
        registry = await shared_service.app.state.registry.refresh()
        key_id, token = await keys.create_key(shared_service.db, registry, "read", "revoked elsewhere", None)
        header = f"Bearer {token}"
        first = await keys.authenticate(shared_service.db, header, keep_for=1.0)
        async with shared_service.db.transaction() as session:
            await session.execute(text("UPDATE api_key SET revoked_at = :t WHERE id = :k"), {"t": datetime.now(UTC), "k": key_id})
        assert await keys.authenticate(shared_service.db, header, keep_for=1.0) == first
        await asyncio.sleep(1.05)
        with pytest.raises(Unauthorized):
            await keys.authenticate(shared_service.db, header, keep_for=1.0)

    async def test_ingest_key_cannot_read(self, shared_service):
        token = await shared_service.key("ingest", "46")
        assert (await shared_service.get("/api/v1/units", token)).status_code == 403

    async def test_read_key_cannot_post(self, shared_service):
        token = await shared_service.key("read")
        assert (await shared_service.post([], token)).status_code == 403

    async def test_admin_key_reads(self, shared_service):
        token = await shared_service.key("admin")
        assert (await shared_service.get("/api/v1/units", token)).status_code == 200

    async def test_only_a_hash_is_stored(self, shared_service):
        token = await shared_service.key("read")
        listed = await keys.list_keys(shared_service.db)
        assert token not in repr(listed)

        async with shared_service.db.session() as session:
            rows = (await session.execute(text("SELECT token_hash FROM api_key"))).scalars().all()
        assert keys.hash_token(token) in rows and token not in rows

    async def test_public_read(self, make_service):
        async with make_service(public_read=True) as svc:
            assert (await svc.get("/api/v1/units")).status_code == 200
            r = await svc.client.post("/api/v1/events", json={"events": []})
            assert r.status_code == 401

    @pytest.mark.parametrize("scope,unit", [("ingest", None), ("read", "46"), ("ingest", "99999"), ("owner", None)])
    async def test_invalid_key_requests_are_refused(self, shared_service, scope, unit):
        registry = await shared_service.app.state.registry.refresh()
        with pytest.raises(ValueError):
            await keys.create_key(shared_service.db, registry, scope, "bad", unit)


class TestHealth:
    async def test_healthz(self, shared_service):
        assert (await shared_service.get("/healthz")).json() == {"status": "ok"}

    async def test_every_answer_tells_the_services_own_time(self, shared_service):
        """Server-Timing: app;dur=<ms>, on answers and refusals alike, and on a 304."""
        token = await shared_service.key("read")
        got = [await shared_service.get("/api/v1/units/VN/kpis", token), await shared_service.get("/api/v1/units")]
        etag = got[0].headers["etag"]
        headers = {"Authorization": f"Bearer {token}", "If-None-Match": etag}
        got.append(await shared_service.client.get("/api/v1/units/VN/kpis", headers=headers))
        assert [r.status_code for r in got] == [200, 401, 304]
        for r in got:
            name, dur = r.headers["server-timing"].split(";dur=")
            assert name == "app" and 0 <= float(dur) < 60_000, r.headers["server-timing"]

    async def test_readyz_when_current(self, shared_service):
        r = await shared_service.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"]["schema"] == "current"

    async def test_readyz_when_database_unreachable(self, store, tmp_path):
        from tests.conftest import start_service

        url = f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db" if store == "sqlite" else "postgresql+asyncpg://postgres@127.0.0.1:1/none"
        async for svc in start_service(url):
            r = await svc.get("/readyz")
            assert r.status_code == 503 and r.json()["status"] == "not ready"

    async def test_openapi_and_docs(self, shared_service):
        assert (await shared_service.get("/openapi.json")).json()["info"]["title"] == "chiso"
        assert (await shared_service.get("/docs")).status_code == 200
