"""JSON Lines output, ``open_sinks`` selection, and table naming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from binance_extractor import timeframes
from binance_extractor.errors import InputError
from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.sinks import Sink, Store, open_sinks, open_stores, store_names, stores
from binance_extractor.sinks.jsonl import JsonlSink
from tests.binance_extractor.sinks.conftest import funding, klines

FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_M5 = Dataset.of_table("klines_m5")


def test_jsonl_file_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "rows.jsonl"
    sink = JsonlSink(path)
    sink.ensure_schema()
    rows = klines(n=20, scale=6)
    assert sink.write(KLINES_M5, rows) == 20
    assert sink.write(FUNDING_RATES, funding()) == len(funding())
    first = json.loads(path.read_text().splitlines()[0])
    assert first["table"] == "klines_m5" and first["close"] == str(rows[0].close)  # decimals as strings
    assert first["open_time"].startswith(rows[0].open_time.strftime("%Y-%m-%dT%H:%M"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    tables = ("klines_m5", "funding_rates")
    by_table = {t: [{k: v for k, v in o.items() if k != "table"} for o in lines if o["table"] == t] for t in tables}
    assert by_table["klines_m5"] == [json.loads(r.model_dump_json()) for r in rows]
    assert by_table["funding_rates"] == [json.loads(r.model_dump_json()) for r in funding()]
    sink.write(KLINES_M5, rows[:5])  # appended again: a write-only output, not an upserting store
    assert len(path.read_text().splitlines()) == 25 + len(funding())


def test_jsonl_is_a_write_only_sink_not_a_store(tmp_path: Path, sqlite_conn_id: str) -> None:
    """JSON lines stop faking reads: no store methods, and callers pick stores by type, never by name."""
    sink = JsonlSink(tmp_path / "rows.jsonl")
    assert isinstance(sink, Sink) and not isinstance(sink, Store)
    for method in ("read", "count", "last_time", "record_run", "known_gaps", "delete_before", "gap_queries"):
        assert not hasattr(sink, method), method
    assert store_names(["jsonl", "mongo", "sqlite"]) == ["mongo", "sqlite"]
    opened = open_sinks(["jsonl", "sqlite"], output=str(tmp_path / "x.jsonl"))
    try:
        assert [s.name for s in stores(opened)] == ["sqlite"]
    finally:
        for s in opened:
            s.close()
    (only,) = open_stores(["jsonl", "sqlite"])
    try:
        assert isinstance(only, Store) and only.name == "sqlite" and only.count(KLINES_M5) == 0
    finally:
        only.close()


def test_jsonl_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = JsonlSink("-")
    sink.write(KLINES_M5, klines(n=3))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["symbol"] == "XRPUSDT" for line in lines)


def test_open_sinks_defaults_and_selection(
    sqlite_conn_id: str, mysql_conn_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BINANCE_EXTRACTOR_SINKS", raising=False)
    (default,) = open_sinks()
    assert default.name == "sqlite"
    default.close()
    monkeypatch.setenv("BINANCE_EXTRACTOR_SINKS", "mysql,sqlite")
    sinks = open_sinks()
    assert [s.name for s in sinks] == ["mysql", "sqlite"]
    for s in sinks:
        s.write(KLINES_M5, klines(n=2))
        assert s.count(KLINES_M5) == 2
        s.close()
    out = tmp_path / "x.jsonl"
    names = [s.name for s in open_sinks(["jsonl", "sqlite"], output=str(out))]
    assert names == ["jsonl", "sqlite"]
    with pytest.raises(InputError, match="unknown sink"):
        open_sinks(["oracle"])


def test_open_sinks_closes_what_it_opened_on_failure(sqlite_conn_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from binance_extractor.errors import SinkError

    with pytest.raises(SinkError, match="connection id 'missing' is not defined"):
        open_sinks(["sqlite", "mysql"], {"mysql": "missing"})


def test_table_names() -> None:
    assert DataKind.KLINES.table(timeframes.parse("5m")) == "klines_m5"
    assert DataKind.KLINES.table(timeframes.parse("h1")) == "klines_h1"
    assert DataKind.KLINES.table(timeframes.parse("4h")) == "klines_h4"
    assert DataKind.FUNDING.table() == "funding_rates"
    assert DataKind.TRADES.table() == "trades" and DataKind.AGG_TRADES.table() == "agg_trades"
    assert Dataset.of_table("klines_d1").time_column == "open_time"
    assert Dataset.of_table("funding_rates").time_column == "funding_time"
    assert Dataset.of_table("trades").time_column == "time"
    with pytest.raises(InputError):
        DataKind.KLINES.table()
    with pytest.raises(InputError):
        DataKind.parse("candles")
    with pytest.raises(InputError):
        Dataset.of_table("extraction_runs")
