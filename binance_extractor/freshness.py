"""The ``binance.freshness.lag`` gauge: how far a stored timeframe is behind the newest closed candle.

Why here: the pipeline sets it after every klines job, in pods and CLI runs as well as in Airflow, so it lives
in the plain core; the Airflow callbacks (``binance_extractor.airflow.callbacks``) only alert on it.
"""

from __future__ import annotations

from datetime import datetime

from binance_extractor import clock, telemetry
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import dt_to_ms


def record_freshness(symbol: str, tf: Timeframe, last_open: datetime | None, *, now: datetime | None = None) -> float:
    """How far (seconds) the store is behind the newest closed candle; sets the ``binance.freshness.lag`` gauge.

    0 when the newest closed candle is stored. Returns -1 (and sets nothing) when nothing is stored yet.
    """
    if last_open is None:
        return -1.0
    now_ms = dt_to_ms(now or clock.now())
    forming_open_ms = tf.floor_ms(now_ms)  # the candle still open now; the one before it is the newest closed
    expected_next_ms = tf.next_open_ms(dt_to_ms(last_open))
    lag = max(0, forming_open_ms - expected_next_ms) / 1000
    labels = {"symbol": symbol, "timeframe": tf.interval}  # the exchange's "5m", like the pipeline's row metrics
    telemetry.instruments.gauge("binance.freshness.lag", unit="s").set(lag, labels)
    return lag
