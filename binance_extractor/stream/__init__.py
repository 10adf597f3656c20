"""Live tail: closed candles from the USD-M WebSocket kline streams, stored within seconds.

The DAGs stay the guarantee of completeness; the tail is the source of freshness. ``plan`` splits the streams
over connections inside Binance's documented limits, ``messages`` turns a stream event into the same ``Kline``
model REST produces, ``tail`` runs the connections, the bounded queue, the writer and the REST fills.
"""

from __future__ import annotations

from binance_extractor.stream.plan import DEFAULT_WS_URL, split_streams, stream_name, ws_url

# ``tail`` (which imports the WebSocket library) is imported by whoever runs the tail, not by ``cli`` at start-up.
__all__ = ["DEFAULT_WS_URL", "split_streams", "stream_name", "ws_url"]
