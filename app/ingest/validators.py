"""Chunks of `chiso import` validated in several processes (the bulk path, app.ingest.bulk).

Parsing and validating a line costs the client about as much as the server's whole load of it, and
one Python thread does it at some 40,000 lines/s. On the bulk path the chunks are independent: a
repeat of an event in another chunk is told apart by the work table (the first line's copy is
staged, app.ingest.bulk), so each chunk can be screened alone. A pool of processes screens them
with the same function as the API and the single-thread path (`screen_chunk`: app.ingest.service
.screen), and hands them back in the file's order, the valid events as rows ready for COPY.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter

import orjson

from app.aggregates.writes import STAGE_COLUMNS
from app.ingest.schemas import EventError
from app.ingest.service import screen
from app.units.service import Registry

_ROW = itemgetter(*STAGE_COLUMNS)  # an event's values in the work table's column order


@dataclass
class Chunk:
    seq: int
    end_offset: int  # byte offset just after the chunk's last line
    end_line: int  # 1-based number of its last line
    events: list = field(default_factory=list)  # valid events: dicts, or rows of STAGE_COLUMNS (as_rows)
    lines: int = 0
    duplicates: int = 0  # within the file, before the store
    rejected: list[dict] = field(default_factory=list)
    first_line: int = 0  # the number of its first line (the bulk path orders copies by it)


@dataclass(frozen=True)
class Rules:
    """What screening a chunk needs besides its lines."""

    registry: Registry
    skew: timedelta
    horizon: timedelta | None
    header: list[str] | None  # CSV columns; None: NDJSON


def screen_chunk(
    rules: Rules, seq: int, lines: list[tuple[int, bytes]], end: tuple[int, int], seen: set, as_rows: bool = False, csv_items=None
) -> Chunk:
    """One chunk's lines parsed and screened as the API screens a batch."""
    chunk = Chunk(seq=seq, end_offset=end[0], end_line=end[1], lines=len(lines), first_line=lines[0][0] if lines else end[1])
    items: list = []
    for _, text in lines:
        if rules.header is not None:
            items.append(csv_items(rules.header, text))
            continue
        try:
            items.append(orjson.loads(text))
        except orjson.JSONDecodeError:
            items.append(None)
    what = "line is not a CSV record with every column" if rules.header is not None else "line is not JSON"
    marked = [EventError([{"loc": [], "msg": what}]) if item is None else item for item in items]
    results = screen(marked, rules.registry, datetime.now(UTC), rules.skew, rules.horizon, seen)
    for (n, text), (status, event_id, got) in zip(lines, results, strict=True):
        if status == "valid":
            chunk.events.append((*_ROW(got), n) if as_rows else got)
        elif status == "duplicate":
            chunk.duplicates += 1
        else:
            chunk.rejected.append({"line": n, "event_id": event_id, "errors": got, "text": text.decode("utf-8", "replace")})
    return chunk


_RULES: Rules | None = None
_CSV = None


def _init(rules: Rules, csv_items) -> None:
    global _RULES, _CSV
    _RULES, _CSV = rules, csv_items


def _work(seq: int, lines: list[tuple[int, bytes]], end: tuple[int, int]) -> Chunk:
    assert _RULES is not None
    return screen_chunk(_RULES, seq, lines, end, set(), as_rows=True, csv_items=_CSV)


def screened(raw: Iterable[tuple[int, list, tuple[int, int]]], rules: Rules, processes: int, csv_items) -> Iterator[Chunk]:
    """Each raw chunk (seq, lines, end) screened by a pool of `processes`, in order, a few ahead."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process running threads and an event loop
    with ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init, initargs=(rules, csv_items)) as pool:
        ahead: deque[Future] = deque()
        for seq, lines, end in raw:
            ahead.append(pool.submit(_work, seq, lines, end))
            if len(ahead) >= 2 * processes:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
