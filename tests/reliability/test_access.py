"""Access: for every endpoint of /openapi.json, the keys and units that must be refused, against a
real `chiso serve`: no key, a malformed or unknown key, a revoked key, the wrong scope, an ingest
key of another commune or province (and of the province above), a province key for a unit of
another province, a key of a unit removed from the registry. Reads are for any unit with a read
(or admin) key (SPEC section 5: only ingest keys are bound to a unit). A refused post stores
nothing, and a refusal never echoes the token. Tokens are looked up by hash and signatures compared
in constant time; the `watch` fixture greps the server's log for every token made here."""

from __future__ import annotations

import asyncio
import csv
import inspect
import json
import time

import httpx

from app.export import signing
from app.keys import service as keys_service
from tests.helpers.server import Server, cli
from tests.reliability.harness import OUTPUT, make_key, query, received_events, revoke_key, stored_events

PUBLIC = {"/healthz", "/readyz", "/metrics", "/", "/openapi.json", "/docs", "/redoc"}


async def _keys(url: str, units: dict) -> dict:
    made = {}
    for name, scope, unit in (
        ("read", "read", None),
        ("admin", "admin", None),
        ("revoked read", "read", None),
        ("revoked ingest", "ingest", units["a1"]),
        ("ingest commune a1", "ingest", units["a1"]),
        ("ingest province P1", "ingest", units["P1"]),
        ("ingest province P2", "ingest", units["P2"]),
        ("ingest VN", "ingest", "VN"),
        ("ingest removed commune", "ingest", units["gone"]),
    ):
        made[name] = await make_key(url, scope, unit, name)
    for name in ("revoked read", "revoked ingest"):
        await revoke_key(url, made[name][0])
    return {name: token for name, (_, token) in made.items()}


def fill(path: str, unit: str) -> str:
    return path.replace("{code}", unit)


