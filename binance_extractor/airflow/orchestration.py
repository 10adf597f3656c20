"""DAG-side planning, kept free of Airflow so it can be unit-tested and shared by every DAG.

What lives here: where the symbol list comes from and how it is checked against the exchange, which range a
run extracts (incremental for scheduled runs, exactly the data interval for backfills, weekly chunks for the
manual DAG), the typed job specs it plans (``jobspecs.ExtractionSpec``: one argv, run both by
KubernetesPodOperator pods and by in-process ``@task``s, so the two runtimes cannot drift), and the end-of-run
summary with its freshness check.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from binance_extractor import catalog, clock, config, timeframes
from binance_extractor.airflow.jobspecs import ExtractionSpec, Output
from binance_extractor.errors import ExtractorError, InputError
from binance_extractor.kinds import SCHEDULED_KINDS, DataKind, Dataset
from binance_extractor.symbols import SYMBOL_PATTERN, split_syntax
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import iso, parse_time

# Every task that calls the exchange takes a slot of this pool. It does not protect the exchange: the shared IP
# budget (binance_extractor.budget) paces every request of every process and pod. Locally (`make run`) it gets the
# executor's parallelism, so it never binds before the executor does; in a cluster it caps concurrent extraction
# pods (each costs a pod start and memory), sized with the cluster (kubernetes.pool_slots). docs/SCALE.md.
POOL = "binance_api"
SYMBOLS_VARIABLE = "binance_symbols"
WEEK = timedelta(days=7)
# Funding settles every 1h, 4h or 8h depending on the contract: a symbol is stale only beyond the longest.


class StaleDataError(ExtractorError):
    """A symbol's newest stored row is older than the freshness target after a run."""


# --------------------------------------------------------------------------------------------- symbols


