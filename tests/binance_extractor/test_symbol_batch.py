"""Planning chunks of symbols (#25): how many per task, their argv, label and XCom form; the CLI's guard."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from binance_extractor import cli, orchestration
from binance_extractor.errors import InputError
from binance_extractor.jobspecs import ExtractionSpec, symbols_label
from binance_extractor.kinds import DataKind
from binance_extractor.timeframes import parse

END = datetime(2024, 3, 1, 5, tzinfo=UTC)
NAMES = [f"C{i:04d}USDT" for i in range(400)]


def test_chunks_keep_order_and_cover_every_symbol() -> None:
    assert orchestration.chunk_symbols(["A", "B", "C"], 2) == [["A", "B"], ["C"]]
    assert orchestration.chunk_symbols(["A", "B", "C"], 1) == [["A"], ["B"], ["C"]]
    with pytest.raises(InputError):
        orchestration.chunk_symbols(["A"], 0)


def test_symbols_per_task_param_config_and_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BINANCE_EXTRACTOR_SYMBOLS_PER_TASK", raising=False)
    monkeypatch.setenv("BINANCE_EXTRACTOR_MAX_TASKS_PER_RUN", "24")
    assert orchestration.symbols_per_task(24) == 1  # the design card's shape up to 24 symbols
    assert orchestration.symbols_per_task(25) == 2
    assert orchestration.symbols_per_task(400) == 17  # 24 tasks of at most 17
    assert orchestration.symbols_per_task(400, requested=5) == 5  # the DAG param wins
    monkeypatch.setenv("BINANCE_EXTRACTOR_MAX_TASKS_PER_RUN", "none")
    assert orchestration.symbols_per_task(400) == 1
    monkeypatch.setenv("BINANCE_EXTRACTOR_SYMBOLS_PER_TASK", "8")
    assert orchestration.symbols_per_task(400) == 8
    with pytest.raises(InputError):
        orchestration.symbols_per_task(3, requested=0)
    monkeypatch.setenv("BINANCE_EXTRACTOR_SYMBOLS_PER_TASK", "0")
    with pytest.raises(InputError, match="at least 1"):
        orchestration.symbols_per_task(3)


def test_planned_chunks_argv_label_and_xcom_round_trip() -> None:
    specs = orchestration.plan_scheduled(
        DataKind.KLINES,
        NAMES,
        run_type="scheduled",
        data_interval_start=datetime(2024, 3, 1, 4, tzinfo=UTC),
        data_interval_end=END,
        timeframe=parse("1h"),
        requested_by="airflow:d/r",
        symbols_per_task=17,
    )
    assert len(specs) == 24 and [s for spec in specs for s in spec.symbols] == NAMES
    argv = specs[0].to_argv()
    assert argv[argv.index("--symbols") + 1] == ",".join(NAMES[:17])
    assert "--keep-going" in argv and "--skip-succeeded" in argv
    assert specs[0].label == ",".join(NAMES[:17])  # the UI names every symbol of the task...
    assert symbols_label(NAMES[:40]) == "C0000USDT..C0039USDT (40)"  # ...unless they overflow its 250 characters
    assert specs[-1].symbols == tuple(NAMES[391:])
    assert ExtractionSpec.from_dict(specs[0].to_dict()) == specs[0]
    one = orchestration.plan_scheduled(
        DataKind.FUNDING,
        ["BTCUSDT"],
        run_type="scheduled",
        data_interval_start=END.replace(hour=4),
        data_interval_end=END,
    )[0]
    assert one.label == "BTCUSDT" and "--keep-going" not in one.to_argv()  # the default shape is unchanged
    assert symbols_label(["BTCUSDT", "ETHUSDT"]) == "BTCUSDT,ETHUSDT"


def test_skip_succeeded_needs_a_run_label() -> None:
    with pytest.raises(InputError, match="requested-by"):
        cli.execute(["klines", "--interval", "1h", "--symbols", "BTCUSDT", "--skip-succeeded", "--sink", "jsonl"])
