"""Scope filters of the aggregate reads: which rows a scope (a unit, a subtree, a level under a parent)
reads, as statements built once per shape with the codes and the parent as bound parameters.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from sqlalchemy import and_, bindparam, case, literal, select

from app.aggregates.sums import Scope
from app.aggregates.writes import OWN_TABLES, ROLLUP_TABLES
from app.db.dialect import codes_in
from app.db.models import (
    Unit,
)


def _between(col, s: date, e: date):
    return and_(col >= s, col < e)


def _group_and_filter(scope: Scope, unit_col, rollup: bool = False):
    """(group expression or None, where clauses, needs join); the codes and the parent are bound
    parameters (see _scope_params), so a statement built once serves every scope of its shape.
    `rollup`: the table holds rollup rows (a province's or the nation's own sums)."""
    if rollup:
        if scope.level is None:  # one province or the nation
            return None, [unit_col == bindparam("rollup")], False
        assert scope.level == "province", scope.level
        where = [Unit.level == "province"]
        if scope.parent is not None and scope.parent != "VN":
            where.append(unit_col == bindparam("parent"))
        return unit_col, where, True
    if scope.level is None:
        if scope.codes is None:
            return None, [], False
        return None, [codes_in(unit_col)], False
    if scope.level == "unit":  # each unit on its own: of `codes`, or every unit
        return unit_col, [] if scope.codes is None else [codes_in(unit_col)], False
    if scope.level == "commune":
        group = Unit.code
        where = [Unit.level == "commune"]
    else:  # province: its own rows and its communes'
        group = case((Unit.level == "province", Unit.code), else_=Unit.parent_code)
        where = [Unit.level.in_(("province", "commune"))]
    if scope.parent is not None and scope.parent != "VN":
        if scope.level == "commune":
            where.append(Unit.parent_code == bindparam("parent"))
        else:
            where.append(group == bindparam("parent"))
    return group, where, True


def _tables(scope: Scope) -> tuple:
    """The aggregate tables a scope reads: rollup rows for a province, the nation, or a ranking of
    provinces; own rows for a commune, a ranking of communes, or units one by one."""
    return ROLLUP_TABLES if scope.rollup is not None or scope.level == "province" else OWN_TABLES


def _scope_params(scope: Scope) -> dict:
    """The bound values of a scope's filter."""
    params: dict = {} if scope.codes is None else {"codes": list(scope.codes)}
    if scope.rollup is not None:
        params["rollup"] = scope.rollup
    return params if scope.parent is None else params | {"parent": scope.parent}


def _scope_shape(level: str | None, parent: str | None, has_codes: bool) -> Scope:
    """A scope standing for every scope with these traits, to build a statement once."""
    return Scope(codes=() if has_codes else None, level=level, parent=parent)


def _shape_of(scope: Scope) -> Scope:
    """The scope standing for every scope read by the same statements as `scope` (its codes, a
    parent below the nation and the rollup unit are bound parameters: _scope_params)."""
    parent = scope.parent if scope.parent in (None, "VN") else "?"
    return replace(_scope_shape(scope.level, parent, scope.codes is not None), rollup=None if scope.rollup is None else "?")


def _select(scope: Scope, table, columns: list, extra_where: list, extra_group: list | None = None):
    group, where, join = _group_and_filter(scope, table.unit_code, table in ROLLUP_TABLES)
    key = (group if group is not None else literal("")).label("g")
    stmt = select(key, *(extra_group or []), *columns)
    stmt = stmt.select_from(table.__table__.join(Unit.__table__, Unit.code == table.unit_code) if join else table)
    stmt = stmt.where(*where, *extra_where)
    return stmt.group_by(key, *(extra_group or [])) if group is not None or extra_group else stmt
