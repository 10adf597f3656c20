"""The exchange's "now": this machine's clock plus the offset measured against ``/fapi/v1/time``.

Whether a candle is closed is the exchange's call, not ours: with the exchange 2.5 s behind this machine, a run
just after a minute boundary would otherwise store the still-open candle, and resume (last candle + 1 interval)
would never correct it. The offset is measured once (and again every ``resync_s``) with the round trip's
midpoint; the half round trip plus ``margin_ms`` is taken off before comparing with a candle's close time.
Built on ``binance_extractor.clock``, so a test that pins the library's clock pins this one too.

``closed_before(client)`` is the one closed bound of the library: extraction (klines, funding, trades), gap
detection (``gaps.scan``, so ``fill-gaps --end`` and the gap filler's end), the gap ledger's evidence and the live
tail's fills all ask it what is closed, so no two of them can disagree about the newest final row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from binance_extractor import clock

log = logging.getLogger(__name__)

DEFAULT_MARGIN_MS = 1000


class ExchangeClock:
    def __init__(
        self, server_time_ms: Callable[[], int], *, margin_ms: int = DEFAULT_MARGIN_MS, resync_s: float = 600.0
    ) -> None:
        self._fetch = server_time_ms
        self.margin_ms = margin_ms
        self.resync_s = resync_s
        self.offset_ms: int | None = None
        self.uncertainty_ms = 0
        self._synced_at = 0.0
        self._lock = threading.Lock()

    def sync(self) -> int:
        """Measure the offset (exchange minus this machine) now; returns it in ms."""
        t0 = clock.now_ms()
        server = int(self._fetch())
        t1 = clock.now_ms()
        self.offset_ms = server - (t0 + t1) // 2
        self.uncertainty_ms = (t1 - t0 + 1) // 2
        self._synced_at = time.monotonic()
        level = logging.WARNING if abs(self.offset_ms) >= 1000 else logging.DEBUG
        log.log(level, "exchange clock offset %+d ms (+/- %d ms)", self.offset_ms, self.uncertainty_ms)
        return self.offset_ms

    def _ensure(self) -> int:
        with self._lock:
            if self.offset_ms is None or time.monotonic() - self._synced_at > self.resync_s:
                self.sync()
            assert self.offset_ms is not None
            return self.offset_ms

    def now_ms(self) -> int:
        """The exchange's current time, epoch ms."""
        return clock.now_ms() + self._ensure()

    def closed_before_ms(self) -> int:
        """A candle is closed when its close time is before this (exchange now minus the safety margin)."""
        offset = self._ensure()
        return clock.now_ms() + offset - self.uncertainty_ms - self.margin_ms


def closed_before(client: Any) -> int:
    """What is closed, epoch ms: a row (a candle by its close time, a funding event, a trade) earlier than this is
    final on the exchange. The exchange's clock minus its safety margin (``client.closed_before_ms()``); with no
    exchange at hand (``None``, a client without a clock) this machine's clock minus the same margin."""
    fn = getattr(client, "closed_before_ms", None)
    return int(fn()) if fn is not None else clock.now_ms() - DEFAULT_MARGIN_MS
