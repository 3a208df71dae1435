"""Fuzz. Schemathesis against the service's own /openapi.json, over a real `chiso serve`, with no key
and with a key of every scope: no 5xx, and every answer's status, content type, headers and body
as the document says. Then hypothesis fuzz of the event payload and of NDJSON bodies (random
shapes, huge strings, deep nesting, odd Unicode and lone surrogates, NaN and Infinity, numbers
where strings belong, duplicate keys): every bad input is a per-item rejection or a 4xx problem
that names the problem, and nothing is half-stored (the event log grows by exactly `accepted`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.server import Server
from tests.reliability.harness import LONG, OUTPUT, ROOT, make_key, query, scale

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
SCOPES = ("none", "ingest", "read", "admin")


@pytest.fixture
def server(store, db_url, watch):
    env = {"DATABASE_URL": db_url, "INGEST_RATE_PER_MINUTE": "0", "EXPORT_INTERVAL": "1"}
    srv = Server(env, workers=1, log=watch.log("serve.log")).start()
    srv.db_url = db_url
    yield srv
    srv.kill()


def test_schemathesis_every_scope(store, server, watch, tmp_path):
    if store == "sqlite" and not LONG:
        pytest.skip("schemathesis on SQLite: long form only (CHISO_RELIABILITY=long); the short form runs it on PostgreSQL")
    tokens = {
        "ingest": asyncio.run(make_key(server.db_url, "ingest", "VN"))[1],
        "read": asyncio.run(make_key(server.db_url, "read"))[1],
        "admin": asyncio.run(make_key(server.db_url, "admin"))[1],
    }
    watch.add(*tokens.values())
    failures = []
    for scope in SCOPES:
        report = tmp_path / f"junit-{scope}.xml"
        cmd = [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(scale(4 if scope in ("none", "read") else 10, 150)),
            "--phases",
            scale("examples,fuzzing", "examples,coverage,fuzzing"),
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            "--seed",
            str(scale(15, int.from_bytes(os.urandom(4), "big"))),
        ]
        if scope != "none":
            cmd += ["--header", f"Authorization: Bearer {tokens[scope]}"]
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.reliability.st_hooks", "PYTHONPATH": str(ROOT)}
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
        out = result.stdout + result.stderr
        for t in tokens.values():
            out = out.replace(t, "<token>")
        OUTPUT.mkdir(parents=True, exist_ok=True)
        (OUTPUT / f"schemathesis-{store}-{scope}.txt").write_text(out)
        # Failures are the service's (a 5xx, an answer outside the document); errors are schemathesis's own
        # (its generator crashing on a schema), tolerated when few.
        suite = ElementTree.parse(report).getroot()
        tests, failed, errors = (int(suite.get(k)) for k in ("tests", "failures", "errors"))
        if failed or errors > 2 or tests < 12:
            failures.append(f"--- scope {scope}: {failed} failures, {errors} errors of {tests} (exit {result.returncode}):\n{out[-6000:]}")
    assert not failures, "\n".join(failures)
    log = watch.log("serve.log").read_text()
    assert not re.findall(r'HTTP/1\.1" 5\d\d', log), "the server answered a 5xx"


# --- hypothesis: the event payload and NDJSON bodies ------------------------------------------------------


FIELDS = (
    "event_id",
    "type",
    "dossier_id",
    "unit_code",
    "occurred_at",
    "channel",
    "due_at",
    "reason",
    "outcome",
    "procedure_code",
    "sector",
)
ODD_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40)
HUGE = st.sampled_from(["x" * 129, "é" * 70_000, "\u202e" * 10, "\x00", "a\x00b", "\ud800", "\udfff\ud800", "46\n", " 46", "𝟒𝟔"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    ODD_TEXT,
    HUGE,
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)), max_leaves=12
)


class Raw:
    """A JSON fragment written as is: NaN, Infinity, deep nesting, an object with duplicate keys."""

    def __init__(self, text: str):
        self.text = text


RAWS = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "00", "01", '"\\ud800"', '"\\udc00x"', '"\\u0000"', "tru"]),
    st.integers(1, 3000).map(lambda n: Raw("[" * n + "]" * n)).map(lambda r: r.text),
).map(Raw)


def dump(value, surrogates: bool) -> str:
    """JSON text of value; Raw fragments verbatim; a list of pairs tagged 'pairs' is an object with those keys."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, tuple) and value and value[0] == "pairs":
        return "{" + ",".join(f"{dump(k, surrogates)}:{dump(v, surrogates)}" for k, v in value[1]) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, surrogates) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{dump(str(k), surrogates)}:{dump(v, surrogates)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=not surrogates, allow_nan=True)


