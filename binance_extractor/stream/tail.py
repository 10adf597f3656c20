"""The tail process: WebSocket connections -> one bounded queue -> one writer -> the sinks.

- Every connection reads its combined stream and queues each closed candle; when the queue is full the reader
  waits (backpressure reaches the socket), which is logged and counted, so memory stays bounded by the queue,
  one write batch and the WebSocket library's own bounded frame buffer.
- After every (re)connect a fill request goes through the same queue: the writer runs the REST path
  (``pipeline.run_job``, incremental from the newest stored candle, inside the shared weight budget), so a candle
  missed while disconnected is stored as soon as the connection is back.
- Every database and REST call runs on one worker thread: sinks own one connection each and are not thread-safe.
- ``stop()`` (SIGTERM, SIGINT) closes the sockets, writes everything already queued, closes the sinks and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from binance_extractor import clock, telemetry, timeframes
from binance_extractor.errors import ExtractorError
from binance_extractor.kinds import DataKind
from binance_extractor.models import Kline
from binance_extractor.stream import plan
from binance_extractor.stream.health import TailHealth
from binance_extractor.stream.messages import closed_kline
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import dt_to_ms, ms_to_dt

log = logging.getLogger(__name__)

Pair = plan.Pair


@dataclass
class TailConfig:
    """What to tail and how; the defaults follow Binance's limits (see ``plan``)."""

    symbols: list[str]
    timeframes: list[Timeframe]
    base_url: str | None = None  # default: BINANCE_FUTURES_WS_URL or wss://fstream.binance.com
    streams_per_connection: int = plan.DEFAULT_STREAMS_PER_CONNECTION
    queue_size: int = 1000  # closed candles waiting for the writer
    batch_size: int = 500  # candles per write
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    rotate_after_s: float = plan.ROTATE_AFTER_S
    ping_interval_s: float = 60.0
    ping_timeout_s: float = 60.0
    report_every_s: float = 60.0  # the stats log line and the messages/s gauge
    fill: bool = True  # REST fill at start-up and after every reconnect
    requested_by: str = "stream"

    def pairs(self) -> list[Pair]:
        return [(s, tf) for s in self.symbols for tf in self.timeframes]


