"""How a shared answer is named and sent: its parameters as stored, its ETag (over its figures, not
the instants they stand at) and the gzipped form of large answers."""

from __future__ import annotations

import hashlib

import orjson

# An answer at least this large goes gzipped to a client that accepts it (the ranking of all 3,321
# communes is 2.9 MB of JSON, ~10x less gzipped); smaller ones go as they are.
GZIP_FROM = 64 * 1024


def gzip_etag(etag: str) -> str:
    """The ETag of an answer's gzipped form: another representation, another strong tag."""
    return etag[:-1] + '-gz"'


def etag_of(data: bytes) -> str:
    """A strong ETag of bytes."""
    return '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"'


def figures_etag(payload: dict) -> str:
    """An answer's ETag: over its figures, not the instants they stand at (`as_of`, and a previous
    period's `until` while the current one is in progress), which a restamp rewrites."""
    basis = {k: v for k, v in payload.items() if k != "as_of"}
    previous = basis.get("previous")
    if isinstance(previous, dict) and "until" in (previous.get("period") or {}):
        basis["previous"] = previous | {"period": {k: v for k, v in previous["period"].items() if k != "until"}}
    return etag_of(orjson.dumps(basis))


def canonical_params(params: dict) -> str:
    """The parameters as stored: JSON with sorted keys (dates as ISO strings)."""
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()