def valid_event(tag: str) -> dict:
    at = datetime.now(UTC) - timedelta(hours=3)
    return {
        "event_id": tag,
        "type": "received",
        "dossier_id": tag,
        "unit_code": "19777",
        "occurred_at": at.isoformat(),
        "channel": "online",
        "due_at": (at + timedelta(days=2)).isoformat(),
    }


@st.composite
def mutated_event(draw):
    """A valid event with some of its fields replaced, removed or duplicated, or any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(VALUES, RAWS))
    pairs = list(valid_event(f"fz-{uuid.uuid4().hex}").items())
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["set", "drop", "dup", "extra", "raw"]))
        i = draw(st.integers(0, len(pairs) - 1)) if pairs else 0
        if how == "set" and pairs:
            pairs[i] = (pairs[i][0], draw(VALUES))
        elif how == "drop" and pairs:
            pairs.pop(i)
        elif how == "dup" and pairs:  # the same key twice: the last copy counts (orjson, like most parsers)
            pairs.append((pairs[i][0], draw(VALUES)))
        elif how == "extra":
            pairs.append((draw(ODD_TEXT), draw(VALUES)))
        elif how == "raw" and pairs:
            pairs[i] = (pairs[i][0], draw(RAWS))
        pairs = [(k, v) for k, v in pairs]
    if draw(st.booleans()):
        pairs.append(("type", draw(st.sampled_from(["resolved", "withdrawn", "due_changed", "received"]))))
    return ("pairs", pairs)


def event_count(url: str) -> int:
    return query(url, "SELECT count(*) FROM dossier_event")[0][0]


def check_answer(r: httpx.Response, n_items: int | None, before: int, after: int, sentinel_ok: bool) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert r.status_code in (202, 400, 413, 422), f"{r.status_code}: {r.text[:500]}"
    if r.status_code != 202:
        problem = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert problem["status"] == r.status_code and problem["detail"], problem
        if r.status_code == 422:
            assert problem["errors"] and all(isinstance(e["loc"], list) and e["msg"] for e in problem["errors"]), problem
        assert after == before, "a refused request stored events"
        return
    body = r.json()
    if n_items is not None:
        assert body["accepted"] + body["duplicates"] + body["rejected"] == n_items, body
    for item in body["items"]:
        if item["status"] == "rejected":
            assert item["errors"] and all(isinstance(e["loc"], list) and e["msg"] for e in item["errors"]), item
    assert after - before == body["accepted"], f"stored {after - before} events for {body['accepted']} accepted"
    assert sentinel_ok


FUZZ = settings(
    max_examples=scale(60, 1500),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=not LONG,
)


@pytest.fixture
def ingest(server, watch):
    token = asyncio.run(make_key(server.db_url, "ingest", "VN"))[1]
    watch.add(token)
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


@FUZZ
@given(events=st.lists(mutated_event(), max_size=6), surrogates=st.booleans(), shape=st.integers(0, 9))
def test_fuzz_json_batches(server, ingest, events, surrogates, shape):
    sentinel = valid_event(f"sentinel-{uuid.uuid4().hex}")
    items = [sentinel, *events]
    if shape == 0:  # not an object with an events array
        text = dump(events[0] if events else Raw("[]"), surrogates)
    elif shape == 1:  # the events array under a duplicate key, the last one counting
        text = '{"events": 5, "events": ' + dump(items, surrogates) + "}"
    else:
        text = '{"events": ' + dump(items, surrogates) + "}"
    body = text.encode("utf-8", "surrogatepass")
    before = event_count(server.db_url)
    r = ingest.post("/api/v1/events", content=body, headers={"Content-Type": "application/json"})
    after = event_count(server.db_url)
    stored = r.status_code == 202 and (
        ingest.post("/api/v1/events", params={"dry_run": "true"}, json={"events": [sentinel]}).json()["duplicates"] == 1
    )
    check_answer(r, len(items) if shape else None, before, after, sentinel_ok=stored or r.status_code != 202 or shape == 0)


@FUZZ
@given(
    lines=st.lists(st.one_of(mutated_event(), st.binary(max_size=30).map(lambda b: Raw(b.decode("latin-1")))), max_size=6),
    surrogates=st.booleans(),
    blank=st.sampled_from(["", "\n", "\r\n", " \t\n", "\u2028"]),
)
def test_fuzz_ndjson_bodies(server, ingest, lines, surrogates, blank):
    sentinel = valid_event(f"sentinel-{uuid.uuid4().hex}")
    texts = [json.dumps(sentinel)] + [dump(x, surrogates).replace("\n", " ") for x in lines]
    body = (("\n" + blank).join(texts) + "\n").encode("utf-8", "surrogatepass")
    before = event_count(server.db_url)
    r = ingest.post("/api/v1/events", content=body, headers={"Content-Type": "application/x-ndjson"})
    after = event_count(server.db_url)
    n = sum(1 for line in body.split(b"\n") if line.strip(b" \t\r"))
    stored = r.status_code == 202 and (
        ingest.post("/api/v1/events", params={"dry_run": "true"}, json={"events": [sentinel]}).json()["duplicates"] == 1
    )
    check_answer(r, n, before, after, sentinel_ok=stored or r.status_code != 202)


ODD_STRINGS = ["\x00", "a\x00b", "\ud800", "\udfff", "\u202e46", "e\u0301", "\ufeff", "🏛️", "\u2028", "\x7f", "x" * 64, " "]


def test_odd_strings_in_every_text_field(server, ingest):
    """Each odd string in each free-text field of an otherwise valid event (as JSON escapes, so the body
    is valid UTF-8): stored as sent, or rejected naming the field; never a 5xx, never half-stored."""
    for field in ("event_id", "dossier_id", "procedure_code", "sector"):
        for odd in ODD_STRINGS:
            ev = valid_event(f"odd-{uuid.uuid4().hex}")
            ev[field] = odd if field not in ("event_id", "dossier_id") else ev[field] + odd
            for ctype, body in (
                ("application/json", json.dumps({"events": [ev]})),
                ("application/x-ndjson", json.dumps(ev) + "\n"),
            ):
                before = event_count(server.db_url)
                r = ingest.post("/api/v1/events", content=body.encode(), headers={"Content-Type": ctype})
                after = event_count(server.db_url)
                assert r.status_code < 500, f"{field}={odd!r} ({ctype}): {r.status_code} {r.text[:300]}"
                check_answer(r, 1, before, after, sentinel_ok=True)
                if r.status_code == 202 and r.json()["rejected"]:
                    # a lone surrogate escape makes the NDJSON line unreadable: a rejection of the line
                    assert r.json()["items"][0]["errors"][0]["loc"] in ([field], []), r.text


def test_odd_strings_in_query_parameters(server, watch):
    """Each odd string (NUL among them) in each free-text query parameter and path segment: a 4xx or an
    answer, never a 5xx (a NUL reaching PostgreSQL would be a 503 for bad input)."""
    read = asyncio.run(make_key(server.db_url, "read"))[1]
    watch.add(read)
    targets = [
        ("/api/v1/units/46/kpis", "sector"),
        ("/api/v1/units/46/sectors", "window"),
        ("/api/v1/rankings", "parent"),
        ("/api/v1/rankings", "sort"),
        ("/api/v1/units", "parent"),
        ("/api/v1/units/46/series", "kpi"),
        ("/api/v1/units/{odd}", None),
        ("/api/v1/units/{odd}/kpis", None),
    ]
    bad = []
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {read}"}) as c:
        for path, param in targets:
            for odd in [*ODD_STRINGS, "land\x00", "%", "../46"]:
                value = odd.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
                if param is None:
                    r = c.get(path.replace("{odd}", httpx.URL("", params={"x": value}).query.decode()[2:]))
                else:
                    r = c.get(path, params={param: value})
                if r.status_code >= 500:
                    bad.append((path, param, odd, r.status_code, r.text[:120]))
    assert not bad, bad[:10]
