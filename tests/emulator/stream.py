"""The emulator's WebSocket side: USD-M combined kline streams (``/stream?streams=btcusdt@kline_1m/...``).

In step with the REST data: a candle's closing event (``k.x`` true) is sent once the emulator's clock has passed
its close time, with exactly the row ``GET /fapi/v1/klines`` serves from then on; the live candle is sent (``x``
false) once per second of the emulator's clock. Because the clock is injectable, a test advances time by whole
candles instead of waiting. Binance's documented behaviour and failure modes are reproduced: at most 1024 streams
per connection (HTTP 400 otherwise), at most 10 incoming client messages per second (cut), the 24 h connection
lifetime (cut, measured on the emulator's clock), forced drops (``drop_all``), refused connections (``refuse``)
and slow readers (a send that cannot complete within ``slow_reader_seconds`` cuts the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections import Counter
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from tests.emulator import data as D

if TYPE_CHECKING:
    from tests.emulator.server import Emulator

_QUIET = logging.getLogger("tests.emulator.stream")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # the emulator's thread outlives tests that redirect logging

MAX_STREAMS = 1024
MAX_INCOMING_PER_S = 10
LIFETIME_MS = 24 * 3600 * 1000


class StreamServer:
    """Started by ``Emulator.stream`` on first use, stopped with the emulator. Attributes are live settings."""

    def __init__(self, emu: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emu = emu
        self.host, self.port = host, port
        self.tick_seconds = 0.01  # how often each connection looks at the emulator's clock
        self.lifetime_ms = LIFETIME_MS
        self.slow_reader_seconds = 2.0
        self.send_buffer_bytes = 32 * 1024  # small kernel buffer, so a reader that stops is noticed
        self.refuse = False  # answer 503 to new connections (an exchange-side outage)
        self.update_ms = 1000  # live-candle update period on the emulator's clock (Binance: 250 ms for futures)
        self.connection_streams: list[int] = []  # streams per accepted connection, in order (#25: the split)
        self.cuts: Counter[str] = Counter()  # why connections were cut: drop, lifetime, slow, rate
        self.connections_total = 0
        self.client_messages = 0  # data frames clients sent (Binance allows 10 per second per connection)
        self.closes_sent = 0
        self.updates_sent = 0
        self.close_log: list[tuple[str, str, int, float]] = []  # (symbol, interval, open ms, perf_counter sent)
        self._active: set[ServerConnection] = set()
        self._frozen: set[ServerConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def active(self) -> int:
        return len(self._active)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> StreamServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="emulator-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("emulator WebSocket server did not start")
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            write_limit=8 * 1024,
            ping_interval=None,
            max_size=2**16,
            logger=_QUIET,
        ) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stopped.wait()
            for ws in list(self._active):
                ws.transport.abort()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)
        self._thread = None

    def drop_all(self) -> int:
        """Cut every open connection abruptly (no close frame), as a network failure would."""
        return self._call(self._drop_all)

    def _drop_all(self) -> int:
        n = len(self._active)
        for ws in list(self._active):
            self.cuts["drop"] += 1
            ws.transport.abort()
        return n

    def freeze(self) -> int:
        """Make every open connection half-open: nothing sent, nothing read (pings unanswered), never closed."""
        return self._call(self._freeze)

    def _freeze(self) -> int:
        for ws in self._active:
            self._frozen.add(ws)
            ws.transport.pause_reading()
        return len(self._active)

    def _call(self, fn: Any) -> Any:
        assert self._loop is not None
        done: list[Any] = []
        ev = threading.Event()

        def run() -> None:
            done.append(fn())
            ev.set()

        self._loop.call_soon_threadsafe(run)
        ev.wait(5)
        return done[0] if done else None

    # ------------------------------------------------------------------ handshake

    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        if self.refuse:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable\n")
        try:
            self._streams(request.path)
        except ValueError as exc:
            return connection.respond(HTTPStatus.BAD_REQUEST, f"{exc}\n")
        return None

    def _streams(self, path: str) -> list[tuple[str, str, str]]:
        parts = urlsplit(path)
        if parts.path != "/stream":
            raise ValueError(f"unknown path {parts.path}: use /stream?streams=...")
        names = [n for n in parse_qs(parts.query).get("streams", [""])[0].split("/") if n]
        if not names:
            raise ValueError("no streams")
        if len(names) > MAX_STREAMS:
            raise ValueError(f"{len(names)} streams: at most {MAX_STREAMS} per connection")
        out = []
        for name in names:
            sym, _, kind = name.partition("@kline_")
            if not kind or kind not in D.INTERVALS or sym != sym.lower() or sym.upper() not in self.emu.symbols:
                raise ValueError(f"invalid stream {name!r}")
            out.append((name, sym.upper(), kind))
        return out

    # ------------------------------------------------------------------ connection

    async def _handler(self, ws: ServerConnection) -> None:
        streams = self._streams(ws.request.path if ws.request else "")
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
        self._active.add(ws)
        self.connections_total += 1
        self.connection_streams.append(len(streams))
        reader = asyncio.create_task(self._read(ws))
        try:
            await self._serve(ws, streams)
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()
            self._active.discard(ws)
            self._frozen.discard(ws)

    async def _read(self, ws: ServerConnection) -> None:
        """Count the client's messages: more than 10 in one second cuts the connection, as Binance does."""
        window: list[float] = []
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                self.client_messages += 1
                now = time.monotonic()
                window = [t for t in window if now - t < 1.0] + [now]
                if len(window) > MAX_INCOMING_PER_S:
                    self.cuts["rate"] += 1
                    await ws.close(1008, "too many requests")
                    return

    async def _serve(self, ws: ServerConnection, streams: list[tuple[str, str, str]]) -> None:
        emu = self.emu
        opened_at = emu.now_ms()
        now = opened_at
        last_open = {name: D.floor_open(iv, now) for name, _, iv in streams}
        last_second = -1
        while ws.state is State.OPEN:
            if ws in self._frozen:
                await asyncio.sleep(self.tick_seconds)
                continue
            now = emu.now_ms()
            if now - opened_at >= self.lifetime_ms:
                self.cuts["lifetime"] += 1
                await ws.close(1001, "connection lifetime (24 h) reached")
                return
            out: list[str] = []
            for name, sym, iv in streams:
                cur = D.floor_open(iv, now)
                if cur > last_open[name]:
                    times = emu._open_times(sym, iv, last_open[name], cur - 1, 100_000, now)
                    for t in times:
                        row = emu._row(sym, iv, t, now)
                        out.append(_event(name, sym, iv, row, now, closed=True))
                        self.close_log.append((sym, iv, t, time.perf_counter()))
                        self.closes_sent += 1
                    last_open[name] = cur
            second = now // self.update_ms
            if second != last_second:
                last_second = second
                for name, sym, iv in streams:
                    cur = D.floor_open(iv, now)
                    if emu._open_times(sym, iv, cur, cur, 1, now) == [cur]:
                        out.append(_event(name, sym, iv, emu._row(sym, iv, cur, now), now, closed=False))
                        self.updates_sent += 1
            for msg in out:
                try:
                    await asyncio.wait_for(ws.send(msg), self.slow_reader_seconds)
                except TimeoutError:
                    self.cuts["slow"] += 1
                    ws.transport.abort()
                    return
            await asyncio.sleep(self.tick_seconds)


def _event(name: str, sym: str, iv: str, row: list[Any], now: int, closed: bool) -> str:
    """A combined-stream kline event built from the REST row (same strings, so the same Decimals)."""
    k = {
        "t": row[0],
        "T": row[6],
        "s": sym,
        "i": iv,
        "f": 0,
        "L": 0,
        "o": row[1],
        "c": row[4],
        "h": row[2],
        "l": row[3],
        "v": row[5],
        "n": row[8],
        "x": closed,
        "q": row[7],
        "V": row[9],
        "Q": row[10],
        "B": "0",
    }
    return json.dumps({"stream": name, "data": {"e": "kline", "E": now, "s": sym, "k": k}}, separators=(",", ":"))
