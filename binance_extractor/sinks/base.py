"""The write-only ``Sink`` interface, the ``Store`` that also reads, the audit record, and the retry policy.

JSON lines output is a plain ``Sink``; every database is a ``Store``. Callers that read, audit, keep the gap
ledger or apply retention take a ``Store`` (or pick stores out of a sink list with ``stores``), never a name.

A sink instance owns one database connection and is not thread-safe: open one per thread or process.
Every ``write`` is an idempotent upsert on the table's key, so re-running any range is always safe.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from binance_extractor import clock
from binance_extractor.catalog import Row
from binance_extractor.errors import InputError, SinkError
from binance_extractor.kinds import DataKind, Dataset

if TYPE_CHECKING:
    import pyarrow as pa

    from binance_extractor.archive_columns import KlineBlock
    from binance_extractor.sinks.gap_dialect import GapQueries

log = logging.getLogger(__name__)

T = TypeVar("T")


def check_rows(dataset: Dataset, rows: Sequence[Row]) -> None:
    """Refuse a batch holding another kind of row (a caller bug) before anything is written."""
    model = dataset.model
    for r in rows:
        if type(r) is not model:
            raise InputError(f"{dataset.table} holds {model.__name__} rows, got a {type(r).__name__}")
        if dataset.timeframe is not None and getattr(r, "timeframe", None) != dataset.timeframe:
            raise InputError(f"{dataset.table} cannot hold {getattr(r, 'interval', '?')} klines")


def check_block(dataset: Dataset, block: KlineBlock) -> None:
    """Refuse a columnar block of another series' or interval's candles (a caller bug) before anything is written."""
    if dataset.kind is not block.kind:
        raise InputError(
            f"{dataset.table} holds {dataset.model.__name__} rows, got a block of {block.kind.model.__name__}"
        )
    if block.timeframe != dataset.timeframe:
        raise InputError(f"{dataset.table} cannot hold {block.interval} klines")


@dataclass
class RunRecord:
    """One extraction run for the audit table (``extraction_runs``); upserted on ``run_id``."""

    run_id: str
    kind: str
    table: str
    symbol: str | None
    interval: str | None
    range_start: datetime | None
    range_end: datetime | None
    requested_by: str
    rows_written: int = 0
    started_at: datetime = field(default_factory=clock.now)
    finished_at: datetime | None = None
    outcome: str = "success"
    error: str | None = None

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)

    def as_row(self) -> dict[str, Any]:
        error = None if self.error is None else " ".join(self.error.split())[:2000]
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "table_name": self.table,
            "symbol": self.symbol,
            "interval_name": self.interval,
            "range_start": _ms(self.range_start),
            "range_end": _ms(self.range_end),
            "requested_by": self.requested_by[:255],
            "rows_written": int(self.rows_written),
            "started_at": _ms(self.started_at),
            "finished_at": _ms(self.finished_at),
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "error": error,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRecord:
        return cls(
            run_id=row["run_id"],
            kind=row["kind"],
            table=row["table_name"],
            symbol=row["symbol"],
            interval=row["interval_name"],
            range_start=row["range_start"],
            range_end=row["range_end"],
            requested_by=row["requested_by"],
            rows_written=int(row["rows_written"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            outcome=row["outcome"],
            error=row["error"],
        )


GAP_CONFIRMED = "confirmed"  # exchange-side, on the evidence of gaps/evidence.py: never fetched again
GAP_PENDING = "pending"  # not fillable yet: REST has nothing (yet) but the evidence is not complete; retried
GAP_LEGACY = "legacy"  # confirmed under the old rule (before schema version 3): skipped until re-checked


@dataclass(frozen=True)
class GapRecord:
    """One hole ``[gap_start, gap_end)`` of the gap ledger (``gap_ledger``), with the evidence it was judged on.

    One value instead of many parameters, so every store writes the same row; upserted on
    (table, symbol, gap_start), so a later check of the same hole updates it. ``status``: ``confirmed``
    (exchange-side: detection skips it for good), ``pending`` (not fillable yet, ``reason`` says why; detection
    still finds it) or ``legacy`` (recorded before the evidence rule; skipped until ``gaps --recheck-ledger``).
    ``requests``, ``bound`` (the exchange's closed bound when REST was asked), ``asked_at`` and ``source`` are the
    evidence (``gaps/evidence.py``).
    """

    table: str
    symbol: str
    gap_start: datetime
    gap_end: datetime
    checked_by: str
    method: str
    requests: int
    confirmed_at: datetime = field(default_factory=clock.now)
    status: str = GAP_CONFIRMED
    bound: datetime | None = None
    asked_at: datetime | None = None
    source: str | None = None
    reason: str | None = None

    @property
    def skipped(self) -> bool:
        """Whether detection leaves this range out (confirmed, or legacy until re-checked)."""
        return self.status in (GAP_CONFIRMED, GAP_LEGACY)

    def as_row(self) -> dict[str, Any]:
        return {
            "table_name": self.table,
            "symbol": self.symbol,
            "gap_start": _ms(self.gap_start),
            "gap_end": _ms(self.gap_end),
            "confirmed_at": _ms(self.confirmed_at),
            "checked_by": self.checked_by[:255],
            "method": self.method[:32],
            "requests": int(self.requests),
            "status": self.status[:16],
            "bound": _ms(self.bound),
            "asked_at": _ms(self.asked_at),
            "source": None if self.source is None else self.source[:16],
            "reason": None if self.reason is None else " ".join(self.reason.split())[:2000],
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> GapRecord:
        """A stored row (a row from before the evidence columns reads as ``legacy``)."""
        return cls(
            table=row["table_name"],
            symbol=row["symbol"],
            gap_start=_ms(row["gap_start"]),  # type: ignore[arg-type]
            gap_end=_ms(row["gap_end"]),  # type: ignore[arg-type]
            checked_by=row.get("checked_by") or "",
            method=row.get("method") or "",
            requests=int(row.get("requests") or 0),
            confirmed_at=_ms(row.get("confirmed_at")) or clock.now(),
            status=row.get("status") or GAP_LEGACY,
            bound=_ms(row.get("bound")),
            asked_at=_ms(row.get("asked_at")),
            source=row.get("source"),
            reason=row.get("reason"),
        )

    @property
    def key(self) -> tuple[str, str, datetime]:
        """The ledger's key: (table, symbol, gap_start)."""
        return self.table, self.symbol, self.gap_start

    @property
    def dataset(self) -> Dataset:
        """The dataset of the row's table (the ledger keeps the table's name)."""
        return Dataset.of_table(self.table)


def _ms(dt: datetime | None) -> datetime | None:
    """Aware UTC, truncated to the millisecond every store keeps."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def utc_ms(dt: datetime | None) -> datetime | None:
    return _ms(dt)


class Sink(ABC):
    """Where rows go, write-only (JsonlSink). Stores (``Store``) add reads, audit, gap ledger and retention."""

    name: str = "sink"
    # ``write_block`` loads ``block.csv_bytes()``: the pipeline renders it ahead, off the writer's thread
    bulk_csv: bool = False

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create or migrate the schema to the latest version (idempotent, safe under concurrency)."""

    @abstractmethod
    def write(self, dataset: Dataset, rows: Sequence[Row]) -> int:
        """Upsert ``rows`` into ``dataset``'s table as one transaction; returns how many rows were written."""

    def write_block(self, dataset: Dataset, block: KlineBlock) -> int:
        """Upsert one columnar block of candles (an archive file) as one transaction; returns rows written.

        The default goes through the models (JSON lines); database sinks override it with their bulk loader,
        and must leave the table exactly as ``write`` of the same candles would.
        """
        check_block(dataset, block)
        return self.write(dataset, block.to_models()) if len(block) else 0

    @abstractmethod
    def close(self) -> None:
        """Release the connection or file (idempotent)."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store(Sink):
    """A database sink: also reads, keeps the audit runs and the gap ledger, applies retention, answers gap queries.

    Subclasses: SqliteStore, MySqlStore, PostgresStore (via SqlStore), MongoStore.
    """

    @abstractmethod
    def gap_queries(self) -> GapQueries:
        """This store's gap-detection dialect (``sinks.gap_dialect``)."""

    @abstractmethod
    def last_time(self, dataset: Dataset, symbol: str) -> datetime | None:
        """Newest key time stored for ``symbol`` (served by the key index), None when empty."""

    @abstractmethod
    def first_time(self, dataset: Dataset, symbol: str) -> datetime | None:
        """Oldest key time stored for ``symbol``, None when empty."""

    @abstractmethod
    def count(
        self, dataset: Dataset, symbol: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> int:
        """Rows of ``dataset`` (for ``symbol``) whose key time is in ``[start, end)``."""

    @abstractmethod
    def read(
        self, dataset: Dataset, symbol: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Rows as dicts (Decimal, aware UTC datetimes) ordered by key; klines carry their ``interval``."""

    @abstractmethod
    def record_run(self, run: RunRecord) -> None:
        """Upsert one audit row into ``extraction_runs``."""

    @abstractmethod
    def runs(self, limit: int = 100) -> list[RunRecord]:
        """Most recent audit rows first."""

    @abstractmethod
    def has_success(self, dataset: Dataset, symbol: str) -> bool:
        """Whether a run of ``dataset``/``symbol`` ever succeeded (the audit table outlives the process)."""

    @abstractmethod
    def record_gap(self, gap: GapRecord) -> None:
        """Upsert one ledger row: a confirmed exchange-side hole (nobody asks the exchange for it again) or a pending
        one ("not fillable yet")."""

    @abstractmethod
    def gap_records(self, dataset: Dataset | None = None, symbol: str | None = None) -> list[GapRecord]:
        """Every ledger row (of ``dataset``, of ``symbol``), whatever its status, ordered by table, symbol, start."""

    @abstractmethod
    def delete_gap(self, dataset: Dataset, symbol: str, gap_start: datetime) -> None:
        """Forget one ledger row (a pending hole judged again, a legacy one re-checked)."""

    def known_gaps(self, dataset: Dataset, symbol: str) -> list[tuple[datetime, datetime]]:
        """The ranges detection skips: confirmed holes of ``symbol`` in ``dataset`` (and legacy ones until they are
        re-checked), ordered by start."""
        return [(g.gap_start, g.gap_end) for g in self.gap_records(dataset, symbol) if g.skipped]

    @abstractmethod
    def symbols(self, dataset: Dataset) -> list[str]:
        """Symbols stored in ``dataset``'s table."""

    def stored_symbols(self, dataset: Dataset) -> list[str]:
        """``symbols`` for a health page: stores that can answer it by index seeks override this."""
        return self.symbols(dataset)

    @abstractmethod
    def recent_runs(self, dataset: Dataset, symbol: str, limit: int) -> list[RunRecord]:
        """The newest audit rows of (dataset, symbol), served by an index."""

    # ---- whole-store reads and batch upserts (copy between stores) ----------------------------------------
    def read_columns(
        self, dataset: Dataset, symbol: str, start: datetime | None = None, end: datetime | None = None
    ) -> pa.Table:
        """``read`` as Arrow columns (``sinks.columns``: decimals exact plain text, times int64 epoch ms), in key
        order: what bulk loaders take without a Python object per value. SQL stores select it directly."""
        from binance_extractor.sinks.columns import from_rows

        return from_rows(dataset.spec, self.read(dataset, symbol, start, end))

    @abstractmethod
    def data_tables(self) -> list[str]:
        """The market data tables that exist in this store (``klines_<tf>``, ``funding_rates`` ...), sorted;
        nothing is created."""

    @abstractmethod
    def runs_page(self, after: str | None, limit: int) -> list[RunRecord]:
        """At most ``limit`` audit rows with ``run_id`` after ``after`` (None: from the first), by ``run_id``:
        a cursor over the whole audit, served by its key."""

    @abstractmethod
    def gaps_page(self, after: tuple[str, str, datetime] | None, limit: int) -> list[GapRecord]:
        """At most ``limit`` ledger rows after the key ``after`` (table, symbol, gap_start), in key order."""

    def record_runs(self, runs: Sequence[RunRecord]) -> int:
        """Upsert many audit rows (stores that can do it in one transaction override this)."""
        for run in runs:
            self.record_run(run)
        return len(runs)

    def record_gaps(self, gaps: Sequence[GapRecord]) -> int:
        """Upsert many ledger rows (stores that can do it in one transaction override this)."""
        for gap in gaps:
            self.record_gap(gap)
        return len(gaps)

    def delete_before(self, dataset: Dataset, cutoff: datetime, limit: int = 10_000) -> int:
        """Delete rows with key time < ``cutoff``: one bounded statement per symbol (at most ``limit`` rows each,
        served by the (symbol, time) key), stopping once ``limit`` rows are gone; returns rows deleted."""
        deleted = 0
        for symbol in self.symbols(dataset):
            deleted += self._delete_symbol_before(dataset, symbol, cutoff, limit)
            if deleted >= limit:
                break
        return deleted

    @abstractmethod
    def _delete_symbol_before(self, dataset: Dataset, symbol: str, cutoff: datetime, limit: int) -> int:
        """Delete at most ``limit`` rows of ``symbol`` with key time < ``cutoff`` in one statement; rows deleted."""

    def __enter__(self) -> Store:
        return self


def is_data_table(name: str) -> bool:
    """Whether ``name`` is a market data table (not the audit, the ledger or the migrations)."""
    try:
        DataKind.of_table(name)
    except InputError:
        return False
    return True


def stores(sinks: Sequence[Sink]) -> list[Store]:
    """The sinks of a list that are stores (they read); write-only output is left out."""
    return [s for s in sinks if isinstance(s, Store)]


def retry_attempts(value: int | None = None) -> int:
    if value is not None:
        return max(1, value)
    return max(1, int(os.environ.get("BINANCE_EXTRACTOR_DB_RETRY_ATTEMPTS", "5")))


def call_with_retry(
    fn: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    persistent: tuple[type[BaseException], ...],
    reset: Callable[[], None],
    describe: Callable[[BaseException | None], str],
    attempts: int,
    max_wait: float = 8.0,
) -> T:
    """Run ``fn``; retry transient errors with exponential backoff + jitter after ``reset`` (reconnect).

    A driver error that is not transient, or that outlives the attempts, becomes a one-line ``SinkError``
    built by ``describe`` (which must leave credentials out); the driver exception is not chained so no
    connection string can ride along into logs.
    """

    def before_sleep(state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("transient database error (attempt %d/%d): %s", state.attempt_number, attempts, describe(exc))
        reset()

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=0.2, max=max_wait, jitter=0.5),
        retry=retry_if_exception(transient),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn)
    except SinkError:
        raise
    except persistent as exc:
        if transient(exc):
            reset()
        raise SinkError(describe(exc)) from None


def one_line(text: str, secrets: Sequence[str | None] = ()) -> str:
    """Collapse whitespace and blank out any secret that might appear in a driver message."""
    out = " ".join(str(text).split())
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return out[:500]
