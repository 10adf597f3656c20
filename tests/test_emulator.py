"""Quick tests of the offline exchange emulator itself, with plain ``requests`` over loopback."""

from __future__ import annotations

import http.client
import itertools
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from binance_extractor.clock import FixedClock
from tests.emulator import Emulator
from tests.emulator import data as D
from tests.fixtures.clock import pin_windows

FIX = D.FIXTURES
KL = "/fapi/v1/klines"
HOUR = 3_600_000
DAY = 86_400_000


def get(emu: Emulator, path: str, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
    return requests.get(emu.url + path, params=params, headers=headers, timeout=10)


def check_row(row: list[Any], interval: str) -> None:
    """A served kline must pass the library's validation rules."""
    assert len(row) == 12
    o, h, lo, c, v, qv, tb, tbq = (Decimal(row[i]) for i in (1, 2, 3, 4, 5, 7, 9, 10))
    assert all(isinstance(row[i], str) for i in (1, 2, 3, 4, 5, 7, 9, 10, 11))
    assert h >= max(o, c, lo) and lo <= min(o, c, h) and lo > 0
    assert v >= 0 and 0 <= tb <= v and qv >= 0 and 0 <= tbq <= qv
    assert isinstance(row[8], int) and row[8] >= 0
    assert row[6] == D.next_open(interval, row[0]) - 1


# ---------------------------------------------------------------------------- exchangeInfo, headers, keep-alive


def test_exchange_info_reflects_config(make_emulator: Any) -> None:
    emu = make_emulator(window_seconds=5, weight_limit=200)
    pin_windows(emu)
    r = get(emu, "/fapi/v1/exchangeInfo")
    info = r.json()
    assert r.headers["X-MBX-USED-WEIGHT-5S"] == "1"
    assert "X-MBX-USED-WEIGHT-1M" not in r.headers
    assert info["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "SECOND",
        "intervalNum": 5,
        "limit": 200,
    }
    assert any(x["rateLimitType"] == "ORDERS" for x in info["rateLimits"])
    syms = {s["symbol"]: s for s in info["symbols"]}
    assert syms["OLDUSDT"]["status"] == "SETTLING"
    assert syms["BTCUSDT"]["onboardDate"] == D.ms(2019, 9, 8)
    assert syms["SYNTHUSDT"]["onboardDate"] == D.ms(2024, 1, 1)
    assert syms["BTCUSDT"]["contractType"] == "PERPETUAL" and syms["BTCUSDT"]["status"] == "TRADING"
    for name in ("ETHUSDT", "1000PEPEUSDT", "INJUSDT", "XRPUSDT", "NEWUSDT"):
        assert name in syms
    assert time.time() * 1000 - syms["NEWUSDT"]["onboardDate"] < 11 * DAY


def test_default_exchange_info_minute_and_keep_alive(emulator: Emulator) -> None:
    pin_windows(emulator)
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    for expected in ("1", "2"):
        conn.request("GET", "/fapi/v1/exchangeInfo")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.getheader("X-MBX-USED-WEIGHT-1M") == expected  # same socket, two answers
    conn.close()
    assert body["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 2400,
    }


# ---------------------------------------------------------------------------- klines semantics


def test_klines_defaults_limits_and_weights(frozen_clock: FixedClock, emulator: Emulator) -> None:
    pin_windows(emulator)
    r = get(emulator, KL, symbol="BTCUSDT", interval="1m")
    rows = r.json()
    assert len(rows) == 500 and r.headers["X-MBX-USED-WEIGHT-1M"] == "5"
    now = frozen_clock.now_ms()  # the market's now, pinned: no race with a minute boundary
    assert rows[-1][0] <= now < rows[-1][6]  # the in-progress candle is included without start/end
    used = 5
    for limit, weight in ((99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10), (1500, 10)):
        r = get(emulator, KL, symbol="BTCUSDT", interval="1m", limit=limit, endTime=now - DAY)
        used += weight
        assert len(r.json()) == limit
        assert r.headers["X-MBX-USED-WEIGHT-1M"] == str(used)
    for bad in (0, 1501, -5):
        r = get(emulator, KL, symbol="BTCUSDT", interval="1m", limit=bad)
        assert r.status_code == 400 and r.json()["code"] in (-1130, -1100)
    assert get(emulator, KL, symbol="BTCUSDT", interval="1m", limit=1501).json()["code"] == -1130
    assert emulator.count(KL) == 12 and emulator.count(KL, status=400) == 4


def test_klines_filter_on_open_time(emulator: Emulator) -> None:
    base = D.ms(2024, 3, 1)
    # unaligned startTime: first candle opening at or after it
    rows = get(emulator, KL, symbol="ETHUSDT", interval="5m", startTime=base + 1, limit=3).json()
    assert [r[0] for r in rows] == [base + 300_000, base + 600_000, base + 900_000]
    # endTime equal to an open time includes that candle
    rows = get(emulator, KL, symbol="ETHUSDT", interval="5m", startTime=base, endTime=base + 600_000).json()
    assert [r[0] for r in rows] == [base, base + 300_000, base + 600_000]
    # only endTime: the latest `limit` opening <= endTime
    rows = get(emulator, KL, symbol="ETHUSDT", interval="1h", endTime=base + 1, limit=4).json()
    assert [r[0] for r in rows] == [base - 3 * HOUR, base - 2 * HOUR, base - HOUR, base]
    # only startTime: the first `limit` from startTime
    rows = get(emulator, KL, symbol="ETHUSDT", interval="1h", startTime=base, limit=1500).json()
    assert len(rows) == 1500 and rows[0][0] == base and rows[-1][0] == base + 1499 * HOUR
    # before listing: nothing before onboardDate
    rows = get(emulator, KL, symbol="SYNTHUSDT", interval="1d", startTime=0, limit=2).json()
    assert rows[0][0] == D.ms(2024, 1, 1)
    assert get(emulator, KL, symbol="SYNTHUSDT", interval="1d", endTime=D.ms(2023, 12, 31)).json() == []
    r = get(emulator, KL, symbol="ETHUSDT", interval="1h", startTime=base + 1, endTime=base)
    assert r.status_code == 400


def test_klines_consistency_all_intervals(emulator: Emulator) -> None:
    for symbol in ("BTCUSDT", "1000PEPEUSDT", "OPUSDT", "NEWUSDT"):
        for interval in D.INTERVALS:
            rows = get(emulator, KL, symbol=symbol, interval=interval, limit=200).json()
            assert rows, (symbol, interval)
            for a, b in itertools.pairwise(rows):
                assert b[0] == D.next_open(interval, a[0])
            for row in rows[:-1]:
                check_row(row, interval)
            if interval == "1w":
                assert all(datetime.fromtimestamp(r[0] / 1000, UTC).weekday() == 0 for r in rows)
            if interval == "1M":
                assert all(datetime.fromtimestamp(r[0] / 1000, UTC).day == 1 for r in rows)
    d1 = get(emulator, KL, symbol="BTCUSDT", interval="1d", limit=30).json()
    assert all(Decimal(r[7]) > 10**10 for r in d1[:-1])
    assert all(len(r[1].split(".")[1]) == 2 for r in d1)
    pepe = get(emulator, KL, symbol="1000PEPEUSDT", interval="1h", limit=5).json()
    assert all(len(r[4].split(".")[1]) == 7 and Decimal(r[4]) < 1 for r in pepe)
    new = get(emulator, KL, symbol="NEWUSDT", interval="1d", startTime=0, limit=1500).json()
    assert 10 <= len(new) <= 12


def test_candles_are_deterministic_and_continuous(emulator: Emulator, make_emulator: Any) -> None:
    other = make_emulator()
    params: dict[str, Any] = {"symbol": "SOLUSDT", "interval": "15m", "startTime": D.ms(2023, 2, 1), "limit": 1000}
    a = get(emulator, KL, **params)
    b = get(other, KL, **params)
    assert a.content == b.content
    rows = a.json()
    assert all(x[4] == y[1] for x, y in itertools.pairwise(rows))  # close == next open
    h1 = get(emulator, KL, symbol="SOLUSDT", interval="1h", startTime=D.ms(2023, 2, 1), limit=10).json()
    assert [r[1] for r in h1] == [r[1] for r in rows[0:40:4]]  # opens agree across intervals


def test_delisted_symbol_stops(emulator: Emulator) -> None:
    rows = get(emulator, KL, symbol="OLDUSDT", interval="1d", limit=5).json()
    assert rows[-1][0] == D.ms(2023, 5, 31)
    assert get(emulator, KL, symbol="OLDUSDT", interval="1d", startTime=D.ms(2023, 6, 1)).json() == []


def test_klines_rows_matches_rest(emulator: Emulator) -> None:
    start, end = D.ms(2024, 5, 1), D.ms(2024, 5, 9)
    rows = emulator.klines_rows("BNBUSDT", "5m", start, end)
    assert len(rows) == 8 * 288 + 1
    rest: list[Any] = []
    cursor = start
    while cursor <= end:
        page = get(emulator, KL, symbol="BNBUSDT", interval="5m", startTime=cursor, endTime=end, limit=1500).json()
        if not page:
            break
        rest += page
        cursor = page[-1][0] + 300_000
    assert rest == rows
    now = int(time.time() * 1000)
    recent = emulator.klines_rows("BNBUSDT", "1h", now - 5 * HOUR, now)
    assert recent and all(r[6] < time.time() * 1000 for r in recent)
    assert emulator.klines_rows("BNBUSDT", "1h", now - 5 * HOUR, now, include_open=True)[-1][6] >= now


# ---------------------------------------------------------------------------- in-progress candle, outages


def test_in_progress_candle_changes_and_closes(make_emulator: Any) -> None:
    clock = [D.ms(2025, 3, 3, 10) + 125_000]  # 2 min 5 s into a 5m candle
    emu = make_emulator(clock=lambda: clock[0])
    first = get(emu, KL, symbol="BTCUSDT", interval="5m", limit=3).json()
    clock[0] += 1000
    second = get(emu, KL, symbol="BTCUSDT", interval="5m", limit=3).json()
    assert first[:2] == second[:2]  # closed candles never change
    live1, live2 = first[-1], second[-1]
    assert live1[0] == live2[0] == D.ms(2025, 3, 3, 10) and live1[6] > clock[0]
    assert live1 != live2 and live1[5] != live2[5]
    check_row(live1, "5m")
    clock[0] = D.ms(2025, 3, 3, 10) + 300_000 + 10  # the candle has closed
    closed = get(emu, KL, symbol="BTCUSDT", interval="5m", limit=3).json()
    assert closed[-2][0] == live1[0] and closed[-2] != live1
    assert closed[-2] == emu.klines_rows("BTCUSDT", "5m", live1[0], live1[0])[0]
    assert emu.klines_rows("BTCUSDT", "5m", live1[0] + 300_000, live1[0] + 300_000) == []


def test_outage_is_a_hole(emulator: Emulator) -> None:
    s, e = D.ms(2024, 2, 1, 10), D.ms(2024, 2, 1, 12) - 1
    before = get(emulator, KL, symbol="BTCUSDT", interval="5m", startTime=s - HOUR, endTime=e + HOUR).json()
    emulator.add_outage("BTCUSDT", s, e)
    rows = get(emulator, KL, symbol="BTCUSDT", interval="5m", startTime=s - HOUR, endTime=e + HOUR).json()
    assert len(rows) == len(before) - 24
    assert not [r for r in rows if s <= r[0] <= e]
    assert rows == [r for r in before if not s <= r[0] <= e]
    # backwards (endTime only) skips the hole too
    back = get(emulator, KL, symbol="BTCUSDT", interval="1h", endTime=e + HOUR, limit=4).json()
    assert [r[0] for r in back] == [s - 3 * HOUR, s - 2 * HOUR, s - HOUR, e + 1]
    assert emulator.klines_rows("BTCUSDT", "1m", s, e) == []
    assert get(emulator, KL, symbol="ETHUSDT", interval="5m", startTime=s, endTime=e).json()  # other symbols intact


def test_an_outage_published_late_is_served_from_its_publication_on(make_emulator: Any) -> None:
    s, e = D.ms(2024, 2, 1, 10), D.ms(2024, 2, 1, 11) - 1
    market = FixedClock(D.ms(2024, 2, 1, 11) + 5 * 60_000)
    emu = make_emulator(clock=market)
    full = get(emu, KL, symbol="BTCUSDT", interval="5m", startTime=s, endTime=e).json()
    emu.add_outage("BTCUSDT", s, e, publish_at_ms=D.ms(2024, 2, 1, 11) + 30 * 60_000)
    assert get(emu, KL, symbol="BTCUSDT", interval="5m", startTime=s, endTime=e).json() == []
    assert emu.funding_rows("BTCUSDT", s, e) == [] and emu.klines_rows("BTCUSDT", "1h", s, e) == []
    market.set(D.ms(2024, 2, 1, 11) + 30 * 60_000)  # published: the same request now gets every candle (no stale cache)
    assert get(emu, KL, symbol="BTCUSDT", interval="5m", startTime=s, endTime=e).json() == full
    assert len(emu.klines_rows("BTCUSDT", "1h", s, e)) == 1
    emu.clear_outages()
    assert emu.publish_at == {}


def test_an_injected_429_fills_the_window_for_a_second_and_strikes_count(make_emulator: Any) -> None:
    emu = make_emulator(ban_seconds=30)
    windows = pin_windows(emu)
    emu.inject("429", path=KL)
    assert get(emu, "/fapi/v1/ping").status_code == 200  # another path: not this fault
    r = get(emu, KL, symbol="BTCUSDT", interval="1m", limit=1)
    assert r.status_code == 429 and r.json()["code"] == -1003 and r.headers["Retry-After"] == "1"
    windows.advance(1.0)  # a client that waited Retry-After is served, and its strikes are forgotten
    assert [get(emu, "/fapi/v1/ping").status_code for _ in range(4)] == [200] * 4
    emu.inject("429", path=KL)
    assert get(emu, KL, symbol="BTCUSDT", interval="1m", limit=1).status_code == 429
    statuses = [get(emu, "/fapi/v1/ping").status_code for _ in range(3)]  # one that did not wait is banned
    assert statuses == [429, 429, 418] and emu.count_418 == 1


def test_kline_override(emulator: Emulator) -> None:
    t = D.ms(2024, 2, 1)
    row = get(emulator, KL, symbol="BTCUSDT", interval="1h", startTime=t, limit=1).json()[0]
    changed = [*row[:4], "1.00", *row[5:]]
    changed[2] = max(changed[2], "1.00")
    emulator.set_kline_override("BTCUSDT", "1h", t, changed)
    assert get(emulator, KL, symbol="BTCUSDT", interval="1h", startTime=t, limit=1).json()[0] == changed
    emulator.set_kline_override("BTCUSDT", "1h", t, None)
    assert get(emulator, KL, symbol="BTCUSDT", interval="1h", startTime=t, limit=1).json()[0] == row


# ---------------------------------------------------------------------------- real data


def test_xrpusdt_equals_fixture(emulator: Emulator) -> None:
    for interval, name in (("5m", "XRPUSDT-5m-ohlcv.json"), ("1h", "XRPUSDT-1h-ohlcv.json")):
        fixture = json.loads((FIX / name).read_text())
        served: list[Any] = []
        cursor = 0
        while True:
            page = get(emulator, KL, symbol="XRPUSDT", interval=interval, startTime=cursor, limit=1500).json()
            if not page:
                break
            served += page
            cursor = page[-1][0] + 1
        assert [r[:6] for r in served] == fixture
        for r in served:
            check_row(r, interval)
    m5 = emulator.klines_rows("XRPUSDT", "5m", 0, 2**62)
    m15 = emulator.klines_rows("XRPUSDT", "15m", 0, 2**62)
    assert len(m15) == len(m5) // 3
    for r in m15:
        parts = [x for x in m5 if r[0] <= x[0] <= r[6]]
        assert r[1] == parts[0][1] and r[4] == parts[-1][4]
        assert Decimal(r[5]) == sum(Decimal(x[5]) for x in parts)
        check_row(r, "15m")
    assert get(emulator, KL, symbol="XRPUSDT", interval="1d").json() == []
    funding = get(emulator, "/fapi/v1/fundingRate", symbol="XRPUSDT", startTime=0, limit=1000).json()
    raw = json.loads((FIX / "XRPUSDT-funding.json").read_text())
    assert [[f["fundingTime"], f["fundingRate"]] for f in funding] == raw
    assert all(Decimal(f["markPrice"]) > 0 for f in funding)


def test_trades_ids_and_same_millisecond(emulator: Emulator) -> None:
    raw = json.loads((FIX / "XRPETH-trades.json").read_text())
    key = {"X-MBX-APIKEY": "test-key"}
    trades: list[Any] = []
    from_id = 0
    while True:
        r = get(emulator, "/fapi/v1/historicalTrades", headers=key, symbol="XRPETH", fromId=from_id, limit=500)
        page = r.json()
        assert r.headers["X-MBX-USED-WEIGHT-1M"]
        if not page:
            break
        trades += page
        from_id = page[-1]["id"] + 1
    assert len(trades) == len(raw) == 12477
    assert all(t["id"] > 2**32 for t in trades)
    assert [t["id"] - 2**32 for t in trades] == [x[1] for x in raw]
    times = [t["time"] for t in trades]
    assert len(times) - len(set(times)) > 900
    first = trades[0]
    assert Decimal(first["quoteQty"]) == Decimal(first["price"]) * Decimal(first["qty"])
    assert first["isBuyerMaker"] is (raw[0][2] == "sell")
    recent = get(emulator, "/fapi/v1/trades", symbol="XRPETH", limit=10).json()
    assert recent == trades[-10:]
    # agg trades cover every trade exactly once, ids offset too, same-ms groups intact
    aggs: list[Any] = []
    from_id = 0
    while True:
        page = get(emulator, "/fapi/v1/aggTrades", symbol="XRPETH", fromId=from_id, limit=1000).json()
        if not page:
            break
        aggs += page
        from_id = page[-1]["a"] + 1
    assert all(a["a"] > 2**32 for a in aggs)
    covered = [i for a in aggs for i in range(a["f"], a["l"] + 1)]
    assert covered == [t["id"] for t in trades]
    by_id = {t["id"]: t for t in trades}
    for a in aggs:
        parts = [by_id[i] for i in range(a["f"], a["l"] + 1)]
        assert {(p["time"], p["price"], p["isBuyerMaker"]) for p in parts} == {(a["T"], a["p"], a["m"])}
        assert Decimal(a["q"]) == sum(Decimal(p["qty"]) for p in parts)
    agg_times = [a["T"] for a in aggs]
    assert len(agg_times) > len(set(agg_times))
    t0 = trades[100]["time"]
    window = get(emulator, "/fapi/v1/aggTrades", symbol="XRPETH", startTime=t0, endTime=t0 + HOUR - 1).json()
    assert window and all(t0 <= a["T"] < t0 + HOUR for a in window)


def test_trade_endpoint_errors(emulator: Emulator) -> None:
    pin_windows(emulator)
    r = get(emulator, "/fapi/v1/historicalTrades", symbol="XRPETH")
    assert r.status_code == 401 and r.json()["code"] == -2014
    r = get(emulator, "/fapi/v1/historicalTrades", headers={"X-MBX-APIKEY": "nope"}, symbol="XRPETH")
    assert r.status_code == 401 and r.json()["code"] == -2015
    assert emulator.requests[-1].api_key_present and not emulator.requests[-2].api_key_present
    r = get(emulator, "/fapi/v1/aggTrades", symbol="XRPETH", startTime=0, endTime=HOUR)
    assert r.status_code == 400 and r.json() == {
        "code": -1127,
        "msg": "More than 1 hours between startTime and endTime.",
    }
    r = get(emulator, "/fapi/v1/aggTrades", symbol="XRPETH", limit=1001)
    assert r.json()["code"] == -1130
    # every answered request costs its weight, errors included: 4 x 20 so far
    assert get(emulator, "/fapi/v1/aggTrades", symbol="XRPETH").headers["X-MBX-USED-WEIGHT-1M"] == "100"


# ---------------------------------------------------------------------------- funding, premium index


def test_funding_long_history(emulator: Emulator) -> None:
    end = D.ms(2025, 11, 1)
    start = end - 365 * DAY
    rows: list[Any] = []
    cursor = start
    while True:
        page = get(emulator, "/fapi/v1/fundingRate", symbol="BTCUSDT", startTime=cursor, endTime=end, limit=1000)
        page_rows = page.json()
        if not page_rows:
            break
        rows += page_rows
        cursor = page_rows[-1]["fundingTime"] + 1
    assert len(rows) > 1000
    times = [r["fundingTime"] for r in rows]
    assert times == sorted(set(times)) and start <= times[0] and times[-1] <= end
    gaps = {round((b - a) / HOUR) for a, b in itertools.pairwise(times)}
    assert {8, 4, 1} <= gaps
    assert any(t % 1000 for t in times)  # millisecond jitter
    assert all(Decimal(r["markPrice"]) > 1000 and Decimal(r["fundingRate"]) < 1 for r in rows)
    latest = get(emulator, "/fapi/v1/fundingRate", symbol="BTCUSDT").json()
    assert len(latest) == 100 and latest[-1]["fundingTime"] <= time.time() * 1000
    assert get(emulator, "/fapi/v1/fundingRate", symbol="BTCUSDT", limit=1001).json()["code"] == -1130
    emulator.add_outage("BTCUSDT", times[10], times[20])
    again = get(emulator, "/fapi/v1/fundingRate", symbol="BTCUSDT", startTime=start, endTime=end, limit=30).json()
    assert [r["fundingTime"] for r in again] == times[:10] + times[21:41]


def test_funding_separate_limit(make_emulator: Any) -> None:
    emu = make_emulator(funding_limit=3, funding_window_seconds=3600)
    codes = [get(emu, "/fapi/v1/fundingRate", symbol="ETHUSDT").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_premium_index(emulator: Emulator) -> None:
    pin_windows(emulator)
    one = get(emulator, "/fapi/v1/premiumIndex", symbol="BTCUSDT").json()
    assert set(one) == {
        "symbol",
        "markPrice",
        "indexPrice",
        "estimatedSettlePrice",
        "lastFundingRate",
        "interestRate",
        "nextFundingTime",
        "time",
    }
    assert one["nextFundingTime"] > one["time"] and Decimal(one["markPrice"]) > 0
    every = get(emulator, "/fapi/v1/premiumIndex")
    assert len(every.json()) == len(emulator.symbols) and every.headers["X-MBX-USED-WEIGHT-1M"] == "11"


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "NOPEUSDT", "interval": "5m"}, -1121),
        ({"symbol": "BTCUSDT", "interval": "7m"}, -1120),
        ({"symbol": "BTCUSDT", "interval": "5m", "limit": 2000}, -1130),
        ({"interval": "5m"}, -1102),
        ({"symbol": "BTCUSDT"}, -1102),
        ({"symbol": "BTCUSDT", "interval": "5m", "startTime": "abc"}, -1100),
        ({"symbol": "btc usdt", "interval": "5m"}, -1100),
    ],
)
def test_error_codes(emulator: Emulator, params: dict[str, Any], code: int) -> None:
    r = get(emulator, KL, **params)
    assert r.status_code == 400
    assert r.json()["code"] == code and r.json()["msg"]
    assert r.headers["X-MBX-USED-WEIGHT-1M"]


