"""``has_success``: the audit table tells a later process whether a table's first load ever completed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import RunRecord

KLINES_H1 = Dataset.of_table("klines_h1")
KLINES_M15 = Dataset.of_table("klines_m15")


def run(table: str, symbol: str, outcome: str, n: int) -> RunRecord:
    return RunRecord(
        run_id=f"run-{table}-{symbol}-{n}",
        kind="klines",
        table=table,
        symbol=symbol,
        interval="1h",
        range_start=datetime(2026, 1, 1, tzinfo=UTC),
        range_end=datetime(2026, 1, 2, tzinfo=UTC),
        requested_by="test",
        outcome=outcome,
    )


def test_has_success_per_table_and_symbol(sink: Any) -> None:
    assert not sink.has_success(KLINES_H1, "BTCUSDT")
    sink.record_run(run("klines_h1", "BTCUSDT", "failed", 1))
    sink.record_run(run("klines_h1", "ETHUSDT", "success", 2))
    sink.record_run(run("klines_m5", "BTCUSDT", "success", 3))
    assert not sink.has_success(KLINES_H1, "BTCUSDT")
    sink.record_run(run("klines_h1", "BTCUSDT", "success", 4))
    assert sink.has_success(KLINES_H1, "BTCUSDT") and sink.has_success(KLINES_H1, "ETHUSDT")
    assert not sink.has_success(KLINES_M15, "BTCUSDT")
