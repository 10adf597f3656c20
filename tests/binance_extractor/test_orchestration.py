"""DAG-side planning: symbols, ranges per run type, weekly chunks, the one argv builder, the summary."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from binance_extractor import cli, timeframes
from binance_extractor.airflow import orchestration
from binance_extractor.airflow.jobspecs import XCOM_FILE, ExtractionSpec
from binance_extractor.airflow.orchestration import (
    build_arguments,
    plan_manual,
    plan_scheduled,
    run_range,
    summarize,
    validate_manual,
    validate_symbols,
    weekly_chunks,
)
from binance_extractor.errors import InputError
from binance_extractor.kinds import DataKind

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def exchange(emulator):
    """The real client's exchangeInfo check, against the loopback emulator."""
    from binance_extractor.client import BinanceFuturesClient

    client = BinanceFuturesClient.from_env()
    yield client.validate_symbols
    client.close()


# --------------------------------------------------------------------------------------------- symbols


def test_symbols_variable_wins_over_env_and_config(monkeypatch):
    monkeypatch.setenv("BINANCE_SYMBOLS", "solusdt, xrpusdt")
    assert orchestration.requested_symbols('["btcusdt", "ETHUSDT", "btcusdt"]') == (
        ["BTCUSDT", "ETHUSDT"],
        "variable:binance_symbols",
    )
    assert orchestration.requested_symbols("") == (["SOLUSDT", "XRPUSDT"], "env:BINANCE_SYMBOLS")
    monkeypatch.delenv("BINANCE_SYMBOLS")
    symbols, source = orchestration.requested_symbols(None)
    assert source == "config" and len(symbols) >= 20 and "BTCUSDT" in symbols


def test_resolve_reports_and_skips_unknown_delisted_and_malformed(exchange):
    res = validate_symbols(["ETHUSDT", "NOPEUSDT", "OLDUSDT", "BTC-USDT", "BTCUSDT"], exchange, "env")
    assert res.valid == ["ETHUSDT", "BTCUSDT"]  # order kept
    assert set(res.invalid) == {"NOPEUSDT", "OLDUSDT", "BTC-USDT"}
    assert "SETTLING" in res.invalid["OLDUSDT"]
    assert "malformed" in res.invalid["BTC-USDT"]
    assert orchestration.SymbolResolution.from_dict(res.to_dict()) == res


def test_resolve_fails_clearly_when_nothing_is_left(exchange):
    with pytest.raises(InputError, match="none of the requested symbols"):
        validate_symbols(["NOPEUSDT"], exchange)
    with pytest.raises(InputError, match="no symbols configured"):
        validate_symbols([], exchange)
    with pytest.raises(InputError, match="not valid JSON"):
        orchestration.parse_symbol_list("[BTCUSDT")


# --------------------------------------------------------------------------------------------- ranges


def test_range_per_run_type():
    s, e = T0, T0 + timedelta(minutes=5)
    assert run_range(DataKind.KLINES, "scheduled", s, e) == orchestration.RunRange(s, e, True)
    assert run_range(DataKind.KLINES, "manual", s, e).incremental
    assert run_range(DataKind.FUNDING, "scheduled", s, e).incremental
    assert run_range(DataKind.KLINES, "backfill", s, e) == orchestration.RunRange(s, e, False)
    assert not run_range(DataKind.AGG_TRADES, "scheduled", s, e).incremental
    with pytest.raises(InputError, match="empty data interval"):
        run_range(DataKind.KLINES, "scheduled", e, e)


def test_pendulum_and_naive_times_become_utc():
    import pendulum

    rng = run_range(DataKind.KLINES, "backfill", pendulum.datetime(2024, 1, 1, 1, tz="Europe/Paris"), T0 + timedelta(1))
    assert rng.start == T0 and rng.start.tzinfo is UTC and type(rng.start) is datetime