def test_unknown_path_and_archive_without_handler(frozen_clock: FixedClock, emulator: Emulator) -> None:
    assert get(emulator, "/fapi/v9/nothing").status_code == 404
    r = get(emulator, "/archive/data/futures/um/daily/klines/NOPE/5m/nothing-here.zip")
    assert r.status_code == 404
    assert emulator.requests[-1].weight == 0 and emulator.requests[-1].path.startswith("/archive/")
    assert get(emulator, "/fapi/v1/ping").json() == {}
    assert get(emulator, "/fapi/v1/time").json()["serverTime"] == frozen_clock.now_ms()


# ---------------------------------------------------------------------------- weight, 429, 418


def test_429_then_418_for_a_client_ignoring_it(make_emulator: Any) -> None:
    emu = make_emulator(window_seconds=3600, weight_limit=50, ban_seconds=30)
    pin_windows(emu)  # an hour window would otherwise roll mid-test at hh:59:59
    statuses = []
    for _ in range(5):  # weight 10 each: 50 used
        r = get(emu, KL, symbol="BTCUSDT", interval="1m", limit=1500)
        statuses.append(r.status_code)
        assert r.headers["X-MBX-USED-WEIGHT-1H"]
    assert statuses == [200] * 5 and emu.max_used_weight == 50
    r = get(emu, KL, symbol="BTCUSDT", interval="1m", limit=1500)
    assert r.status_code == 429 and r.json()["code"] == -1003
    assert int(r.headers["Retry-After"]) >= 1 and r.headers["X-MBX-USED-WEIGHT-1H"] == "50"
    assert [get(emu, "/fapi/v1/ping").status_code for _ in range(2)] == [429, 429]  # tolerated
    r = get(emu, "/fapi/v1/ping")
    assert r.status_code == 418 and "banned until" in r.json()["msg"] and r.json()["code"] == -1003
    assert 25 <= int(r.headers["Retry-After"]) <= 30
    assert get(emu, "/fapi/v1/time").status_code == 418
    assert emu.count_429 == 3 and emu.count_418 == 2 and emu.max_used_weight == 50
    assert [rec.status for rec in emu.requests][-6:] == [200, 429, 429, 429, 418, 418]
    emu.reset_limits()
    assert get(emu, "/fapi/v1/ping").status_code == 200
    emu.reset_stats()
    assert emu.count() == 0 and emu.max_used_weight == 0