@dataclass
class TailStats:
    """What the tail did; ``to_dict`` is the command's result."""

    connections: int = 0
    messages: int = 0
    candles_queued: int = 0
    candles_stored: int = 0
    reconnects: int = 0
    fills: int = 0
    fill_rows: int = 0
    fill_failures: int = 0
    backpressure_waits: int = 0
    max_queue: int = 0
    write_failures: int = 0
    rejected: int = 0
    lags_ms: deque[int] = field(default_factory=lambda: deque(maxlen=100_000))

    def lag_percentile(self, q: float) -> int | None:
        if not self.lags_ms:
            return None
        ordered = sorted(self.lags_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def to_dict(self) -> dict[str, Any]:
        counters = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lags_ms"}
        lags = {"lag_p50_ms": self.lag_percentile(0.5), "lag_p99_ms": self.lag_percentile(0.99)}
        return {"command": "stream", **counters, **lags}


@dataclass
class _Fill:
    pairs: list[Pair]
    since: dict[Pair, datetime] = field(default_factory=dict)  # fill from here even if newer candles are stored


class _FillFailed(Exception):
    def __init__(self, start: datetime | None) -> None:
        self.start = start


_STOP = object()


class Tail:
    """Run with ``asyncio.run(tail.run())`` or ``tail.run_forever()``; ``stop()`` from any thread ends it."""

    def __init__(
        self,
        config: TailConfig,
        open_sinks: Callable[[], Sequence[Any]],
        make_client: Callable[[], Any] | None = None,
    ) -> None:
        self.config = config
        self._open_sinks = open_sinks
        self._make_client = make_client
        self.stats = TailStats()
        self.groups = plan.split_streams(config.pairs(), config.streams_per_connection)
        self.health = TailHealth(len(self.groups))  # what the probes judge (stream/health.py)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="binance-stream-db")
        self._sinks: Sequence[Any] = ()
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._last_backpressure_log = 0.0
        self.ready = threading.Event()  # set once every connection is open and its first fill is queued
        self._opened: set[int] = set()
        self._pending: set[asyncio.Future[None]] = set()
        self._live: set[int] = set()  # connections whose first message arrived since they (re)connected

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the tail to flush and exit (thread-safe; signal handlers call it)."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    def run_forever(self) -> TailStats:
        return asyncio.run(self.run())

    async def run(self) -> TailStats:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._queue = asyncio.Queue(maxsize=self.config.queue_size)
        installed = self._install_signals()
        try:
            self._sinks = await self._on_db(self._open_sinks)
            if self.config.fill and self._make_client is not None:
                self._client = await self._on_db(self._make_client)
            writer = asyncio.create_task(self._writer(), name="stream-writer")
            readers = [
                asyncio.create_task(self._connection(i, group), name=f"stream-conn-{i}")
                for i, group in enumerate(self.groups)
            ]
            meter = asyncio.create_task(self._report(), name="stream-report")
            stopper = asyncio.create_task(self._stop_event.wait())
            await asyncio.wait([stopper, writer], return_when=asyncio.FIRST_COMPLETED)
            log.info("stream: stopping: closing sockets, flushing %d queued candles", self._queue.qsize())
            for task in [*readers, meter, *self._pending]:
                task.cancel()
            await asyncio.gather(*readers, meter, *self._pending, return_exceptions=True)
            if not writer.done():
                await self._queue.put(_STOP)
            await writer  # re-raises a writer failure
            stopper.cancel()
        finally:
            for sig in installed:
                self._loop.remove_signal_handler(sig)
            await self._on_db(self._close_all)
            self._db.shutdown(wait=True)
        log.info("stream: stopped", extra={"event": "stream_stopped", **self.stats.to_dict()})
        return self.stats

    def _install_signals(self) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        assert self._loop is not None
        installed: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
        return installed

    async def _on_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._db, fn, *args)

    def _close_all(self) -> None:
        for sink in self._sinks:
            with contextlib.suppress(Exception):
                sink.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    # ------------------------------------------------------------------ connections

    async def _connection(self, index: int, pairs: list[Pair]) -> None:
        """One combined-stream connection, forever: reconnect with exponential backoff and full jitter."""
        url = plan.ws_url(pairs, self.config.base_url)
        attempt = 0
        rotated = False
        while True:
            try:
                async with connect(
                    url,
                    ping_interval=self.config.ping_interval_s,
                    ping_timeout=self.config.ping_timeout_s,
                    max_size=2**20,
                    max_queue=64,
                    open_timeout=15,
                    close_timeout=2,
                ) as ws:
                    self.stats.connections += 1
                    attempt = 0
                    log.info("stream: connection %d open (%d streams)", index, len(pairs))
                    try:
                        async with asyncio.timeout(self.config.rotate_after_s):
                            async for raw in ws:
                                if index not in self._live:
                                    await self._went_live(index, pairs)
                                self.stats.messages += 1
                                self.health.heard(index)
                                telemetry.instruments.counter("binance.stream.messages").add(1, {"connection": index})
                                kline = self._parse(raw)
                                if isinstance(kline, _Fill):  # rejected: never written; REST decides the candle
                                    await self._put(kline if kline.pairs else _Fill(list(pairs)))
                                elif kline is not None:
                                    await self._put(kline)
                                    self.stats.candles_queued += 1
                    except TimeoutError:
                        rotated = True
                    self._live.discard(index)
                    reason = f"closed by the server ({ws.close_code} {ws.close_reason or ''})".strip()
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as exc:
                self._live.discard(index)
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.stats.reconnects += 1
            telemetry.instruments.counter("binance.stream.reconnects").add(1, {"connection": index})
            if rotated:
                rotated = False
                log.info("stream: connection %d rotated before the exchange's 24 h cut; reconnecting now", index)
                continue
            delay = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2**attempt)
            delay = random.uniform(delay / 2, delay)  # jitter: tails restarted together do not reconnect together
            attempt += 1
            log.warning("stream: connection %d lost (%s); reconnecting in %.1f s", index, reason, delay)
            await asyncio.sleep(delay)

    async def _went_live(self, index: int, pairs: list[Pair]) -> None:
        """The first message proves the exchange is sending this connection's streams: every candle closing from
        now on arrives on the socket, so a REST fill started after this instant leaves no gap behind it."""
        self._live.add(index)
        if self.config.fill and self._client is not None:
            await self._put(_Fill(list(pairs)))
        self._opened.add(index)
        if len(self._opened) == len(self.groups):
            self.ready.set()

    def _parse(self, raw: str | bytes) -> Kline | _Fill | None:
        """The closed candle, None, or (for a rejected event) the fill that asks REST for that candle."""
        try:
            return closed_kline(raw)
        except ExtractorError as exc:
            self.stats.rejected += 1
            log.error("stream: %s", exc)
            try:
                k = json.loads(raw)["data"]["k"]
                pair = (str(k["s"]), timeframes.parse(str(k["i"])))  # the exchange's message: a boundary
                return _Fill([pair], {pair: ms_to_dt(int(k["t"]))})
            except Exception:
                return _Fill([])  # unreadable: fill every stream of the connection

    async def _put(self, item: Any) -> None:
        assert self._queue is not None
        if self._queue.full():
            self.stats.backpressure_waits += 1
            telemetry.instruments.counter("binance.stream.backpressure").add(1)
            now = time.monotonic()
            if now - self._last_backpressure_log >= 5.0:
                self._last_backpressure_log = now
                log.warning(
                    "stream: backpressure: the writer is behind, %d candles queued (the bound); reading paused",
                    self._queue.qsize(),
                    extra={"event": "stream_backpressure", "queued": self._queue.qsize()},
                )
        await self._queue.put(item)
        self.stats.max_queue = max(self.stats.max_queue, self._queue.qsize())

    # ------------------------------------------------------------------ writer

    async def _writer(self) -> None:
        assert self._queue is not None and self._stop_event is not None
        queue = self._queue
        while True:
            item = await queue.get()
            self.health.writer_busy()
            batch = [item]
            while len(batch) < self.config.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            telemetry.instruments.gauge("binance.stream.queue.depth").set(queue.qsize())
            candles: list[Kline] = []
            stop = False
            for entry in batch:
                if entry is _STOP:
                    stop = True
                elif isinstance(entry, _Fill):
                    await self._write_candles(candles)
                    candles = []
                    await self._fill(entry)
                else:
                    candles.append(entry)
            await self._write_candles(candles)
            self.health.writer_idle()
            if stop:
                return

    async def _write_candles(self, candles: list[Kline]) -> None:
        if not candles:
            return
        by_table: dict[str, dict[tuple[Any, ...], Kline]] = {}
        for k in candles:
            by_table.setdefault(k.timeframe.table, {})[k.key()] = k
        attempt = 0
        while True:
            try:
                await self._on_db(self._write_sync, by_table)
                self.health.writer_progress()
                break
            except Exception as exc:  # the database is down or slow beyond the sink's own retries
                self.stats.write_failures += 1
                self.health.write_failed()
                assert self._stop_event is not None
                if self._stop_event.is_set() and attempt >= 2:
                    log.error(
                        "stream: giving up on %d candles at shutdown (%s); the next start fills them", len(candles), exc
                    )
                    return
                delay = min(30.0, 0.5 * 2**attempt)
                attempt += 1
                log.warning("stream: write failed (%s); retrying in %.1f s, holding the batch", exc, delay)
                await asyncio.sleep(delay)
        now = clock.now_ms()
        lag_hist = telemetry.instruments.histogram("binance.stream.lag")
        for rows in by_table.values():
            for k in rows.values():
                lag = now - (dt_to_ms(k.close_time) + 1)
                self.stats.lags_ms.append(lag)
                lag_hist.record(lag / 1000, {"timeframe": k.interval})
        self.stats.candles_stored += sum(len(r) for r in by_table.values())

    def _write_sync(self, by_table: dict[str, dict[tuple[Any, ...], Kline]]) -> None:
        for table, rows in by_table.items():
            values = sorted(rows.values(), key=lambda k: (k.symbol, k.open_time))
            for sink in self._sinks:
                sink.write(table, values)
                telemetry.instruments.counter("binance.rows.written").add(
                    len(values), {"kind": "klines", "source": "stream", "sink": sink.name}
                )

    async def _fill(self, request: _Fill) -> None:
        """REST from the newest stored candle (or ``since``) to now; a failure is retried later, never dropped."""
        failed: dict[Pair, datetime] = {}
        retry: list[Pair] = []
        for pair in request.pairs:
            if self._stop_event is not None and self._stop_event.is_set():
                break  # stopping: the next start fills what is left, from the newest stored candle
            try:
                rows = await self._on_db(self._fill_sync, pair, request.since.get(pair))
                self.stats.fill_rows += rows
                self.health.writer_progress()
            except _FillFailed as exc:
                self.stats.fill_failures += 1
                self.health.writer_progress()  # the exchange failed, not the writer: it moves on
                retry.append(pair)
                if exc.start is not None:
                    failed[pair] = exc.start  # the retry starts here even if the stream stores newer candles
                cause = exc.__cause__ or exc
                log.warning("stream: REST fill of %s %s failed: %s", pair[0], pair[1], str(cause).splitlines()[0])
        self.stats.fills += 1
        self.health.filled()
        log.info("stream: REST fills done for %d streams (%d failed)", len(request.pairs), len(retry))
        if retry and self._stop_event is not None and not self._stop_event.is_set():
            again = _Fill(retry, failed)
            asyncio.get_running_loop().call_later(self.config.backoff_max_s / 2, self._retry, again)

    def _retry(self, fill: _Fill) -> None:
        if self._stop_event is not None and not self._stop_event.is_set():
            self._pending.add(asyncio.ensure_future(self._put(fill)))  # kept referenced until done
            self._pending = {t for t in self._pending if not t.done()}

    def _fill_sync(self, pair: Pair, since: datetime | None) -> int:
        from binance_extractor.pipeline import Job, plan_range, run_job

        job = Job(
            kind=DataKind.KLINES,
            symbol=pair[0],
            timeframe=pair[1],
            start=since,
            incremental=True,
            source="rest",
            requested_by=self.config.requested_by,
        )
        now = clock.now()
        start: datetime | None = since
        try:
            start = plan_range(job, self._sinks, self._client, now)[0]
            result = run_job(job, self._sinks, self._client, now=now)
        except Exception as exc:
            raise _FillFailed(start) from exc
        if result.rows_written:
            log.info("stream: REST fill stored %d %s %s candles", result.rows_written, pair[0], pair[1].interval)
        return result.rows_written

    async def _report(self) -> None:
        """A stats line every ``report_every_s``: messages/s, candles stored, queue depth, lag percentiles."""
        last_messages, last_t = 0, time.monotonic()
        while True:
            await asyncio.sleep(self.config.report_every_s)
            now = time.monotonic()
            rate = (self.stats.messages - last_messages) / max(1e-9, now - last_t)
            last_messages, last_t = self.stats.messages, now
            telemetry.instruments.gauge("binance.stream.messages.rate").set(rate)
            self.health.report()
            log.info(
                "stream: %.1f messages/s, %d candles stored",
                rate,
                self.stats.candles_stored,
                extra={"event": "stream_stats", "messages_per_s": round(rate, 2), **self.stats.to_dict()},
            )
