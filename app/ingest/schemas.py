"""The event contract of SPEC section 3: pydantic for types and lengths, then the per-type rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError

from app.db.models import ALL_SECTORS


def _rfc3339(value):
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an RFC 3339 timestamp") from None
    if "T" not in value.upper() and " " not in value:
        raise ValueError("not an RFC 3339 timestamp")
    if parsed.tzinfo is None:
        raise ValueError("timestamp needs an offset")
    return parsed


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000: stored, it failed the whole batch (a 503 the source retried
    # forever); both stores refuse it here, naming the field, so they agree.
    if "\x00" in value:
        raise ValueError("must not contain U+0000 (NUL)")
    return value


Text = Annotated[StrictStr, AfterValidator(_no_nul)]


class EventIn(BaseModel):
    """One dossier event as posted."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    event_id: Text = Field(min_length=1, max_length=128)
    type: Literal["received", "resolved", "withdrawn", "due_changed"]
    dossier_id: Text = Field(min_length=1, max_length=64)
    unit_code: Text = Field(min_length=1, max_length=8)
    occurred_at: Timestamp
    channel: Literal["online", "in_person", "postal"] | None = None
    due_at: Timestamp | None = None
    reason: Literal["supplement_requested", "legal_extension", "apology"] | None = None
    outcome: Literal["approved", "refused"] | None = None
    procedure_code: Text | None = Field(None, min_length=1, max_length=32)
    sector: Text | None = Field(None, min_length=1, max_length=64)


REQUIRED_BY_TYPE = {
    "received": ("channel", "due_at"),
    "due_changed": ("due_at", "reason"),
}


class EventError(Exception):
    def __init__(self, errors: list[dict]):
        super().__init__(errors)
        self.errors = errors


def validate_event(obj, now: datetime, skew: timedelta, horizon: timedelta) -> dict:
    """A valid event as a dict of column values, or EventError with [{loc, msg}]."""
    if not isinstance(obj, dict):
        raise EventError([{"loc": [], "msg": "an event must be a JSON object"}])
    try:
        ev = EventIn.model_validate(obj)
    except ValidationError as exc:
        raise EventError([{"loc": list(e["loc"]), "msg": _msg(e)} for e in exc.errors()]) from None
    errors = [
        {"loc": [name], "msg": f"Field required on a {ev.type} event"}
        for name in REQUIRED_BY_TYPE.get(ev.type, ())
        if getattr(ev, name) is None
    ]
    if ev.occurred_at > now + skew:
        errors.append({"loc": ["occurred_at"], "msg": "lies in the future beyond the allowed clock skew"})
    elif ev.occurred_at < now - horizon:
        errors.append({"loc": ["occurred_at"], "msg": f"older than the {horizon.days}-day horizon"})
    if ev.sector == ALL_SECTORS:
        errors.append({"loc": ["sector"], "msg": f"{ALL_SECTORS!r} is reserved"})
    if errors:
        raise EventError(errors)
    return dict(ev.__dict__)  # the validated fields; cheaper than model_dump()


def _msg(err: dict) -> str:
    msg = err["msg"]
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    return msg
