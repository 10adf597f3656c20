"""binance_extractor.kpis: the three KPIs against their targets, from health rows."""

from __future__ import annotations

from typing import Any

from binance_extractor import kpis
from tests.emulator import data as D

NOW = D.ms(2026, 12, 1, 15)  # 15:00:00 UTC


def row(
    table: str, symbol: str, last: str | None, stored: int, expected: int | None, runs: list[str]
) -> dict[str, Any]:
    return {
        "table": table,
        "symbol": symbol,
        "last": last,
        "stored": stored,
        "expected": expected,
        "runs": [{"outcome": outcome} for outcome in runs],
    }


def test_targets_are_the_seed_s() -> None:
    assert (kpis.COMPLETENESS_TARGET, kpis.FRESHNESS_TARGET_S, kpis.JOB_SUCCESS_TARGET) == (0.9995, 300, 0.99)


def test_all_met() -> None:
    rows = [
        row("klines_m5", "BTCUSDT", "2026-12-01T14:55:00Z", 2016, 2016, ["success"] * 3),  # newest closed candle
        row("klines_h1", "BTCUSDT", "2026-12-01T14:00:00Z", 168, 168, ["success"] * 3),
        row("funding_rates", "BTCUSDT", "2026-12-01T08:00:00Z", 21, 21, ["success"]),  # no freshness KPI
    ]
    result = {k.name: k for k in kpis.evaluate(rows, NOW)}
    assert [k.met for k in result.values()] == [True, True, True]
    assert result["completeness"].value == 1.0 and result["freshness"].value == 0
    assert result["job success"].value == 1.0


def test_each_missed_with_the_worst_named() -> None:
    rows = [
        row("klines_m5", "BTCUSDT", "2026-12-01T14:45:00Z", 2010, 2016, ["success", "failed", "success"]),
        row("klines_m5", "ETHUSDT", "2026-12-01T14:55:00Z", 2016, 2016, ["success"] * 3),
    ]
    result = {k.name: k for k in kpis.evaluate(rows, NOW)}
    assert result["completeness"].value == 4026 / 4032 and result["completeness"].met is False  # 99.85 %
    assert "worst klines_m5 BTCUSDT 2010 / 2016" in result["completeness"].detail
    # 14:50 is the first missing candle; it closed at 14:55: 5 minutes ago = the target, missed
    assert result["freshness"].value == 300 and result["freshness"].met is False
    assert "worst klines_m5 BTCUSDT; 1 of 2" in result["freshness"].detail
    assert result["job success"].value == 5 / 6 and result["job success"].met is False


def test_a_candle_not_closed_yet_is_not_overdue() -> None:
    assert kpis.overdue_seconds("klines_h1", "2026-12-01T13:00:00Z", NOW) == 0  # 14:00 closes at 15:00:00
    assert kpis.overdue_seconds("klines_h1", "2026-12-01T13:00:00Z", NOW + 61_000) == 61
    assert kpis.overdue_seconds("funding_rates", "2026-12-01T08:00:00Z", NOW) is None


def test_nothing_to_judge() -> None:
    result = kpis.evaluate([], NOW)
    assert [(k.value, k.met) for k in result] == [(None, None)] * 3
    assert [k.to_dict()["met"] for k in result] == [None, None, None]