def test_weekly_chunks_cover_range_without_overlap_and_respect_max_map_length():
    end = T0 + timedelta(days=30, hours=5)
    chunks = weekly_chunks(T0, end)
    assert [c[0] for c in chunks] == [T0 + timedelta(weeks=i) for i in range(5)]
    assert chunks[-1][1] == end and all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    # 3 symbols x 2 years would be 3 x 105 tasks: widened to fit 100 mapped tasks
    long = weekly_chunks(T0, T0 + timedelta(days=730), n_symbols=3, max_tasks=100)
    assert 3 * len(long) <= 100
    assert long[0][1] - long[0][0] == timedelta(weeks=4) and long[-1][1] == T0 + timedelta(days=730)
    with pytest.raises(InputError, match="max_map_length"):
        weekly_chunks(T0, end, n_symbols=5, max_tasks=4)


# --------------------------------------------------------------------------------------------- arguments


def test_build_arguments_are_what_the_cli_parses():
    argv = build_arguments(
        DataKind.KLINES,
        "BTCUSDT",
        timeframe=timeframes.parse("m5"),
        start=T0,
        end=T0 + timedelta(minutes=5),
        incremental=True,
        sinks=["mysql", "sqlite"],
        requested_by="airflow:d/r",
    )
    assert argv == [
        "klines",
        "--interval",
        "5m",
        "--symbols",
        "BTCUSDT",
        "--start",
        "2024-01-01T00:00:00.000Z",
        "--end",
        "2024-01-01T00:05:00.000Z",
        "--incremental",
        "--sink",
        "mysql,sqlite",
        "--binance-conn-id",
        "binance_default",
        "--requested-by",
        "airflow:d/r",
    ]
    args = cli.build_parser().parse_args(argv)
    assert (args.command, args.interval, args.symbols, args.incremental) == ("klines", "5m", "BTCUSDT", True)
    # Pods and local tasks both reach the exchange through the binance_default connection (env fallback).
    assert args.binance_conn_id == "binance_default"
    trades = build_arguments(DataKind.AGG_TRADES, "ETHUSDT", end=T0, xcom=True)
    assert trades[-2:] == ["--xcom-file", XCOM_FILE] and "--kind" in trades
    cli.build_parser().parse_args(trades)
    cli.build_parser().parse_args(build_arguments(DataKind.FUNDING, "ETHUSDT", end=T0, start=T0 - timedelta(1)))
    with pytest.raises(InputError, match="unknown sink"):
        build_arguments(DataKind.FUNDING, "ETHUSDT", end=T0, sinks=["oracle"])
    with pytest.raises(InputError, match="interval"):
        build_arguments(DataKind.KLINES, "ETHUSDT", end=T0)


def test_runtimes_differ_only_by_the_xcom_flag():
    kw = {"run_type": "scheduled", "data_interval_start": T0, "data_interval_end": T0 + timedelta(hours=1)}
    local_specs = plan_scheduled(DataKind.KLINES, ["BTCUSDT", "ETHUSDT"], timeframe=timeframes.parse("1h"), **kw)
    pod_specs = plan_scheduled(
        DataKind.KLINES, ["BTCUSDT", "ETHUSDT"], timeframe=timeframes.parse("1h"), xcom=True, **kw
    )
    local, pods = [s.to_argv() for s in local_specs], [s.to_argv() for s in pod_specs]
    assert [p[:-2] for p in pods] == local
    assert all(p[-2:] == ["--xcom-file", XCOM_FILE] for p in pods)
    assert [s.label for s in local_specs] == ["BTCUSDT", "ETHUSDT"]
    assert [s.symbol for s in pod_specs] == ["BTCUSDT", "ETHUSDT"]
    # what a mapped task receives: the argv under the runtime's name, the label and the spec's fields
    kwargs = pod_specs[0].task_kwargs(pod=True)
    assert kwargs == {"arguments": pods[0], "map_label": "BTCUSDT", "spec": pod_specs[0].to_dict()}
    assert set(local_specs[0].task_kwargs(pod=False)) == {"argv", "map_label", "spec"}
    assert ExtractionSpec.from_dict(kwargs["spec"]) == pod_specs[0]  # the spec survives XCom's JSON