def test_ban_expires_and_strikes_reset(make_emulator: Any) -> None:
    emu = make_emulator(window_seconds=3600, weight_limit=2, ban_seconds=1, tolerated_after_429=0)
    windows = pin_windows(emu)
    assert [get(emu, "/fapi/v1/ping").status_code for _ in range(4)] == [200, 200, 429, 418]
    r = get(emu, "/fapi/v1/ping")
    assert r.status_code == 418 and r.headers["Retry-After"] == "1"
    windows.advance(1.05)
    emu.weight_limit = 100
    assert [get(emu, "/fapi/v1/ping").status_code for _ in range(3)] == [200, 200, 200]
    emu.reset_stats()
    assert emu.count() == 0 and emu.max_used_weight == 0


def test_window_rolls_over(fast_limits_emulator: Emulator) -> None:
    emu = fast_limits_emulator
    windows = pin_windows(emu)  # the burst stays inside one window however slow the machine is
    past = D.ms(2024, 1, 1)  # closed candles: the page is generated once, then served from the cache
    for _ in range(20):
        assert get(emu, KL, symbol="BTCUSDT", interval="1m", limit=1500, endTime=past).status_code == 200
    r = get(emu, KL, symbol="BTCUSDT", interval="1m", limit=1500, endTime=past)
    assert r.status_code == 429 and r.headers["X-MBX-USED-WEIGHT-5S"] == "200"
    windows.advance(int(r.headers["Retry-After"]))
    r = get(emu, "/fapi/v1/ping")
    assert r.status_code == 200 and r.headers["X-MBX-USED-WEIGHT-5S"] == "1"
    assert emu.max_used_weight == 200 and emu.count_418 == 0


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["502", "503", "504"])
def test_proxy_faults(emulator: Emulator, kind: str) -> None:
    emulator.inject(kind, times=2, path=KL)
    assert get(emulator, "/fapi/v1/ping").status_code == 200  # other paths unaffected
    for _ in range(2):
        r = get(emulator, KL, symbol="BTCUSDT", interval="5m", limit=2)
        assert r.status_code == int(kind)
        with pytest.raises(ValueError):
            r.json()
    assert get(emulator, KL, symbol="BTCUSDT", interval="5m", limit=2).status_code == 200
    assert [rec.fault for rec in emulator.requests] == [None, kind, kind, None]


