"""Strict REST client for Binance USD-M Futures (``https://fapi.binance.com``).

Every request goes through the IP's shared weight budget (``binance_extractor.budget``: one state for every
process and pod on the IP), one circuit breaker (stop hammering a host
that keeps failing) and tenacity retries with exponential backoff and jitter. Errors are classified once,
here: transient ones are retried, fatal ones (invalid symbol/interval/limit, bad API key) fail at once with
the exchange's code and message. The API key travels only in the ``X-MBX-APIKEY`` header and is never logged.
Each endpoint's weight comes from ``binance_extractor.weights``; the client also owns the exchange clock that
decides which candles are closed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from binance_extractor import config, logs, telemetry, weights
from binance_extractor.breaker import CircuitBreaker, CircuitOpen
from binance_extractor.budget import SharedBudget, Ticket, open_budget
from binance_extractor.catalog import DataKind, klines_weight
from binance_extractor.errors import (
    BinanceAPIError,
    CircuitOpenError,
    FatalAPIError,
    InputError,
    IPBannedError,
    RateLimitedError,
    RetryableAPIError,
)
from binance_extractor.exchange_clock import ExchangeClock
from binance_extractor.prices import Price
from binance_extractor.ratelimit import WeightRule
from binance_extractor.timeutil import ms_to_dt

log = logging.getLogger(__name__)

# Binance codes that no retry can fix.
FATAL_CODES = {-1100, -1102, -1104, -1106, -1111, -1120, -1121, -1122, -1127, -1130, -2014, -2015, -1022, -2008}
RETRYABLE_EXC = (
    RetryableAPIError,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class BinanceFuturesClient:
    """Thread-safe: one instance is shared by the worker threads of a run."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_in_flight: int = 4,
        weight_margin: float | None = None,
        max_ban_wait: float = 300.0,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_attempts: int = 8,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        breaker_fail_max: int = 10,
        breaker_reset_timeout: float = 30.0,
        budget: SharedBudget | None = None,
        close_margin_ms: int | None = None,
    ) -> None:
        self.base_url = (base_url or config.base_url()).rstrip("/")
        self._api_key = api_key if api_key is not None else config.api_key()
        logs.register_secret(self._api_key)  # masked in every log line, whatever logs it
        self.max_in_flight = max_in_flight
        margin = weight_margin if weight_margin is not None else _default_margin()
        # one budget for the IP: shared with every process using the same store and budget name
        self._owns_budget = budget is None
        self.limiter = budget or open_budget(self.base_url, margin=margin, max_ban_wait=max_ban_wait)
        self._oi_limiter: SharedBudget | None = None  # openInterestHist's own request window, made on first use
        margin_ms = close_margin_ms if close_margin_ms is not None else _default_close_margin()
        self.exchange_clock = ExchangeClock(self.server_time, margin_ms=margin_ms)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.breaker = CircuitBreaker(breaker_fail_max, breaker_reset_timeout, _host_failure)
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(8, max_in_flight * 2), max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._info: dict[str, Any] | None = None
        self._info_lock = threading.Lock()
        self.requests_sent = 0
        self.status_counts: Counter[int] = Counter()  # HTTP status -> responses (0: no response)

    @classmethod
    def from_env(cls, base_url: str | None = None, api_key: str | None = None, **kwargs: Any) -> BinanceFuturesClient:
        """Settings from ``BINANCE_FUTURES_BASE_URL`` and ``BINANCE_API_KEY`` (outside Airflow), unless the caller
        has them (the Airflow connection: ``airflow/hooks.py``); the weight budget is keyed on the base URL's host.

        ``BINANCE_HTTP_MAX_ATTEMPTS`` and ``BINANCE_HTTP_BACKOFF_MAX`` (seconds) tune the retry budget;
        ``BINANCE_HTTP_READ_TIMEOUT`` (seconds, default 30) is how long a response may keep the client waiting
        before the request counts as failed and is retried.
        """
        for env, name, cast in (
            ("BINANCE_HTTP_MAX_ATTEMPTS", "max_attempts", int),
            ("BINANCE_HTTP_BACKOFF_MAX", "backoff_max", float),
            ("BINANCE_HTTP_READ_TIMEOUT", "timeout", _read_timeout),
        ):
            if os.environ.get(env):
                try:
                    kwargs.setdefault(name, cast(os.environ[env]))
                except ValueError:
                    raise InputError(f"{env}={os.environ[env]!r} is not a positive number") from None
        key = api_key if api_key is not None else config.api_key()
        return cls(base_url or config.base_url(), key, **kwargs)

    def __repr__(self) -> str:  # never shows the key
        return f"BinanceFuturesClient({self.base_url!r}, api_key={'set' if self._api_key else 'unset'})"

    def close(self) -> None:
        self._session.close()
        if self._owns_budget:
            self.limiter.close()

    # -- transport -------------------------------------------------------------------------------------------
    def request(
        self, path: str, params: dict[str, Any] | None = None, *, weight: int | None = None, key: bool = False
    ) -> Any:
        """GET ``path`` with retries; returns the decoded JSON body. The weight comes from the one table."""
        weight = weight if weight is not None else weights.weight(path, params)
        attempts = {"n": 0}

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("retrying %s after %s (attempt %d)", path, _short(exc), state.attempt_number)

        retrying = Retrying(
            retry=retry_if_exception_type(RETRYABLE_EXC),
            wait=wait_exponential_jitter(initial=self.backoff_initial, max=self.backoff_max),
            stop=stop_after_attempt(self.max_attempts),
            before_sleep=before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                attempts["n"] += 1
                return self._guarded(path, params or {}, weight, key, attempts["n"] - 1)
        raise AssertionError("unreachable")  # pragma: no cover

    def _guarded(self, path: str, params: dict[str, Any], weight: int, key: bool, retries: int) -> Any:
        try:
            return self.breaker.call(self._once, path, params, weight, key, retries)
        except CircuitOpen:
            raise CircuitOpenError(
                f"circuit open for {self.base_url}: {self.breaker.fail_max} consecutive failures; "
                f"not calling it again for {self.breaker.reset_timeout:.0f} s"
            ) from None

    def _once(self, path: str, params: dict[str, Any], weight: int, key: bool, retries: int) -> Any:
        headers = {}
        if key:
            if not self._api_key:
                raise InputError(f"{path} needs an API key: set BINANCE_API_KEY or the binance_default password")
            headers["X-MBX-APIKEY"] = self._api_key
        if not self.limiter.rule_known:  # exchangeInfo itself is paced by a rule another process learned, if any
            if path == "/fapi/v1/exchangeInfo":
                self.limiter.load_shared_rule()
            else:
                self._ensure_rule()
        limiter = self._limiter_for(path)
        separate = path in weights.FUNDING_PATHS or path in weights.OPEN_INTEREST_PATHS
        ticket: Ticket = limiter.acquire(weight, funding=separate)
        used: int | None = None
        started = time.perf_counter()
        status = 0
        span_attrs = {"http.route": path, "binance.weight": weight, "retry.count": retries}
        with telemetry.span("binance.http", endpoint=path, **span_attrs) as sp:
            try:
                resp = self._session.get(self.base_url + path, params=params, headers=headers, timeout=self.timeout)
                self.requests_sent += 1
                status = resp.status_code
                self.status_counts[status] += 1
                used = _int_header(resp, self.limiter.rule.header)
                sp.set_attribute("http.status_code", status)
                if used is not None:
                    sp.set_attribute("binance.used_weight_after", used)
                    telemetry.instruments.gauge("binance.weight.used", unit="{weight}").set(used)
                    telemetry.instruments.gauge("binance.weight.budget", unit="{weight}").set(self.limiter.budget)
                return self._decode(resp, path)
            finally:
                limiter.release(ticket, used)
                attrs = {"endpoint": path, "status": status}
                telemetry.instruments.counter("binance.http.requests").add(1, attrs)
                telemetry.instruments.histogram("binance.http.duration").record(time.perf_counter() - started, attrs)

    def _limiter_for(self, path: str) -> SharedBudget:
        """The weight budget, or for ``/futures/data`` statistics their own shared window (1000 requests per
        5 minutes per IP, weight 0): the same store, its own key, the "separate window" of the budget."""
        if path not in weights.OPEN_INTEREST_PATHS:
            return self.limiter
        with self._info_lock:
            if self._oi_limiter is None:
                self._oi_limiter = SharedBudget(
                    self.limiter.store,
                    self.limiter.key + ":open-interest",
                    rule=self.limiter.rule,
                    margin=self.limiter.margin,
                    max_ban_wait=self.limiter.max_ban_wait,
                    window=weights.OPEN_INTEREST_WINDOW,
                )
            return self._oi_limiter

    def _decode(self, resp: requests.Response, path: str) -> Any:
        status = resp.status_code
        if status == 200:
            try:
                return resp.json()
            except (ValueError, json.JSONDecodeError):
                raise RetryableAPIError(status, None, "truncated or malformed JSON body", path) from None
        code, msg = _error_body(resp)
        retry_after = _retry_after(resp)
        if status == 418:
            telemetry.instruments.counter("binance.ratelimit.events").add(1, {"kind": "418"})
            self.limiter.ban(retry_after or 120.0)
            # Retried: the limiter makes the next attempt wait for the ban to end, or fail if it is too long.
            raise RetryableAPIError(status, code, f"IP banned: {msg}", path)
        if status == 429:
            telemetry.instruments.counter("binance.ratelimit.events").add(1, {"kind": "429"})
            self._limiter_for(path).pause(retry_after or 1.0)  # openInterestHist's own limit pauses only it
            raise RateLimitedError(status, code, msg, path, retry_after or 1.0)
        if status >= 500 or code == -1001:
            raise RetryableAPIError(status, code, msg, path)
        if code in FATAL_CODES or status in (400, 401, 403, 404):
            raise FatalAPIError(status, code, msg, path)
        raise RetryableAPIError(status, code, msg, path)

    # -- endpoints -------------------------------------------------------------------------------------------
    def exchange_info(self, refresh: bool = False) -> dict[str, Any]:
        """``GET /fapi/v1/exchangeInfo`` (cached): symbols, onboard dates and the REQUEST_WEIGHT rule."""
        with self._info_lock:
            if self._info is None or refresh:
                self._info = self.request("/fapi/v1/exchangeInfo")
                self.limiter.set_rule(WeightRule.from_exchange_info(self._info))
            return self._info

    def _ensure_rule(self) -> None:
        """The limit comes from exchangeInfo ``rateLimits``: another process's recent answer, else ask."""
        if not self.limiter.load_shared_rule():
            self.exchange_info()

    def server_time(self) -> int:
        """``GET /fapi/v1/time``: the exchange's clock, epoch ms."""
        return int(self.request("/fapi/v1/time")["serverTime"])

    def closed_before_ms(self) -> int:
        """Candles whose close time is before this are closed on the exchange (its clock, with a margin)."""
        return self.exchange_clock.closed_before_ms()

    def symbols(self) -> dict[str, dict[str, Any]]:
        return {s["symbol"]: s for s in self.exchange_info().get("symbols", [])}

    def validate_symbols(self, symbols: list[str]) -> tuple[list[str], dict[str, str]]:
        """Split into (tradable, {unknown or delisted: reason}), order kept."""
        known = self.symbols()
        valid: list[str] = []
        invalid: dict[str, str] = {}
        for sym in symbols:
            info = known.get(sym)
            if info is None:
                invalid[sym] = "unknown symbol (not in exchangeInfo)"
            elif info.get("status", "TRADING") != "TRADING":
                invalid[sym] = f"not trading (status {info.get('status')})"
            else:
                valid.append(sym)
        return valid, invalid

    def onboard_time(self, symbol: str) -> datetime | None:
        info = self.symbols().get(symbol)
        if info and info.get("onboardDate"):
            return ms_to_dt(int(info["onboardDate"]))
        return None

    def klines(
        self, symbol: str, interval: str, start_ms: int | None = None, end_ms: int | None = None, limit: int = 499
    ) -> list[list[Any]]:
        params = _params(symbol=symbol, interval=interval, limit=limit, startTime=start_ms, endTime=end_ms)
        return self.request(DataKind.KLINES.entry.endpoint, params)

    def funding_rate(
        self, symbol: str, start_ms: int | None = None, end_ms: int | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """``GET /fapi/v1/fundingRate``; also counted in the shared 500 requests / 5 min / IP window."""
        params = _params(symbol=symbol, limit=limit, startTime=start_ms, endTime=end_ms)
        return self.request(DataKind.FUNDING.entry.endpoint, params)

    def funding_intervals(self) -> dict[str, int]:
        """``GET /fapi/v1/fundingInfo``: symbol -> current funding interval in hours, for the symbols the exchange
        lists (those whose interval or caps were adjusted); any other symbol settles every 8 hours. Counted in the
        shared fundingRate window (the exchange shares that limit with fundingInfo)."""
        rows = self.request("/fapi/v1/fundingInfo", {})
        return {str(r["symbol"]): int(r["fundingIntervalHours"]) for r in rows if r.get("fundingIntervalHours")}

    def agg_trades(
        self,
        symbol: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        from_id: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        params = _params(symbol=symbol, limit=limit, fromId=from_id, startTime=start_ms, endTime=end_ms)
        return self.request(DataKind.AGG_TRADES.entry.endpoint, params)

    def trades(self, symbol: str, limit: int = 500) -> list[dict[str, Any]]:
        """Recent trades only (``/fapi/v1/trades``)."""
        return self.request("/fapi/v1/trades", {"symbol": symbol, "limit": limit})

    def historical_trades(self, symbol: str, from_id: int | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Older trades by id (``/fapi/v1/historicalTrades``): needs the API key."""
        return self.request(
            DataKind.TRADES.entry.endpoint, _params(symbol=symbol, limit=limit, fromId=from_id), key=True
        )

    def premium_index(self, symbol: str) -> dict[str, Any]:
        return self.request("/fapi/v1/premiumIndex", {"symbol": symbol})

    def price_klines(
        self,
        price: Price,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 499,
    ) -> list[list[Any]]:
        """Trade, mark, index or premium-index klines of ``symbol``: the index endpoint takes the symbol's pair."""
        params = _params(interval=interval, limit=limit, startTime=start_ms, endTime=end_ms)
        params[price.param] = price.subject(symbol)
        return self.request(price.endpoint, params)

    def open_interest_hist(
        self, symbol: str, period: str, start_ms: int | None = None, end_ms: int | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """``GET /futures/data/openInterestHist``: weight 0, its own 1000 requests / 5 min / IP, last 30 days."""
        return self.statistics(DataKind.OPEN_INTEREST.entry.endpoint, symbol, period, start_ms, end_ms, limit)

    def statistics(
        self,
        endpoint: str,
        symbol: str,
        period: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """``GET /futures/data/<statistic>`` (open interest, long/short ratio): weight 0, the statistics' own
        request window, the last 30 days; the latest ``limit`` rows between the bounds."""
        params = _params(symbol=symbol, period=period, limit=limit, startTime=start_ms, endTime=end_ms)
        return self.request(endpoint, params)


def _params(**given: Any) -> dict[str, Any]:
    """Query parameters without the unset (None) ones: Binance reads any parameter sent as a bound or cursor."""
    return {name: value for name, value in given.items() if value is not None}


def _read_timeout(text: str) -> tuple[float, float]:
    """(connect, read) seconds from ``BINANCE_HTTP_READ_TIMEOUT``: the connect timeout stays 5 s (or less)."""
    seconds = float(text)
    if not seconds > 0:
        raise ValueError(text)
    return (min(5.0, seconds), seconds)


def _host_failure(exc: BaseException) -> bool:
    """Only transient host faults trip the breaker; rate limiting and fatal answers do not."""
    if isinstance(exc, BinanceAPIError) and exc.status in (418, 429):
        return False
    return isinstance(exc, RETRYABLE_EXC)


def _default_margin() -> float:
    try:
        return config.settings().weight_margin
    except Exception:  # config unreadable: keep the safe default
        return 0.95


def _default_close_margin() -> int:
    from binance_extractor.exchange_clock import DEFAULT_MARGIN_MS

    raw = os.environ.get("BINANCE_EXTRACTOR_CLOSE_MARGIN_MS")
    return int(raw) if raw else DEFAULT_MARGIN_MS


def _int_header(resp: requests.Response, name: str) -> int | None:
    value = resp.headers.get(name)
    if value is None:
        for key, val in resp.headers.items():  # tolerate a different window suffix
            if key.upper().startswith("X-MBX-USED-WEIGHT-"):
                value = val
                break
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return float(resp.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _error_body(resp: requests.Response) -> tuple[int | None, str]:
    try:
        body = resp.json()
        return int(body.get("code")), str(body.get("msg", ""))[:300]
    except Exception:
        text = (resp.text or "").strip().replace("\n", " ")[:120]
        return None, text or resp.reason or "no body"


def _short(exc: BaseException | None) -> str:
    if isinstance(exc, BinanceAPIError):
        return f"HTTP {exc.status} code {exc.code}"
    return type(exc).__name__ if exc else "?"


__all__ = ["BinanceFuturesClient", "IPBannedError", "klines_weight"]
