"""A loopback HTTP server that behaves like Binance USD-M Futures (``/fapi/v1/...``) for tests and benchmarks.

Semantics follow the public Binance docs: open-time filtering of klines with startTime/endTime/limit and their
defaults and maxima, request weights counted per fixed wall-clock window (one IP: every client shares it),
``X-MBX-USED-WEIGHT-<n><unit>`` on every answer, 429 + Retry-After over the limit, 418 bans for clients that
keep sending after a 429, Binance's error codes, an in-progress last candle whose values change every second,
outages (holes) and injectable faults. Rate-limit windows use the real wall clock even when ``clock`` fakes
the market's "now", so a test with a frozen clock still sees windows roll over; ``window_clock`` pins them too
(``tests.fixtures.clock.pin_windows``) for tests that must not see a window roll mid-test.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.emulator import data as D
from tests.emulator import datasets as DS

FAULT_KINDS = ("502", "503", "504", "-1001", "truncated", "malformed", "slow", "hang", "reset", "repeat_page", "429")
_SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_INT_RE = re.compile(r"^-?[0-9]{1,20}$")


class ApiError(Exception):
    """An error answer: HTTP status plus Binance's JSON {code, msg}."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg
        self.headers = headers or {}


def _mandatory(name: str) -> ApiError:
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


