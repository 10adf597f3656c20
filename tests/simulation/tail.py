"""The live tail on the simulated clock: the real ``stream.tail.Tail``, fed the socket's messages at simulated instants.

What is real: the ``Tail`` object and its seam rule (``Tail._message`` turns every message into seam facts and
queued candles or fills, exactly as on a socket), its fills (``Tail._fill_pair``: the closed bound, the seam's due
range, the store's start, ``run_job``), its writes (``Tail._write_sync``) and the sinks and client it opens. What
the simulation plays: the socket (messages built by the emulator's stream code from the exchange's data at that
instant, with the rule of ``tests/emulator/stream.py``: a socket sends closes of candles that open at or after the
candle it connected in), and the writer loop around those calls, so that its waits (a failed write held and
retried, a failed fill retried 15 s later) are simulated time instead of real sleeps.

Faults: socket drops at any instant (half of them within 1.5 s of a close), reconnects after 0.25 s .. 20 min, the
23 h 45 min rotation, process restarts (everything in memory lost) and the database going down under it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from binance_extractor import config
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.stream import plan
from binance_extractor.stream.tail import Tail, TailConfig, _Fill
from binance_extractor.timeframes import parse
from binance_extractor.timeutil import dt_to_ms
from tests.emulator import data as D
from tests.emulator.stream import _event
from tests.simulation.world import HOUR, MINUTE, World

TAIL_TIMEFRAMES = (parse("h2"), parse("h4"))  # tables only the tail writes: their check is the tail's alone
FILL_RETRY_MS = 15_000  # Tail._fill: backoff_max_s / 2


def _open_sinks() -> Any:
    from binance_extractor.sinks import open_sinks

    return open_sinks(config.sink_names())


class SimTail:
    def __init__(self, world: World) -> None:
        self.w = world
        self.loop = asyncio.new_event_loop()
        self.tail: Tail | None = None
        self.pairs = [(s, tf) for s in world.symbols for tf in TAIL_TIMEFRAMES]
        self.gen = 0  # the current socket; messages of an older one are dropped
        self.connected = False
        self.last_open: dict[tuple[str, str], int] = {}
        self.held: list[Kline] = []  # the batch the writer holds after a failed write
        self.write_attempt = 0
        self.retry_at: int | None = None
        self.restarts = 0
        self.drops = 0
        self.closes = 0
        self.write_failures = 0
        self.fill_failures = 0
        self.connected_at = 0
        world.db_listeners.append(self._db_went_down)

    # ------------------------------------------------------------------ plan

    def plan(self) -> None:
        w, rng = self.w, self.w.rng
        w.at(w.start + rng.randrange(0, 30_000), "tail-start", self.start_process)
        step = TAIL_TIMEFRAMES[0].ms
        boundary = (w.start // step + 1) * step
        while boundary <= w.end:  # the exchange's stream ticks at each close (our clock: minus the skew)
            when = boundary - w.skew + rng.randrange(1, 400)
            w.at(when, "tail-close", self.closes_due)
            boundary += step
        for _ in range(rng.randint(15, 40)):  # socket drops, half of them within 1.5 s of a close
            if rng.random() < 0.5:
                close = (w.start // step + rng.randrange(1, (w.end - w.start) // step)) * step - w.skew
                when = close + rng.randrange(-1500, 1500)
            else:
                when = w.start + rng.randrange(0, w.end - w.start)
            w.at(when, "tail-drop", self.drop)
        for _ in range(rng.randint(2, 6)):  # process restarts (the queue and the seams are lost)
            w.at(w.start + rng.randrange(0, w.end - w.start), "tail-kill", self.kill)

    # ------------------------------------------------------------------ process

    def start_process(self) -> None:
        if self.tail is not None:
            return
        cfg = TailConfig(symbols=list(self.w.symbols), timeframes=list(TAIL_TIMEFRAMES), requested_by="sim:tail")
        tail = Tail(cfg, open_sinks=_open_sinks, make_client=BinanceFuturesClient.from_env)
        tail._loop = self.loop
        asyncio.set_event_loop(self.loop)
        tail._stop_event = asyncio.Event()
        tail._queue = asyncio.Queue(maxsize=cfg.queue_size)
        try:
            tail._sinks = _open_sinks()
        except Exception as exc:  # Tail.run fails at its start (the database is down): the supervisor restarts it
            tail._db.shutdown(wait=True)
            self.w.log.add(self.w.now(), f"tail failed to start ({str(exc)[:100]}); restarted in 30 s")
            self.w.at(self.w.now() + 30_000, "tail-start", self.start_process)
            return
        tail._client = BinanceFuturesClient.from_env()
        self.tail = tail
        self.held, self.write_attempt, self.retry_at = [], 0, None
        self.connect()

    def kill(self) -> None:
        """SIGKILL: whatever the process held in memory is gone; it is restarted a little later."""
        if self.tail is None:
            return
        self.restarts += 1
        self._disconnect()
        tail, self.tail = self.tail, None
        with contextlib.suppress(Exception):
            tail._close_all()
        tail._db.shutdown(wait=True)
        self.held = []
        self.w.log.add(self.w.now(), "tail killed")
        self.w.at(self.w.now() + self.w.rng.choice([300, 5_000, 60_000, 10 * MINUTE]), "tail-start", self.start_process)

    def _db_went_down(self) -> None:
        if self.tail is not None:
            for sink in self.tail._sinks:
                with contextlib.suppress(Exception):
                    sink.close()  # the server dropped the connection; the sink reconnects on its next call

    # ------------------------------------------------------------------ socket

    def connect(self) -> None:
        if self.tail is None or self.connected:
            return
        self.gen += 1
        self.connected = True
        self.connected_at = self.w.now()
        ex = self.w.exchange_now()
        self.last_open = {(s, tf.interval): D.floor_open(tf.interval, ex) for s, tf in self.pairs}
        gen = self.gen
        rng = self.w.rng
        first = self.w.now() + rng.randrange(100, 1200)  # the first message: an update of the open candle
        for after in (0, 1000, 3500, 5000):  # updates (the seam's early fill listens to their event times)
            self.w.at(first + after, "tail-update", lambda g=gen: self.updates(g))
        rotate = self.w.now() + int(plan.ROTATE_AFTER_S * 1000)
        self.w.at(rotate, "tail-rotate", lambda g=gen: self.rotate(g))

    def _disconnect(self) -> None:
        self.connected = False
        self.gen += 1
        if self.tail is not None:
            self.tail._live.discard(0)

    def drop(self) -> None:
        if not self.connected:
            return
        self.drops += 1
        self._disconnect()
        rng = self.w.rng
        delay = rng.randrange(250, 500) if rng.random() < 0.7 else rng.choice([5_000, 2 * MINUTE, 20 * MINUTE])
        self.w.log.add(self.w.now(), f"tail socket dropped; reconnect in {delay} ms")
        self.w.at(self.w.now() + delay, "tail-connect", self.connect)

    def rotate(self, gen: int) -> None:
        if gen != self.gen or not self.connected:
            return
        self._disconnect()
        self.w.at(self.w.now() + self.w.rng.randrange(30, 300), "tail-connect", self.connect)

    def updates(self, gen: int) -> None:
        if gen != self.gen or not self.connected or self.tail is None:
            return
        emu, ex = self.w.emu, self.w.exchange_now()
        assert emu is not None
        for s, tf in self.pairs[:1]:
            cur = D.floor_open(tf.interval, ex)
            if emu._open_times(s, tf.interval, cur, cur, 1, ex) == [cur]:
                row = emu._row(s, tf.interval, cur, ex)
                self.deliver(_event(f"{s.lower()}@kline_{tf.interval}", s, tf.interval, row, ex, closed=False))

    def closes_due(self) -> None:
        """The exchange's stream at a close: the final close of every candle since the socket's last one."""
        if not self.connected or self.tail is None:
            return
        emu, ex = self.w.emu, self.w.exchange_now()
        assert emu is not None
        gen = self.gen
        for s, tf in self.pairs:
            key = (s, tf.interval)
            cur = D.floor_open(tf.interval, ex)
            if cur <= self.last_open[key]:
                continue
            for t in emu._open_times(s, tf.interval, self.last_open[key], cur - 1, 100_000, ex):
                row = emu._row(s, tf.interval, t, ex)
                self.closes += 1
                self.deliver(_event(f"{s.lower()}@kline_{tf.interval}", s, tf.interval, row, ex, closed=True))
                if gen != self.gen:
                    return
            self.last_open[key] = cur
        for after in (1000, 3500):
            self.w.at(self.w.now() + after, "tail-update", lambda g=gen: self.updates(g))

    # ------------------------------------------------------------------ the tail's writer, on simulated time

    def deliver(self, raw: str) -> None:
        assert self.tail is not None
        self.loop.run_until_complete(self.tail._message(0, [p for p in self.pairs], raw))
        self.drain()

    def drain(self) -> None:
        """``Tail._writer``: candles are written in order; a fill request runs after the candles before it; a
        failed write holds the batch (and everything behind it) until it succeeds."""
        tail = self.tail
        if tail is None:
            return
        assert tail._queue is not None
        if self.held and not self._write():
            return
        candles: list[Kline] = []
        while not tail._queue.empty():
            item = tail._queue.get_nowait()
            if isinstance(item, _Fill):
                self.held = candles
                candles = []
                if self.held and not self._write():
                    tail._queue.put_nowait(item)  # (the queue keeps its order behind the held batch)
                    self._requeue_rest(item)
                    return
                self.fill(item.pairs)
            else:
                candles.append(item)
        self.held = candles
        if self.held:
            self._write()

    def _requeue_rest(self, first: Any) -> None:
        """Keep ``first`` at the head of the queue (asyncio.Queue has no push-front: rotate once)."""
        tail = self.tail
        assert tail is not None and tail._queue is not None
        q = tail._queue
        items = []
        while not q.empty():
            items.append(q.get_nowait())
        items.remove(first)
        for item in [first, *items]:
            q.put_nowait(item)

    def _write(self) -> bool:
        """``Tail._write_candles`` for the held batch: one attempt now; on failure, another later (sim time)."""
        tail = self.tail
        assert tail is not None
        candles = self.held
        by_table: dict[Dataset, dict[tuple[Any, ...], Kline]] = {}
        for k in candles:
            by_table.setdefault(Dataset.klines(k.timeframe), {})[k.key()] = k
        first: dict[Any, int] = {}
        for k in candles:
            pair = (k.symbol, k.timeframe)
            if pair in tail.seams and tail.seams.needs_start(pair):
                first[pair] = min(first.get(pair, dt_to_ms(k.open_time)), dt_to_ms(k.open_time))
        try:
            starts = tail._write_sync(by_table, first)
        except Exception as exc:
            self.write_failures += 1
            delay = int(min(30.0, 0.5 * 2**self.write_attempt) * 1000)
            self.write_attempt += 1
            if self.retry_at is None:
                self.retry_at = self.w.now() + delay
                self.w.at(self.retry_at, "tail-write-retry", self._retry_write)
            self.w.log.add(self.w.now(), f"tail write failed ({str(exc)[:100]}); retry in {delay} ms")
            return False
        self.write_attempt = 0
        for pair, start in starts.items():
            tail.seams.started(pair, start)
        for rows in by_table.values():
            for k in rows.values():
                if (k.symbol, k.timeframe) in tail.seams:
                    tail.seams.stored((k.symbol, k.timeframe), dt_to_ms(k.open_time))
        self.held = []
        return True

    def _retry_write(self) -> None:
        self.retry_at = None
        self.drain()

    def fill(self, pairs: list[Any]) -> None:
        """``Tail._fill``: REST for what each stream's seam says is due; failures retried 15 s later."""
        tail = self.tail
        assert tail is not None
        retry = []
        for pair in dict.fromkeys(pairs):
            try:
                self.loop.run_until_complete(tail._fill_pair(pair))
            except Exception as exc:
                self.fill_failures += 1
                retry.append(pair)
                self.w.log.add(self.w.now(), f"tail fill {pair[0]} {pair[1].name} failed: {str(exc)[:100]}")
        if retry:
            gen_tail = tail
            self.w.at(self.w.now() + FILL_RETRY_MS, "tail-fill-retry", lambda: self._refill(gen_tail, retry))

    def _refill(self, tail: Tail, pairs: list[Any]) -> None:
        if tail is not self.tail or tail._queue is None:
            return  # that process is gone
        tail._queue.put_nowait(_Fill(list(pairs)))
        self.drain()

    def stop(self) -> None:
        if self.tail is not None:
            self._disconnect()
            with contextlib.suppress(Exception):
                self.tail._close_all()
            self.tail._db.shutdown(wait=True)
            self.tail = None
        self.loop.close()


assert HOUR  # (re-exported constants keep one import line per module)
