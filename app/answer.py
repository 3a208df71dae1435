"""The base of every answer model: a leaf every package may import (like app.errors)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Answer(BaseModel):
    """Base of every answer model: unknown keys are not allowed, so an answer cannot drift."""

    model_config = ConfigDict(extra="forbid")
