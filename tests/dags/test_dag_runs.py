"""``dag.test()`` of every DAG, local runtime, against the emulator and a fresh MariaDB database.

The data lands and equals what the emulator serves; a second run of the same interval changes nothing;
unknown and delisted symbols are skipped and reported. ``BINANCE_EXTRACTOR_HISTORY_DAYS=1`` keeps the
first (incremental) runs small.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from binance_extractor.timeutil import dt_to_ms

pytestmark = pytest.mark.mysql
SYMBOLS = ("BTCUSDT", "ETHUSDT")
AT = datetime(2024, 3, 1, 5, 0, tzinfo=UTC)  # logical date of every test run: a fixed, long-closed past


@pytest.fixture
def env(airflow_db, emulator, mysql_conn_id, monkeypatch):
    monkeypatch.setenv("BINANCE_SYMBOLS", ",".join((*SYMBOLS, "OLDUSDT", "NOPEUSDT")))  # delisted + unknown
    monkeypatch.setenv("BINANCE_EXTRACTOR_SINKS", "mysql")
    monkeypatch.setenv("BINANCE_EXTRACTOR_RUNTIME", "local")
    monkeypatch.setenv("BINANCE_EXTRACTOR_HISTORY_DAYS", "1")
    return emulator


def query(sql: str, *args):
    import MySQLdb

    url = urlsplit(os.environ["AIRFLOW_CONN_MYSQL_DEFAULT"])
    conn = MySQLdb.connect(host=url.hostname, port=url.port, user=url.username, passwd="", db=url.path.lstrip("/"))
    try:
        cur = conn.cursor()
        cur.execute(sql, args)
        return cur.fetchall()
    finally:
        conn.close()


def stored_klines(table: str, symbol: str) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
    rows = query(f"SELECT open_time, open, high, low, close, volume FROM {table} WHERE symbol=%s ORDER BY 1", symbol)
    return [(dt_to_ms(r[0].replace(tzinfo=UTC)), *r[1:]) for r in rows]


def served_klines(emu, symbol: str, interval: str, start: datetime, end: datetime):
    rows = emu.klines_rows(symbol, interval, dt_to_ms(start), dt_to_ms(end) - 1)
    return [(r[0], *(Decimal(x) for x in r[1:6])) for r in rows]


def run(dag, **kw):
    dr = dag.test(logical_date=AT, **kw)
    assert dr.state == "success", f"{dag.dag_id}: {dr.state}"
    tis = {(ti.task_id, ti.map_index): ti for ti in dr.get_task_instances()}
    return dr, tis


def summary_of(dr) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.settings import Session

    with Session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dr.dag_id, run_id=dr.run_id, task_id="summary", key="return_value")
            .one()
        )
    value = row.value
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.parametrize(
    ("dag_id", "interval"),
    [
        ("binance_klines_m5", "5m"),
        ("binance_klines_m15", "15m"),
        ("binance_klines_m30", "30m"),
        ("binance_klines_h1", "1h"),
        ("binance_klines_d1", "1d"),
    ],
)
def test_klines_dag_lands_exactly_the_source_and_reruns_change_nothing(env, dagbag, dag_id, interval):
    dag = dagbag.dags[dag_id]
    table = "klines_" + dag_id.rsplit("_", 1)[1]
    dr, tis = run(dag)
    start, end = dr.data_interval_start, dr.data_interval_end
    assert end <= AT and end - start == timedelta(milliseconds=_ms(interval))
    # one mapped task per valid symbol, labelled with it; the others skipped and reported
    assert sorted(ti.rendered_map_index for (tid, _), ti in tis.items() if tid == "extract") == list(SYMBOLS)
    report = summary_of(dr)
    assert set(report["skipped"]) == {"OLDUSDT", "NOPEUSDT"}
    for sym in SYMBOLS:
        expected = served_klines(env, sym, interval, end - timedelta(days=1), end)  # history_days=1 back
        assert len(expected) == max(1, timedelta(days=1) // timedelta(milliseconds=_ms(interval)))
        assert stored_klines(table, sym) == expected
    assert {s["symbol"]: s["lag_seconds"] for s in report["symbols"]} == {s: _ms(interval) // 1000 for s in SYMBOLS}
    if dag_id in ("binance_klines_h1", "binance_klines_m5"):
        before = {sym: stored_klines(table, sym) for sym in SYMBOLS}
        audit = query("SELECT COUNT(*) FROM extraction_runs")[0][0]
        run(dag)
        assert {sym: stored_klines(table, sym) for sym in SYMBOLS} == before
        assert query("SELECT COUNT(*) FROM extraction_runs")[0][0] > audit  # it did run again


def _ms(interval: str) -> int:
    from binance_extractor import timeframes

    return timeframes.parse(interval).ms


def test_funding_dag_with_symbols_from_the_airflow_variable(env, dagbag, monkeypatch):
    # the Variable binance_symbols (here through Airflow's AIRFLOW_VAR_* env backend) wins over BINANCE_SYMBOLS
    monkeypatch.setenv("AIRFLOW_VAR_BINANCE_SYMBOLS", json.dumps(list(SYMBOLS)))
    dr, _ = run(dagbag.dags["binance_funding_rates"])
    assert summary_of(dr)["skipped"] == {}
    end = dr.data_interval_end
    for sym in SYMBOLS:
        served = env.funding_rows(sym, dt_to_ms(end - timedelta(days=1)), dt_to_ms(end) - 1)
        stored = query("SELECT funding_time, funding_rate FROM funding_rates WHERE symbol=%s ORDER BY 1", sym)
        assert [(dt_to_ms(t.replace(tzinfo=UTC)), Decimal(r)) for t, r in stored] == [
            (int(f["fundingTime"]), Decimal(f["fundingRate"])) for f in served
        ]
        assert len(stored) == 3  # 8-hourly in March 2024
    assert summary_of(dr)["rows_written"] == 6


def test_trades_dag_extracts_exactly_its_hour(env, dagbag):
    dr, _ = run(dagbag.dags["binance_trades"])
    start, end = dr.data_interval_start, dr.data_interval_end
    for sym in SYMBOLS:
        served = env.agg_trades(sym, None, dt_to_ms(start), dt_to_ms(end) - 1, 100_000)
        stored = query("SELECT agg_trade_id FROM agg_trades WHERE symbol=%s ORDER BY 1", sym)
        assert [r[0] for r in stored] == [a["a"] for a in served if dt_to_ms(start) <= a["T"] < dt_to_ms(end)]
        assert len(stored) > 100


def test_manual_dag_weekly_chunks_and_idempotent_rerun(env, dagbag):
    dag = dagbag.dags["binance_klines_manual"]
    conf = {
        "symbols": ["BTCUSDT", "OLDUSDT"],
        "interval": "4h",
        "start": "2024-01-01T00:00:00Z",
        "end": "2024-01-17T00:00:00Z",
        "sinks": ["mysql"],
    }
    dr, tis = run(dag, run_conf=conf)
    labels = sorted(ti.rendered_map_index for (tid, _), ti in tis.items() if tid == "extract")
    assert labels == [
        "BTCUSDT 2024-01-01T00:00..2024-01-08T00:00",
        "BTCUSDT 2024-01-08T00:00..2024-01-15T00:00",
        "BTCUSDT 2024-01-15T00:00..2024-01-17T00:00",
    ]
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 17, tzinfo=UTC)
    expected = served_klines(env, "BTCUSDT", "4h", start, end)
    assert len(expected) == 16 * 6 and stored_klines("klines_h4", "BTCUSDT") == expected
    assert summary_of(dr)["skipped"] == {"OLDUSDT": summary_of(dr)["skipped"]["OLDUSDT"]}
    run(dag, run_conf=conf)
    assert stored_klines("klines_h4", "BTCUSDT") == expected


def test_manual_dag_bad_input_fails_first_task_with_clear_message(env, dagbag):
    dag = dagbag.dags["binance_klines_manual"]
    bad = {"symbols": ["BTCUSDT"], "interval": "1h", "start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}
    dr = dag.test(logical_date=AT, run_conf={**bad, "sinks": []})
    assert dr.state == "failed"
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert states["validate_request"] == "failed" and states["summary"] == "upstream_failed"
    assert states["validate_request"] != "up_for_retry"  # bad input is never retried


def test_stale_symbol_fails_the_summary_loudly_without_retry(env, dagbag):
    """ETHUSDT's exchange outage covers the run's last two candles: its newest candle is older than 1 h + 5 min."""
    dag = dagbag.dags["binance_klines_h1"]
    env.add_outage("ETHUSDT", dt_to_ms(AT - timedelta(hours=2)), dt_to_ms(AT))
    dr = dag.test(logical_date=AT)
    states = {(ti.task_id, ti.map_index): ti.state for ti in dr.get_task_instances()}
    assert dr.state == "failed"
    assert states[("extract", 0)] == states[("extract", 1)] == "success"
    assert states[("summary", -1)] == "failed"  # not up_for_retry: a retry cannot make data fresher
    assert stored_klines("klines_h1", "BTCUSDT")[-1][0] == dt_to_ms(AT - timedelta(hours=1))
    assert stored_klines("klines_h1", "ETHUSDT")[-1][0] == dt_to_ms(AT - timedelta(hours=3))
