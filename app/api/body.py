"""The events of a POST /api/v1/events body, JSON or NDJSON (SPEC section 3): whole-request errors
raise; a line of NDJSON that is not JSON is an EventError in its place, rejected by its index."""

from __future__ import annotations

import orjson

from app.errors import BadRequest, PayloadTooLarge, Unprocessable
from app.ingest.schemas import EventError


def parse_body(body: bytes, content_type: str, max_events: int) -> list:
    """The raw items of a JSON or NDJSON body; whole-request errors raise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    if content_type == "application/x-ndjson":
        items: list = []
        # Lines end at "\n" only: str.splitlines() would also break at U+2028, U+2029 and U+0085,
        # which JSON strings may hold unescaped.
        for line in text.split("\n"):
            line = line.removesuffix("\r")
            if not line.strip(" \t\r"):
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                items.append(EventError([{"loc": [], "msg": "line is not JSON"}]))  # rejected by its index
        if len(items) > max_events:
            raise PayloadTooLarge(f"more than {max_events} events in one request")
        return items
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Unprocessable("the body must be an object with an events array", [{"loc": [], "msg": "expected an object"}])
    events = doc.get("events")
    if not isinstance(events, list):
        raise Unprocessable("the body needs an events array", [{"loc": ["events"], "msg": "expected an array of events"}])
    if len(events) > max_events:
        raise PayloadTooLarge(f"more than {max_events} events in one request")
    return events
