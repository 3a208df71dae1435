"""All SQL of the shared answers (table `shared_answer`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, bindparam, delete, func, literal, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.db import dialect, meta
from app.db.models import NetworkSource, NodeMeta, SharedAnswer, Unit, UnitChange
from app.units.repository import REGISTRY_VERSION

NONE_YET = -1  # the version of a claimed row whose first answer is still being computed
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Stored:
    """What a lookup reads of a stored answer (not its body)."""

    etag: str
    version: int
    computed_at: datetime
    polled_at: datetime
    claimed_until: datetime | None
    holds: bool = False  # no batch changed its unit's figures since it was computed (`holds`)


def _changes_under(unit):
    """SQL: the sum of the `unit_change` counts of `unit` (a column or a value) and of the units
    under it. Counts only grow: the same sum read twice means no batch changed their figures in
    between."""
    c, u = UnitChange, Unit
    under = or_(u.code == unit, u.parent_code == unit)
    return select(func.coalesce(func.sum(c.changes), 0)).select_from(c).join(u, u.code == c.unit_code).where(under).scalar_subquery()


def _registry_version():
    return func.coalesce(select(NodeMeta.value).where(NodeMeta.name == REGISTRY_VERSION).scalar_subquery(), 0)


def _central():
    """SQL: this node receives records of subordinates, which change figures no count shows."""
    return select(NetworkSource.source).exists()


def holds():
    """SQL: the stored answer's figures still hold, data-wise: it has a scope, whose change counts
    and the registry are as they were read before its figures, on a node that is not central. (Time
    moves figures too, deadlines passing: such an answer is served for as long as one computed at the
    current data version, SharedAnswers.idle_for.)"""
    a = SharedAnswer
    same = and_(a.scope.is_not(None), a.stamp == _changes_under(a.scope), a.stamp_registry == _registry_version())
    return and_(same, ~_central())


async def read_start(session: AsyncSession, scopes: dict[str, str]) -> tuple[int, dict[str, tuple[str, int, int]]]:
    """What a computation starting now reads before its figures: the data version, and the stamp of
    each answer of `scopes` (key -> its scope): key -> (scope, the sum of the change counts of it and
    the units under it, the registry version); none on a central node."""
    version = await meta.read_data_version(session)
    if not scopes:
        return version, {}
    u = aliased(Unit)
    stmt = select(u.code, _changes_under(u.code), _registry_version()).where(u.code.in_(sorted(set(scopes.values()))), ~_central())
    read = {code: (int(stamp), int(registry)) for code, stamp, registry in (await session.execute(stmt)).all()}
    return version, {key: (scope, *read[scope]) for key, scope in scopes.items() if scope in read}


async def read_answer(session: AsyncSession, key: str) -> tuple[int, Stored | None]:
    """(the current data version, the stored answer's state or None), in one statement."""
    a = SharedAnswer
    current = meta.data_version_select().scalar_subquery()
    one = select(literal(1).label("one")).subquery()
    stmt = select(current.label("current"), a.etag, a.version, a.computed_at, a.polled_at, a.claimed_until, holds()).select_from(
        one.outerjoin(SharedAnswer.__table__, a.key == key)
    )
    got = (await session.execute(stmt)).first()
    current_version = int(got[0] or 0)
    if got[1] is None:
        return current_version, None
    return current_version, Stored(*got[1:6], bool(got[6]))


def next_seq(session: AsyncSession):
    """The next change number of a stored answer (PostgreSQL: its sequence; SQLite, whose writers
    take turns: one more than the largest)."""
    if dialect.is_postgres(session):
        return func.nextval("shared_answer_seq")
    return select(func.coalesce(func.max(SharedAnswer.seq), 0) + 1).scalar_subquery()


@dataclass(frozen=True, slots=True)
class Change:
    """A stored answer as a worker follows it (not its body)."""

    key: str
    etag: str
    version: int
    computed_at: datetime
    seq: int


async def read_changes(session: AsyncSession, after: int) -> tuple[int, list[Change]]:
    """(the current data version, the stored answers whose change number is above `after`), in one
    statement."""
    a = SharedAnswer
    current = meta.data_version_select().scalar_subquery()
    one = select(literal(1).label("one")).subquery()
    changed = and_(a.seq > after, a.version != NONE_YET)
    stmt = select(current.label("current"), a.key, a.etag, a.version, a.computed_at, a.seq).select_from(
        one.outerjoin(SharedAnswer.__table__, changed)
    )
    got = (await session.execute(stmt)).all()
    current_version = int(got[0][0] or 0) if got else 0
    return current_version, [Change(*r[1:]) for r in got if r[1] is not None]


async def read_bodies(session: AsyncSession, keys: list[str]) -> list[tuple[Change, bytes]]:
    """The stored answers of `keys` with their bodies."""
    a = SharedAnswer
    stmt = select(a.key, a.etag, a.version, a.computed_at, a.seq, a.body).where(a.key.in_(keys), a.version != NONE_YET)
    return [(Change(*r[:5]), r[5]) for r in (await session.execute(stmt)).all()]


async def touch_many(session: AsyncSession, keys: list[str], now: datetime, before: datetime) -> None:
    """Record polls of the answers of `keys` (those whose last recorded poll is older than `before`)."""
    a = SharedAnswer
    await session.execute(update(a).where(a.key.in_(keys), a.polled_at < before).values(polled_at=now))


async def read_body(session: AsyncSession, key: str) -> tuple[str, bytes, int, datetime] | None:
    """(etag, body, version, computed_at) of a stored answer."""
    a = SharedAnswer
    got = (await session.execute(select(a.etag, a.body, a.version, a.computed_at).where(a.key == key))).first()
    return None if got is None else tuple(got)


async def claim(
    session: AsyncSession, key: str, kind: str, params: str, holder: str, now: datetime, until: datetime, create: bool = True
) -> bool:
    """Mark the answer as being computed by `holder` until `until`, unless another computation
    runs; a new key gets a row with no answer yet (NONE_YET) when `create`. True when the claim is ours."""
    a = SharedAnswer
    new = dict(
        key=key,
        kind=kind,
        params=params,
        body=b"",
        etag="",
        version=NONE_YET,
        computed_at=EPOCH,
        computed_by=holder,
        polled_at=now,
        claimed_until=until,
        claimed_by=holder,
    )
    stmt = dialect.insert(session, a).values(**new).on_conflict_do_nothing(index_elements=["key"])
    if create and (await session.execute(stmt)).rowcount == 1:
        return True
    free = or_(a.claimed_until.is_(None), a.claimed_until < now)
    stmt = update(a).where(a.key == key, free).values(claimed_until=until, claimed_by=holder)
    return (await session.execute(stmt)).rowcount == 1


async def claim_many(session: AsyncSession, keys: list[str], holder: str, now: datetime, until: datetime) -> None:
    """Mark the stored answers of `keys` that no other computation runs for as being computed by
    `holder` until `until` (requests serve them as stored meanwhile: service._computed_elsewhere)."""
    a = SharedAnswer
    free = or_(a.claimed_until.is_(None), a.claimed_until < now)
    await session.execute(update(a).where(a.key.in_(keys), free).values(claimed_until=until, claimed_by=holder))


async def store_many(
    session: AsyncSession,
    rows: list[tuple[str, bytes, str]],
    version: int,
    computed_at: datetime,
    holder: str,
    stamps: dict[str, tuple[str, int, int]] | None = None,
) -> None:
    """Keep answers computed at `computed_at` from `version` (key, body, etag; the stamp of those of
    `stamps`: key -> (scope, stamp, registry) read before their figures), each unless the stored one
    was computed later (one statement executed for all), and end `holder`'s claims on them (a row
    stored to has an answer: nothing of release's to delete)."""
    a = SharedAnswer.__table__
    newer = or_(a.c.computed_at < computed_at, and_(a.c.computed_at == computed_at, a.c.version <= version))
    stmt = (
        update(a)
        .where(a.c.key == bindparam("the_key"), newer)
        .values(
            body=bindparam("the_body"),
            etag=bindparam("the_etag"),
            version=version,
            computed_at=computed_at,
            computed_by=holder,
            seq=next_seq(session),
            scope=bindparam("the_scope"),
            stamp=bindparam("the_stamp"),
            stamp_registry=bindparam("the_registry"),
        )
    )
    stamps = stamps or {}
    values = []
    for k, b, e in rows:
        scope, stamp, registry = stamps.get(k, (None, None, None))
        values.append({"the_key": k, "the_body": b, "the_etag": e, "the_scope": scope, "the_stamp": stamp, "the_registry": registry})
    conn = await session.connection()
    await conn.execute(stmt, values)
    await _end_claims(session, [k for k, _, _ in rows], holder)


async def release(session: AsyncSession, keys: list[str], holder: str) -> None:
    """End `holder`'s claims on `keys`; a row that never got an answer goes (its request failed)."""
    a = SharedAnswer
    await session.execute(delete(a).where(a.key.in_(keys), a.version == NONE_YET, a.claimed_by == holder))
    await _end_claims(session, keys, holder)


async def _end_claims(session: AsyncSession, keys: list[str], holder: str) -> None:
    a = SharedAnswer
    await session.execute(update(a).where(a.key.in_(keys), a.claimed_by == holder).values(claimed_until=None, claimed_by=None))


async def touch(session: AsyncSession, key: str, now: datetime, before: datetime) -> None:
    """Record a poll of the answer (only when the last one recorded is older than `before`)."""
    a = SharedAnswer
    await session.execute(update(a).where(a.key == key, a.polled_at < before).values(polled_at=now))


async def delete_unpolled(session: AsyncSession, before: datetime) -> int:
    """Forget the answers nobody polled since `before`."""
    return (await session.execute(delete(SharedAnswer).where(SharedAnswer.polled_at < before))).rowcount


async def delete_answer(session: AsyncSession, key: str) -> None:
    """Forget one answer."""
    await session.execute(delete(SharedAnswer).where(SharedAnswer.key == key))


async def read_polled(session: AsyncSession, polled_since: datetime) -> list:
    """(key, kind, params, etag, version, computed_at, claimed_until, polled_at) of the answers polled
    since `polled_since` that have an answer, most recently polled first."""
    a = SharedAnswer
    stmt = (
        select(a.key, a.kind, a.params, a.etag, a.version, a.computed_at, a.claimed_until, a.polled_at)
        .where(a.polled_at >= polled_since, a.version != NONE_YET)
        .order_by(a.polled_at.desc())
    )
    return list((await session.execute(stmt)).all())


AS_OF = b'"as_of":"'  # the answer's top-level `as_of` (the first key of that name in every restamped kind)
UNTIL = b'"until":"'  # a KPI answer's `previous.period.until` (its only key of that name)


def _rewritten(body: str, needle: str, new: str) -> str:
    """SQL: the string value after the first `needle` of `body` replaced by `new` (none: as it is)."""
    at = f"position({needle} IN {body})"
    after = f"{at} + length({needle})"
    value = f"overlay({body} PLACING {new} FROM {after} FOR position(CAST(:quote AS bytea) IN substring({body} FROM {after})) - 1)"
    return f"CASE WHEN {new} IS NULL OR {at} = 0 THEN {body} ELSE {value} END"


def _rewrite(body: bytes, needle: bytes, new: bytes | None) -> bytes:
    """The string value after the first `needle` of `body` replaced by `new` (None: as it is)."""
    i = body.find(needle)
    if new is None or i < 0:
        return body
    i += len(needle)
    return body[:i] + new + body[body.index(b'"', i) :]


async def restamp(session: AsyncSession, held: list[tuple[str, str, str | None]], version: int, at: datetime, as_of: str) -> set[str]:
    """The stored answers of `held` (key, etag, `until` or None: still that answer, computed before
    `at`, claimed by nobody) hold at `at` and `version` too: so marked, their top-level `as_of` (if
    any) rewritten to `as_of`, and their `until` (if any) to the one given. The keys of those marked."""
    new = as_of.encode()
    if not held:
        return set()
    if dialect.is_postgres(session):  # one statement; bodies rewritten where they lie (a ranking's is megabytes)
        as_of_body = _rewritten("s.body", "CAST(:as_of_key AS bytea)", "CAST(:new AS bytea)")
        until_body = _rewritten("x.body", "CAST(:until_key AS bytea)", "convert_to(h.until, 'UTF8')")
        stmt = text(
            "UPDATE shared_answer AS a SET version = :version, computed_at = :at, seq = nextval('shared_answer_seq'), body = r.body "
            "FROM (SELECT s.key, s.etag, y.body FROM shared_answer s "
            "JOIN (SELECT unnest(CAST(:keys AS text[])) AS key, unnest(CAST(:etags AS text[])) AS etag, "
            "unnest(CAST(:untils AS text[])) AS until) h ON s.key = h.key AND s.etag = h.etag "
            f"CROSS JOIN LATERAL (SELECT {as_of_body} AS body) x CROSS JOIN LATERAL (SELECT {until_body} AS body) y) r "
            "WHERE a.key = r.key AND a.etag = r.etag AND a.computed_at < :at AND (a.claimed_until IS NULL OR a.claimed_until < :at) "
            "RETURNING a.key"
        )
        params = {"version": version, "at": at, "as_of_key": AS_OF, "until_key": UNTIL, "new": new, "quote": b'"'}
        params |= {"keys": [k for k, _, _ in held], "etags": [e for _, e, _ in held], "untils": [u for _, _, u in held]}
        return set((await session.execute(stmt, params)).scalars())
    a, done = SharedAnswer, set()
    for key, etag, until in held:
        mine = and_(a.key == key, a.etag == etag, a.computed_at < at, or_(a.claimed_until.is_(None), a.claimed_until < at))
        body = (await session.execute(select(a.body).where(mine))).scalar()
        if body is None:
            continue
        body = _rewrite(_rewrite(body, AS_OF, new), UNTIL, None if until is None else until.encode())
        stamped = update(a).where(mine).values(version=version, computed_at=at, body=body, seq=next_seq(session))
        if (await session.execute(stamped)).rowcount == 1:
            done.add(key)
    return done
