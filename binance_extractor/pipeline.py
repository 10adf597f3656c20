"""One extraction job: plan the range, stream exchange pages into the sinks, and audit the run.

Extraction and writing overlap (a writer thread drains a bounded queue), so memory stays bounded for any range.
Each page is fully validated before it is queued, so a rejected row means its page is never written.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from binance_extractor import clock, config, freshness, sources, telemetry
from binance_extractor.catalog import Shape
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.errors import ExtractorError, InputError, SinkError
from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.masking import mask
from binance_extractor.sinks.base import Sink, stores
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt, truncate_ms

log = logging.getLogger(__name__)

WRITE_BATCH = 5000
QUEUE_PAGES = 8
# Consecutive archive files are loaded together up to this many rows: one bulk load and one commit per group
# instead of per file (a commit's log flush cost ~25 % of MariaDB's LOAD DATA speed per month of m5; #25), yet
# small enough that loading a group overlaps fetching and parsing the next files. A group commits or rolls back
# whole; a re-run converges because the loads are idempotent upserts.
BULK_GROUP_ROWS = 30_000  # BINANCE_EXTRACTOR_BULK_GROUP_ROWS overrides it (1: a transaction per file)


def bulk_group_rows() -> int:
    import os

    return max(1, int(os.environ.get("BINANCE_EXTRACTOR_BULK_GROUP_ROWS") or BULK_GROUP_ROWS))


@dataclass
class Job:
    """What to extract; ``start``/``end`` are a half-open range on the key time (None: planned)."""

    kind: DataKind
    symbol: str
    timeframe: Timeframe | None = None
    start: datetime | None = None
    end: datetime | None = None
    incremental: bool = False
    source: str = "auto"
    requested_by: str = "cli"

    def __post_init__(self) -> None:
        dataset = Dataset(DataKind.parse(self.kind), self.timeframe)  # bad kind / klines without a timeframe
        self.kind, self.timeframe = dataset.kind, dataset.timeframe

    @property
    def dataset(self) -> Dataset:
        return Dataset(self.kind, self.timeframe)

    @property
    def table(self) -> str:
        return self.dataset.table

    @property
    def interval(self) -> str | None:
        """Binance's spelling of the timeframe (what the audit table and telemetry record)."""
        return self.timeframe.interval if self.timeframe else None


@dataclass
class JobResult:
    kind: str
    symbol: str
    interval: str | None
    table: str
    start: datetime
    end: datetime
    rows_extracted: int = 0
    rows_written: int = 0
    last_time: datetime | None = None
    duration_s: float = 0.0
    outcome: str = "success"
    sinks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "symbol": self.symbol,
            "interval": self.interval,
            "table": self.table,
            "start": iso(self.start),
            "end": iso(self.end),
            "rows_extracted": self.rows_extracted,
            "rows_written": self.rows_written,
            "last_time": iso(self.last_time) if self.last_time else None,
            "duration_s": round(self.duration_s, 3),
            "outcome": self.outcome,
            "sinks": self.sinks,
        }


def resume_after(job: Job, last: datetime) -> datetime:
    """Where an incremental run resumes after the newest stored row.

    Klines re-read the newest stored candle (one row, an idempotent upsert), so a candle the exchange corrected
    after we stored it is seen again. Trades re-read the newest stored millisecond: many trades share one, and a
    run stopped between them must not skip the rest. Funding resumes 1 ms after (one event per time, never
    changed).
    """
    if job.dataset.shape is Shape.EVENTS:
        return last + timedelta(milliseconds=1)
    return last


def catchup_floor(job: Job, end: datetime, days: float) -> datetime:
    """``end - days``, floored to a candle open for klines (a 1w/1M window rounded up would skip its candle)."""
    bound = end - timedelta(days=days)
    if job.timeframe is not None:
        return ms_to_dt(job.timeframe.floor_ms(dt_to_ms(bound)))
    return bound


def stored_last(job: Job, sinks: Sequence[Sink]) -> datetime | None:
    """The newest key every readable sink holds (the oldest of their newest), or None if any is empty."""
    lasts = [s.last_time(job.dataset, job.symbol) for s in stores(sinks)]
    known = [t for t in lasts if t is not None]
    if not lasts or len(known) < len(lasts):
        return None
    return min(known)


def first_load_done(job: Job, sinks: Sequence[Sink]) -> bool:
    """Whether a run of this table and symbol ever succeeded, as recorded in every readable sink's audit table.

    Until then the stored rows are an interrupted first load, which must resume where it stopped rather than
    at the catch-up bound (that would leave the history in between to the nightly gap filler).
    """
    dataset = job.dataset
    return all(s.has_success(dataset, job.symbol) for s in stores(sinks))


