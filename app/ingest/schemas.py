"""The event contract of SPEC section 3: pydantic for types and lengths, then the per-type rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, StrictStr, TypeAdapter, ValidationError
from typing_extensions import TypedDict

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


def _text(max_length: int):
    """A non-empty string of at most `max_length` characters, without NUL."""
    return Annotated[StrictStr, Field(min_length=1, max_length=max_length), AfterValidator(_no_nul)]


EventId, DossierId, UnitCode, ProcedureCode, Sector = _text(128), _text(64), _text(8), _text(32), _text(64)


def _doc(text: str) -> Any:
    """A field's description: metadata only (the OpenAPI document shows it), no effect on validation."""
    return Field(description=text)


class EventFields(TypedDict):
    """One dossier event as posted (SPEC section 3). A TypedDict, so a batch validates in one call
    into pydantic-core and comes back as plain dicts: no model object per event. The one declaration
    of the event's fields: the documented model (app.ingest.answers.Event) is generated from it."""

    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]

    event_id: Annotated[EventId, _doc("The source's unique id of this event: the idempotency key.")]
    type: Literal["received", "resolved", "withdrawn", "due_changed"]
    dossier_id: Annotated[DossierId, _doc("The source's dossier code (mã hồ sơ), unique within its unit.")]
    unit_code: Annotated[UnitCode, _doc("The unit that received the dossier (any unit of the registry).")]
    occurred_at: Annotated[Timestamp, _doc("RFC 3339 with an offset: when it happened at the source.")]
    channel: NotRequired[Annotated[Literal["online", "in_person", "postal"] | None, _doc("Required on `received`.")]]
    due_at: NotRequired[
        Annotated[
            Timestamp | None,
            _doc("The legal deadline, RFC 3339 with an offset: required on `received` and `due_changed`, optional on `resolved`."),
        ]
    ]
    reason: NotRequired[
        Annotated[
            Literal["supplement_requested", "legal_extension", "apology"] | None,
            _doc("Required on `due_changed`; `apology` does not move the deadline the dossier is judged against."),
        ]
    ]
    outcome: NotRequired[Annotated[Literal["approved", "refused"] | None, _doc("Optional on `resolved`.")]]
    procedure_code: NotRequired[Annotated[ProcedureCode | None, _doc("National procedure code, e.g. `1.001612`.")]]
    sector: NotRequired[Annotated[Sector | None, _doc("e.g. `land`, `civil_status`, `business`.")]]


OPTIONAL = ("channel", "due_at", "reason", "outcome", "procedure_code", "sector")
_BATCH = TypeAdapter(list[EventFields])

REQUIRED_BY_TYPE = {
    "received": ("channel", "due_at"),
    "due_changed": ("due_at", "reason"),
}


class EventError(Exception):
    def __init__(self, errors: list[dict]):
        super().__init__(errors)
        self.errors = errors


def validate_events(items: list, now: datetime, skew: timedelta, horizon: timedelta | None) -> list[dict | EventError]:
    """Each item as a valid event (a dict of column values) or its EventError with [{loc, msg}].

    The types and lengths of the whole batch are checked in one call; only when some items fail is
    the rest checked again without them (pydantic returns no partial result). `horizon` None: no
    lower bound on occurred_at (an import, SPEC section 9)."""
    out: list[dict | EventError | None] = [None] * len(items)
    todo = []
    for i, obj in enumerate(items):
        if isinstance(obj, dict):
            todo.append(i)
        else:
            out[i] = EventError([{"loc": [], "msg": "an event must be a JSON object"}])
    while todo:
        try:
            valid = _BATCH.validate_python([items[i] for i in todo])
        except ValidationError as exc:
            bad: dict[int, list[dict]] = {}
            for err in exc.errors():
                pos, *loc = err["loc"]
                bad.setdefault(todo[pos], []).append({"loc": loc, "msg": _msg(err)})
            for i, errors in bad.items():
                # Every problem of the item in one answer: the rules beyond types are checked too, on the
                # fields that passed, so a source fixes its event once (not one field per round trip).
                failed = {str(e["loc"][0]) for e in errors if e["loc"]}
                out[i] = EventError(errors + _rule_errors(items[i], failed, now, skew, horizon))
            todo = [i for i in todo if i not in bad]
            continue
        for i, ev in zip(todo, valid, strict=True):
            out[i] = _rules(ev, now, skew, horizon)
        break
    return out  # type: ignore[return-value]


def _rules(ev: dict, now: datetime, skew: timedelta, horizon: timedelta | None) -> dict | EventError:
    """The rules beyond types on a typed event: fields required by the type, the clock skew and
    horizon, reserved names."""
    for name in OPTIONAL:
        if name not in ev:
            ev[name] = None
    errors = _rule_errors(ev, set(), now, skew, horizon)
    return EventError(errors) if errors else ev


_TYPES = frozenset(REQUIRED_BY_TYPE) | {"resolved", "withdrawn"}


def _rule_errors(ev: dict, failed: set[str], now: datetime, skew: timedelta, horizon: timedelta | None) -> list[dict]:
    """The rule errors of one event, typed or raw; the fields in `failed` (their type already
    refused) are not judged again."""
    errors = []
    kind = ev.get("type")
    if "type" not in failed and isinstance(kind, str) and kind in _TYPES:
        errors += [
            {"loc": [name], "msg": f"Field required on a {kind} event"}
            for name in REQUIRED_BY_TYPE.get(kind, ())
            if name not in failed and ev.get(name) is None
        ]
    if "occurred_at" not in failed and "occurred_at" in ev:
        at = _rfc3339(ev["occurred_at"])
        if at > now + skew:
            errors.append({"loc": ["occurred_at"], "msg": "lies in the future beyond the allowed clock skew"})
        elif horizon is not None and at < now - horizon:
            errors.append({"loc": ["occurred_at"], "msg": f"older than the {horizon.days}-day horizon"})
    if "sector" not in failed and ev.get("sector") == ALL_SECTORS:
        errors.append({"loc": ["sector"], "msg": f"{ALL_SECTORS!r} is reserved"})
    return errors


def validate_event(obj, now: datetime, skew: timedelta, horizon: timedelta | None) -> dict:
    """One event: valid, or EventError raised."""
    (result,) = validate_events([obj], now, skew, horizon)
    if isinstance(result, EventError):
        raise result
    return result


def _msg(err: dict) -> str:
    msg = err["msg"]
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    return msg
