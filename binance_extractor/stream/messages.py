"""Stream events -> the same ``Kline`` model REST produces (Decimal strings kept exactly as sent)."""

from __future__ import annotations

import json
from typing import Any

from binance_extractor import timeframes
from binance_extractor.errors import ValidationError
from binance_extractor.models import Kline


def closed_kline(raw: str | bytes) -> Kline | None:
    """The candle of a combined-stream kline event if the stream marks it closed (``k.x``), else None.

    Anything that is not a kline event (subscription answers, other streams) is None; a malformed kline
    event raises ``ValidationError`` naming the stream.
    """
    try:
        event: Any = json.loads(raw)
    except ValueError:
        raise ValidationError(f"stream sent a message that is not JSON: {str(raw)[:80]!r}") from None
    data = event.get("data", event) if isinstance(event, dict) else None
    if not isinstance(data, dict) or data.get("e") != "kline":
        return None
    k = data.get("k")
    if not isinstance(k, dict) or k.get("x") is not True:
        return None
    try:
        interval = timeframes.parse(str(k["i"])).interval
        return Kline.build(
            symbol=k["s"],
            interval=interval,
            open_time=int(k["t"]),
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
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(f"malformed kline event on {event.get('stream', '?')}: {exc}") from None
