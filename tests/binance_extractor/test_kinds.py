"""``DataKind`` and ``Dataset``: the one kind -> table / time column / model vocabulary, read back from names once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from binance_extractor import gaps, timeframes
from binance_extractor.airflow.jobspecs import ExtractionSpec
from binance_extractor.errors import InputError
from binance_extractor.kinds import SCHEDULED_KINDS, DataKind, Dataset, command_kind
from binance_extractor.models import AggTrade, FundingRate, Kline, Trade
from binance_extractor.pipeline import Job
from binance_extractor.sinks.schema import spec_for

M5 = timeframes.parse("5m")
T_END = datetime(2024, 1, 1, tzinfo=UTC)


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
    tf = M5 if kind is DataKind.KLINES else None
    dataset = Dataset(kind, tf)
    assert kind.table(tf) == dataset.table == table
    assert DataKind.of_table(table) is kind and Dataset.of_table(table) == dataset == Dataset.parse(table)
    assert kind.time_column == dataset.time_column == spec_for(table).time_column  # the schema agrees
    assert kind.model is model is dataset.model
    assert Job(kind, "BTCUSDT", tf).table == table  # the pipeline names the same table


def test_dataset_reads_table_names_once_and_carries_the_timeframe() -> None:
    for name in ("klines_h1", "h1", "1h"):
        dataset = Dataset.parse(name)
        assert dataset == Dataset(DataKind.KLINES, timeframes.parse("1h"))
        assert dataset.timeframe is not None and dataset.timeframe.ms == 3_600_000
    assert Dataset(DataKind.FUNDING, M5).timeframe is None  # only klines have one
    assert sorted([Dataset.of_table("klines_m5"), Dataset.of_table("agg_trades"), Dataset.of_table("klines_d1")]) == [
        Dataset.of_table("agg_trades"),
        Dataset.of_table("klines_d1"),
        Dataset.of_table("klines_m5"),
    ]  # the same order as the table names (holes sort by it)
    with pytest.raises(InputError, match="unknown table 'candles'"):
        Dataset.parse("candles")
    with pytest.raises(InputError, match="klines need an interval"):
        Dataset(DataKind.KLINES)


def test_commands_and_dag_families_map_to_one_kind() -> None:
    assert (
        command_kind("trades") is DataKind.AGG_TRADES
        and command_kind("trades", {"--kind": "historical"}) is DataKind.TRADES
    )
    assert [k.command for k in SCHEDULED_KINDS] == [
        "klines",
        "funding",
        "trades",
        "open-interest",
        "long-short-ratio",
        *["klines"] * 3,
    ]
    mark = ExtractionSpec(DataKind.MARK_KLINES, "BTCUSDT", T_END, timeframe=timeframes.parse("h1"))
    assert mark.to_argv()[:5] == ["klines", "--price", "mark", "--interval", "1h"]
    assert ExtractionSpec.from_dict(mark.to_dict()) == mark  # the price survives XCom
    assert DataKind.AGG_TRADES.table() == "agg_trades"  # the trades DAG stores aggregate trades
    spec = ExtractionSpec(DataKind.AGG_TRADES, "BTCUSDT", T_END)
    argv = spec.to_argv()
    assert argv[0] == "trades" and argv[argv.index("--kind") + 1] == "agg"
    assert ExtractionSpec.from_dict(spec.to_dict()) == spec  # XCom carries the command name, read back to the kind
    with pytest.raises(InputError, match="no extraction spec for trades"):
        ExtractionSpec(DataKind.TRADES, "BTCUSDT", T_END)


def test_gap_detection_kinds_and_bad_names() -> None:
    assert gaps.gap_dataset(DataKind.KLINES.table(timeframes.parse("h1"))) == Dataset(
        DataKind.KLINES, timeframes.parse("h1")
    )
    assert gaps.gap_dataset("agg_trades").kind is DataKind.AGG_TRADES
    with pytest.raises(InputError, match="no gap detection"):
        gaps.gap_dataset("trades")
    with pytest.raises(InputError, match="unknown data kind"):
        DataKind.parse("candles")
    with pytest.raises(InputError, match="not a market data table"):
        DataKind.of_table("gap_ledger")
    with pytest.raises(InputError, match="klines need an interval"):
        DataKind.KLINES.table()