def plan_range(
    job: Job,
    sinks: Sequence[Any],
    client: BinanceFuturesClient,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """Resolve the run's [start, end): explicit bounds, or incremental from the newest stored row.

    Incremental: from the newest row every sink already holds (klines: that candle again, see ``resume_after``),
    never after ``start`` if given, and never further back than ``max_catchup_days`` (floored to a candle open)
    once a first load has completed; an interrupted first load resumes where it stopped. An empty table starts
    ``history_days`` back (or at the listing date with ``full_history``).
    """
    settings = config.settings()
    now = truncate_ms(now or clock.now())
    end = job.end or now
    if job.start is not None and not job.incremental:
        if end <= job.start:
            raise InputError(f"end {iso(end)} is not after start {iso(job.start)}")
        return job.start, end
    last = stored_last(job, sinks)
    if last is not None:
        start = resume_after(job, last)
        if job.start is not None:
            start = min(start, job.start)
        if first_load_done(job, sinks):
            start = max(start, catchup_floor(job, end, settings.max_catchup_days))
    else:
        onboard = client.onboard_time(job.symbol) if settings.full_history else None
        start = onboard or (end - timedelta(days=settings.history_days))
        if job.start is not None:
            start = min(start, job.start)
    return min(start, end), end


def batches(job: Job, client: BinanceFuturesClient, start: datetime, end: datetime) -> Iterator[Any]:
    """The source iterator for the job's dataset (``sources.batches``): lists of models, or archive files as
    columnar ``KlineBlock``s."""
    return sources.batches(job.dataset, client, job.symbol, dt_to_ms(start), dt_to_ms(end), source=job.source)


class Prefetched(Protocol):
    """A job's pages fetched ahead (``lookahead.Feed``): iterated once, closed always."""

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class Ahead(Protocol):
    """What ``run_job`` asks of a batch's lookahead (``lookahead.Lookahead``, #25)."""

    def claim(self, job: Job, start: datetime, end: datetime) -> Prefetched | None: ...

    def plan_after(self, job: Job, sinks: Sequence[Any]) -> None: ...

    def start(self) -> None: ...


def run_job(
    job: Job,
    sinks: Sequence[Any],
    client: BinanceFuturesClient,
    *,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
    ahead: Ahead | None = None,
) -> JobResult:
    """Extract ``job`` into every sink; returns counts, or raises after auditing the failure.

    ``ahead``: the batch's lookahead (``lookahead.Lookahead``: several archive symbols in one run): this job takes
    the pages prefetched for it, plans the next job's range, and starts that job's source once its own is exhausted.
    """
    started = time.perf_counter()
    started_at = clock.now()
    start, end = plan_range(job, sinks, client, now)
    feed = ahead.claim(job, start, end) if ahead is not None else None
    result = JobResult(job.kind.value, job.symbol, job.interval, job.table, start, end, sinks=[s.name for s in sinks])
    attrs = {"kind": job.kind.value, "symbol": job.symbol, "timeframe": job.interval or ""}
    error: BaseException | None = None
    with telemetry.span(
        "extract.symbol", symbol=job.symbol, kind=job.kind.value, timeframe=job.interval, start=iso(start), end=iso(end)
    ):
        try:
            if ahead is not None:
                ahead.plan_after(job, sinks)  # no writer holds the stores yet
            if start < end:
                _stream(job, sinks, client, start, end, result, progress, feed, ahead.start if ahead else None)
        except BaseException as exc:
            error = exc
            result.outcome = "failed"
        finally:
            if feed is not None:
                feed.close()
            result.duration_s = time.perf_counter() - started
            try:
                result.last_time = stored_last(job, sinks)
            except Exception:  # the database may be the thing that failed
                result.last_time = None
            _audit(job, sinks, result, started_at, error)
            outcome = {"job_type": f"{job.kind.value}:{job.interval or ''}", "outcome": result.outcome}
            if error is not None:  # SinkError = the database is unreachable (an alert of its own)
                outcome["error_class"] = type(error).__name__
            telemetry.instruments.counter("binance.jobs").add(1, outcome)
            telemetry.instruments.histogram("binance.job.duration").record(result.duration_s, outcome)
            telemetry.instruments.counter("binance.rows.extracted").add(result.rows_extracted, attrs)
            grid = job.dataset.grid  # every series on a time grid: klines of each price, open interest
            if grid is not None and result.last_time is not None:
                freshness.record_freshness(job.symbol, grid, result.last_time, kind=job.kind)  # binance.freshness.lag
    if error is not None:
        raise error
    return result


_DONE = object()


def _stream(
    job: Job,
    sinks: Sequence[Any],
    client: BinanceFuturesClient,
    start: datetime,
    end: datetime,
    result: JobResult,
    progress: Callable[[int], None] | None,
    source: Iterable[Any] | None = None,
    source_done: Callable[[], None] | None = None,
) -> None:
    """Producer (this thread) -> bounded queue -> writer thread; the first error stops both.

    ``source``: the job's pages when prefetched (``lookahead.Feed``), else ``batches``; ``source_done`` is called
    once every page is queued for the writer (the next symbol's source may start)."""
    from binance_extractor.archive_columns import KlineBlock  # pyarrow: imported when a job runs, not at DAG parse

    pages: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_PAGES)
    failure: list[BaseException] = []
    stop = threading.Event()
    dataset, table = job.dataset, job.table

    def flush(pending: Any) -> None:
        """Write a list of models, or a columnar ``KlineBlock`` through each sink's bulk path."""
        bulk = isinstance(pending, KlineBlock)
        for sink in sinks:
            with telemetry.span("sink.write", sink=sink.name, table=table, rows=len(pending), bulk=bulk):
                t0 = time.perf_counter()
                if bulk:
                    sink.write_block(dataset, pending)
                else:
                    sink.write(dataset, pending)
                telemetry.instruments.histogram("binance.db.batch.duration").record(
                    time.perf_counter() - t0, {"sink": sink.name, "table": table}
                )
            written = {"kind": job.kind.value, "symbol": job.symbol, "timeframe": job.interval or "", "sink": sink.name}
            telemetry.instruments.counter("binance.rows.written").add(len(pending), written)
        result.rows_written += len(pending)
        if progress:
            progress(len(pending))

    group: list[Any] = []  # consecutive archive files waiting to be loaded together (BULK_GROUP_ROWS)
    group_rows = bulk_group_rows()

    def flush_group() -> None:
        if group:
            joined = group[0] if len(group) == 1 else KlineBlock.concat(group)
            group.clear()
            flush(joined)

    def writer() -> None:
        pending: list[Any] = []
        while True:
            item = pages.get()
            if item is _DONE:
                break
            if stop.is_set():
                continue  # failed: keep draining so the producer never blocks
            try:
                if isinstance(item, KlineBlock):  # archive files: bulk loads, after what came before them
                    if pending:
                        flush(pending)
                        pending = []
                    group.append(item)
                    if sum(len(b) for b in group) >= group_rows:
                        flush_group()
                    continue
                flush_group()
                pending.extend(item)
                if len(pending) >= WRITE_BATCH:
                    flush(pending)
                    pending = []
            except BaseException as exc:
                failure.append(exc)
                stop.set()
        if not stop.is_set():
            try:
                flush_group()
                if pending:
                    flush(pending)
            except BaseException as exc:
                failure.append(exc)

    context = contextvars.copy_context()  # the writer's spans join this job's trace
    thread = threading.Thread(target=context.run, args=(writer,), name="binance-writer", daemon=True)
    thread.start()
    try:
        render = any(getattr(sink, "bulk_csv", False) for sink in sinks)
        for page in batches(job, client, start, end) if source is None else source:
            if stop.is_set():
                break
            if render and isinstance(page, KlineBlock):
                page = page.rendered()  # the loaders' CSV, made here while the writer loads the previous group
            result.rows_extracted += len(page)
            pages.put(page)
        if source_done is not None and not stop.is_set():
            source_done()
    except BaseException as exc:
        failure.insert(0, exc)
    finally:
        pages.put(_DONE)
        thread.join()
    if failure:
        raise failure[0]


def _audit(
    job: Job, sinks: Sequence[Any], result: JobResult, started_at: datetime, error: BaseException | None
) -> None:
    try:
        from binance_extractor.sinks.base import RunRecord
    except ImportError:
        return
    record = RunRecord(
        run_id=str(uuid.uuid4()),
        kind=job.kind.value,
        table=job.table,
        symbol=job.symbol,
        interval=job.interval,
        range_start=result.start,
        range_end=result.end,
        requested_by=job.requested_by,
        rows_written=result.rows_written,
        started_at=started_at,
        finished_at=clock.now(),
        outcome=result.outcome,
        error=_one_line(error) if error else None,
    )
    for sink in stores(sinks):
        try:
            sink.record_run(record)
        except Exception as exc:  # auditing must never hide the run's own outcome
            log.warning("could not record the run in %s: %s", sink.name, _one_line(exc))


def _one_line(exc: BaseException) -> str:
    """The audit row's ``error`` (shown on the data-health page): one line, secrets masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, ExtractorError | SinkError):
        text = f"{type(exc).__name__}: {text}"
    return mask(text)[:500]


__all__ = ["Job", "JobResult", "ms_to_dt", "plan_range", "run_job"]