@dataclass
class RequestRecord:
    """One request as the emulator saw it (also readable as ``record["status"]``)."""

    time: float  # epoch seconds (wall clock) when it arrived
    path: str
    params: dict[str, str]
    status: int
    weight: int
    used_after: int
    api_key_present: bool
    fault: str | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _interval_label(seconds: int) -> tuple[str, int, str]:
    """Window length -> (exchangeInfo interval, intervalNum, header suffix) following Binance's naming."""
    for unit, size, letter in (("DAY", 86400, "D"), ("HOUR", 3600, "H"), ("MINUTE", 60, "M")):
        if seconds % size == 0:
            return unit, seconds // size, f"{seconds // size}{letter}"
    return "SECOND", seconds, f"{seconds}S"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: Emulator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Hang up kept-alive connections, so a stopped emulator answers nothing."""
        with self.sockets_lock:
            socks = list(self.open_sockets)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, resets) are normal here; anything else is printed."""
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Gate:
    """Requests held at the door until a test releases them (``Emulator.hold``): the test decides the instant an
    answer leaves, instead of a sleep. ``arrived`` is set once a request waits; ``held`` counts them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.arrived = threading.Event()
        self.held = 0
        self._open = threading.Event()

    def release(self) -> None:
        self._open.set()

    @property
    def released(self) -> bool:
        return self._open.is_set()

    def wait(self, timeout: float = 60.0) -> None:
        self.held += 1
        self.arrived.set()
        self._open.wait(timeout)  # a hang guard: a test that forgets to release still ends


class Emulator:
    """The exchange. ``Emulator(**config)``; ``start()``/``stop()`` or ``with Emulator() as emu:``.

    Config (also mutable attributes): weight_limit, window_seconds, latency, ban_seconds, tolerated_after_429,
    clock (callable -> epoch ms, the market's "now"), window_clock (callable -> epoch seconds for rate-limit
    windows and bans; default the wall clock), api_keys, trade_id_offset, slow_seconds,
    funding_limit / funding_window_seconds (the separate fundingRate limit), historical_trades_ms (how far back
    historicalTrades serves; older ids get an empty page), trade_bucket_ms (two synthetic trades per bucket:
    86 ms is about 2 million a day), contracts (that many extra synthetic USDT perpetuals, ``C0000USDT``...,
    for scale runs; ``perpetuals(n)`` lists n symbols), host, port (0 = free port).
    """

    def __init__(
        self,
        *,
        weight_limit: int = 2400,
        window_seconds: int = 60,
        latency: float = 0.0,
        ban_seconds: int = 120,
        tolerated_after_429: int = 2,
        clock: Callable[[], int] | None = None,
        window_clock: Callable[[], float] | None = None,
        api_keys: set[str] | None = None,
        trade_id_offset: int = 2**32,
        slow_seconds: float = 3.0,
        funding_limit: int = 500,
        funding_window_seconds: int = 300,
        historical_trades_ms: int | None = None,
        trade_bucket_ms: int = D.TRADE_BUCKET_MS,
        contracts: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.weight_limit = weight_limit
        self.window_seconds = window_seconds
        self.latency = latency
        self.ban_seconds = ban_seconds
        self.tolerated_after_429 = tolerated_after_429
        self.clock = clock
        self.window_clock = window_clock
        self.api_keys: set[str] = set(api_keys) if api_keys is not None else {"test-key"}
        self.trade_id_offset = trade_id_offset
        self.slow_seconds = slow_seconds
        self.funding_limit = funding_limit
        self.funding_window_seconds = funding_window_seconds
        self.historical_trades_ms = historical_trades_ms  # like Binance: older trades by id answer "200, []"
        self.host, self.port = host, port
        self.symbols: dict[str, D.SymbolSpec] = D.default_symbols(self.now_ms())
        self.symbols.update(D.extra_contracts(contracts))
        self.real = D.real_data(trade_id_offset)
        self._gen = {s: D.Synthetic(spec) for s, spec in self.symbols.items()}
        self._trades = {
            s: D.SyntheticTrades(g, trade_id_offset, trade_bucket_ms)
            for s, g in self._gen.items()
            if self.symbols[s].synthetic
        }
        self.outages: dict[str, list[tuple[int, int]]] = {}
        self.publish_at: dict[tuple[str, int, int], int] = {}  # late publication: the outage ends at this "now"
        self._throttled_until = 0.0  # the "429" fault: the window counts as full until then (strikes count)
        self.overrides: dict[tuple[str, str, int], list[Any]] = {}
        self.faults: list[list[Any]] = []
        self.gates: list[Gate] = []
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._version = 0
        self._body_cache: dict[tuple[Any, ...], bytes] = {}
        self._last_body: dict[str, bytes] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._stopped = threading.Event()  # releases requests held by the "hang" fault
        self.reset_limits()
        self._max_used = 0

    def perpetuals(self, count: int | None = None) -> list[str]:
        """The first ``count`` (all when None) TRADING USDT perpetuals with synthetic data: the default ones
        (``include/config.yaml``'s), then the extra ``contracts`` (``C0000USDT``...). A symbol list for scale runs."""
        names = [s for s, spec in self.symbols.items() if _scale_symbol(spec)]
        if count is not None and count > len(names):
            raise ValueError(f"only {len(names)} perpetuals; make the emulator with contracts={count}")
        return names if count is None else names[:count]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        if self._server is not None:
            return self
        self._stopped.clear()
        server = _Server((self.host, self.port), _Handler)
        server.emulator = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"emulator:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    @property
    def stream(self) -> Any:
        """The WebSocket kline streams (``tests/emulator/stream.py``), started on first use."""
        if self._stream is None:
            from tests.emulator.stream import StreamServer

            self._stream = StreamServer(self, host=self.host).start()
        return self._stream

    @property
    def ws_url(self) -> str:
        """Futures WebSocket base URL (``BINANCE_FUTURES_WS_URL``), e.g. ``ws://127.0.0.1:PORT``."""
        return str(self.stream.url)

    def stop(self) -> None:
        self._stopped.set()
        if self._stream is not None:
            self._stream.stop()
            self._stream = None
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Futures REST base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def archive_url(self) -> str:
        """Base URL of the data.binance.vision-like archive (served by ``tests/emulator/archive.py``)."""
        return self.url + "/archive"

    @property
    def data_version(self) -> int:
        """Bumped by every outage/override change: a cache key for anything derived from the served data."""
        return self._version

    def now_ms(self) -> int:
        """The market's "now" (epoch ms): ``clock()`` if configured, else real time."""
        return int(self.clock()) if self.clock is not None else int(time.time() * 1000)

    # ------------------------------------------------------------------ knobs

    def add_outage(self, symbol: str, start_ms: int, end_ms: int, publish_at_ms: int | None = None) -> None:
        """Remove every kline (any interval) opening in [start_ms, end_ms] and funding rows in it, for ``symbol``.

        ``publish_at_ms``: published late: from that market "now" on, REST and the streams serve the rows again
        (an incident whose data the exchange backfills), so the hole was never exchange-side."""
        with self._lock:
            self.outages.setdefault(symbol, []).append((start_ms, end_ms))
            if publish_at_ms is not None:
                self.publish_at[(symbol, start_ms, end_ms)] = publish_at_ms
            self._version += 1
            self._body_cache.clear()

    def clear_outages(self) -> None:
        with self._lock:
            self.outages.clear()
            self.publish_at.clear()
            self._version += 1
            self._body_cache.clear()

    def set_kline_override(self, symbol: str, interval: str, open_ms: int, row: list[Any] | None) -> None:
        """Serve ``row`` (a full 12-field kline) instead of the generated candle; ``None`` removes the override."""
        with self._lock:
            if row is None:
                self.overrides.pop((symbol, interval, open_ms), None)
            else:
                self.overrides[(symbol, interval, open_ms)] = list(row)
            self._version += 1
            self._body_cache.clear()

    def inject(self, kind: str, times: int = 1, path: str | None = None, after: int = 0) -> None:
        """Queue ``kind`` (see FAULT_KINDS) for the next ``times`` requests whose path starts with ``path``,
        once ``after`` such requests have been served normally."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self.faults.append([kind, times, path, after])

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def hold(self, path: str) -> Gate:
        """Hold every request whose path starts with ``path`` until ``gate.release()`` (before it is served)."""
        gate = Gate(path)
        with self._lock:
            self.gates.append(gate)
        return gate

    def _gate(self, path: str) -> Gate | None:
        with self._lock:
            self.gates = [g for g in self.gates if not g.released]
            return next((g for g in self.gates if path.startswith(g.path)), None)

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            for f in self.faults:
                if f[1] > 0 and (f[2] is None or path.startswith(f[2])):
                    if f[3] > 0:
                        f[3] -= 1
                        continue
                    f[1] -= 1
                    kind: str = f[0]
                    self.faults = [x for x in self.faults if x[1] > 0]
                    return kind
        return None

    # ------------------------------------------------------------------ stats

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """Number of recorded requests, optionally only those for ``path`` and/or with HTTP ``status``."""
        with self._lock:
            return sum(
                1 for r in self.requests if (path is None or r.path == path) and (status is None or r.status == status)
            )

    @property
    def count_429(self) -> int:
        return self.count(status=429)

    @property
    def count_418(self) -> int:
        return self.count(status=418)

    @property
    def max_used_weight(self) -> int:
        """Highest weight counter value reached in any window since the last ``reset_stats``."""
        return self._max_used

    @property
    def used_weight(self) -> int:
        """The current window's counter (0 if the window has rolled over)."""
        with self._lock:
            self._roll(self._wall())
            return self._used

    def reset_stats(self) -> None:
        with self._lock:
            self.requests.clear()
            self._max_used = 0

    def reset_limits(self) -> None:
        """Forget the weight counter, pending 429 strikes, bans and the funding counter."""
        with getattr(self, "_lock", threading.Lock()):
            self._window = -1
            self._used = 0
            self._after_429: int | None = None
            self._banned_until = 0.0
            self._f_window = -1
            self._f_used = 0
            self._oi_window = None  # openInterestHist's own limit (tests/emulator/datasets.py)

    # ------------------------------------------------------------------ rate limiting

    @property
    def weight_header(self) -> str:
        return "X-MBX-USED-WEIGHT-" + _interval_label(self.window_seconds)[2]

    def _wall(self) -> float:
        """Epoch seconds of the rate-limit windows and bans: ``window_clock()`` if set (tests that read cumulative
        weights pin it, so a window cannot roll mid-test however slow the machine is), else the wall clock."""
        return float(self.window_clock()) if self.window_clock is not None else time.time()

    def _roll(self, now: float) -> None:
        w = int(now // self.window_seconds)
        if w != self._window:
            self._window, self._used, self._after_429 = w, 0, None

    def _admit(self, weight: int, funding: bool) -> tuple[int, ApiError | None]:
        """Count the request; returns (used weight after, error to send instead or None)."""
        with self._lock:
            now = self._wall()  # read under the lock: admissions are counted in the order of their times
            self._roll(now)
            if self._banned_until > now:
                return self._used, self._ban_error(now)
            if self._banned_until:  # a served ban wipes the strikes: the client starts over
                self._banned_until, self._after_429 = 0.0, None
            if self._throttled_until and now >= self._throttled_until:  # an injected 429 has passed
                self._throttled_until, self._after_429 = 0.0, None
            if self._after_429 is not None:
                self._after_429 += 1
                if self._after_429 > self.tolerated_after_429:
                    self._banned_until = now + self.ban_seconds
                    return self._used, self._ban_error(now)
            window_end = (self._window + 1) * self.window_seconds
            if self._throttled_until > now:
                window_end = self._throttled_until
            if self._used + weight > self.weight_limit or self._throttled_until > now:
                if self._after_429 is None:
                    self._after_429 = 0
                retry = max(1, math.ceil(window_end - now))
                msg = (
                    f"Too many requests; current limit of IP(127.0.0.1) is {self.weight_limit} requests per "
                    f"{_interval_label(self.window_seconds)[2].lower()}. Please use the websocket for live updates "
                    "to avoid polling the API."
                )
                return self._used, ApiError(429, -1003, msg, {"Retry-After": str(retry)})
            if funding:
                fw = int(now // self.funding_window_seconds)
                if fw != self._f_window:
                    self._f_window, self._f_used = fw, 0
                if self._f_used + 1 > self.funding_limit:
                    if self._after_429 is None:
                        self._after_429 = 0
                    retry = max(1, math.ceil((fw + 1) * self.funding_window_seconds - now))
                    msg = "Too many requests; fundingRate is limited to 500 requests per 5 minutes per IP."
                    return self._used, ApiError(429, -1003, msg, {"Retry-After": str(retry)})
                self._f_used += 1
            self._used += weight
            self._max_used = max(self._max_used, self._used)
            return self._used, None

    def _ban_error(self, now: float) -> ApiError:
        until = int(self._banned_until * 1000)
        retry = max(1, math.ceil(self._banned_until - now))
        msg = (
            f"Way too many requests; IP(127.0.0.1) banned until {until}. "
            "Please use the websocket for live updates to avoid bans."
        )
        return ApiError(418, -1003, msg, {"Retry-After": str(retry)})

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)

    # ------------------------------------------------------------------ klines

    def _spec(self, symbol: str | None) -> D.SymbolSpec:
        if not symbol:
            raise _mandatory("symbol")
        if not _SYMBOL_RE.match(symbol):
            raise ApiError(
                400, -1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
            )
        spec = self.symbols.get(symbol)
        if spec is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return spec

    def _out(self, symbol: str, t: int) -> tuple[int, int] | None:
        for s, e in self.outages.get(symbol, ()):
            if s <= t <= e:
                published = self.publish_at.get((symbol, s, e))
                if published is not None and self.now_ms() >= published:
                    continue
                return s, e
        return None

    def _published(self, now: int) -> int:
        """How many late outages are published at ``now`` (part of the body cache key)."""
        return sum(1 for at in self.publish_at.values() if now >= at)

    def _open_times(
        self, symbol: str, interval: str, start: int | None, end: int | None, limit: int, now: int
    ) -> list[int]:
        """Candle open times REST would return (Binance semantics on open time), ascending."""
        spec = self.symbols[symbol]
        from_end = start is None
        if not spec.synthetic:
            times = self.real.kline_times.get(symbol, {}).get(interval, [])
            lo = 0 if start is None else D.search_left(times, start)
            hi_t = now if end is None else min(end, now)
            hi = D.bisect_right(times, hi_t)
            if lo >= hi:
                return []
            if not self.outages.get(symbol):
                return times[hi - limit if from_end and hi - lo > limit else lo : hi][:limit]
            seq = [t for t in times[lo:hi] if self._out(symbol, t) is None]
            return seq[-limit:] if from_end else seq[:limit]
        first = D.floor_open(interval, spec.onboard_ms)
        last_t = now if spec.delist_ms is None else min(now, spec.delist_ms - 1)
        if end is not None:
            last_t = min(last_t, end)
        if start is not None and start > first:
            first = D.ceil_open(interval, start)
        last = D.floor_open(interval, last_t)
        if last < first:
            return []
        out: list[int] = []
        if interval != "1M" and not self.outages.get(symbol):
            step = D.INTERVAL_MS[interval]
            if from_end:
                return list(range(max(first, last - (limit - 1) * step), last + 1, step))
            return list(range(first, min(last, first + (limit - 1) * step) + 1, step))
        if from_end:
            t = last
            while t >= first and len(out) < limit:
                o = self._out(symbol, t)
                if o is None:
                    out.append(t)
                    t = D.prev_open(interval, t)
                else:
                    t = D.floor_open(interval, o[0] - 1)
            out.reverse()
            return out
        t = first
        while t <= last and len(out) < limit:
            o = self._out(symbol, t)
            if o is None:
                out.append(t)
                t = D.next_open(interval, t)
            else:
                t = D.ceil_open(interval, o[1] + 1)
        return out

    def _row(self, symbol: str, interval: str, t: int, now: int) -> list[Any]:
        ov = self.overrides.get((symbol, interval, t))
        if ov is not None:
            return ov
        spec = self.symbols[symbol]
        close = D.next_open(interval, t) - 1
        live = close >= now
        if spec.synthetic:
            return self._gen[symbol].candle(interval, t, close, upto=(now - now % 1000) if live else None)
        rows = self.real.klines[symbol][interval]
        i = D.search_left(self.real.kline_times[symbol][interval], t)
        row = rows[i]
        return _live_fixture_row(row, t, close, now) if live else row

    def query_klines(
        self, symbol: str, interval: str, start: int | None, end: int | None, limit: int = 500
    ) -> list[list[Any]]:
        """Exactly the rows ``GET /fapi/v1/klines`` returns for these parameters (may include the live candle)."""
        now = self.now_ms()
        return [self._row(symbol, interval, t, now) for t in self._open_times(symbol, interval, start, end, limit, now)]

    def klines_rows(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, include_open: bool = False
    ) -> list[list[Any]]:
        """Every kline opening in [start_ms, end_ms] as REST serves it; closed candles only unless ``include_open``.

        The archive layout and tests use this as the source of truth (same bytes as REST).
        """
        now = self.now_ms()
        rows: list[list[Any]] = []
        cursor = start_ms
        while cursor <= end_ms:
            times = self._open_times(symbol, interval, cursor, end_ms, 100_000, now)
            if not times:
                break
            rows.extend(self._row(symbol, interval, t, now) for t in times)
            cursor = D.next_open(interval, times[-1])
        if not include_open:
            rows = [r for r in rows if r[6] < now]
        return rows

    def _klines_body(self, symbol: str, interval: str, start: int | None, end: int | None, limit: int) -> bytes:
        now = self.now_ms()
        times = self._open_times(symbol, interval, start, end, limit, now)
        if not times:
            return b"[]"
        closed = D.next_open(interval, times[-1]) - 1 < now
        key = (symbol, interval, times[0], times[-1], len(times), self._version, self._published(now))
        if closed:
            cached = self._body_cache.get(key)
            if cached is not None:
                return cached
        body = json.dumps([self._row(symbol, interval, t, now) for t in times], separators=(",", ":")).encode()
        if closed:
            if len(self._body_cache) > 512:
                self._body_cache.clear()
            self._body_cache[key] = body
        return body

    # ------------------------------------------------------------------ funding

    def _funding_for(self, symbol: str, lo: int, hi: int) -> list[dict[str, Any]]:
        spec = self.symbols[symbol]
        if not spec.synthetic:
            rows = [r for r in self.real.funding.get(symbol, []) if lo <= r["fundingTime"] <= hi]
        else:
            gen = self._gen[symbol]
            rows = []
            for t in D.funding_times(spec, lo - 16, hi):
                ft = t + D.funding_jitter(spec, t)
                if lo <= ft <= hi:
                    rows.append(
                        {
                            "symbol": symbol,
                            "fundingTime": ft,
                            "fundingRate": D.funding_rate(spec, t),
                            "markPrice": gen.mark_price(t),
                        }
                    )
        if self.outages.get(symbol):
            rows = [r for r in rows if self._out(symbol, r["fundingTime"]) is None]
        return rows

    def funding_rows(
        self, symbol: str | None, start: int | None, end: int | None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Exactly what ``GET /fapi/v1/fundingRate`` returns (ascending by fundingTime)."""
        now = self.now_ms()
        hi = now if end is None else min(end, now)
        symbols = [symbol] if symbol else list(self.symbols)
        if start is not None:
            rows = [r for s in symbols for r in self._funding_for(s, start, hi)]
            rows.sort(key=lambda r: (r["fundingTime"], r["symbol"]))
            return rows[:limit]
        rows = []
        for s in symbols:
            onboard = self.symbols[s].onboard_ms
            lo = max(onboard, hi - (limit + 3) * 8 * D.HOUR)
            got = self._funding_for(s, lo, hi)
            if len(got) < limit and lo > onboard:
                got = self._funding_for(s, onboard, hi)
            rows.extend(got[-limit:])
        rows.sort(key=lambda r: (r["fundingTime"], r["symbol"]))
        return rows[-limit:]

    # ------------------------------------------------------------------ trades

    def historical_trades(self, symbol: str, from_id: int | None, limit: int) -> list[dict[str, Any]]:
        """``/fapi/v1/historicalTrades`` (and, with ``from_id=None``, ``/fapi/v1/trades``): ids >= from_id."""
        rows = self._historical_trades(symbol, from_id, limit)
        window = self.historical_trades_ms
        if from_id is not None and window is not None and rows and rows[0]["time"] < self.now_ms() - window:
            return []
        return rows

    def _historical_trades(self, symbol: str, from_id: int | None, limit: int) -> list[dict[str, Any]]:
        synth = self._trades.get(symbol)
        if synth is None:
            trades = self.real.trades.get(symbol, [])
            if from_id is None:
                return trades[-limit:]
            i = _first_at_least(trades, "id", from_id)
            return trades[i : i + limit]
        last = synth.last_bucket(self.now_ms())
        if from_id is None:
            return synth.trades(last - limit // 2 - 1, last)[-limit:]
        b0 = max(0, (from_id - synth.id0) // 2)
        return [t for t in synth.trades(b0, min(last, b0 + limit // 2 + 1)) if t["id"] >= from_id][:limit]

    def agg_trades(
        self, symbol: str, from_id: int | None, start: int | None, end: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """``/fapi/v1/aggTrades`` rows (validation of the time window is the handler's job)."""
        synth = self._trades.get(symbol)
        if synth is None:
            aggs = self.real.agg_trades.get(symbol, [])
            if from_id is not None:
                i = _first_at_least(aggs, "a", from_id)
                return aggs[i : i + limit]
            if start is not None:
                i = _first_at_least(aggs, "T", start)
                return [a for a in aggs[i : i + limit] if end is None or a["T"] <= end]
            if end is not None:
                j = _first_at_least(aggs, "T", end + 1)
                return aggs[max(0, j - limit) : j]
            return aggs[-limit:]
        last = synth.last_bucket(self.now_ms())
        span = limit // 2 + 1
        if from_id is not None:
            b0 = max(0, (from_id - synth.agg0) // 2)
            return [a for a in synth.aggs(b0, min(last, b0 + span)) if a["a"] >= from_id][:limit]
        if start is not None:
            b0 = synth.first_bucket_at(start)
            b1 = min(last, b0 + span)
            return [a for a in synth.aggs(b0, b1) if a["T"] >= start and (end is None or a["T"] <= end)][:limit]
        if end is not None:
            b1 = min(last, synth.first_bucket_at(end))
            return [a for a in synth.aggs(b1 - span, b1) if a["T"] <= end][-limit:]
        return synth.aggs(last - span, last)[-limit:]

    # ------------------------------------------------------------------ misc endpoints

    def exchange_info(self) -> dict[str, Any]:
        unit, num, _ = _interval_label(self.window_seconds)
        symbols = []
        for spec in self.symbols.values():
            tick = D.fmt(spec.tick_units, spec.price_dp)
            step = D.fmt(1, spec.qty_dp)
            symbols.append(
                {
                    "symbol": spec.symbol,
                    "pair": spec.symbol,
                    "contractType": "PERPETUAL",
                    "deliveryDate": spec.delist_ms if spec.delist_ms is not None else 4133404800000,
                    "onboardDate": spec.onboard_ms,
                    "status": spec.status,
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": spec.base_asset,
                    "quoteAsset": spec.quote_asset,
                    "marginAsset": spec.quote_asset,
                    "pricePrecision": spec.price_dp,
                    "quantityPrecision": spec.qty_dp,
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": [],
                    "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500",
                    "marketTakeBound": "0.05",
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000", "tickSize": tick},
                        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "10000000", "stepSize": step},
                    ],
                    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": unit, "intervalNum": num, "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [
                {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
                {"asset": "ETH", "marginAvailable": True, "autoAssetExchange": "-10000"},
            ],
            "symbols": symbols,
        }

    def funding_info(self) -> list[dict[str, Any]]:
        """``GET /fapi/v1/fundingInfo``: like Binance, only symbols whose funding was adjusted (interval or caps)."""
        now = self.now_ms()
        out = []
        for spec in self.symbols.values():
            current = [hours for start, hours in spec.funding if start <= now]
            if not spec.synthetic or not current or (len(spec.funding) == 1 and current[-1] == 8):
                continue
            out.append(
                {
                    "symbol": spec.symbol,
                    "adjustedFundingRateCap": "0.02000000",
                    "adjustedFundingRateFloor": "-0.02000000",
                    "fundingIntervalHours": current[-1],
                    "disclaimer": False,
                }
            )
        return out

    def premium_index(self, symbol: str) -> dict[str, Any]:
        now = self.now_ms()
        spec = self.symbols[symbol]
        gen = self._gen[symbol]
        mark = gen.mark_price(now - now % 1000)
        index = gen.mark_price(now - now % 1000 + 1)
        sched = D.funding_times(spec, now - 9 * D.HOUR, now + 9 * D.HOUR)
        past = [t for t in sched if t <= now]
        future = [t for t in sched if t > now]
        last_rate = D.funding_rate(spec, past[-1]) if past else "0.00010000"
        return {
            "symbol": symbol,
            "markPrice": mark,
            "indexPrice": index,
            "estimatedSettlePrice": index,
            "lastFundingRate": last_rate,
            "interestRate": "0.00010000",
            "nextFundingTime": future[0] if future else 0,
            "time": now,
        }


def _scale_symbol(spec: D.SymbolSpec) -> bool:
    """A contract that serves every interval, funding and trades: synthetic, TRADING, quoted in USDT."""
    return spec.synthetic and spec.status == "TRADING" and spec.quote_asset == "USDT" and spec.symbol != "NEWUSDT"


def _live_fixture_row(row: list[Any], t: int, close: int, now: int) -> list[Any]:
    """A fixture candle as it looked at ``now`` (second resolution): close moves between low and high."""
    from decimal import Decimal

    lo, hi = Decimal(row[3]), Decimal(row[2])
    exp = Decimal(row[4]).as_tuple().exponent
    q = Decimal(1).scaleb(exp)  # type: ignore[arg-type]
    sec = (now // 1000) % 10
    c = (lo + (hi - lo) * sec / 10).quantize(q)
    o = Decimal(row[1])
    frac = Decimal(max(0, now - t)) / Decimal(close + 1 - t)
    vexp = Decimal(1).scaleb(Decimal(row[5]).as_tuple().exponent)  # type: ignore[arg-type]
    vol = (Decimal(row[5]) * frac).quantize(vexp)
    high, low = max(o, c), min(o, c)
    return [t, row[1], D.dec(high), D.dec(low), D.dec(c), D.dec(vol), close, "0", 0, "0", "0", "0"]


# ---------------------------------------------------------------------- request handling


def _int_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _INT_RE.match(raw):
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def _limit(params: dict[str, str], default: int, maximum: int) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return default
    if not _INT_RE.match(raw):
        raise ApiError(400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.")
    value = int(raw)
    if value <= 0 or value > maximum:
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return value


def _soft_limit(params: dict[str, str], default: int) -> int:
    """Limit as used for the weight, before validation (an invalid limit still costs the default weight)."""
    try:
        return int(params.get("limit") or default)
    except ValueError:
        return default


def _kline_weight(params: dict[str, str]) -> int:
    n = _soft_limit(params, 500)
    return 1 if n < 100 else 2 if n < 500 else 5 if n <= 1000 else 10


# path -> (weight function, counts against the fundingRate limit)
_ROUTES: dict[str, tuple[Callable[[dict[str, str]], int], bool]] = {
    "/fapi/v1/ping": (lambda p: 1, False),
    "/fapi/v1/time": (lambda p: 1, False),
    "/fapi/v1/exchangeInfo": (lambda p: 1, False),
    "/fapi/v1/klines": (_kline_weight, False),
    "/fapi/v1/fundingRate": (lambda p: 1, True),
    "/fapi/v1/fundingInfo": (lambda p: 1, True),  # shares fundingRate's 500 / 5 min / IP
    "/fapi/v1/aggTrades": (lambda p: 20, False),
    "/fapi/v1/trades": (lambda p: 5, False),
    "/fapi/v1/historicalTrades": (lambda p: 20, False),
    "/fapi/v1/premiumIndex": (lambda p: 1 if p.get("symbol") else 10, False),
}

_HTML = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle on, the body waits for the client's delayed ACK (~40 ms
    # per request on loopback), which made every keep-alive request ~30 ms slower than the exchange's own latency.
    disable_nagle_algorithm = True
    server: _Server
    _rec: RequestRecord | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        rec = self._rec
        if rec is not None:  # record before answering, so a client that got the answer also sees the record
            rec.status = status
            self.server.emulator._record(rec)
            self._rec = None
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _dispatch(self, head: bool) -> None:
        emu = self.server.emulator
        arrived = time.time()
        parts = urlsplit(self.path)
        path = parts.path
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        key = self.headers.get("X-MBX-APIKEY")
        rec = RequestRecord(arrived, path, params, 0, 0, 0, key is not None)
        self._rec = rec
        try:
            if path == "/archive" or path.startswith("/archive/"):
                self._archive(emu, path[len("/archive") :] or "/", rec, head)
                return
            fault = emu._take_fault(path)
            rec.fault = fault
            if fault == "429":  # the window is full for a second: the next requests before then are strikes
                with emu._lock:
                    emu._throttled_until = emu._wall() + 1.0
            if fault in ("502", "503", "504", "-1001", "reset"):
                self._fault(emu, fault, rec)
                return
            if fault == "slow":  # admitted (and its weight counted) only after the delay
                time.sleep(emu.slow_seconds)
            if fault == "hang":  # never reaches the exchange: unanswered and uncounted until the emulator stops
                emu._stopped.wait()
                self.close_connection = True
                return
            gate = emu._gate(path)
            if gate is not None:
                gate.wait()
            route = _ROUTES.get(path) or DS.route(path)
            if route is None:
                rec.status = 404
                self._send(404, b"", {"Content-Type": "text/html"}, head)
                return
            weight = route[0](params)
            used, err = emu._admit(weight, route[1])
            if err is None:
                err = DS.admit(emu, path)  # openInterestHist's own request limit
            rec.used_after = used
            headers = {"Content-Type": "application/json", emu.weight_header: str(used)}
            if err is None:
                rec.weight = weight
            if emu.latency:
                time.sleep(emu.latency)
            if err is None:
                try:
                    body = self._serve(emu, path, params, key)
                    status = 200
                    with emu._lock:  # "repeat_page": a cursor the exchange ignored serves the previous page again
                        if fault == "repeat_page" and path in emu._last_body:
                            body = emu._last_body[path]
                        emu._last_body[path] = body
                except ApiError as e:
                    err = e
                except Exception as e:  # an emulator bug: answer like Binance's internal error, keep serving
                    err = ApiError(500, -1000, f"An unknown error occurred while processing the request. ({e!r})")
            if err is not None:
                status = err.status
                body = json.dumps({"code": err.code, "msg": err.msg}).encode()
                headers.update(err.headers)
            elif fault == "truncated":
                body = body[: len(body) // 2]
            elif fault == "malformed":
                body = b"<html><body>upstream returned garbage {" + body[:20]
            rec.status = status
            self._send(status, body, headers, head)
        finally:
            if self._rec is not None:  # reset, or an exception before answering
                emu._record(rec)
                self._rec = None

    def _fault(self, emu: Emulator, fault: str, rec: RequestRecord) -> None:
        if emu.latency:
            time.sleep(emu.latency)
        if fault == "reset":
            rec.status = 0
            emu._record(rec)
            self._rec = None
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if fault == "-1001":
            rec.status = 503
            body = json.dumps(
                {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
            ).encode()
            self._send(503, body, {"Content-Type": "application/json"})
            return
        status = int(fault)
        rec.status = status
        titles = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: ""}
        body = _HTML.format(titles[status]).encode() if titles[status] else b""
        self._send(status, body, {"Content-Type": "text/html"})

    def _archive(self, emu: Emulator, sub: str, rec: RequestRecord, head: bool) -> None:
        result = DS.archive(emu, sub)
        if result is not False:
            self._archive_answer(result, rec, head)
            return
        result = None
        try:
            mod = importlib.import_module("tests.emulator.archive")
        except ModuleNotFoundError as e:
            if e.name != "tests.emulator.archive":
                raise
            mod = None
        handle = getattr(mod, "handle", None)
        if handle is not None:
            result = handle(emu, sub)
        if result is None:
            rec.status = 404
            self._send(404, b"", {"Content-Type": "text/plain"}, head)
            return
        self._archive_answer(result, rec, head)

    def _archive_answer(self, result: Any, rec: RequestRecord, head: bool) -> None:
        if result is None:
            rec.status = 404
            self._send(404, b"", {"Content-Type": "text/plain"}, head)
            return
        status, headers, body = result
        rec.status = status
        self._send(status, body, dict(headers), head)

    def _serve(self, emu: Emulator, path: str, params: dict[str, str], key: str | None) -> bytes:
        if path == "/fapi/v1/ping":
            return b"{}"
        if path == "/fapi/v1/time":
            return json.dumps({"serverTime": emu.now_ms()}).encode()
        if path == "/fapi/v1/exchangeInfo":
            return json.dumps(emu.exchange_info(), separators=(",", ":")).encode()
        if path == "/fapi/v1/klines":
            spec = emu._spec(params.get("symbol"))
            interval = params.get("interval")
            if not interval:
                raise _mandatory("interval")
            if interval not in D.INTERVALS:
                raise ApiError(400, -1120, "Invalid interval.")
            start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
            limit = _limit(params, 500, 1500)
            if start is not None and end is not None and start > end:
                raise ApiError(400, -1023, "Start time is greater than end time.")
            return emu._klines_body(spec.symbol, interval, start, end, limit)
        if path == "/fapi/v1/fundingRate":
            symbol = params.get("symbol")
            if symbol:
                emu._spec(symbol)
            start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
            limit = _limit(params, 100, 1000)
            rows = emu.funding_rows(symbol or None, start, end, limit)
            return json.dumps(rows, separators=(",", ":")).encode()
        if path == "/fapi/v1/fundingInfo":
            return json.dumps(emu.funding_info(), separators=(",", ":")).encode()
        if path == "/fapi/v1/premiumIndex":
            symbol = params.get("symbol")
            if symbol:
                return json.dumps(emu.premium_index(emu._spec(symbol).symbol)).encode()
            return json.dumps([emu.premium_index(s) for s in emu.symbols]).encode()
        if path == "/fapi/v1/aggTrades":
            spec = emu._spec(params.get("symbol"))
            limit = _limit(params, 500, 1000)
            from_id = _int_param(params, "fromId")
            start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
            if start is not None and end is not None:
                if end < start:
                    raise ApiError(400, -1023, "Start time is greater than end time.")
                if end - start >= D.HOUR:
                    raise ApiError(400, -1127, "More than 1 hours between startTime and endTime.")
            rows = emu.agg_trades(spec.symbol, from_id, start, end, limit)
            return json.dumps(rows, separators=(",", ":")).encode()
        if path == "/fapi/v1/trades":
            spec = emu._spec(params.get("symbol"))
            limit = _limit(params, 500, 1000)
            return json.dumps(emu.historical_trades(spec.symbol, None, limit), separators=(",", ":")).encode()
        if path == "/fapi/v1/historicalTrades":
            spec = emu._spec(params.get("symbol"))
            if key is None or not key.strip():
                raise ApiError(401, -2014, "API-key format invalid.")
            if key not in emu.api_keys:
                raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
            limit = _limit(params, 100, 500)
            from_id = _int_param(params, "fromId")
            return json.dumps(emu.historical_trades(spec.symbol, from_id, limit), separators=(",", ":")).encode()
        body = DS.serve(emu, path, params)
        if body is not None:
            return body
        raise ApiError(404, -1000, "Unknown path.")


def _first_at_least(items: list[dict[str, Any]], key: str, value: int) -> int:
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if items[mid][key] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def iter_records(emu: Emulator) -> Iterator[RequestRecord]:
    """Snapshot iterator over the request log (safe while the server runs)."""
    with emu._lock:
        snap = list(emu.requests)
    yield from snap
