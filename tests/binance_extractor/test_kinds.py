"""``DataKind``: the one kind -> table / time column / model vocabulary, and every former copy agrees with it."""

from __future__ import annotations

import pytest

from binance_extractor import gaps, orchestration, pipeline, timeframes
from binance_extractor.errors import InputError
from binance_extractor.kinds import DataKind, command_kind
from binance_extractor.models import AggTrade, FundingRate, Kline, Trade
from binance_extractor.sinks import base
from binance_extractor.sinks.schema import spec_for


@pytest.mark.parametrize(
    ("kind", "table", "model"),
    [
        (DataKind.KLINES, "klines_m5", Kline),
        (DataKind.FUNDING, "funding_rates", FundingRate),
        (DataKind.AGG_TRADES, "agg_trades", AggTrade),
        (DataKind.TRADES, "trades", Trade),
    ],
)
def test_each_kind_names_its_table_time_column_and_model(kind: DataKind, table: str, model: type) -> None:
    assert kind.table("5m") == table and DataKind.of_table(table) is kind
    assert kind.time_column == spec_for(table).time_column  # the schema agrees
    assert kind.model is model is base.model_for(table)
    assert base.table_for(kind.value, "5m") == pipeline.table_for(kind.value, "5m" if kind is DataKind.KLINES else None)
    assert base.time_column(table) == kind.time_column


def test_commands_and_dag_families_map_to_one_kind() -> None:
    assert command_kind("trades") is DataKind.AGG_TRADES and command_kind("trades", "historical") is DataKind.TRADES
    for command in ("klines", "funding", "trades"):
        assert orchestration.table_for(command, "1h") == command_kind(command).table("1h")
    assert orchestration.table_for("trades") == "agg_trades"  # the trades DAG stores aggregate trades


def test_gap_detection_kinds_and_bad_names() -> None:
    assert gaps.kind_of(timeframes.parse("h1").table) == "klines"
    assert gaps.kind_of("agg_trades") is DataKind.AGG_TRADES
    with pytest.raises(InputError, match="no gap detection"):
        gaps.kind_of("trades")
    with pytest.raises(InputError, match="unknown data kind"):
        DataKind.parse("candles")
    with pytest.raises(InputError, match="not a market data table"):
        DataKind.of_table("gap_ledger")
    with pytest.raises(InputError, match="klines need an interval"):
        DataKind.KLINES.table()