@dataclass(frozen=True)
class SymbolResolution:
    """Symbols to extract, plus the requested ones that were skipped (symbol -> reason) and where they came from."""

    valid: list[str]
    invalid: dict[str, str] = field(default_factory=dict)
    source: str = "config"

    def to_dict(self) -> dict[str, Any]:
        return {"valid": list(self.valid), "invalid": dict(self.invalid), "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SymbolResolution:
        return cls(list(data["valid"]), dict(data.get("invalid") or {}), str(data.get("source", "config")))


def parse_symbol_list(value: str | Sequence[str]) -> list[str]:
    """A JSON array or a comma/space separated string (Variable, env, form) -> upper-case symbols, deduplicated."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(f"symbol list is not valid JSON: {value[:80]!r}") from None
        if not isinstance(loaded, list):
            raise InputError("symbol list must be a JSON array of strings")
        value = [str(v) for v in loaded]
    return config.parse_symbols(value if isinstance(value, str) else list(value))


def requested_symbols(variable_value: str | None) -> tuple[list[str], str]:
    """The symbols to try and their source: Airflow Variable ``binance_symbols``, else env/config.

    ``config.settings()`` already lets ``BINANCE_SYMBOLS`` override ``include/config.yaml``.
    """
    import os

    if variable_value and variable_value.strip():
        return parse_symbol_list(variable_value), f"variable:{SYMBOLS_VARIABLE}"
    source = "env:BINANCE_SYMBOLS" if os.environ.get("BINANCE_SYMBOLS", "").strip() else "config"
    return list(config.settings().symbols), source


def check_symbol_syntax(symbols: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Split off symbols that cannot exist (wrong characters) before asking the exchange."""
    return split_syntax(symbols)


Validator = Callable[[list[str]], tuple[list[str], dict[str, str]]]


def validate_symbols(requested: Sequence[str], validate: Validator, source: str = "config") -> SymbolResolution:
    """Check ``requested`` against the exchange: unknown/delisted ones are reported and skipped, not fatal.

    ``validate`` is ``BinanceFuturesClient.validate_symbols`` (one exchangeInfo call). Only an empty result is an
    error, because a run with nothing to extract is a misconfiguration.
    """
    if not requested:
        raise InputError("no symbols configured: set the Variable binance_symbols, BINANCE_SYMBOLS or config.yaml")
    syntactic, invalid = check_symbol_syntax(requested)
    valid: list[str] = []
    if syntactic:
        valid, rejected = validate(list(syntactic))
        invalid.update(rejected)
    valid = [s for s in requested if s in set(valid)]
    if not valid:
        reasons = "; ".join(f"{s}: {r}" for s, r in invalid.items())
        raise InputError(f"none of the requested symbols can be extracted ({reasons})")
    return SymbolResolution(valid, invalid, source)


# --------------------------------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class RunRange:
    """The half-open range a run asks the CLI for; ``incremental`` lets the CLI start at the last stored row."""

    start: datetime
    end: datetime
    incremental: bool


def run_range(kind: DataKind, run_type: str, data_interval_start: datetime, data_interval_end: datetime) -> RunRange:
    """Range per run type.

    - backfill runs (``run_type == "backfill"``): exactly their data interval, so re-running is idempotent.
    - scheduled/manual runs of klines and funding: incremental up to ``data_interval_end``: the CLI starts at the
      last stored row (bounded by ``max_catchup_days``), so missed runs heal themselves.
    - trades: exactly the data interval too; an incremental catch-up of agg trades (weight 20 per 1000 trades)
      would eat the whole IP weight budget for hours.
    """
    if kind not in SCHEDULED_KINDS:
        raise InputError(f"no scheduled runs of {kind}: use one of {', '.join(SCHEDULED_KINDS)}")
    start, end = _utc(data_interval_start), _utc(data_interval_end)
    if end <= start:
        raise InputError(f"empty data interval [{iso(start)}, {iso(end)})")
    incremental = run_type != "backfill" and kind.entry.incremental
    return RunRange(start, end, incremental)


def weekly_chunks(
    start: datetime, end: datetime, n_symbols: int = 1, max_tasks: int = config.MAX_MAP_LENGTH
) -> list[tuple[datetime, datetime]]:
    """Split [start, end) into weekly chunks; widen them (whole weeks) so symbols x chunks <= ``max_tasks``."""
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise InputError(f"start {iso(start)} must be before end {iso(end)}")
    if n_symbols < 1 or n_symbols > max_tasks:
        raise InputError(f"{n_symbols} symbols exceed the {max_tasks} mapped tasks allowed (core.max_map_length)")
    weeks = math.ceil((end - start) / WEEK)
    per_symbol = max(1, max_tasks // n_symbols)
    step = WEEK * math.ceil(weeks / per_symbol)
    chunks: list[tuple[datetime, datetime]] = []
    cursor = start
    while cursor < end:
        nxt = min(cursor + step, end)
        chunks.append((cursor, nxt))
        cursor = nxt
    return chunks


# --------------------------------------------------------------------------------------------- arguments


def build_arguments(
    kind: DataKind,
    symbol: str,
    *,
    end: datetime,
    start: datetime | None = None,
    timeframe: Timeframe | None = None,
    incremental: bool = False,
    sinks: Sequence[str] | None = None,
    conn_ids: Mapping[str, str] | None = None,
    requested_by: str | None = None,
    xcom: bool = False,
) -> list[str]:
    """The argv of one extraction (``ExtractionSpec(...).to_argv()``), for callers outside DAG planning."""
    output = Output.of(sinks, conn_ids, requested_by, xcom)
    return ExtractionSpec(kind, symbol, end, start, timeframe, incremental, output).to_argv()


def plan_scheduled(
    kind: DataKind,
    symbols: Sequence[str],
    *,
    run_type: str,
    data_interval_start: datetime,
    data_interval_end: datetime,
    timeframe: Timeframe | None = None,
    sinks: Sequence[str] | None = None,
    requested_by: str | None = None,
    xcom: bool = False,
    symbols_per_task: int = 1,
) -> list[ExtractionSpec]:
    """One spec per chunk of ``symbols_per_task`` symbols (1: one per symbol) for a scheduled DAG run."""
    rng = run_range(kind, run_type, data_interval_start, data_interval_end)
    output = Output.of(sinks, None, requested_by, xcom)
    return [
        ExtractionSpec(kind, chunk[0], rng.end, rng.start, timeframe, rng.incremental, output, tuple(chunk[1:]))
        for chunk in chunk_symbols(symbols, symbols_per_task)
    ]


def chunk_symbols(symbols: Sequence[str], per_task: int) -> list[list[str]]:
    """``symbols`` in order, cut into chunks of ``per_task`` (the last may be shorter)."""
    if per_task < 1:
        raise InputError(f"symbols_per_task must be at least 1, not {per_task}")
    items = list(symbols)
    return [items[i : i + per_task] for i in range(0, len(items), per_task)]


def symbols_per_task(n_symbols: int, requested: int | None = None) -> int:
    """Symbols per mapped task: the DAG param when given, else config's ``symbols_per_task``, raised so one run
    maps at most ``max_tasks_per_run`` tasks (why: docs/SCALE.md; every task instance costs the scheduler)."""
    if requested is not None:
        if int(requested) < 1:
            raise InputError(f"symbols_per_task must be at least 1, not {requested}")
        return int(requested)
    cfg = config.settings()
    per_task = cfg.symbols_per_task
    if cfg.max_tasks_per_run is not None and n_symbols > 0:
        per_task = max(per_task, math.ceil(n_symbols / cfg.max_tasks_per_run))
    return per_task


# --------------------------------------------------------------------------------------------- manual DAG

# The scheduled DAGs' one param: null = config.yaml's rule (symbols_per_task, max_tasks_per_run).
SYMBOLS_PER_TASK_SCHEMA: dict[str, Any] = {
    "type": ["null", "integer"],
    "minimum": 1,
    "title": "Symbols per task",
    "description": "Symbols each mapped extract task carries; empty: config.yaml (symbols_per_task, max_tasks_per_run)",
}

MANUAL_SCHEMA: dict[str, dict[str, Any]] = {
    "symbols": {
        "type": "array",
        "items": {"type": "string", "pattern": SYMBOL_PATTERN},
        "minItems": 1,
        "uniqueItems": True,
        "title": "Symbols",
        "description": "USD-M perpetual symbols, upper case, e.g. BTCUSDT",
    },
    "interval": {"type": "string", "enum": list(timeframes.BINANCE_INTERVALS), "title": "Kline interval"},
    "start": {"type": "string", "format": "date-time", "title": "Start (UTC, inclusive)"},
    "end": {"type": "string", "format": "date-time", "title": "End (UTC, exclusive)"},
    "sinks": {
        "type": "array",
        "items": {"type": "string", "enum": list(catalog.SINK_NAMES)},
        "uniqueItems": True,
        "title": "Sinks",
        "description": "Empty: the deployment default (BINANCE_EXTRACTOR_SINKS)",
    },
}
MANUAL_DEFAULTS: dict[str, Any] = {
    "symbols": ["BTCUSDT"],
    "interval": "1h",
    "start": "2024-01-01T00:00:00+00:00",
    "end": "2024-01-08T00:00:00+00:00",
    "sinks": [],
}


@dataclass(frozen=True)
class ManualRequest:
    symbols: list[str]
    timeframe: Timeframe
    start: datetime
    end: datetime
    sinks: list[str]


def validate_manual(params: Mapping[str, Any], now: datetime | None = None) -> ManualRequest:
    """Re-check the form server-side (the REST API and CLI triggers bypass the UI form): one clear error."""
    import jsonschema

    schema = {"type": "object", "properties": MANUAL_SCHEMA, "required": list(MANUAL_SCHEMA)}
    try:
        jsonschema.validate(dict(params), schema)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "params"
        raise InputError(f"invalid {where}: {exc.message}") from None
    start, end = parse_time(str(params["start"])), parse_time(str(params["end"]))
    if end <= start:
        raise InputError(f"start {iso(start)} must be before end {iso(end)}")
    now = _utc(now or clock.now())
    if start >= now:
        raise InputError(f"start {iso(start)} is in the future")
    end = min(end, now)
    return ManualRequest(
        symbols=[str(s) for s in params["symbols"]],
        timeframe=timeframes.parse(str(params["interval"])),  # the form: a boundary
        start=start,
        end=end,
        sinks=[str(s) for s in params.get("sinks") or []],
    )


def plan_manual(
    request: ManualRequest,
    symbols: Sequence[str],
    *,
    max_tasks: int = config.MAX_MAP_LENGTH,
    requested_by: str | None = None,
    xcom: bool = False,
) -> list[ExtractionSpec]:
    """One spec per (symbol, weekly chunk), never more than ``max_tasks``."""
    chunks = weekly_chunks(request.start, request.end, len(symbols), max_tasks)
    output = Output.of(request.sinks or None, None, requested_by, xcom)
    return [
        ExtractionSpec(DataKind.KLINES, sym, hi, lo, request.timeframe, False, output)
        for sym in symbols
        for lo, hi in chunks
    ]


# --------------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class SymbolSummary:
    symbol: str
    rows_written: int
    last_time: datetime | None
    lag: timedelta | None
    stale: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "rows_written": self.rows_written,
            "last_time": iso(self.last_time) if self.last_time else None,
            "lag_seconds": int(self.lag.total_seconds()) if self.lag is not None else None,
            "stale": self.stale,
        }


@dataclass(frozen=True)
class Summary:
    table: str
    reference: datetime
    target: timedelta | None
    symbols: list[SymbolSummary]
    skipped: dict[str, str]

    @property
    def stale(self) -> list[SymbolSummary]:
        return [s for s in self.symbols if s.stale]

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "reference": iso(self.reference),
            "target_seconds": int(self.target.total_seconds()) if self.target is not None else None,
            "rows_written": sum(s.rows_written for s in self.symbols),
            "symbols": [s.to_dict() for s in self.symbols],
            "skipped": dict(self.skipped),
        }

    def lines(self) -> list[str]:
        """Human-readable report for the task log."""
        out = [f"{self.table}: {sum(s.rows_written for s in self.symbols)} rows up to {iso(self.reference)}"]
        for s in self.symbols:
            lag = f"{int(s.lag.total_seconds())}s" if s.lag is not None else "no data"
            flag = "  STALE" if s.stale else ""
            out.append(f"  {s.symbol:<16} rows={s.rows_written:<8} last={_iso_or_none(s.last_time)} lag={lag}{flag}")
        out.extend(f"  {sym:<16} skipped: {why}" for sym, why in self.skipped.items())
        return out

    def raise_if_stale(self) -> None:
        if self.stale:
            names = ", ".join(f"{s.symbol} ({_iso_or_none(s.last_time)})" for s in self.stale)
            target = int(self.target.total_seconds() // 60) if self.target is not None else 0
            raise StaleDataError(
                f"{self.table}: {len(self.stale)} symbol(s) older than {target} min before {iso(self.reference)}: "
                f"{names}"
            )


def freshness_target(kind: DataKind, timeframe: Timeframe | None = None, grace_minutes: int | None = None) -> timedelta:
    """How old the newest row may be at the end of the run: one period plus ``freshness_grace_minutes``."""
    grace = timedelta(minutes=config.settings().freshness_grace_minutes if grace_minutes is None else grace_minutes)
    return kind.entry.due_every(timeframe) + grace  # a candle, a 5-minute mark, funding's 8 h, trades' hour


def priority_weight(kind: DataKind, timeframe: Timeframe | None = None) -> int:
    """The scheduled DAG's task priority (Airflow ``priority_weight``, ``weight_rule="absolute"``): runs due more
    often go first. At the hour every DAG but d1 fires at once (at 400 contracts: six runs of 24 tasks or more on
    an executor with a few slots); m5 has a 5-minute budget, trades and funding an hour or more, so m5's tasks
    are taken first, then m15, m30, h1/trades, funding, d1 (``docs/SCALE.md``). One per day for d1, 288 for m5."""
    due = kind.entry.due_every(timeframe)
    return max(1, int(timedelta(days=1) / due))


def rows_per_symbol(results: Iterable[Any]) -> dict[str, int]:
    """Sum ``rows_written`` over the mapped tasks' JobResult dicts (each task returns a list of them)."""
    totals: dict[str, int] = {}
    for item in results:
        for res in item if isinstance(item, list) else [item]:
            if res:
                sym = str(res["symbol"])
                totals[sym] = totals.get(sym, 0) + int(res.get("rows_written") or 0)
    return totals


def summarize(
    table: str,
    symbols: Sequence[str],
    rows: Mapping[str, int],
    last_times: Mapping[str, datetime | None],
    *,
    reference: datetime,
    target: timedelta | None,
    skipped: Mapping[str, str] | None = None,
) -> Summary:
    """Rows and freshness lag (``reference`` minus the newest stored key time) per symbol.

    ``reference`` is the end of the run's range, not the wall clock, so backfills and delayed runs are judged
    on what they were asked for. ``target`` None disables the staleness check (manual historical ranges).
    """
    reference = _utc(reference)
    out: list[SymbolSummary] = []
    for sym in symbols:
        last = last_times.get(sym)
        lag = reference - _utc(last) if last is not None else None
        stale = target is not None and (lag is None or lag > target)
        out.append(SymbolSummary(sym, int(rows.get(sym, 0)), _utc(last) if last else None, lag, stale))
    return Summary(table, reference, target, out, dict(skipped or {}))


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return datetime.fromtimestamp(0, UTC) + (dt - datetime.fromtimestamp(0, dt.tzinfo))


def _iso_or_none(dt: datetime | None) -> str:
    return iso(dt) if dt is not None else "none"


def last_times_from_sinks(dataset: Dataset, symbols: list[str]) -> dict[str, datetime | None] | None:
    """Newest stored key per symbol, read from the configured sinks (the oldest across sinks counts).

    None when no configured sink can be read back (JSON lines only).
    """
    from binance_extractor.sinks import open_stores, store_names

    out: dict[str, datetime | None] = {}
    readable = store_names(config.sink_names())  # write-only sinks (JSON lines) cannot tell
    if not readable:
        return None
    sinks = open_stores(readable)
    try:
        for sym in symbols:
            times = [s.last_time(dataset, sym) for s in sinks]
            out[sym] = None if any(t is None for t in times) or not times else min(t for t in times if t)
    finally:
        for s in sinks:
            s.close()
    return out


def last_times_from_results(results: list[Any]) -> dict[str, datetime | None]:
    """Kubernetes runtime: the pods read their sinks; their JobResults carry the newest stored key."""
    from binance_extractor.timeutil import parse_time

    out: dict[str, datetime | None] = {}
    for item in results:
        for res in item if isinstance(item, list) else [item]:
            if res and res.get("last_time"):
                t = parse_time(str(res["last_time"]))
                prev = out.get(res["symbol"])
                out[res["symbol"]] = t if prev is None else max(prev, t)
    return out
