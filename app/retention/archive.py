"""Archive files: one per local month under ARCHIVE_DIR, gzip-compressed NDJSON, one event a line in
the API's shape (what `chiso import` reads back as it is), sorted by (unit_code, event_id).

A file is only ever replaced whole (written beside, flushed to disk, renamed over), so a run killed
midway leaves the previous file or the new one, never half of one. Sorted lines let a later run
merge the events still to archive into the file in one pass, each event written once.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from pathlib import Path

import orjson

from app.ingest.schemas import EventFields

# The API's fields of an event (its one declaration), and when it was accepted (not read by
# `chiso import`: fields beyond the API's are ignored)
FIELDS = (*EventFields.__annotations__, "ingested_at")


def file_name(month: date) -> str:
    return f"events-{month:%Y-%m}.ndjson.gz"


def line(event: dict) -> bytes:
    """An event as one NDJSON line: the API's fields, absent when empty, timestamps in RFC 3339."""
    out = {}
    for k in FIELDS:
        v = event.get(k)
        if v is not None:
            out[k] = v.isoformat() if isinstance(v, datetime) else v
    return orjson.dumps(out) + b"\n"


def _key(raw: bytes) -> tuple[str, str]:
    obj = orjson.loads(raw)
    return obj["unit_code"], obj["event_id"]


def read_lines(path: Path) -> Iterator[tuple[tuple[str, str], bytes]]:
    """(key, line) of an archive file, in its (sorted) order; nothing when there is no file."""
    if not path.exists():
        return
    with gzip.open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                yield _key(raw), raw if raw.endswith(b"\n") else raw + b"\n"


def count_lines(path: Path) -> int:
    return sum(1 for _ in read_lines(path))


async def write_merged(path: Path, events: AsyncIterator[dict]) -> int:
    """Replace `path` with its own lines and `events` (sorted by key like it) merged in key order, an
    event already in the file written once; returns the file's line count."""
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    old = read_lines(path)
    pending = next(old, None)
    lines = 0
    with open(tmp, "wb") as raw, gzip.GzipFile(filename=path.name[:-3], mode="wb", fileobj=raw, mtime=0) as out:
        async for ev in events:
            key = (ev["unit_code"], ev["event_id"])
            while pending is not None and pending[0] < key:
                out.write(pending[1])
                lines += 1
                pending = next(old, None)
            if pending is not None and pending[0] == key:
                pending = next(old, None)  # in the file already (a run killed after writing it)
            out.write(line(ev))
            lines += 1
        while pending is not None:
            out.write(pending[1])
            lines += 1
            pending = next(old, None)
        out.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return lines


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
