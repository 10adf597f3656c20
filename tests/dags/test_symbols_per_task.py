"""``symbols_per_task`` (#25): scheduled DAGs map chunks of symbols, exactly, one audit row per symbol, labelled by
their symbols, and a retry repeats only the symbols that failed (``dag.test()``, emulator, MariaDB)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from binance_extractor.timeutil import dt_to_ms
from tests.dags.test_dag_runs import query, run, served_klines, stored_klines, summary_of

pytestmark = pytest.mark.mysql
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT")


@pytest.fixture
def env(airflow_db, emulator, mysql_conn_id, monkeypatch):
    monkeypatch.setenv("BINANCE_SYMBOLS", ",".join((*SYMBOLS, "NOPEUSDT")))
    monkeypatch.setenv("BINANCE_EXTRACTOR_SINKS", "mysql")
    monkeypatch.setenv("BINANCE_EXTRACTOR_RUNTIME", "local")
    monkeypatch.setenv("BINANCE_EXTRACTOR_HISTORY_DAYS", "1")
    return emulator


def audit(table: str, run_id: str) -> list[tuple[str, str]]:
    rows = query(
        "SELECT symbol, outcome FROM extraction_runs WHERE table_name=%s AND requested_by LIKE %s ORDER BY started_at",
        table,
        f"%/{run_id}",
    )
    return [(r[0], r[1]) for r in rows]


def extract_labels(tis) -> list[str]:
    return [ti.rendered_map_index for (tid, _), ti in sorted(tis.items(), key=lambda kv: kv[0][1]) if tid == "extract"]


def test_chunks_land_exactly_with_one_audit_row_per_symbol(env, dagbag):
    dag = dagbag.dags["binance_klines_h1"]
    dr, tis = run(dag, run_conf={"symbols_per_task": 2})
    assert extract_labels(tis) == ["BTCUSDT,ETHUSDT", "SOLUSDT,BNBUSDT", "ADAUSDT"]
    end = dr.data_interval_end
    for sym in SYMBOLS:
        assert stored_klines("klines_h1", sym) == served_klines(env, sym, "1h", end - timedelta(days=1), end)
    assert sorted(audit("klines_h1", dr.run_id)) == [(s, "success") for s in sorted(SYMBOLS)]
    report = summary_of(dr)
    assert {s["symbol"]: s["rows_written"] for s in report["symbols"]} == dict.fromkeys(SYMBOLS, 24)
    assert set(report["skipped"]) == {"NOPEUSDT"}


def test_funding_and_trades_map_chunks_too(env, dagbag):
    dr, tis = run(dagbag.dags["binance_trades"], run_conf={"symbols_per_task": 5})
    assert extract_labels(tis) == [",".join(SYMBOLS) + " 2024-03-01T04:00..2024-03-01T05:00"]  # a fixed range
    start, end = dr.data_interval_start, dr.data_interval_end
    for sym in SYMBOLS:
        served = env.agg_trades(sym, None, dt_to_ms(start), dt_to_ms(end) - 1, 100_000)
        stored = query("SELECT agg_trade_id FROM agg_trades WHERE symbol=%s ORDER BY 1", sym)
        assert [r[0] for r in stored] == [a["a"] for a in served if dt_to_ms(start) <= a["T"] < dt_to_ms(end)]
    assert sorted(audit("agg_trades", dr.run_id)) == [(s, "success") for s in sorted(SYMBOLS)]
    dr, tis = run(dagbag.dags["binance_funding_rates"], run_conf={"symbols_per_task": 3})
    assert extract_labels(tis) == ["BTCUSDT,ETHUSDT,SOLUSDT", "BNBUSDT,ADAUSDT"]
    assert sorted(audit("funding_rates", dr.run_id)) == [(s, "success") for s in sorted(SYMBOLS)]


def test_a_retry_repeats_only_the_symbol_that_failed(env, dagbag, monkeypatch):
    """One task carries all five symbols; ETHUSDT's klines request fails once (one HTTP attempt per request), the
    others are stored; the retry asks the exchange for ETHUSDT alone and the run ends exact and complete."""
    dag = dagbag.dags["binance_klines_h1"]
    extract = dag.task_dict["extract"]
    monkeypatch.setattr(extract, "retry_delay", timedelta(0))
    monkeypatch.setattr(extract, "retry_exponential_backoff", 0)
    monkeypatch.setenv("BINANCE_HTTP_MAX_ATTEMPTS", "1")
    env.inject("503", times=1, path="/fapi/v1/klines", after=1)  # BTCUSDT's one page passes, ETHUSDT's fails
    dr, tis = run(dag, run_conf={"symbols_per_task": 5})
    (ti,) = [ti for (tid, _), ti in tis.items() if tid == "extract"]
    assert ti.try_number == 2 and ti.rendered_map_index == ",".join(SYMBOLS)
    asked = [r.params["symbol"] for r in env.requests if r.path == "/fapi/v1/klines"]
    assert asked == [*SYMBOLS, "ETHUSDT"]  # the first try asked each once, the retry only the one that failed
    assert audit("klines_h1", dr.run_id) == [
        ("BTCUSDT", "success"),
        ("ETHUSDT", "failed"),
        ("SOLUSDT", "success"),
        ("BNBUSDT", "success"),
        ("ADAUSDT", "success"),
        ("ETHUSDT", "success"),
    ]
    end = dr.data_interval_end
    for sym in SYMBOLS:
        assert stored_klines("klines_h1", sym) == served_klines(env, sym, "1h", end - timedelta(days=1), end)
    report = summary_of(dr)
    assert {s["symbol"]: s["rows_written"] for s in report["symbols"]} == dict.fromkeys(SYMBOLS, 24)
    assert not [s for s in report["symbols"] if s["stale"]]
