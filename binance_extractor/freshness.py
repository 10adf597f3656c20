"""The ``binance.freshness.lag`` gauge: how far a stored series is behind the newest closed candle (or mark).

Why here: the pipeline sets it after every job of a series on a time grid (trade, mark, index and premium-index
klines per timeframe; open interest on its 5-minute marks), in pods and CLI runs as well as in Airflow, so it
lives in the plain core; the Airflow callbacks (``binance_extractor.airflow.callbacks``) only alert on it. The
``kind`` label keeps the series apart (``klines``, ``mark_klines`` ... ``open_interest``).
"""

from __future__ import annotations

from datetime import datetime

from binance_extractor import clock, telemetry
from binance_extractor.catalog import DataKind
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import dt_to_ms


def record_freshness(
    symbol: str,
    tf: Timeframe,
    last_open: datetime | None,
    *,
    now: datetime | None = None,
    kind: DataKind = DataKind.KLINES,
) -> float:
    """How far (seconds) the store is behind the newest closed candle; sets the ``binance.freshness.lag`` gauge.

    ``tf`` is the series' grid: a candle table's timeframe, or the marks' period of a sampled series (open
    interest, ``kind`` not kept per timeframe: a mark exists at its own time, so the newest is the last one before
    now). 0 when the newest closed candle (mark) is stored. Returns -1 (and sets nothing) when nothing is stored.
    """
    if last_open is None:
        return -1.0
    now_ms = dt_to_ms(now or clock.now())
    if kind.entry.per_timeframe:
        forming_open_ms = tf.floor_ms(now_ms)  # the candle still open now; the one before it is the newest closed
        lag_ms = forming_open_ms - tf.next_open_ms(dt_to_ms(last_open))
    else:
        lag_ms = tf.floor_ms(now_ms - 1) - dt_to_ms(last_open)  # the newest mark before now
    lag = max(0, lag_ms) / 1000
    # the exchange's "5m", like the pipeline's row metrics; ``kind`` as in binance.rows.* (the DataKind's name)
    labels = {"kind": kind.value, "symbol": symbol, "timeframe": tf.interval}
    telemetry.instruments.gauge("binance.freshness.lag", unit="s").set(lag, labels)
    return lag
