"""Run a ``Tail`` in a background thread against the emulator, with the clock the test drives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from binance_extractor import timeframes
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.sinks import open_sinks
from binance_extractor.stream.tail import Tail, TailConfig, TailStats
from tests.emulator import Emulator
from tests.emulator import data as D

T0 = D.ms(2026, 11, 30, 12) + 30_000  # mid-minute: the live candle is half done


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll a condition; the timeout only turns a hang into a failure, it is not a speed limit."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Running:
    def __init__(self, tail: Tail) -> None:
        self.tail = tail
        self.result: list[TailStats] = []
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result.append(self.tail.run_forever())
        except BaseException as exc:
            self.error.append(exc)

    @property
    def stats(self) -> TailStats:
        return self.tail.stats

    def idle(self) -> bool:
        """Every queued item written (the writer is waiting on an empty queue)."""
        q = self.tail._queue
        return q is not None and q.empty() and self.tail._db._work_queue.empty()  # type: ignore[attr-defined]

    def stop(self) -> TailStats:
        self.tail.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the tail did not stop"
        if self.error:
            raise self.error[0]
        return self.result[0]


@contextmanager
def running_tail(
    emu: Emulator,
    symbols: list[str],
    intervals: list[str],
    sink_names: Sequence[str] = ("sqlite",),
    wrap: Callable[[list[Any]], list[Any]] | None = None,
    **config: Any,
) -> Iterator[Running]:
    cfg = TailConfig(
        symbols=symbols,
        timeframes=[timeframes.parse(i) for i in intervals],
        base_url=emu.ws_url,
        backoff_initial_s=0.05,
        backoff_max_s=0.4,
        **config,
    )

    def sinks() -> list[Any]:
        opened = open_sinks(list(sink_names))
        return wrap(opened) if wrap else opened

    tail = Tail(cfg, open_sinks=sinks, make_client=lambda: BinanceFuturesClient(emu.url))
    run = Running(tail)
    run.thread.start()
    try:
        wait_until(tail.ready.is_set, "the tail's connections")
        wait_until(lambda: run.stats.fills >= len(tail.groups) and run.idle(), "the start-up fill")
        yield run
    finally:
        if run.thread.is_alive():
            run.stop()


def stored(sink_name: str, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Kline]:
    from binance_extractor.timeutil import ms_to_dt

    (sink,) = open_sinks([sink_name])
    try:
        rows = sink.read(Dataset.klines(timeframes.parse(interval)), symbol, ms_to_dt(start_ms), ms_to_dt(end_ms))
    finally:
        sink.close()
    return [Kline.build(**r) for r in rows]


def rest(emu: Emulator, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Kline]:
    """What REST serves as closed in [start, end) at the emulator's current instant."""
    return [Kline.from_rest(symbol, interval, r) for r in emu.klines_rows(symbol, interval, start_ms, end_ms - 1)]
