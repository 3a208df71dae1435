"""Tables of the event log's retention (SPEC section 9): what stays when a month of events is archived.

The event log (`dossier_event`, app.db.models) is partitioned by local month of `occurred_at` on
PostgreSQL (app.db.partitions), so no unique index over it can recognise an event sent again with
another `occurred_at`. Duplicates are decided in two places: an event still stored is found in the
log by (unit_code, event_id) (through SQL_EVENT_HASH on PostgreSQL, in every month), and an event of
a month retention archived by its 16-byte key in `event_key`, written by the run that drops the
month (app.retention). Writers of a unit take its lock (SQL_EVENT_LOCKS) before they look, so each
sees what the one before it committed; a retention run writes the keys and drops the month in one
transaction, so a look sees the events either in the log or as keys. The other tables keep what a
dropped month leaves behind for `chiso kpis verify`, the silent-source check and the at-risk list.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.db.types import UTCDateTime


def event_key_of(unit_code: str, event_id: str) -> uuid.UUID:
    """An event's key: the first 4 bytes of the SHA-256 of `unit_code`, then the first 12 of the
    SHA-256 of `unit_code:event_id` (UTF-8; a unit code holds no colon, so the pair is read back from
    the string unambiguously). The unit's prefix keeps a unit's keys together in the index, as the
    (unit_code, event_id) pair did: a batch's inserts touch its unit's pages, not the whole index.
    96 bits within a unit: the chance that two of a unit's events share a key is about 10^-17 for a
    million events (two units sharing a prefix still need their 96 bits to meet)."""
    unit = unit_code.encode()
    return uuid.UUID(bytes=hashlib.sha256(unit).digest()[:4] + hashlib.sha256(unit + b":" + event_id.encode()).digest()[:12])


# event_key_of in SQL (the PostgreSQL pass: app.aggregates.pgpass renders @EVENT_KEY(alias)@)
SQL_EVENT_KEY = (
    "encode(substring(sha256(convert_to({a}.unit_code, 'UTF8')) FROM 1 FOR 4)"
    " || substring(sha256(convert_to({a}.unit_code || ':' || {a}.event_id, 'UTF8')) FROM 1 FOR 12), 'hex')::uuid"
)

# What finds an event in the log by its unit and id on PostgreSQL: an index over this 8-byte hash
# (ix_dossier_event_event_hash, every month), ~30 bytes an event where (unit_code, event_id) took
# ~50; a lookup also compares the pair itself. SQLite finds it by the log's key.
SQL_EVENT_HASH = "hashtextextended({a}.unit_code || ':' || {a}.event_id, 0)"
# the index's expression, as PostgreSQL writes it back (what the models are compared with)
INDEX_EVENT_HASH = "hashtextextended((unit_code::text || ':'::text) || event_id::text, 0::bigint)"
# A stored event {e} that is the event {j} looked up: the hash, through its index in every month,
# then the pair itself, wrapped (IS TRUE) so that it cannot be an index condition. Unwrapped, where
# a month's statistics are missing or stale (a new month, a fresh import) the planner may take the
# log's (unit_code, dossier_id) index instead and read, for each event looked up, every event of its
# unit in every month (`bench.stages`, a year over 15 months: 62 µs an event; 15 through the hash).
SQL_EVENT_MATCH = (
    SQL_EVENT_HASH.format(a="{e}")
    + " = "
    + SQL_EVENT_HASH.format(a="{j}")
    + " AND ({e}.unit_code = {j}.unit_code AND {e}.event_id = {j}.event_id) IS TRUE"
)

# The stored events among those of table {t} (the pass's staged batch): every month's hash index
# probed once with all of their hashes (a bitmap scan over `= ANY`), not once per event looked up (a
# nested loop rescanning every month for each: at 14 months 2.1 → 1.4 ms for 100 events, 15 → 11
# for 1,000, 280 → 160 for 20,000). Only the hash can be an index condition here, whatever a month's
# statistics; the pass compares the pairs themselves in a hashed `NOT IN` of these rows.
SQL_EVENTS_STORED = (
    "SELECT e.unit_code, e.event_id FROM dossier_event e WHERE "
    + SQL_EVENT_HASH.format(a="e")
    + " = ANY (ARRAY(SELECT "
    + SQL_EVENT_HASH.format(a="s")
    + " FROM {t} s))"
)

# The lock a writer of a unit's events holds until it commits (PostgreSQL; SQLite has one writer at
# a time): pg_advisory_xact_lock(EVENT_LOCK_CLASS, hashtext(unit_code)), taken for every unit of a
# batch in ascending order before anything else of the batch (app.aggregates.writes' lock order), so
# two writers never wait on each other's. One lock per unit (two units sharing a 32-bit hash only
# queue their writers): a batch holds as many as it has units, an import's group of whole units
# included (at most the registry's ~3,400, within PostgreSQL's default lock table of ~6,400), and
# writers of different units, an import's writers on different provinces among them, never queue.
EVENT_LOCK_CLASS = 0x63686576  # "chev"
# after SELECT or PERFORM: the locks of the units of table {t}'s rows
SQL_EVENT_LOCKS = (
    f"pg_advisory_xact_lock({EVENT_LOCK_CLASS}, l.k) FROM (SELECT DISTINCT hashtext(x.unit_code) AS k FROM {{t}} x ORDER BY 1 OFFSET 0) l"
)


class EventKey(Base):
    """The (unit_code, event_id) of every event of an archived month, as its event_key_of: what keeps
    such an event a duplicate once its month left the log (the log itself decides for the events it
    still holds). 16 bytes a key, not the id itself. Keys only for archived months (issue 24's
    compact store): ~89 bytes per stored event less than a key for every event."""

    __tablename__ = "event_key"

    key: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


class ArchivedMonth(Base):
    """A local month of the event log written to its archive file and dropped from the log."""

    __tablename__ = "archived_month"

    month: Mapped[date] = mapped_column(Date, primary_key=True)  # its first day
    events: Mapped[int] = mapped_column(BigInteger)  # lines of its archive file
    file: Mapped[str] = mapped_column(String(255))  # the file's name under ARCHIVE_DIR
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the last run that added to it


class ArchivedUnitMonth(Base):
    """Per unit and archived month: how many of its events the archive holds, the latest acceptance
    among them and the local days they are dated on (JSON list): what `kpis verify` and the
    silent-source check would otherwise read from the dropped events."""

    __tablename__ = "archived_unit_month"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    events: Mapped[int] = mapped_column(BigInteger)
    last_ingested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    days: Mapped[str] = mapped_column(Text)


class ArchivedReceipt(Base):
    """The procedure code of a receipt archived while its dossier was open (the at-risk list names it;
    an ended dossier never opens again, so no other receipt is kept)."""

    __tablename__ = "archived_receipt"

    unit_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    procedure_code: Mapped[str] = mapped_column(String(32))
