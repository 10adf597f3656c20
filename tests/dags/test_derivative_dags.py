"""Issue #23 DAG family: off by default (a trade-only deployment gets nothing); enabled in config.yaml, one DAG per
(series, scheduled timeframe) plus open interest, and ``dag.test()`` lands exactly the emulator's rows in MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from binance_extractor import config
from binance_extractor.airflow import dagfactory
from binance_extractor.timeutil import dt_to_ms
from tests.dags.test_dag_runs import AT, SYMBOLS, query, run
from tests.emulator import datasets as DS


def _enable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **series: dict) -> None:
    raw = yaml.safe_load(config.DEFAULT_CONFIG.read_text())
    raw["derivatives"] = series
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("BINANCE_EXTRACTOR_CONFIG", str(path))


def test_off_by_default_so_a_trade_only_deployment_pays_nothing(dagbag) -> None:
    assert config.derivative_kinds() == []
    assert dagfactory.derivative_dags() == {}
    assert not [d for d in dagbag.dag_ids if "mark" in d or "index" in d or "premium" in d or "interest" in d]


def test_enabled_series_get_one_dag_per_timeframe(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BINANCE_EXTRACTOR_RUNTIME", "local")
    _enable(tmp_path, monkeypatch, mark_klines={"enabled": True}, open_interest={"enabled": True})
    dags = dagfactory.derivative_dags()
    tfs = list(config.settings().timeframes)
    assert set(dags) == {f"binance_mark_klines_{tf}" for tf in tfs} | {"binance_open_interest"}
    assert dags["binance_open_interest"].timetable.expression == "*/5 * * * *"
    _enable(tmp_path, monkeypatch, mark_klines={"enabled": True}, last_price={"enabled": True})
    with pytest.raises(Exception, match="unknown series 'last_price'"):
        dagfactory.derivative_dags()


pytestmark = pytest.mark.mysql


@pytest.fixture
def env(airflow_db, emulator, mysql_conn_id, monkeypatch, tmp_path):
    monkeypatch.setenv("BINANCE_SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.setenv("BINANCE_EXTRACTOR_SINKS", "mysql")
    monkeypatch.setenv("BINANCE_EXTRACTOR_RUNTIME", "local")
    monkeypatch.setenv("BINANCE_EXTRACTOR_HISTORY_DAYS", "1")
    _enable(tmp_path, monkeypatch, premium_klines={"enabled": True}, open_interest={"enabled": True})
    return emulator


def test_premium_klines_and_open_interest_dags_land_exactly_the_source(env) -> None:
    dags = dagfactory.derivative_dags()
    dr, tis = run(dags["binance_premium_klines_h1"])
    end = dr.data_interval_end
    assert sorted(ti.rendered_map_index for (tid, _), ti in tis.items() if tid == "extract") == list(SYMBOLS)
    for sym in SYMBOLS:
        want = DS.price_rows(env, "premium", sym, "1h", dt_to_ms(end - timedelta(days=1)), dt_to_ms(end) - 1)
        got = query("SELECT open_time, open, high, low, close FROM premium_klines_h1 WHERE symbol=%s ORDER BY 1", sym)
        assert [(dt_to_ms(r[0].replace(tzinfo=UTC)), *r[1:]) for r in got] == [
            (w[0], *(Decimal(x) for x in w[1:5])) for w in want
        ]
    dr, _ = run(dags["binance_open_interest"])  # 2024: older than REST's 30 days, so from the metrics files
    end = dr.data_interval_end
    assert end <= AT
    for sym in SYMBOLS:
        rows = query("SELECT time, open_interest FROM open_interest WHERE symbol=%s ORDER BY 1", sym)
        times = [dt_to_ms(r[0].replace(tzinfo=UTC)) for r in rows]
        assert times == list(range(dt_to_ms(end - timedelta(days=1)), dt_to_ms(end), 300_000))
        assert rows[0][1] == Decimal(DS.oi_row(env, sym, times[0])["sumOpenInterest"])
    assert datetime.now(UTC) - AT > timedelta(days=30)
