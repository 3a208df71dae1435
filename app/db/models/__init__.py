"""All tables, one module per seam: the registry and keys, the event log and dossiers, the aggregate
rows, the shared answers, the event log's retention (event keys, archived months), the network
(export and receipt). Importing the package registers every table on `Base.metadata`; each name is
re-exported so `from app.db.models import X` keeps working."""

from app.db.models.aggregates import (
    ALL_SECTORS,
    LOCAL_SOURCE,
    DayCounters,
    DayFlows,
    RollupCohortDue,
    RollupDay,
    RollupOpenDue,
    RollupTotal,
    Totals,
    UnitChange,
    UnitCohortDue,
    UnitDay,
    UnitEventDay,
    UnitSource,
    UnitTotal,
)
from app.db.models.answers import SharedAnswer
from app.db.models.dossiers import NO_SECTOR, OPEN, OPEN_SQL, UNSETTLED, UNSETTLED_SQL, Dossier, DossierEvent, DossierFuture
from app.db.models.event_log import ArchivedMonth, ArchivedReceipt, ArchivedUnitMonth, EventKey
from app.db.models.network import (
    ExportDirty,
    ExportLease,
    ExportOutbox,
    ExportState,
    NetworkCohort,
    NetworkDay,
    NetworkSource,
)
from app.db.models.registry import ApiKey, NodeMeta, Unit

__all__ = [
    "ALL_SECTORS",
    "LOCAL_SOURCE",
    "NO_SECTOR",
    "OPEN",
    "OPEN_SQL",
    "UNSETTLED",
    "UNSETTLED_SQL",
    "ApiKey",
    "ArchivedMonth",
    "ArchivedReceipt",
    "ArchivedUnitMonth",
    "DayCounters",
    "DayFlows",
    "Dossier",
    "DossierEvent",
    "DossierFuture",
    "EventKey",
    "ExportDirty",
    "ExportLease",
    "ExportOutbox",
    "ExportState",
    "NetworkCohort",
    "NetworkDay",
    "NetworkSource",
    "NodeMeta",
    "RollupCohortDue",
    "RollupDay",
    "RollupOpenDue",
    "RollupTotal",
    "SharedAnswer",
    "Totals",
    "Unit",
    "UnitChange",
    "UnitCohortDue",
    "UnitDay",
    "UnitEventDay",
    "UnitSource",
    "UnitTotal",
]
