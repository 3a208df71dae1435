"""KPI gauges for /metrics, read from the database at scrape time through the scoring service.

Every figure is the one the read API answers (`ranking` per province, `unit_kpis` for the nation),
so a gauge equals `/api/v1/units/{code}/kpis?window=...` for the same unit and window, and every
worker reports the same value whatever process serves the scrape.

Series bound: the nation and the 34 provinces (35 units) x WINDOWS (2) = 70 series per windowed
metric, 35 per "now" metric. Per commune (3,321 units) only when `METRICS_COMMUNES=true`.
A KPI that is null (a rate whose denominator is 0) has no sample: absent, not NaN, not 0.
"""

from __future__ import annotations

import asyncio

from prometheus_client.core import GaugeMetricFamily

from app.aggregates import periods
from app.scoring import service as scoring
from app.scoring.context import Reader
from app.units.model import NATION

WINDOWS = ("7d", "30d")  # 35 units x 2 windows = 70 series per metric (< 100)

# (metric, KPI of the read API, help): per unit and window.
WINDOWED = (
    ("chiso_on_time_ratio", "on_time_rate", "Dossiers resolved early or on time / resolved and classified, in the window."),
    ("chiso_online_ratio", "online_rate", "Dossiers received online / received, in the window."),
    (
        "chiso_settlement_ratio",
        "settlement_rate_766",
        "INDEX-766 settlement rate of the cohort received in the window (score = 20 x ratio).",
    ),
    ("chiso_received_dossiers", "received", "Dossiers received in the window."),
    ("chiso_resolved_dossiers", "resolved", "Dossiers resolved in the window."),
)
# (metric, KPI, help): per unit, at now (the same for every window).
CURRENT = (
    ("chiso_pending_dossiers", "pending", "Dossiers received and not ended, now."),
    ("chiso_overdue_dossiers", "overdue", "Pending dossiers past their effective deadline, now."),
    (
        "chiso_silent_units",
        "silent_units",
        "Silent sources at or below the unit, now: units whose last event was accepted more than SILENT_AFTER_HOURS ago.",
    ),
    # SPEC section 7 names these two for the alert rules (chiso_overdue = chiso_overdue_dossiers).
    ("chiso_due_48h", "due_48h", "Pending dossiers whose effective deadline lies within the next 48 hours, now."),
    ("chiso_overdue", "overdue", "Pending dossiers past their effective deadline, now (the alert rules' name)."),
)
UNIT_INFO = "chiso_unit_info"
NAMES = tuple(m for m, _, _ in WINDOWED + CURRENT) + (UNIT_INFO,)


async def read(reader: Reader, communes: bool = False) -> list[GaugeMetricFamily]:
    """The KPI gauge families: the nation, every province, and every commune when asked."""
    registry = reader.registry
    today = periods.today(reader.now(), reader.tz)
    levels = ("province", "commune") if communes else ("province",)

    async def window_rows(w: str) -> list[tuple[dict, dict]]:
        """[(unit shape, kpis), ...] of one window: the nation, then each level's units."""
        p = periods.window(w, today)
        nation = await scoring.unit_kpis(reader, NATION, p, None)
        out = [(nation["unit"], nation["kpis"])]
        for level in levels:
            size = len(registry.at_level(level)) or 1
            ranked = await scoring.ranking(reader, level, None, p, "-on_time_rate", size, 0)
            out.extend((it["unit"], it["kpis"]) for it in ranked["items"])
        return out

    # The windows side by side, each on its own connection: the database works on them in parallel.
    rows = dict(zip(WINDOWS, await asyncio.gather(*(window_rows(w) for w in WINDOWS)), strict=True))

    labels = ["unit", "level", "window"]
    families = []
    for metric, kpi, help_text in WINDOWED:
        g = GaugeMetricFamily(metric, help_text, labels=labels)
        for w in WINDOWS:
            for unit, kpis in rows[w]:
                if kpis[kpi] is not None:
                    g.add_metric([unit["code"], unit["level"], w], kpis[kpi])
        families.append(g)
    last = rows[WINDOWS[-1]]
    for metric, kpi, help_text in CURRENT:
        g = GaugeMetricFamily(metric, help_text, labels=["unit", "level"])
        for unit, kpis in last:
            if kpis[kpi] is not None:
                g.add_metric([unit["code"], unit["level"]], kpis[kpi])
        families.append(g)
    info = GaugeMetricFamily(
        UNIT_INFO, "The units the KPI gauges cover: name and parent by code.", labels=["unit", "level", "name", "parent"]
    )
    for unit, _ in last:
        info.add_metric([unit["code"], unit["level"], unit["name"], unit["parent"] or ""], 1)
    families.append(info)
    return families
