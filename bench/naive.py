"""The naive reference: the same endpoint written the obvious way — an ORM object and a SELECT per
event, a commit per request. Lives in the benchmark only; served with uvicorn like chiso."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import orjson
from fastapi import FastAPI, Request, Response
from sqlalchemy import Date, DateTime, Integer, MetaData, String
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

LOCAL = timezone(timedelta(hours=7))

DDL = """
CREATE SCHEMA IF NOT EXISTS naive;
CREATE TABLE naive.event (unit_code varchar(8), event_id varchar(128), type varchar(16), dossier_id varchar(64),
  occurred_at timestamptz, channel varchar(16), due_at timestamptz, reason varchar(32), outcome varchar(16),
  procedure_code varchar(32), sector varchar(64), PRIMARY KEY (unit_code, event_id));
CREATE TABLE naive.dossier (unit_code varchar(8), dossier_id varchar(64), recv_at timestamptz, channel varchar(16),
  due_at timestamptz, res_at timestamptz, wd_at timestamptz, sector varchar(64), PRIMARY KEY (unit_code, dossier_id));
CREATE TABLE naive.unit_day (unit_code varchar(8), day date, received int, received_online int, resolved int,
  resolved_late int, withdrawn int, PRIMARY KEY (unit_code, day));
"""


class Base(DeclarativeBase):
    metadata = MetaData(schema="naive")


class Event(Base):
    __tablename__ = "event"
    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    dossier_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(16))
    procedure_code: Mapped[str | None] = mapped_column(String(32))
    sector: Mapped[str | None] = mapped_column(String(64))


class Dossier(Base):
    __tablename__ = "dossier"
    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    dossier_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    recv_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    res_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    wd_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sector: Mapped[str | None] = mapped_column(String(64))


class UnitDay(Base):
    __tablename__ = "unit_day"
    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    day: Mapped[datetime] = mapped_column(Date, primary_key=True)
    received: Mapped[int] = mapped_column(Integer)
    received_online: Mapped[int] = mapped_column(Integer)
    resolved: Mapped[int] = mapped_column(Integer)
    resolved_late: Mapped[int] = mapped_column(Integer)
    withdrawn: Mapped[int] = mapped_column(Integer)


engine = create_async_engine(
    os.environ.get("NAIVE_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1/x"), pool_size=10, max_overflow=10
)
Session = async_sessionmaker(engine, expire_on_commit=False)
app = FastAPI()


def _dt(s):
    return datetime.fromisoformat(s) if s else None


@app.post("/api/v1/events", status_code=202)
async def post_events(request: Request) -> Response:
    doc = orjson.loads(await request.body())
    accepted = dups = 0
    seen, dossiers, days = set(), {}, {}
    try:
        async with Session() as s:
            for e in doc["events"]:
                key = (e["unit_code"], e["event_id"])
                if key in seen or await s.get(Event, key) is not None:
                    dups += 1
                    continue
                seen.add(key)
                occ, due = _dt(e["occurred_at"]), _dt(e.get("due_at"))
                s.add(
                    Event(
                        unit_code=e["unit_code"],
                        event_id=e["event_id"],
                        type=e["type"],
                        dossier_id=e["dossier_id"],
                        occurred_at=occ,
                        channel=e.get("channel"),
                        due_at=due,
                        reason=e.get("reason"),
                        outcome=e.get("outcome"),
                        procedure_code=e.get("procedure_code"),
                        sector=e.get("sector"),
                    )
                )
                dk = (e["unit_code"], e["dossier_id"])
                d = dossiers.get(dk) or await s.get(Dossier, dk)
                if d is None:
                    d = Dossier(unit_code=dk[0], dossier_id=dk[1])
                    s.add(d)
                dossiers[dk] = d
                uk = (e["unit_code"], occ.astimezone(LOCAL).date())
                ud = days.get(uk) or await s.get(UnitDay, uk)
                if ud is None:
                    ud = UnitDay(unit_code=uk[0], day=uk[1], received=0, received_online=0, resolved=0, resolved_late=0, withdrawn=0)
                    s.add(ud)
                days[uk] = ud
                t = e["type"]
                if t == "received":
                    d.recv_at, d.channel, d.sector = occ, e.get("channel"), e.get("sector")
                    d.due_at = d.due_at or due
                    ud.received += 1
                    ud.received_online += e.get("channel") == "online"
                elif t == "resolved":
                    d.res_at = occ
                    ud.resolved += 1
                    ud.resolved_late += bool(d.due_at and occ > d.due_at)
                elif t == "withdrawn":
                    d.wd_at = occ
                    ud.withdrawn += 1
                elif e.get("reason") != "apology":
                    d.due_at = due
                accepted += 1
            await s.commit()
    except DBAPIError:  # a unique race with a concurrent request: let the client retry
        return Response(status_code=503, headers={"Retry-After": "1"})
    body = orjson.dumps({"accepted": accepted, "duplicates": dups, "rejected": 0, "items": []})
    return Response(body, status_code=202, media_type="application/json")


@app.get("/readyz")
async def readyz() -> dict:
    return {"ok": True}
