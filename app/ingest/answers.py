"""The ingest answer and the event contract as documented for POST /api/v1/events (OpenAPI); the
contract is declared once, by the validator that applies it (app.ingest.schemas.EventFields)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NotRequired, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from app.answer import Answer
from app.ingest.schemas import EventFields


class ErrorItem(Answer):
    """One validation error: where (`loc`, field names and indexes) and what."""

    loc: list[str | int] = Field(description="Path of the offending field; `[]` for the whole item.", examples=[["due_at"]])
    msg: str = Field(examples=["timestamp needs an offset"])


class IngestItem(Answer):
    """An event that was not accepted."""

    index: int = Field(description="0-based position in the batch (for NDJSON: among the non-blank lines).", examples=[9])
    event_id: Any = Field(
        description="The event's `event_id` as sent: a string for a duplicate; for a rejected event whatever JSON value "
        "it carried (a number, say, when that is why it was rejected), null when it had none or was not an object.",
        examples=["hue-2025-000123-r"],
    )
    status: Literal["duplicate", "rejected"] = Field(examples=["rejected"])
    errors: list[ErrorItem] | None = Field(None, description="Rejected events only: why.")


class IngestAnswer(Answer):
    """Status 202: every accepted event is durably committed (nothing is stored with `dry_run=true`)."""

    accepted: int = Field(examples=[998])
    duplicates: int = Field(examples=[1])
    rejected: int = Field(examples=[1])
    items: list[IngestItem] = Field(description="Every event not accepted, in batch order.")


# --- the event contract (SPEC section 3), documented for POST /api/v1/events ----------------------


def _documented(fields: type) -> dict[str, Any]:
    """The fields of a TypedDict as create_model takes them: its types (with their descriptions and
    lengths), the keys the validator does not require defaulting to null. Which keys are required is
    read from pydantic's own view of the TypedDict (`__required_keys__` is unreliable under postponed
    annotations)."""
    required = set(TypeAdapter(fields).json_schema()["required"])
    hints = get_type_hints(fields, include_extras=True)
    return {
        name: (get_args(hint)[0] if get_origin(hint) is NotRequired else hint, ... if name in required else None)
        for name, hint in hints.items()
    }


# The event as documented: generated from the validator's declaration (app.ingest.schemas.EventFields),
# so a field, its type, its lengths and its description are declared once.
Event = create_model(
    "Event",
    __config__=ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "hue-000123-r",
                    "type": "received",
                    "dossier_id": "H57-000123",
                    "unit_code": "46",
                    "occurred_at": "2025-09-30T08:15:00+07:00",
                    "channel": "online",
                    "due_at": "2025-10-03T17:00:00+07:00",
                    "procedure_code": "1.001612",
                    "sector": "land",
                },
            ]
        },
    ),
    __doc__="One dossier event. Fields not listed are ignored; the rules per type are in SPEC section 3.",
    **_documented(EventFields),
)


class EventBatch(BaseModel):
    """A batch of up to 5,000 events or 5 MiB."""

    events: list[Event] = Field(max_length=5000)  # type: ignore[valid-type]


def _local(days_ago: int, hour: int, minute: int = 0) -> str:
    """A timestamp `days_ago` local days before today (Vietnam, +07:00), so "Try it out" posts are accepted."""
    day = datetime.now(VN_TIME).date() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=VN_TIME).isoformat()


VN_TIME = timezone(timedelta(hours=7))
EVENT_EXAMPLES = {
    "received": {
        "event_id": "hue-000123-r",
        "type": "received",
        "dossier_id": "H57-000123",
        "unit_code": "46",
        "occurred_at": _local(6, 8, 15),
        "channel": "online",
        "due_at": _local(3, 17),
        "procedure_code": "1.001612",
        "sector": "land",
    },
    "due_changed": {
        "event_id": "hue-000123-d1",
        "type": "due_changed",
        "dossier_id": "H57-000123",
        "unit_code": "46",
        "occurred_at": _local(5, 9),
        "due_at": _local(1, 17),
        "reason": "supplement_requested",
    },
    "resolved": {
        "event_id": "hue-000123-x",
        "type": "resolved",
        "dossier_id": "H57-000123",
        "unit_code": "46",
        "occurred_at": _local(1, 15, 30),
        "outcome": "approved",
    },
    "withdrawn": {
        "event_id": "hue-000124-w",
        "type": "withdrawn",
        "dossier_id": "H57-000124",
        "unit_code": "46",
        "occurred_at": _local(2, 10),
    },
}
