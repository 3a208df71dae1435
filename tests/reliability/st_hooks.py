"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by test_fuzz.py): NDJSON bodies.

The OpenAPI document gives `application/x-ndjson` bodies as a string (one event per line);
schemathesis has no serializer for that media type, so the generated string is sent as its UTF-8
bytes, lone surrogates included (as invalid bytes: a `400` is the right answer to those)."""

from __future__ import annotations

import orjson
import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS) if value is not None else b""
