"""The processes whose metrics the end-to-end monitoring test sends into a real Prometheus.

``python -m tests.deploy.prometheus_producers library|tail|airflow`` (cwd = the repository, env from the test:
``BINANCE_METRICS_REMOTE_WRITE_URL``, ``OTEL_SERVICE_NAME``, a data dir). Each runs the real code against its own
emulator on a pinned market clock, prints ``READY`` and keeps pushing (every ``OTEL_METRIC_EXPORT_INTERVAL``) until
its stdin closes, so the test's queries see current series however slowly the machine ran; then it stops
(``telemetry.shutdown``: the final push) and exits 0.

- ``library``: klines extraction (REST) with an exchange-side outage in it, a 429 from another client on the same
  IP, then ``fill-gaps``, which confirms the outage as a hole of the exchange.
- ``tail``: the live tail: start-up fill, a forced disconnect (reconnect and fill), candles closing on the stream.
- ``airflow``: a DAG run with ``dag.test()``: the listener plugin and the failure callbacks, one task failing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIN = 60_000
HOUR = 60 * MIN


def _wait(cond: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout  # a hang guard, not a speed limit
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _serve_until_stdin_closes() -> None:
    from binance_extractor import telemetry

    telemetry.force_flush(10_000)
    print("READY", flush=True)
    sys.stdin.read()  # the test closes it once it has queried everything
    telemetry.shutdown(10_000)


def library() -> None:
    import requests

    from binance_extractor import cli, clock, telemetry
    from binance_extractor.client import BinanceFuturesClient
    from tests.emulator import Emulator
    from tests.emulator import data as D
    from tests.fixtures.clock import pin_windows

    now = D.ms(2026, 11, 30, 12) + 30_000
    fc = clock.FixedClock(now)
    with clock.using(fc), Emulator(clock=fc, window_seconds=3, weight_limit=40, tolerated_after_429=5) as emu:
        os.environ["BINANCE_FUTURES_BASE_URL"] = emu.url
        os.environ["BINANCE_ARCHIVE_BASE_URL"] = emu.archive_url
        emu.add_outage("BTCUSDT", now - 3 * HOUR, now - 2 * HOUR)  # Binance itself has no candles here
        telemetry.setup()
        start, end = str(now - 6 * HOUR), str(now)
        cli.execute(
            ["klines", "--interval", "5m", "--symbols", "BTCUSDT", "--start", start, "--end", end, "--source", "rest"]
        )
        # Another client on the same IP spends the whole window: the library's next request is answered 429.
        windows = pin_windows(emu)
        while requests.get(f"{emu.url}/fapi/v1/time", timeout=5).status_code != 429:
            pass
        seen = emu.count_429
        client = BinanceFuturesClient(emu.url, backoff_initial=0.05, backoff_max=1.0)
        done = threading.Event()
        threading.Thread(target=lambda: (client.server_time(), done.set()), daemon=True).start()
        _wait(lambda: emu.count_429 > seen, "the library's 429")
        windows.advance(3)  # the next window: the request retried after Retry-After goes through
        _wait(done.is_set, "the request after the 429")
        client.close()
        cli.execute(["fill-gaps", "--table", "klines_m5", "--symbols", "BTCUSDT", "--start", start, "--end", end])
        _serve_until_stdin_closes()


def tail() -> None:
    from binance_extractor import clock, telemetry
    from tests.binance_extractor.stream.harness import T0, running_tail, wait_until
    from tests.emulator import Emulator

    fc = clock.FixedClock(T0)
    with clock.using(fc), Emulator(clock=fc) as emu:
        telemetry.setup()
        with running_tail(emu, ["BTCUSDT", "ETHUSDT"], ["1m", "5m"], report_every_s=0.2) as run:
            assert emu.stream.drop_all() == 1
            wait_until(lambda: run.stats.reconnects >= 1 and run.stats.fills >= 2 and run.idle(), "the reconnect")
            queued = run.stats.candles_queued
            fc.advance(5 * MIN)  # 5 + 1 candles close per symbol on the stream
            wait_until(lambda: run.stats.candles_queued >= queued + 12 and run.idle(), "the closes")
            wait_until(lambda: run.stats.candles_stored >= 12, "the stored closes")
            time.sleep(0.5)  # one more stats line (report_every_s): the ready/live gauges after the closes
            _serve_until_stdin_closes()


DAG_ID = "binance_monitoring_probe"
DAG_SOURCE = f"""
import pendulum
from airflow.sdk import DAG, task
from binance_extractor.airflow import callbacks

with DAG(
    "{DAG_ID}",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    on_failure_callback=callbacks.on_dag_failure,
) as dag:

    @task(on_failure_callback=callbacks.on_task_failure)
    def extract(symbol):
        if symbol == "ETHUSDT":
            raise RuntimeError("pod died")
        return symbol

    extract.expand(symbol=["BTCUSDT", "ETHUSDT", "XRPUSDT"])
"""


def airflow() -> None:
    import importlib.util
    import json

    dags = Path(os.environ["AIRFLOW_HOME"]) / "probe_dags"
    dags.mkdir(parents=True, exist_ok=True)
    path = dags / f"{DAG_ID}.py"
    path.write_text(DAG_SOURCE, encoding="utf-8")
    bundle = [
        {
            "name": "probe",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(dags)},
        }
    ]
    os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(bundle)
    from airflow.utils import db

    db.resetdb()
    spec = importlib.util.spec_from_file_location("_monitoring_probe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.dag.test()
    assert str(getattr(run.state, "value", run.state)) == "failed", run.state
    _serve_until_stdin_closes()


if __name__ == "__main__":
    {"library": library, "tail": tail, "airflow": airflow}[sys.argv[1]]()
