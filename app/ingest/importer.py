"""`chiso import`: back-fill history from NDJSON or CSV files (SPEC section 9).

NDJSON may come gzip-compressed (the archives of `chiso retention run` are read as they are).
Every line goes through the API's validation and rules (`validate_events`, the unit registry, the
same store), except the horizon, which applies only when asked for. Lines are read in chunks; a
reader thread parses and validates the next chunks (on the bulk path with `validators` processes,
app.ingest.validators) while up to `writers` connections store earlier ones, each chunk in one
transaction (on PostgreSQL: COPY into the import's work table, built after the last chunk,
app.ingest.bulk; with --no-bulk, COPY into the session's staging table, then the set-based write
pass, app.aggregates.pgpass). A stored or earlier copy of an event is a duplicate and
changes nothing, so an interrupted import is simply run again: a progress file beside the input
remembers up to which line every chunk is committed, and into which database; a re-run into that
one starts there (what it still reads twice is counted as duplicates, never stored twice).
Rejected lines go to `FILE.rejected` (one JSON object per line: its line number, the errors naming
each field, the line as read).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import orjson

from app.db.engine import Database
from app.ingest.bulk import GROUP_EVENTS, BulkLoad, table_of
from app.ingest.service import store_events
from app.ingest.validators import Chunk, Rules, screen_chunk, screened
from app.settings import Settings
from app.units.service import Registry

CHUNK_LINES = 20_000


@dataclass
class FileReport:
    path: str
    lines: int = 0  # non-blank lines read in this run
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    resumed_at_line: int = 0  # 0: from the start
    seconds: float = 0.0
    load_seconds: float = 0.0  # the bulk path: of `seconds`, loading (the rest builds)
    fresh: int = 0  # the bulk path: of `accepted`, stored by plain inserts into units with nothing stored (app.ingest.fresh)
    compacted: bool = False  # the bulk path: the indexes of the largest tables rebuilt after (BulkLoad.compact)

    @property
    def events_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0


def progress_path(path: Path) -> Path:
    return path.with_name(path.name + ".import-progress")


def rejected_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejected")


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _open(path: Path) -> BinaryIO:
    """The file's bytes; a gzip file (an archive of `chiso retention run`) decompressed, so that
    offsets are offsets in its text."""
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def _text_size(path: Path) -> int:
    """The size of what _open() reads: a gzip file's trailer holds it (mod 2**32; one member)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(2) != b"\x1f\x8b" or size < 18:
            return size
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def _read_lines(path: Path, start: int, line_no: int) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset after the line, the line without its end) from byte `start`."""
    with _open(path) as f:
        f.seek(start)
        offset = start
        for raw in f:
            offset += len(raw)
            line_no += 1
            yield line_no, offset, raw.rstrip(b"\r\n")


def _csv_items(header: list[str], line: bytes) -> dict | None:
    """One CSV record as an event object: empty cells are absent fields."""
    try:
        (row,) = list(csv.reader(io.StringIO(line.decode("utf-8"))))
    except (UnicodeDecodeError, ValueError, csv.Error):
        return None
    if len(row) != len(header):
        return None
    return {k: v for k, v in zip(header, row, strict=True) if v != ""}


class Importer:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        settings: Settings,
        fmt: str = "ndjson",
        horizon_days: int | None = None,
        chunk_lines: int = CHUNK_LINES,
        writers: int = 2,
        on_progress: Callable[[int, int, int], None] | None = None,  # (bytes done, bytes total, events done)
        bulk: bool = True,
        group_events: int = GROUP_EVENTS,
        validators: int = 1,
    ):
        self.db, self.registry, self.settings = db, registry, settings
        self.fmt = fmt
        self.horizon = timedelta(days=horizon_days) if horizon_days is not None else None
        self.chunk_lines = chunk_lines
        self.writers = max(1, writers)
        self.on_progress = on_progress
        self.bulk = bulk and not db.is_sqlite  # SQLite: the chunked path
        self.group_events = group_events
        self.validators = max(1, validators)  # the bulk path: processes parsing and validating lines
        # which store the progress file speaks of (a hash of its URL, which may hold a password):
        # the same file imported into another database starts from its first line
        self.store = hashlib.sha256(str(db.url).encode()).hexdigest()[:16]

    # --- reading and validating (a worker thread) ----------------------------------------------

    def _raw(self, path: Path, start: int, line_no: int, header: list[str] | None) -> Iterator[tuple[int, list, tuple[int, int]]]:
        """The file's chunks as read: (seq, [(line number, line)], (end offset, end line))."""
        seq = 0
        lines: list[tuple[int, bytes]] = []
        end = (start, line_no)
        for n, offset, text in _read_lines(path, start, line_no):
            end = (offset, n)
            if header is not None and n == 1:
                continue  # the CSV header
            if not text.strip(b" \t"):
                continue
            lines.append((n, text))
            if len(lines) >= self.chunk_lines:
                yield seq, lines, end
                seq += 1
                lines = []
        if lines or seq == 0:
            yield seq, lines, end

    def _chunks(self, path: Path, start: int, line_no: int, header: list[str] | None) -> Iterator[Chunk]:
        """The chunks screened: on the bulk path by `validators` processes (app.ingest.validators),
        the valid events as rows for COPY; else in this thread, a repeat of an earlier line of this
        run a duplicate before the store."""
        rules = Rules(self.registry, timedelta(seconds=self.settings.skew_seconds), self.horizon, header)
        raw = self._raw(path, start, line_no, header)
        if self.bulk and self.validators > 1:
            yield from screened(raw, rules, self.validators, _csv_items)
            return
        seen: set[tuple[str, str]] = set()
        for seq, lines, end in raw:
            yield screen_chunk(rules, seq, lines, end, seen, as_rows=self.bulk, csv_items=_csv_items)

    # --- one file ------------------------------------------------------------------------------

    async def import_file(self, path: Path) -> FileReport:
        report = FileReport(path=str(path))
        started = time.perf_counter()
        prog, rej = progress_path(path), rejected_path(path)
        start, line_no = 0, 0
        if prog.exists():
            saved = orjson.loads(prog.read_bytes())
            if saved.get("file") == _fingerprint(path) and saved.get("store") == self.store:
                start, line_no = saved["offset"], saved["line"]
                report.resumed_at_line = line_no
        if start == 0 and rej.exists():
            rej.unlink()
        header = None
        if self.fmt == "csv":
            with _open(path) as f:
                first = f.readline().decode("utf-8-sig").strip()
            header = [h.strip() for h in next(csv.reader([first]))]
        total = _text_size(path)

        queue: asyncio.Queue = asyncio.Queue(maxsize=self.writers + 1)
        done: dict[int, Chunk] = {}
        committed = {"next": 0}
        loop = asyncio.get_running_loop()

        def produce() -> None:
            for chunk in self._chunks(path, start, line_no, header):
                asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            for _ in range(self.writers):
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        load = BulkLoad(self.db, self.registry, self.settings, table_of(path, _fingerprint(path))) if self.bulk else None
        if load is not None:
            await load.open()

        async def write() -> None:
            while (chunk := await queue.get()) is not None:
                if load is not None:  # loaded now, stored by build() below
                    await load.load(chunk.events)
                    inserted = chunk.events
                else:
                    inserted = (
                        await store_events(self.db, self.registry, self.settings, chunk.events, datetime.now(UTC), bulk=True)
                        if chunk.events
                        else set()
                    )
                report.lines += chunk.lines
                report.accepted += len(inserted)
                report.duplicates += chunk.duplicates + len(chunk.events) - len(inserted)
                report.rejected += len(chunk.rejected)
                done[chunk.seq] = chunk
                self._advance(path, done, committed)
                if self.on_progress:
                    self.on_progress(chunk.end_offset, total, report.lines)

        producer = asyncio.create_task(asyncio.to_thread(produce))
        writers = [asyncio.create_task(write()) for _ in range(self.writers)]
        try:
            await asyncio.gather(producer, *writers)
        except BaseException:
            for task in (producer, *writers):
                task.cancel()
            raise
        if load is not None:
            report.load_seconds = time.perf_counter() - started
            await self._build(load, report)
        prog.unlink(missing_ok=True)  # complete: a new run starts from the first line
        report.seconds = time.perf_counter() - started
        return report

    async def _build(self, load: BulkLoad, report: FileReport) -> None:
        """The bulk path's second step: every loaded event stored, group by group (app.ingest.bulk);
        the accepted count becomes what the store took, the rest duplicates."""
        await load.ensure_partitions()
        groups = await load.groups(self.group_events, self.writers)
        loaded, accepted = report.accepted, 0

        async def build(writer: int) -> None:
            nonlocal accepted
            while groups:
                got = await load.build(groups.pop(0), writer)
                accepted += got.accepted
                report.fresh += got.fresh

        await asyncio.gather(*(build(w) for w in range(self.writers)))
        await load.close()
        report.compacted = await load.compact(accepted)
        report.accepted = accepted
        report.duplicates += max(0, loaded - accepted)

    def _advance(self, path: Path, done: dict[int, Chunk], committed: dict) -> None:
        """Record the progress of the chunks committed without a gap, and their rejected lines."""
        last = None
        while committed["next"] in done:
            chunk = done.pop(committed["next"])
            if chunk.rejected:
                with rejected_path(path).open("ab") as f:
                    for r in chunk.rejected:
                        f.write(orjson.dumps(r) + b"\n")
            committed["next"] += 1
            last = chunk
        if last is not None:
            tmp = progress_path(path).with_suffix(".tmp")
            saved = {"file": _fingerprint(path), "store": self.store, "offset": last.end_offset, "line": last.end_line}
            tmp.write_bytes(orjson.dumps(saved))
            os.replace(tmp, progress_path(path))


def report_dict(report: FileReport) -> dict:
    return asdict(report) | {"events_per_s": round(report.events_per_s, 1)}
