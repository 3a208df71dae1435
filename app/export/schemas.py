"""The answers of the central assessment network: export records, the pull feed, the receiver."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.answer import Answer

# --- the central assessment network (SPEC section 6) -----------------------------------------------


class DayRecord(BaseModel):
    """One unit's own counters of one local day (never rates), its processing-time histogram and
    `pending`/`overdue`/`due_24h`/`due_48h`/`due_72h` at the end of that day."""

    model_config = ConfigDict(extra="allow")

    node_id: str = Field(examples=["hue"])
    sequence: int = Field(ge=1, description="Per-node, strictly increasing; a newer record replaces an older one.", examples=[1042])
    kind: Literal["day"]
    unit: str = Field(examples=["19753"])
    day: date = Field(examples=["2025-09-30"])
    received: int
    received_online: int
    resolved_early: int
    resolved_on_time: int
    resolved_late: int
    resolved_unclassified: int
    withdrawn: int
    orphans: int
    proc_n: int = Field(description="Resolved dossiers with a receipt (the processing-time sample).")
    proc_ms: int = Field(description="Sum of their processing times, milliseconds.")
    pending: int
    overdue: int
    due_24h: int = Field(0, description="Pending at the end of the day (today: at the snapshot) and due within 24 hours.")
    due_48h: int = Field(0, description="The same within 48 hours.")
    due_72h: int = Field(0, description="The same within 72 hours.")
    histogram: list[list[int]] = Field(description="`[bucket, count]` pairs over `histogram_bounds_seconds`.", examples=[[[12, 3]]])


class CohortPeriod(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: Literal["month", "quarter", "year"]
    start: date
    end: date | None = None
    label: str | None = None


class CohortRecord(BaseModel):
    """The INDEX-766 cohort of one unit and calendar month, quarter or year."""

    model_config = ConfigDict(extra="allow")

    node_id: str = Field(examples=["hue"])
    sequence: int = Field(ge=1, examples=[1043])
    kind: Literal["cohort"]
    unit: str = Field(examples=["19753"])
    period: CohortPeriod
    cohort_size: int
    cohort_on_time: int


class ExportFeed(Answer):
    """This node's export records after a sequence, in sequence order."""

    node_id: str = Field(examples=["hue"])
    histogram_bounds_seconds: list[float] = Field(description="Upper bounds of the histogram buckets every node shares.")
    records: list[DayRecord | CohortRecord] = Field(description="Day and cohort records, by sequence.")
    next_after: int = Field(description="Pass as `after` to continue the feed.", examples=[1043])
    has_more: bool = Field(examples=[False])


class ReceiveAnswer(Answer):
    """What a central node did with a signed snapshot."""

    node_id: str = Field(description="The subordinate that signed it.", examples=["hue"])
    received: int = Field(description="Records in the snapshot.", examples=[500])
    applied: int = Field(description="Records newer than what was kept, now merged.", examples=[498])
    ignored: int = Field(description="Older sequences and repeats.", examples=[2])


# --- operations ------------------------------------------------------------------------------------
