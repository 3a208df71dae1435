"""A large shared answer goes gzipped to a client that accepts it, made once per body by the worker,
with an ETag of its own; small answers and clients that do not accept gzip get the JSON as it is."""

from __future__ import annotations

import gzip

import pytest

from app.answers.encoding import GZIP_FROM
from tests.integration.test_shared_answers import one_received
from tests.streams import wire

RANKING = "/api/v1/rankings"
ALL_COMMUNES = {"level": "commune", "window": "30d", "limit": 5000}


async def _get(svc, path: str, token: str, encoding: str, etag: str | None = None, **params):
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": encoding}
    if etag is not None:
        headers["If-None-Match"] = etag
    return await svc.client.get(path, headers=headers, params=params)


async def test_the_ranking_of_all_communes_goes_gzipped_to_who_accepts_it(svc, tokens):
    ingest, read = tokens
    assert (await svc.post([wire(e) for e in one_received()], ingest)).status_code == 202
    plain = await _get(svc, RANKING, read, "identity", **ALL_COMMUNES)
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert len(plain.content) >= GZIP_FROM
    assert plain.headers["vary"] == "Accept-Encoding"

    zipped = await _get(svc, RANKING, read, "gzip, deflate", **ALL_COMMUNES)
    assert zipped.status_code == 200
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.num_bytes_downloaded * 5 < len(zipped.content)  # compressed on the wire, decoded here
    assert zipped.json()["items"] == plain.json()["items"]
    assert zipped.headers["etag"] != plain.headers["etag"]

    # each representation revalidates with its own tag
    assert (await _get(svc, RANKING, read, "gzip", zipped.headers["etag"], **ALL_COMMUNES)).status_code == 304
    assert (await _get(svc, RANKING, read, "identity", plain.headers["etag"], **ALL_COMMUNES)).status_code == 304
    assert (await _get(svc, RANKING, read, "identity", zipped.headers["etag"], **ALL_COMMUNES)).status_code == 200

    # gzip refused: the JSON as it is
    refused = await _get(svc, RANKING, read, "gzip;q=0, identity", **ALL_COMMUNES)
    assert "content-encoding" not in refused.headers and refused.json()["items"] == plain.json()["items"]

    # a worker compresses a body once, however many ask for it
    answers = svc.app.state.answers
    key = next(k for k in answers._gzipped if k.startswith("rankings:"))
    local = answers._local[key]
    first = answers.gzipped(key, local)
    assert answers.gzipped(key, local) is first
    assert gzip.decompress(first) == local.body


async def test_a_small_answer_goes_as_it_is(svc, tokens):
    _, read = tokens
    got = await _get(svc, "/api/v1/units/19777/kpis", read, "gzip")
    assert got.status_code == 200 and "content-encoding" not in got.headers and "vary" not in got.headers
    assert len(got.content) < GZIP_FROM


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("deflate, br", False),
        ("", False),
        ("*", True),
        ("*;q=0", False),
        ("*;q=0, gzip", True),
        ("gzip;q=0, *", False),
        ("x-gzip", True),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding(header, accepted):
    from app.api.responses import accepts_gzip

    assert accepts_gzip(header) is accepted
