"""All reads of the aggregate model, by concern (each its own module, this one names them all):
scope filters (`scopes`), sums per group for rankings (`group_sums`), one group's spans by prefix
sums (`spans`), the corrections at now (`at_now`), the subordinates' cohorts (`network_reads`), the
at-risk list (`at_risk`) and the rebuild's reads (`rebuild_reads`).

KPI reads touch pre-aggregated rows only: a commune's own
rows, a province's or the nation's rollup rows (never its communes' rows), per day; plus, for
periods that end after now, the few dossiers whose deadline falls within today. Also the reads
of the rebuild: the event log, dossier rows, and own and rollup rows of a unit.
"""

from app.aggregates.at_now import DUE_HOURS, count_open_due, read_units_due_between
from app.aggregates.at_risk import AT_RISK_COLUMNS, read_at_risk
from app.aggregates.group_sums import read_sums, read_unit_changes
from app.aggregates.network_reads import COHORTS_PER_QUERY
from app.aggregates.rebuild_reads import (
    read_event_units,
    read_rollups,
    read_unit_aggregates,
    read_unit_archived,
    read_unit_dossiers,
    read_unit_events,
)
from app.aggregates.spans import read_sectors, read_spans

__all__ = [
    "AT_RISK_COLUMNS",
    "COHORTS_PER_QUERY",
    "DUE_HOURS",
    "count_open_due",
    "read_at_risk",
    "read_event_units",
    "read_rollups",
    "read_sectors",
    "read_spans",
    "read_sums",
    "read_unit_aggregates",
    "read_unit_archived",
    "read_unit_changes",
    "read_unit_dossiers",
    "read_unit_events",
    "read_units_due_between",
]
