"""The client against the loopback emulator: weight budget, 429/418, faults, fatal errors, circuit breaker."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import requests

from binance_extractor import timeframes
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.errors import CircuitOpenError, FatalAPIError, InputError, IPBannedError
from binance_extractor.extract import iter_klines
from binance_extractor.timeutil import dt_to_ms

START = dt_to_ms(datetime(2024, 1, 1, tzinfo=UTC))
M5 = timeframes.parse("5m")


def client_for(emu, **kw) -> BinanceFuturesClient:
    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("backoff_max", 1.0)
    return BinanceFuturesClient(emu.url, kw.pop("api_key", "test-key"), **kw)


def count_klines(client, symbol="BTCUSDT", pages=3, tf=M5, start=START) -> int:
    end = start + pages * 499 * tf.ms
    return sum(len(b) for b in iter_klines(client, symbol, tf, start, end))


def test_demand_beyond_budget_finishes_without_418_and_within_limit(make_emulator):
    emu = make_emulator(window_seconds=2, weight_limit=40)
    client = client_for(emu)
    client.exchange_info()  # learns the 40 / 2 s rule and the header name
    assert client.limiter.rule.header == "X-MBX-USED-WEIGHT-2S"
    started = time.monotonic()
    n = count_klines(client, pages=45)  # 90 weight: more than two windows' budget
    assert n == 45 * 499
    assert emu.count_418 == 0 and emu.count_429 == 0
    assert emu.max_used_weight <= 40
    assert time.monotonic() - started >= 2.0  # it had to wait for a window


def test_two_processes_share_the_ip_budget_through_the_header(make_emulator):
    emu = make_emulator(window_seconds=2, weight_limit=60)
    clients = [client_for(emu, max_in_flight=2) for _ in range(2)]
    for c in clients:
        c.exchange_info()
    totals: list[int] = []
    threads = [
        threading.Thread(target=lambda c=c, s=s: totals.append(count_klines(c, s, pages=30)))
        for c, s in zip(clients, ["BTCUSDT", "ETHUSDT"], strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(totals) == [30 * 499, 30 * 499]
    assert emu.count_418 == 0
    assert emu.max_used_weight <= 60


def test_429_retry_after_is_honoured_without_a_ban(make_emulator):
    emu = make_emulator(window_seconds=3, weight_limit=20, tolerated_after_429=2)
    # another process on the same IP exhausts the window (and is told so with one 429)
    while requests.get(f"{emu.url}/fapi/v1/time", timeout=5).status_code != 429:
        pass
    client = client_for(emu, max_ban_wait=5)
    n = count_klines(client, pages=2)
    assert n == 2 * 499
    assert emu.count_418 == 0  # after the 429 nothing was sent before Retry-After


def _get_banned(emu) -> None:
    """A careless client on the same IP ignores the 429s until the IP is banned."""
    while requests.get(f"{emu.url}/fapi/v1/time", timeout=5).status_code != 418:
        pass


def test_418_long_ban_fails_at_once_with_a_clear_message(make_emulator):
    emu = make_emulator(weight_limit=5, tolerated_after_429=0, ban_seconds=600)
    _get_banned(emu)
    client = client_for(emu, max_ban_wait=30)
    sent_before = emu.count()
    with pytest.raises(IPBannedError, match=r"banned by Binance \(HTTP 418\) until \S+Z \(another"):
        client.klines("BTCUSDT", "5m", START, None, limit=10)
    assert emu.count() - sent_before == 1  # one request learned of the ban; nothing was sent after it


def test_418_short_ban_is_waited_out(make_emulator):
    emu = make_emulator(weight_limit=5, tolerated_after_429=0, ban_seconds=2)
    _get_banned(emu)
    emu.weight_limit = 2400  # after the ban the budget is there again
    client = client_for(emu, max_ban_wait=30)
    started = time.monotonic()
    assert len(client.klines("BTCUSDT", "5m", START, None, limit=10)) == 10
    assert time.monotonic() - started >= 1.0
    banned_answers = emu.count(status=418)
    assert banned_answers >= 1 and emu.requests[-1].status == 200


@pytest.mark.parametrize("fault", ["502", "503", "504", "-1001", "truncated", "malformed", "reset", "slow"])
def test_recovers_from_each_fault_kind(make_emulator, fault, caplog):
    emu = make_emulator(slow_seconds=1.5)
    client = client_for(emu, timeout=(2.0, 0.5))
    want = count_klines(client_for(emu), pages=2)
    emu.reset_stats()
    emu.inject(fault, times=2, path="/fapi/v1/klines")
    caplog.set_level("WARNING", logger="binance_extractor.client")
    assert count_klines(client, pages=2) == want
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying /fapi/v1/klines")]
    assert len(retries) == 2  # both faulted requests were retried, then answered correctly


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.klines("NOPEUSDT", "5m", START, None), -1121),
        (lambda c: c.klines("BTCUSDT", "7m", START, None), -1120),
        (lambda c: c.klines("BTCUSDT", "5m", START, None, limit=2000), -1130),
        (lambda c: c.historical_trades("XRPETH", 2**32), -2015),
    ],
)
def test_fatal_errors_fail_at_once_with_the_exchange_code(emulator, call, code):
    client = client_for(emulator, api_key="wrong-key")
    with pytest.raises(FatalAPIError) as err:
        call(client)
    assert err.value.code == code and f"code {code}" in str(err.value)
    assert emulator.count(path="/fapi/v1/exchangeInfo") == 1  # the limit comes from exchangeInfo, asked once
    assert emulator.count() == 2  # and the failing request was not retried


def test_missing_api_key_is_input_error_and_key_is_never_shown(emulator, monkeypatch):
    monkeypatch.delenv("BINANCE_API_KEY")
    client = BinanceFuturesClient(emulator.url, None)
    with pytest.raises(InputError, match="API key"):
        client.historical_trades("XRPETH")
    assert emulator.count() == 0
    keyed = BinanceFuturesClient(emulator.url, "super-secret-key")
    assert "super-secret-key" not in repr(keyed)


def test_circuit_breaker_stops_hammering_a_failing_host(emulator):
    emulator.inject("503", times=100)
    client = client_for(emulator, breaker_fail_max=3, max_attempts=10, backoff_max=0.05)
    with pytest.raises(CircuitOpenError, match="circuit open"):
        client.klines("BTCUSDT", "5m", START, None, limit=10)
    assert emulator.count() == 3


def test_the_limit_comes_from_exchange_info_once_for_every_client_of_the_budget(make_emulator):
    emu = make_emulator(window_seconds=2, weight_limit=40)
    first, second = client_for(emu), client_for(emu)  # two processes' clients: same store, same budget
    first.klines("BTCUSDT", "5m", START, None, limit=10)
    assert first.limiter.rule.limit == 40 and first.limiter.rule.header == "X-MBX-USED-WEIGHT-2S"
    assert first.limiter.budget == 38  # x weight_margin 0.95
    second.klines("BTCUSDT", "5m", START, None, limit=10)
    assert second.limiter.rule == first.limiter.rule
    assert emu.count(path="/fapi/v1/exchangeInfo") == 1  # the second read it from the shared state


def test_a_new_process_paces_its_first_exchange_info_by_the_rule_another_process_learned(make_emulator, tmp_path):
    """Found by the simulation (docs/SIMULATION.md): a process's first request is exchangeInfo (symbol checks), and it
    was paced by the default 2400 / min even when the IP's shared budget already knew the exchange's real limit, so
    on an exchange whose limit differs it waited for the next window (or, with a lower limit, overspent)."""
    from binance_extractor.budget import SharedBudget
    from binance_extractor.budget.sqlite_store import SqliteBudgetStore
    from binance_extractor.ratelimit import WeightRule

    emu = make_emulator(weight_limit=24_000)
    start = 1_800_000_000.0  # one budget window, however long the test takes

    def never(seconds: float) -> None:
        raise AssertionError(f"the first exchangeInfo waited {seconds:.1f} s under the default 2400 / min")

    def shared(**kw) -> SharedBudget:
        return SharedBudget(SqliteBudgetStore(tmp_path / "budget.sqlite"), "ip", now=lambda: start, **kw)

    other = shared()
    other.set_rule(WeightRule.from_exchange_info({"rateLimits": emu.exchange_info()["rateLimits"]}))
    ticket = other.acquire(10)
    other.release(ticket, used=5_000)  # the IP used 5000 this window: over 2400, well under 24000
    client = BinanceFuturesClient(emu.url, budget=shared(sleep=never))
    try:
        client.exchange_info()
    finally:
        client.close()
    assert client.limiter.rule.limit == 24_000
    assert emu.count("/fapi/v1/exchangeInfo") == 1


def test_a_response_slower_than_the_read_timeout_is_retried_and_counted_once(make_emulator, monkeypatch):
    """``BINANCE_HTTP_READ_TIMEOUT``: a response that keeps the client waiting longer fails that attempt (the
    exchange still counted its weight) and the request is retried; the answer arrives once, exact."""
    emu = make_emulator(slow_seconds=1.5)
    monkeypatch.setenv("BINANCE_HTTP_READ_TIMEOUT", "0.4")
    monkeypatch.setenv("BINANCE_HTTP_BACKOFF_MAX", "0.05")
    client = BinanceFuturesClient.from_env()
    assert client.timeout == (0.4, 0.4)
    emu.inject("slow", times=1, path="/fapi/v1/klines")
    assert count_klines(client, pages=1) == 499
    deadline = time.monotonic() + 30  # the emulator records the slow request only when it has answered it
    while len(asked := [r for r in emu.requests if r.path == "/fapi/v1/klines"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted([r.fault or "" for r in asked]) == ["", "slow"]  # the slow one timed out; its retry was answered
    assert emu.count_418 == 0


@pytest.mark.parametrize("value", ["abc", "0", "-3"])
def test_a_read_timeout_that_is_not_a_positive_number_is_refused_in_one_line(monkeypatch, value):
    monkeypatch.setenv("BINANCE_HTTP_READ_TIMEOUT", value)
    with pytest.raises(InputError, match="BINANCE_HTTP_READ_TIMEOUT"):
        BinanceFuturesClient.from_env("http://127.0.0.1:9")
