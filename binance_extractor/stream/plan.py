"""Which streams go on which connection, inside Binance's documented WebSocket limits.

USD-M Futures "Websocket Market Streams" (developers.binance.com/docs/derivatives/usds-margined-futures/
websocket-market-streams): a connection listens to at most 1024 streams, is valid for 24 hours, gets a ping
every 3 minutes and is cut without a pong within 10 minutes, and may receive at most 10 messages per second from
the client. Combined streams live at ``/stream?streams=a/b/c`` and arrive as ``{"stream": ..., "data": ...}``.
"""

from __future__ import annotations

import os

from binance_extractor.errors import InputError
from binance_extractor.timeframes import Timeframe

DEFAULT_WS_URL = "wss://fstream.binance.com"
MAX_STREAMS_PER_CONNECTION = 1024  # documented maximum
DEFAULT_STREAMS_PER_CONNECTION = 200  # keeps the URL short; several connections beyond it
CONNECTION_LIFETIME_S = 24 * 3600  # the exchange cuts every connection at 24 h
ROTATE_AFTER_S = CONNECTION_LIFETIME_S - 15 * 60  # we reconnect before the cut, on our own terms
MAX_URL_STREAM_CHARS = 6000  # request lines beyond ~8 KB are refused (414), so long lists use more connections
MAX_CLIENT_MESSAGES_PER_S = 10  # the tail sends none (streams are in the URL); pongs are control frames

Pair = tuple[str, Timeframe]  # (symbol, timeframe): one kline stream


def ws_base() -> str:
    """The futures WebSocket endpoint: ``BINANCE_FUTURES_WS_URL`` overrides the exchange's."""
    return (os.environ.get("BINANCE_FUTURES_WS_URL") or DEFAULT_WS_URL).rstrip("/")


def stream_name(symbol: str, tf: Timeframe) -> str:
    """``BTCUSDT``, 5 minutes -> ``btcusdt@kline_5m`` (stream names are lowercase, intervals Binance's)."""
    return f"{symbol.lower()}@kline_{tf.interval}"


def split_streams(pairs: list[Pair], per_connection: int = DEFAULT_STREAMS_PER_CONNECTION) -> list[list[Pair]]:
    """(symbol, timeframe) pairs cut into connection-sized groups, in order, with no duplicates."""
    if not 1 <= per_connection <= MAX_STREAMS_PER_CONNECTION:
        raise InputError(f"streams per connection must be 1..{MAX_STREAMS_PER_CONNECTION}, got {per_connection}")
    unique = list(dict.fromkeys(pairs))
    if not unique:
        raise InputError("no streams to subscribe to")
    groups: list[list[Pair]] = [[]]
    chars = 0
    for pair in unique:
        size = len(stream_name(*pair)) + 1
        if len(groups[-1]) >= per_connection or (groups[-1] and chars + size > MAX_URL_STREAM_CHARS):
            groups.append([])
            chars = 0
        groups[-1].append(pair)
        chars += size
    return groups


def ws_url(pairs: list[Pair], base: str | None = None) -> str:
    """The combined-stream URL of one connection."""
    names = "/".join(stream_name(s, i) for s, i in pairs)
    return f"{(base or ws_base()).rstrip('/')}/stream?streams={names}"
