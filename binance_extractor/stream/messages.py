"""Stream events -> the same ``Kline`` model REST produces (Decimal strings kept exactly as sent).

``kline_event`` reads one combined-stream message into a ``KlineEvent``: which stream, the exchange's event time
(``E``: the tail's seam rule runs on the exchange's clock), and the candle if the stream marks it closed (``k.x``);
a closed candle the model rejects comes back without it, with the error, so REST can be asked for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from binance_extractor import timeframes
from binance_extractor.errors import ValidationError
from binance_extractor.models import Kline
from binance_extractor.timeframes import Timeframe


@dataclass(frozen=True)
class KlineEvent:
    """One kline event: the stream (``symbol``, ``timeframe``), the exchange's clock when it was sent, the candle's
    open time; ``kline`` only when the candle is closed and valid, ``error`` when it is closed and rejected."""

    symbol: str
    timeframe: Timeframe
    event_ms: int
    open_ms: int
    closed: bool
    kline: Kline | None = None
    error: str | None = None

    @property
    def pair(self) -> tuple[str, Timeframe]:
        return (self.symbol, self.timeframe)


def kline_event(raw: str | bytes) -> KlineEvent | None:
    """The kline event of a combined-stream message; None for anything else (subscription answers, other streams).

    A message that is not JSON, or a kline event without its stream, open time or event time, raises
    ``ValidationError`` (nobody can tell which candle it was).
    """
    try:
        event: Any = json.loads(raw)
    except ValueError:
        raise ValidationError(f"stream sent a message that is not JSON: {str(raw)[:80]!r}") from None
    data = event.get("data", event) if isinstance(event, dict) else None
    if not isinstance(data, dict) or data.get("e") != "kline":
        return None
    k: Any = data.get("k")
    stream = event.get("stream", "?")
    try:
        symbol, tf = str(k["s"]), timeframes.parse(str(k["i"]))
        open_ms, event_ms, closed = int(k["t"]), int(data.get("E") or k["t"]), k.get("x") is True
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValidationError(f"malformed kline event on {stream}: {exc}") from None
    if not closed:
        return KlineEvent(symbol, tf, event_ms, open_ms, False)
    try:
        kline = Kline.build(
            symbol=symbol,
            interval=tf.interval,
            open_time=open_ms,
            close_time=int(k["T"]),
            open=k["o"],
            high=k["h"],
            low=k["l"],
            close=k["c"],
            volume=k["v"],
            quote_volume=k["q"],
            trade_count=int(k["n"]),
            taker_buy_base_volume=k["V"],
            taker_buy_quote_volume=k["Q"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        text = str(exc) if isinstance(exc, ValidationError) else f"malformed kline event on {stream}: {exc}"
        return KlineEvent(symbol, tf, event_ms, open_ms, True, error=text)
    return KlineEvent(symbol, tf, event_ms, open_ms, True, kline=kline)


def closed_kline(raw: str | bytes) -> Kline | None:
    """The candle of a combined-stream kline event if the stream marks it closed (``k.x``), else None.

    Anything that is not a kline event is None; a malformed kline event raises ``ValidationError`` naming the
    stream.
    """
    ev = kline_event(raw)
    if ev is None or not ev.closed:
        return None
    if ev.kline is None:
        raise ValidationError(ev.error or "rejected kline event")
    return ev.kline
