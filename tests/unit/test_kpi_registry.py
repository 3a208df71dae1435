"""One KPI registry: the math, the answers' models and the downloads' titles all read app.scoring.kpis.KPIS."""

from __future__ import annotations

from app.aggregates.sums import Sums
from app.api import titles
from app.scoring import kpis
from app.scoring.schemas import Change, Kpis


def _figures() -> dict:
    flows = {"received": 10, "received_online": 7, "resolved_early": 2, "resolved_on_time": 3, "resolved_late": 1}
    return kpis.compute(Sums(flows=flows, hist={3: 6}, cohort_due=0, silent=0))


def test_the_math_computes_exactly_the_registered_kpis():
    assert set(_figures()) == set(kpis.KPI_NAMES)


def test_each_kind_is_what_the_math_gives():
    for name, value in _figures().items():
        kind = kpis.KPI[name].kind
        if kind == kpis.COUNT:
            assert isinstance(value, int) and not isinstance(value, bool), name
        else:
            assert value is None or isinstance(value, float), name
    assert kpis.is_rate("on_time_rate") and not kpis.is_rate("settlement_score") and not kpis.is_rate("rank")


def test_the_models_and_titles_read_the_registry():
    assert tuple(Kpis.model_fields) == tuple(Change.model_fields) == kpis.KPI_NAMES
    for kpi in kpis.KPIS:
        assert Kpis.model_fields[kpi.name].description == kpi.description
        assert titles.kpi_title(kpi.name, "vi") == kpi.vi and titles.kpi_title(kpi.name, "en") == kpi.en
        assert titles.title(f"kpis.{kpi.name}", "en") == kpi.en  # the `kpis` block adds no word
        assert titles.title(f"change.{kpi.name}", "vi") == f"Thay đổi – {kpi.vi}"
    # the change of a count is an integer (null where a side is), of anything else a float
    counts = {k.name for k in kpis.KPIS if k.kind == kpis.COUNT}
    assert counts == kpis.COUNT_KPIS
    assert kpis.change({"received": 3}, {"received": 1})["received"] == 2
