"""The event contract is declared once: the documented Event (OpenAPI) says what the validator applies."""

from __future__ import annotations

from pydantic import TypeAdapter

from app.ingest.answers import Event
from app.ingest.schemas import EventFields


def _properties(schema: dict) -> dict[str, dict]:
    # The documented model gives its optional fields `default: null`; the TypedDict leaves them out.
    return {name: {k: v for k, v in prop.items() if k != "default"} for name, prop in schema["properties"].items()}


def test_documented_event_is_the_validators_contract():
    validator = TypeAdapter(EventFields).json_schema()
    documented = Event.model_json_schema()
    assert list(documented["properties"]) == list(validator["properties"])
    assert documented["required"] == validator["required"] == ["event_id", "type", "dossier_id", "unit_code", "occurred_at"]
    assert _properties(documented) == _properties(validator)  # types, lengths, enums, descriptions


def test_every_free_text_field_is_documented():
    for name, prop in Event.model_json_schema()["properties"].items():
        if name != "type":  # the enum speaks for itself
            assert prop.get("description"), name
