"""Gap-filler settings, constants and which tables have gap detection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from binance_extractor import config, timeframes
from binance_extractor.catalog import DATASETS
from binance_extractor.errors import ExtractorError, InputError
from binance_extractor.kinds import DataKind, Dataset

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MONDAY_MS = 4 * DAY_MS  # 1970-01-05 was a Monday: weekly chunks start on Mondays 00:00 UTC
MAX_MAP_LENGTH = config.MAX_MAP_LENGTH
FUNDING_DEFAULT_MS = 8 * HOUR_MS  # the longest funding interval: used when the previous one is unknown
STATES = ("found", "filled", "confirmed", "not_fillable_yet", "remaining")
GAP_KINDS = tuple(e.kind for e in DATASETS.values() if e.gap_filled)  # the kinds with gap detection
GAP_TABLES = ", ".join(k.entry.pattern for k in GAP_KINDS[:-1]) + " or " + GAP_KINDS[-1].entry.pattern


class GapClosureError(ExtractorError):
    """A hole the exchange has (or may have) data for is still open after the fill."""


@dataclass(frozen=True)
class GapSettings:
    """``gap_filler:`` of include/config.yaml (any field can be overridden by the CLI or the DAG)."""

    min_gap: int = 1
    max_gap: int | None = None
    chunk_days: float = 7.0
    max_mapped_tasks: int = 512
    funding_tolerance_ms: int = 5 * 60_000
    lookback_days: float | None = None
    ledger_settle_ms: int = HOUR_MS  # a hole is confirmed only once it ended this long ago (gaps/evidence.py)

    @classmethod
    def load(cls, **overrides: Any) -> GapSettings:
        raw = dict(config.settings().gap_filler)
        values: dict[str, Any] = {
            "min_gap": raw.get("min_gap_candles", 1),
            "max_gap": raw.get("max_gap_candles"),
            "chunk_days": raw.get("chunk_days", 7),
            "max_mapped_tasks": raw.get("max_mapped_tasks", 512),
            "funding_tolerance_ms": int(float(raw.get("funding_tolerance_minutes", 5)) * 60_000),
            "lookback_days": raw.get("lookback_days"),
            "ledger_settle_ms": int(float(raw.get("ledger_settle_minutes", 60)) * 60_000),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            out = cls(
                min_gap=int(values["min_gap"]),
                max_gap=None if values["max_gap"] is None else int(values["max_gap"]),
                chunk_days=float(values["chunk_days"]),
                max_mapped_tasks=int(values["max_mapped_tasks"]),
                funding_tolerance_ms=int(values["funding_tolerance_ms"]),
                lookback_days=None if values["lookback_days"] is None else float(values["lookback_days"]),
                ledger_settle_ms=int(values["ledger_settle_ms"]),
            )
        except (TypeError, ValueError):
            raise InputError(f"gap_filler settings must be numbers: {values}") from None
        if out.min_gap < 1:
            raise InputError(f"gap_filler.min_gap_candles must be at least 1, not {out.min_gap}")
        if out.max_gap is not None and out.max_gap < out.min_gap:
            raise InputError(f"gap_filler.max_gap_candles ({out.max_gap}) is below min_gap_candles ({out.min_gap})")
        if out.chunk_days <= 0:
            raise InputError(f"gap_filler.chunk_days must be positive, not {out.chunk_days}")
        if out.ledger_settle_ms < 0:
            raise InputError(
                f"gap_filler.ledger_settle_minutes must not be negative, not {out.ledger_settle_ms / 60_000:g}"
            )
        if not 1 <= out.max_mapped_tasks <= MAX_MAP_LENGTH:
            raise InputError(f"gap_filler.max_mapped_tasks must be in 1..{MAX_MAP_LENGTH}, not {out.max_mapped_tasks}")
        return out

    @property
    def chunk_ms(self) -> int:
        return max(1, int(self.chunk_days * DAY_MS))


def gap_dataset(table: str) -> Dataset:
    """The dataset of a table with gap detection (klines, funding, agg trades); others are an InputError."""
    try:
        dataset = Dataset.of_table(table)
    except InputError:
        dataset = None
    if dataset is None or dataset.kind not in GAP_KINDS:
        raise InputError(f"no gap detection for table {table!r}: use {GAP_TABLES}")
    return dataset


def default_datasets() -> list[Dataset]:
    """Every scheduled kline timeframe (``timeframes:`` of the config), funding rates and aggregate trades."""
    names = list(config.settings().timeframes) or list(timeframes.SCHEDULED)
    tfs = [timeframes.parse(n) for n in names]  # the config boundary
    klines = [Dataset(DataKind.KLINES, tf) for tf in tfs]
    extra: list[Dataset] = []
    for name in config.derivative_kinds():  # the series enabled in `derivatives:` (all off by default)
        kind = DataKind(name)
        extra += [Dataset(kind, tf) for tf in tfs] if kind.entry.per_timeframe else [Dataset(kind)]
    return [*klines, Dataset(DataKind.FUNDING), Dataset(DataKind.AGG_TRADES), *extra]


def parse_tables(values: Sequence[str] | None) -> list[Dataset]:
    """``--table klines_m5,funding_rates`` (repeatable); ``m5``/``5m`` mean ``klines_m5``; default: all."""
    if not values:
        return default_datasets()
    out: list[Dataset] = []
    for value in values:
        for item in value.replace(" ", ",").split(","):
            name = item.strip()
            if not name:
                continue
            try:
                dataset = Dataset.parse(name)  # the CLI boundary: klines_m5, m5/5m, funding_rates
            except InputError:
                raise InputError(f"unknown table {name!r}: use {GAP_TABLES}") from None
            if dataset.kind not in GAP_KINDS:
                raise InputError(f"no gap detection for table {name!r}: use {GAP_TABLES}")
            if dataset not in out:
                out.append(dataset)
    if not out:
        raise InputError(f"no table given: use {GAP_TABLES}")
    return out