# --------------------------------------------------------------------------------------------- manual DAG

GOOD = {"symbols": ["BTCUSDT"], "interval": "1h", "start": "2024-01-01T00:00:00Z", "end": "2024-01-20T00:00:00Z"}


def test_manual_validation_accepts_the_form_and_plans_weekly_chunks():
    req = validate_manual({**GOOD, "sinks": []}, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert (req.timeframe.interval, req.start, req.end, req.sinks) == ("1h", T0, datetime(2024, 1, 20, tzinfo=UTC), [])
    specs = plan_manual(req, ["BTCUSDT", "ETHUSDT"], max_tasks=1024)
    argvs = [s.to_argv() for s in specs]
    assert len(argvs) == 2 * 3
    assert specs[0].label == "BTCUSDT 2024-01-01T00:00..2024-01-08T00:00"
    assert ExtractionSpec.from_dict(json.loads(json.dumps(specs[0].to_dict()))) == specs[0]
    assert all("--incremental" not in a and "--sink" not in a for a in argvs)
    future = validate_manual({**GOOD, "sinks": ["mysql"]}, now=datetime(2024, 1, 2, tzinfo=UTC))
    assert future.end == datetime(2024, 1, 2, tzinfo=UTC)  # clamped to now: only closed candles exist


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"interval": "7m"}, "invalid interval: '7m' is not one of"),
        ({"symbols": ["btc usdt"]}, "invalid symbols.0"),
        ({"symbols": []}, "invalid symbols"),
        ({"sinks": ["oracle"]}, "invalid sinks.0"),
        ({"start": "yesterday"}, "malformed date"),
        ({"end": "2023-12-31T00:00:00Z"}, "must be before end"),
        ({"start": "2030-01-01T00:00:00Z", "end": "2030-02-01T00:00:00Z"}, "in the future"),
    ],
)
def test_manual_validation_rejects_bad_input_with_one_line(change, message):
    with pytest.raises(InputError, match=message) as info:
        validate_manual({**GOOD, "sinks": [], **change}, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------- summary


def test_summary_lag_and_staleness():
    end = T0 + timedelta(hours=1)
    target = orchestration.freshness_target(DataKind.KLINES, timeframes.parse("5m"), grace_minutes=5)
    assert target == timedelta(minutes=10)
    rows = orchestration.rows_per_symbol(
        [[{"symbol": "BTCUSDT", "rows_written": 12}], [{"symbol": "ETHUSDT", "rows_written": 3}], []]
    )
    last = {"BTCUSDT": end - timedelta(minutes=5), "ETHUSDT": end - timedelta(minutes=20), "SOLUSDT": None}
    report = summarize(
        "klines_m5", ["BTCUSDT", "ETHUSDT", "SOLUSDT"], rows, last, reference=end, target=target, skipped={"X": "y"}
    )
    assert [(s.symbol, s.rows_written, s.stale) for s in report.symbols] == [
        ("BTCUSDT", 12, False),
        ("ETHUSDT", 3, True),
        ("SOLUSDT", 0, True),
    ]
    assert report.to_dict()["symbols"][0]["lag_seconds"] == 300
    assert report.to_dict()["skipped"] == {"X": "y"}
    assert any("STALE" in line for line in report.lines())
    with pytest.raises(orchestration.StaleDataError, match="2 symbol\\(s\\) older than 10 min"):
        report.raise_if_stale()
    fresh = summarize("klines_m5", ["BTCUSDT"], rows, last, reference=end, target=target)
    fresh.raise_if_stale()
    assert orchestration.freshness_target(DataKind.FUNDING, grace_minutes=5) == timedelta(hours=8, minutes=5)