def test_internal_error_fault(emulator: Emulator) -> None:
    emulator.inject("-1001")
    r = get(emulator, "/fapi/v1/time")
    assert r.status_code == 503 and r.json()["code"] == -1001
    assert get(emulator, "/fapi/v1/time").status_code == 200


def test_truncated_and_malformed(emulator: Emulator) -> None:
    full = get(emulator, KL, symbol="BTCUSDT", interval="5m", endTime=D.ms(2024, 1, 1), limit=50).content
    emulator.inject("truncated")
    r = get(emulator, KL, symbol="BTCUSDT", interval="5m", endTime=D.ms(2024, 1, 1), limit=50)
    assert r.status_code == 200 and r.content == full[: len(full) // 2]
    assert int(r.headers["Content-Length"]) == len(r.content)
    with pytest.raises(ValueError):
        r.json()
    emulator.inject("malformed")
    r = get(emulator, KL, symbol="BTCUSDT", interval="5m", limit=50)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    assert get(emulator, KL, symbol="BTCUSDT", interval="5m", endTime=D.ms(2024, 1, 1), limit=50).content == full


def test_slow_and_reset(emulator: Emulator) -> None:
    emulator.slow_seconds = 0.6
    emulator.inject("slow")
    t0 = time.monotonic()
    assert get(emulator, "/fapi/v1/ping").status_code == 200
    assert time.monotonic() - t0 >= 0.6
    with pytest.raises(requests.ReadTimeout):
        emulator.inject("slow")
        requests.get(emulator.url + "/fapi/v1/ping", timeout=0.2)
    emulator.inject("reset")
    with pytest.raises(requests.ConnectionError):
        get(emulator, "/fapi/v1/ping")
    assert get(emulator, "/fapi/v1/ping").status_code == 200
    assert emulator.count(status=0) == 1
    with pytest.raises(ValueError):
        emulator.inject("teapot")


def test_latency(make_emulator: Any) -> None:
    emu = make_emulator(latency=0.05)
    session = requests.Session()
    t0 = time.monotonic()
    for _ in range(4):
        assert session.get(emu.url + "/fapi/v1/ping", timeout=5).status_code == 200
    assert time.monotonic() - t0 >= 0.2


def test_served_rows_pass_library_validation(emulator: Emulator) -> None:
    from binance_extractor.models import AggTrade, FundingRate, Kline, Trade

    for symbol in ("BTCUSDT", "1000PEPEUSDT", "XRPUSDT", "SYNTHUSDT"):
        for interval in ("1m", "5m", "15m", "30m", "1h", "1d", "1w", "1M"):
            for row in emulator.klines_rows(symbol, interval, D.ms(2021, 11, 15), D.ms(2021, 11, 15) + 1000 * 60_000):
                Kline.from_rest(symbol, interval, row)
            for row in get(emulator, KL, symbol=symbol, interval=interval, limit=300).json()[:-1]:
                Kline.from_rest(symbol, interval, row)
        for f in get(emulator, "/fapi/v1/fundingRate", symbol=symbol, limit=1000).json():
            FundingRate.from_rest(f)
    for t in get(emulator, "/fapi/v1/trades", symbol="XRPETH", limit=1000).json():
        Trade.from_rest("XRPETH", t)
    for a in get(emulator, "/fapi/v1/aggTrades", symbol="XRPETH", limit=1000).json():
        AggTrade.from_rest("XRPETH", a)


def test_synthetic_trades_contiguous(emulator: Emulator) -> None:
    start = D.ms(2024, 3, 1)
    aggs: list[Any] = []
    for hour in range(3):  # time-window pagination, one hour per request as Binance requires
        lo = start + hour * HOUR
        cursor = lo
        while cursor < lo + HOUR:
            page = get(emulator, "/fapi/v1/aggTrades", symbol="SYNTHUSDT", startTime=cursor, endTime=lo + HOUR - 1)
            rows = page.json()
            assert page.status_code == 200
            if not rows:
                break
            aggs += rows
            cursor = rows[-1]["T"] + 1
    ids = [a["a"] for a in aggs]
    assert ids == list(range(ids[0], ids[0] + len(ids))) and ids[0] > 2**32
    assert len(aggs) == 3 * 720
    times = [a["T"] for a in aggs]
    assert times == sorted(times) and len(times) - len(set(times)) > 50
    key = {"X-MBX-APIKEY": "test-key"}
    hist = get(emulator, "/fapi/v1/historicalTrades", headers=key, symbol="SYNTHUSDT", fromId=aggs[0]["f"], limit=500)
    trades = hist.json()
    assert [t["id"] for t in trades] == [a["f"] for a in aggs[:500]]
    assert all(Decimal(t["quoteQty"]) == Decimal(t["price"]) * Decimal(t["qty"]) for t in trades)
    recent = get(emulator, "/fapi/v1/trades", symbol="SYNTHUSDT", limit=7).json()
    assert len(recent) == 7 and recent[-1]["time"] <= time.time() * 1000
    assert [t["id"] for t in recent] == list(range(recent[0]["id"], recent[0]["id"] + 7))
    back = get(emulator, "/fapi/v1/aggTrades", symbol="SYNTHUSDT", endTime=aggs[99]["T"], limit=10).json()
    assert back[-1]["T"] <= aggs[99]["T"] and len(back) == 10


def test_stop_hangs_up_kept_alive_connections() -> None:
    emu = Emulator().start()
    session = requests.Session()
    assert session.get(emu.url + "/fapi/v1/ping", timeout=5).status_code == 200
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(emu.url + "/fapi/v1/ping", timeout=5)
