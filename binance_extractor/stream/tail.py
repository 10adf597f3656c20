"""The tail process: WebSocket connections -> one bounded queue -> one writer -> the sinks.

- Every connection reads its combined stream and queues each closed candle; when the queue is full the reader
  waits (backpressure reaches the socket), which is logged and counted, so memory stays bounded by the queue,
  one write batch and the WebSocket library's own bounded frame buffer.
- Every database and REST call runs on one worker thread: sinks own one connection each and are not thread-safe.
- ``stop()`` (SIGTERM, SIGINT) closes the sockets, writes everything already queued, closes the sinks and returns.

The invariant, a tail with no seam: after any (re)connect, restart or 23 h 45 min rotation, the tail's REST fills
cover every candle of each stream from the newest stored one to the first final close received on the new
socket. A new socket sends closes only for candles closing after it opened, and a REST fill takes only what is
closed on the exchange's clock minus the margin (``exchange_clock.closed_before``), so a candle that closed just
before the socket opened is on neither path by itself: the fill runs when the socket goes live (up to the closed
bound), and again once the first close has arrived (up to it), or as soon as the closed bound has passed a
candle the socket can no longer send (``seam.Seams.tick``). A fill that fails, while planning too (the store
down), keeps its start and is retried: the socket's newer candles never move it. When that start is unknown (a
start-up whose store could not be read), the store is read for it before any candle of the stream is written.
The rule itself is ``stream/seam.py`` (pure, clock-driven); this module only feeds it facts and runs its fills.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from binance_extractor import clock, telemetry
from binance_extractor.errors import ExtractorError
from binance_extractor.exchange_clock import closed_before
from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.models import Kline
from binance_extractor.stream import plan
from binance_extractor.stream.health import TailHealth
from binance_extractor.stream.messages import KlineEvent, kline_event
from binance_extractor.stream.seam import FillRange, Seams
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt

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
    """Ask the writer to run what the seams say is due for ``pairs`` (the range itself lives in the seams)."""

    pairs: list[Pair]


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
        self.seams = Seams(config.pairs())  # the seam rule (stream/seam.py): touched on the event loop only

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
                                await self._message(index, pairs, raw)
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

    @property
    def _filling(self) -> bool:
        return self.config.fill and self._client is not None

    async def _message(self, index: int, pairs: list[Pair], raw: str | bytes) -> None:
        """One message: the seam facts it carries, then its closed candle into the queue."""
        try:
            event = kline_event(raw)
        except ExtractorError as exc:  # unreadable: nobody knows which candle it was
            self.stats.rejected += 1
            log.error("stream: %s", exc)
            event = None
            if self._filling and index in self._live:
                self.seams.opened(pairs, None)  # every stream of the connection: from its mark to its next close
                await self._put(_Fill(list(pairs)))
        if index not in self._live:
            await self._went_live(index, pairs, event.event_ms if event is not None else None)
        self.stats.messages += 1
        self.health.heard(index)
        telemetry.instruments.counter("binance.stream.messages").add(1, {"connection": index})
        if event is None:
            return
        await self._event(event)

    async def _event(self, event: KlineEvent) -> None:
        pair = event.pair
        fill = False
        if event.closed:
            if event.kline is not None:
                await self._put(event.kline)
                self.stats.candles_queued += 1
            else:  # rejected: never written; REST decides the candle
                self.stats.rejected += 1
                log.error("stream: %s", event.error)
            if self._filling and pair in self.seams:
                fill = self.seams.closed(pair, event.open_ms, stored=event.kline is not None)
        if fill:
            await self._put(_Fill([pair]))
        if not self._filling:
            return
        for early in self.seams.early(event.event_ms):  # any stream's lost candle, whatever stream this message is
            seam = self.seams.state(early)
            log.info(
                "stream: %s %s: the candle opening %s closed before the socket opened; filling it now",
                early[0],
                early[1].interval,
                iso(ms_to_dt(seam.start or 0)),
                extra={"event": "stream_seam_early", "opened_at": seam.opened_at, "event_ms": event.event_ms},
            )
            if early != pair or not fill:
                await self._put(_Fill([early]))

    async def _went_live(self, index: int, pairs: list[Pair], at_ms: int | None) -> None:
        """The first message proves the exchange is sending this connection's streams: every candle closing from
        now on arrives on the socket, so the seam to fill runs from the mark to the first close on it."""
        self._live.add(index)
        if self._filling:
            self.seams.opened(pairs, at_ms)
            await self._put(_Fill(list(pairs)))
        self._opened.add(index)
        if len(self._opened) == len(self.groups):
            self.ready.set()

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
        by_table: dict[Dataset, dict[tuple[Any, ...], Kline]] = {}
        for k in candles:
            by_table.setdefault(Dataset.klines(k.timeframe), {})[k.key()] = k
        first: dict[Pair, int] = {}  # streams whose seam start is unknown: read it before writing their candles
        for k in candles:
            pair = (k.symbol, k.timeframe)
            if self._filling and pair in self.seams and self.seams.needs_start(pair):
                first[pair] = min(first.get(pair, dt_to_ms(k.open_time)), dt_to_ms(k.open_time))
        attempt = 0
        while True:
            try:
                starts = await self._on_db(self._write_sync, by_table, first)
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
        for pair, start in starts.items():
            self.seams.started(pair, start)
        now = clock.now_ms()
        lag_hist = telemetry.instruments.histogram("binance.stream.lag")
        for rows in by_table.values():
            for k in rows.values():
                lag = now - (dt_to_ms(k.close_time) + 1)
                self.stats.lags_ms.append(lag)
                lag_hist.record(lag / 1000, {"timeframe": k.interval})
                if (k.symbol, k.timeframe) in self.seams:
                    self.seams.stored((k.symbol, k.timeframe), dt_to_ms(k.open_time))
        self.stats.candles_stored += sum(len(r) for r in by_table.values())

    def _write_sync(
        self, by_table: dict[Dataset, dict[tuple[Any, ...], Kline]], first: dict[Pair, int]
    ) -> dict[Pair, int]:
        """Read the unknown seam starts (the newest stored candle before these), then write; one attempt."""
        starts = {pair: self._plan_start(pair, end) for pair, end in first.items()}
        for dataset, rows in by_table.items():
            values = sorted(rows.values(), key=lambda k: (k.symbol, k.open_time))
            for sink in self._sinks:
                sink.write(dataset, values)
                telemetry.instruments.counter("binance.rows.written").add(
                    len(values), {"kind": "klines", "source": "stream", "sink": sink.name}
                )
        return starts

    async def _fill(self, request: _Fill) -> None:
        """REST for what each stream's seam says is due; a failure is retried later, from the same start."""
        retry: list[Pair] = []
        for pair in dict.fromkeys(request.pairs):
            if self._stop_event is not None and self._stop_event.is_set():
                break  # stopping: the next start fills what is left, from the newest stored candle
            try:
                self.stats.fill_rows += await self._fill_pair(pair)
                self.health.writer_progress()
            except Exception as exc:
                self.stats.fill_failures += 1
                self.health.writer_progress()  # the exchange (or the store) failed, not the writer: it moves on
                retry.append(pair)
                cause = exc.__cause__ or exc
                log.warning("stream: REST fill of %s %s failed: %s", pair[0], pair[1], str(cause).splitlines()[0])
        self.stats.fills += 1
        self.health.filled()
        log.info("stream: REST fills done for %d streams (%d failed)", len(request.pairs), len(retry))
        if retry and self._stop_event is not None and not self._stop_event.is_set():
            again = _Fill(retry)
            asyncio.get_running_loop().call_later(self.config.backoff_max_s / 2, self._retry, again)

    async def _fill_pair(self, pair: Pair) -> int:
        """One stream: the closed bound, the seam's due range (its start read from the store if unknown), the fill."""
        if pair not in self.seams:
            return 0
        bound = await self._on_db(closed_before, self._client)
        rng = self.seams.due(pair, bound)
        if rng is not None and rng.start_ms is None:
            self.seams.started(pair, await self._on_db(self._plan_start, pair, rng.end_ms))
            rng = self.seams.due(pair, bound)
        if rng is None or rng.start_ms is None:
            return 0
        rows = int(await self._on_db(self._fill_sync, rng))
        self.seams.filled(pair, rng)
        return rows

    def _retry(self, fill: _Fill) -> None:
        if self._stop_event is not None and not self._stop_event.is_set():
            self._pending.add(asyncio.ensure_future(self._put(fill)))  # kept referenced until done
            self._pending = {t for t in self._pending if not t.done()}

    def _job(self, pair: Pair, start: datetime | None, end: datetime, incremental: bool) -> Any:
        from binance_extractor.pipeline import Job

        symbol, tf = pair
        return Job(
            kind=DataKind.KLINES,
            symbol=symbol,
            timeframe=tf,
            start=start,
            end=end,
            incremental=incremental,
            source="rest",
            requested_by=self.config.requested_by,
        )

    def _plan_start(self, pair: Pair, end_ms: int) -> int:
        """Where a fill of ``pair`` starts when the seam does not know: incremental from the newest stored candle
        (or the history start of an empty table), as every incremental run plans it."""
        from binance_extractor.pipeline import plan_range

        start, _ = plan_range(self._job(pair, None, ms_to_dt(end_ms), True), self._sinks, self._client)
        return dt_to_ms(start)

    def _fill_sync(self, rng: FillRange) -> int:
        from binance_extractor.pipeline import run_job

        assert rng.start_ms is not None
        job = self._job(rng.pair, ms_to_dt(rng.start_ms), ms_to_dt(rng.end_ms), False)
        result = run_job(job, self._sinks, self._client)
        if result.rows_written:
            log.info(
                "stream: REST fill stored %d %s %s candles", result.rows_written, rng.pair[0], rng.pair[1].interval
            )
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