def test_access_table(store, db_url, tmp_path, watch):
    env = {"DATABASE_URL": db_url, "INGEST_RATE_PER_MINUTE": "0", "EXPORT_ENABLED": "false"}
    server = Server(env, workers=1, log=watch.log("serve.log")).start()
    rows: list[tuple] = []  # (method, path, key, unit, expected, got)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            doc = c.get("/openapi.json").json()
            units = {"P1": "46", "P2": "79"}
            tmp_read = asyncio.run(make_key(db_url, "read", None, "lister"))[1]
            watch.add(tmp_read)
            h = {"Authorization": f"Bearer {tmp_read}"}
            p1 = [u["code"] for u in c.get("/api/v1/units", params={"parent": "46", "limit": 5000}, headers=h).json()["items"]]
            p2 = [u["code"] for u in c.get("/api/v1/units", params={"parent": "79", "limit": 5000}, headers=h).json()["items"]]
            units.update(a1=p1[0], a2=p1[1], b1=p2[0], gone=p2[-1])
            every = c.get("/api/v1/units", params={"limit": 5000}, headers=h).json()["items"]
            tokens = asyncio.run(_keys(db_url, units))
            watch.add(*tokens.values())

            # A unit removed from the registry (units import --replace without it); its key stays.
            csv_path = tmp_path / "units.csv"
            with csv_path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["code", "name", "kind", "parent_code"])
                for u in every:
                    if u["code"] not in ("VN", units["gone"]):
                        w.writerow([u["code"], u["name"], u["kind"] or "", u["parent"] or ""])
            cli(env, "units", "import", str(csv_path), "--replace")
            deadline = time.monotonic() + 30
            while c.get(f"/api/v1/units/{units['gone']}", headers=h).status_code != 404:  # the workers' registry follows
                assert time.monotonic() < deadline
                time.sleep(0.5)

            def auth(name: str | None) -> dict:
                if name is None:
                    return {}
                if name == "malformed":
                    return {"Authorization": f"Basic {tokens['read']}"}
                if name == "unknown":
                    return {"Authorization": f"Bearer {tokens['read']}x"}
                return {"Authorization": f"Bearer {tokens[name]}"}

            def check(method: str, path: str, key: str | None, unit: str, expected: set, **kw) -> httpx.Response:
                r = c.request(method, path, headers={**auth(key), **kw.pop("headers", {})}, **kw)
                rows.append((method, path, key or "no key", unit, "/".join(map(str, sorted(expected))), r.status_code))
                for t in tokens.values():
                    assert t not in r.text, f"{method} {path}: the answer echoes a token"
                if r.status_code in (401, 403):
                    assert r.headers["content-type"].startswith("application/problem+json")
                return r

            # Every GET of the document: refused without a valid read key, served for any unit with one.
            for path, ops in doc["paths"].items():
                if "get" not in ops:
                    continue
                if path in PUBLIC:
                    check("GET", path, None, "-", {200})
                    continue
                for unit in ("VN", units["P1"], units["b1"]):
                    p = fill(path, unit)
                    for key in (None, "malformed", "unknown", "revoked read"):
                        check("GET", p, key, unit, {401})
                    for key in ("ingest commune a1", "ingest province P1", "ingest VN", "revoked ingest"):
                        check("GET", p, key, unit, {403} if key != "revoked ingest" else {401})
                    for key in ("read", "admin"):
                        check("GET", p, key, unit, {200})
                    if "{code}" not in path:
                        break
            for path in ("/", "/docs", "/redoc"):
                check("GET", path, None, "-", {200})

            # POST /api/v1/events: scopes and units.
            def batch(*codes: str, tag: str) -> dict:
                return {"events": [e for i, code in enumerate(codes) for e in received_events([code], 1, f"{tag}-{i}")]}

            post = "/api/v1/events"
            refused = [
                (None, [units["a1"]], 401),
                ("malformed", [units["a1"]], 401),
                ("unknown", [units["a1"]], 401),
                ("revoked ingest", [units["a1"]], 401),
                ("read", [units["a1"]], 403),
                ("admin", [units["a1"]], 403),
                ("ingest commune a1", [units["a2"]], 403),  # a sibling commune
                ("ingest commune a1", [units["P1"]], 403),  # its own province's centre
                ("ingest commune a1", ["VN"], 403),
                ("ingest commune a1", [units["b1"]], 403),  # a commune of another province
                ("ingest commune a1", [units["a1"], units["a2"]], 403),  # one foreign event refuses the whole batch
                ("ingest province P1", [units["b1"]], 403),  # a province key, a commune of another province
                ("ingest province P1", [units["P2"]], 403),
                ("ingest province P1", ["VN"], 403),
                ("ingest province P2", [units["a1"]], 403),
                ("ingest removed commune", [units["b1"]], 403),  # its unit is gone: it covers nothing known
                ("ingest removed commune", [units["P2"]], 403),
            ]
            for n, (key, codes, status) in enumerate(refused):
                r = check("POST", post, key, "+".join(codes), {status}, json=batch(*codes, tag=f"no{n}"))
                if status == 403 and key not in ("read", "admin"):
                    assert r.json().get("unit") in codes, r.text  # the problem names the unit
            r = check("POST", post, "ingest removed commune", units["gone"], {202}, json=batch(units["gone"], tag="gone"))
            assert r.json()["accepted"] == 0 and r.json()["items"][0]["errors"] == [{"loc": ["unit_code"], "msg": "unknown unit"}]
            assert stored_events(db_url) == {}, "a refused post stored something"
            allowed = [
                ("ingest commune a1", [units["a1"]]),
                ("ingest province P1", [units["a1"], units["a2"], units["P1"]]),
                ("ingest province P2", [units["b1"], units["P2"]]),
                ("ingest VN", ["VN", units["a1"], units["b1"]]),
            ]
            want = set()
            for n, (key, codes) in enumerate(allowed):
                body = batch(*codes, tag=f"ok{n}")
                r = check("POST", post, key, "+".join(codes), {202}, json=body)
                assert r.json()["accepted"] == len(codes)
                want |= {(e["unit_code"], e["event_id"]) for e in body["events"]}
            assert set(stored_events(db_url)) == want

            # The receiving end of the network is signed, not keyed: no API key opens it.
            snap = json.dumps({"node_id": "hue", "records": []}).encode()
            for key in (None, "admin", "ingest VN"):
                check("POST", "/api/v1/network/snapshots", key, "-", {401}, content=snap)
            check(
                "POST",
                "/api/v1/network/snapshots",
                None,
                "-",
                {401},
                content=snap,
                headers={"X-Chiso-Node": "hue", "X-Chiso-Signature": signing.sign(snap, "guessed")},
            )
            # Only the hash of a token is stored: no column of api_key holds a token.
            dump = repr(query(db_url, "SELECT * FROM api_key"))
            assert not [t for t in tokens.values() if t in dump]
    finally:
        server.kill()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with (OUTPUT / f"access-{store}.md").open("w") as f:
        f.write("| method | path | key | unit | expected | got |\n|---|---|---|---|---|---|\n")
        for row in rows:
            f.write("| " + " | ".join(map(str, row)) + " |\n")
    wrong = [row for row in rows if str(row[5]) not in row[4].split("/")]
    assert not wrong, f"{len(wrong)} of {len(rows)} answers not as the table says: {wrong[:10]}"
    assert len(rows) > 150


def test_tokens_are_compared_by_hash_and_signatures_in_constant_time():
    """A token is never compared as a string: its SHA-256 is looked up (a timing difference would only
    tell about a hash of a guess), in the keys this process trusts and in the table; snapshot signatures
    go through hmac.compare_digest."""
    auth = inspect.getsource(keys_service.authenticate)
    assert "token_hash = hash_token(" in auth
    assert "_trusted.get((db.url, token_hash))" in auth and "read_key_by_hash(session, token_hash)" in auth
    assert "==" not in auth.replace("is None", "")
    assert "hmac.compare_digest" in inspect.getsource(signing.verify)
    assert keys_service.hash_token("chiso_x") != "chiso_x" and len(keys_service.hash_token("chiso_x")) == 64
