"""The ingest answer and the event contract as documented for POST /api/v1/events (OpenAPI); the
validator that applies the contract is app.ingest.schemas."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.answer import Answer


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


class Event(BaseModel):
    """One dossier event. Fields not listed are ignored; the rules per type are in SPEC section 3."""

    model_config = ConfigDict(
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
    )

    event_id: str = Field(min_length=1, max_length=128, description="The source's unique id of this event: the idempotency key.")
    type: Literal["received", "resolved", "withdrawn", "due_changed"]
    dossier_id: str = Field(min_length=1, max_length=64, description="The source's dossier code (mã hồ sơ), unique within its unit.")
    unit_code: str = Field(min_length=1, max_length=8, description="The unit that received the dossier (any unit of the registry).")
    occurred_at: datetime = Field(description="RFC 3339 with an offset: when it happened at the source.")
    channel: Literal["online", "in_person", "postal"] | None = Field(None, description="Required on `received`.")
    due_at: datetime | None = Field(
        None, description="The legal deadline, RFC 3339 with an offset: required on `received` and `due_changed`, optional on `resolved`."
    )
    reason: Literal["supplement_requested", "legal_extension", "apology"] | None = Field(
        None, description="Required on `due_changed`; `apology` does not move the deadline the dossier is judged against."
    )
    outcome: Literal["approved", "refused"] | None = Field(None, description="Optional on `resolved`.")
    procedure_code: str | None = Field(None, max_length=32, description="National procedure code, e.g. `1.001612`.")
    sector: str | None = Field(None, max_length=64, description="e.g. `land`, `civil_status`, `business`.")


class EventBatch(BaseModel):
    """A batch of up to 5,000 events or 5 MiB."""

    events: list[Event] = Field(max_length=5000)


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
