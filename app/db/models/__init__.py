"""All tables, one module per seam: the registry and keys, the event log and dossiers, the aggregate
rows, the shared answers, the network (export and receipt). Importing the package registers every
table on `Base.metadata`; each name is re-exported so `from app.db.models import X` keeps working."""

from app.db.models.aggregates import (
    ALL_SECTORS,
    LOCAL_SOURCE,
    DayCounters,
    DayFlows,
    RollupCohortDue,
    RollupDay,
    RollupDayHist,
    RollupOpenDue,
    RollupTotal,
    Totals,
    UnitChange,
    UnitCohortDue,
    UnitDay,
    UnitDayHist,
    UnitEventDay,
    UnitSource,
    UnitTotal,
)
from app.db.models.answers import SharedAnswer
from app.db.models.dossiers import NO_SECTOR, OPEN, OPEN_SQL, UNSETTLED, UNSETTLED_SQL, Dossier, DossierEvent, DossierFuture
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
    "DayCounters",
    "DayFlows",
    "Dossier",
    "DossierEvent",
    "DossierFuture",
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
    "RollupDayHist",
    "RollupOpenDue",
    "RollupTotal",
    "SharedAnswer",
    "Totals",
    "Unit",
    "UnitChange",
    "UnitCohortDue",
    "UnitDay",
    "UnitDayHist",
    "UnitEventDay",
    "UnitSource",
    "UnitTotal",
]
