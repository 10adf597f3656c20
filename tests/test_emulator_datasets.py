"""The emulator's mark/index/premium klines and open interest (tests/emulator/datasets.py), over loopback."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests

from binance_extractor.clock import FixedClock
from tests.emulator import Emulator
from tests.emulator import data as D
from tests.emulator import datasets as DS
from tests.fixtures.clock import pin_windows

MARK, INDEX, PREMIUM = "/fapi/v1/markPriceKlines", "/fapi/v1/indexPriceKlines", "/fapi/v1/premiumIndexKlines"
OI = "/futures/data/openInterestHist"


def get(emu: Emulator, path: str, **params: Any) -> requests.Response:
    return requests.get(emu.url + path, params=params, timeout=10)


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator], frozen_clock: FixedClock) -> Emulator:
    return make_emulator()


@pytest.mark.parametrize(("path", "param"), [(MARK, "symbol"), (INDEX, "pair"), (PREMIUM, "symbol")])
def test_price_klines_shape_and_weight(emu: Emulator, path: str, param: str) -> None:
    for limit, weight in ((99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10)):
        emu.reset_limits()
        r = get(emu, path, **{param: "BTCUSDT"}, interval="5m", limit=limit)
        assert r.status_code == 200, r.text
        assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) == weight
        rows = r.json()
        assert len(rows) == limit
    now = emu.now_ms()
    for row in rows:
        assert len(row) == 12 and row[6] == row[0] + 5 * D.MINUTE - 1
        assert [row[5], row[7], row[9], row[10], row[11]] == ["0"] * 5
        o, h, lo, c = (Decimal(x) for x in row[1:5])
        assert h >= max(o, c, lo) and lo <= min(o, c)
        assert all(len(x.split(".")[1]) == 8 for x in row[1:5])
        if path != PREMIUM:
            assert lo > 0
    assert rows[-1][6] >= now > rows[-2][6]  # the live candle is served, as by /fapi/v1/klines
    trade = get(emu, "/fapi/v1/klines", symbol="BTCUSDT", interval="5m", limit=1001).json()
    assert [r[0] for r in trade] == [r[0] for r in rows]  # the same candles open at the same times


def test_index_takes_pair_not_symbol(emu: Emulator) -> None:
    r = get(emu, INDEX, symbol="BTCUSDT", interval="1h")
    assert r.status_code == 400 and r.json()["code"] == -1102 and "'pair'" in r.json()["msg"]
    r = get(emu, MARK, pair="BTCUSDT", interval="1h")
    assert r.status_code == 400 and r.json()["code"] == -1102
    assert get(emu, INDEX, pair="NOPEUSDT", interval="1h").json()["code"] == -1121
    assert get(emu, MARK, symbol="BTCUSDT", interval="7m").json()["code"] == -1120
    assert get(emu, MARK, symbol="BTCUSDT", interval="1h", limit=1501).json()["code"] == -1130


def test_price_kline_bounds_and_paging_agree(emu: Emulator) -> None:
    """startTime/endTime filter by open time; pages of any size join into the archive's rows exactly."""
    lo = D.ms(2026, 11, 28)
    hi = lo + D.DAY - 1
    whole = DS.price_rows(emu, "mark", "ETHUSDT", "5m", lo, hi)
    assert len(whole) == 288
    got: list[list[Any]] = []
    cursor = lo
    while cursor <= hi:
        page = get(emu, MARK, symbol="ETHUSDT", interval="5m", startTime=cursor, endTime=hi, limit=100).json()
        got += page
        if len(page) < 100:
            break
        cursor = page[-1][0] + 5 * D.MINUTE
    assert got == whole
    assert get(emu, MARK, symbol="ETHUSDT", interval="5m", startTime=lo + 1, endTime=lo + 5 * D.MINUTE).json() == [
        whole[1]
    ]
    emu.add_outage("ETHUSDT", lo + D.HOUR, lo + 2 * D.HOUR - 1)
    holed = get(emu, PREMIUM, symbol="ETHUSDT", interval="5m", startTime=lo, endTime=hi, limit=1500).json()
    assert len(holed) == 288 - 12


def test_open_interest_rows_horizon_and_anchor(emu: Emulator) -> None:
    now = emu.now_ms()
    r = get(emu, OI, symbol="BTCUSDT", period="5m")
    assert r.status_code == 200 and int(r.headers["X-MBX-USED-WEIGHT-1M"]) == 0
    rows = r.json()
    assert len(rows) == 30  # default limit
    assert rows[-1]["timestamp"] == now - now % (5 * D.MINUTE)
    assert set(rows[0]) == {"symbol", "sumOpenInterest", "sumOpenInterestValue", "CMCCirculatingSupply", "timestamp"}
    assert all(isinstance(x["timestamp"], int) for x in rows)
    assert Decimal(rows[0]["sumOpenInterest"]) > 0 and Decimal(rows[0]["sumOpenInterestValue"]) > 0
    # end-anchored: between the bounds, the most recent `limit` rows
    lo, hi = now - 2 * D.DAY, now - D.DAY
    page = get(emu, OI, symbol="BTCUSDT", period="1h", startTime=lo, endTime=hi, limit=5).json()
    assert [x["timestamp"] for x in page] == [hi - hi % D.HOUR - i * D.HOUR for i in range(4, -1, -1)]
    # the 30-day horizon
    edge = now - DS.OI_HORIZON_MS
    ok = get(emu, OI, symbol="BTCUSDT", period="5m", startTime=edge, limit=500).json()
    assert ok[0]["timestamp"] >= edge
    bad = get(emu, OI, symbol="BTCUSDT", period="5m", startTime=edge - 1)
    assert bad.status_code == 400 and bad.json() == {"code": -1130, "msg": "parameter 'startTime' is invalid."}
    assert get(emu, OI, symbol="BTCUSDT", period="5m", endTime=edge - 1).status_code == 400
    assert get(emu, OI, symbol="BTCUSDT", period="3m").json()["code"] == -1130
    assert get(emu, OI, symbol="BTCUSDT", period="5m", limit=501).json()["code"] == -1130
    assert get(emu, OI, period="5m").json()["code"] == -1102


def test_open_interest_has_its_own_request_limit(emu: Emulator) -> None:
    pin_windows(emu)
    emu.oi_limit = 3  # type: ignore[attr-defined]
    statuses = [get(emu, OI, symbol="BTCUSDT", period="5m", limit=1).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = get(emu, OI, symbol="BTCUSDT", period="5m", limit=1)
    assert r.json()["code"] == -1003 and int(r.headers["Retry-After"]) >= 1
    assert get(emu, MARK, symbol="BTCUSDT", interval="5m", limit=1).status_code == 200  # the weight budget is apart
    emu.reset_limits()
    assert get(emu, OI, symbol="BTCUSDT", period="5m", limit=1).status_code == 200


def _unzip(body: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        return zf.read(zf.namelist()[0]).decode()


@pytest.mark.parametrize(("folder", "kind"), list(DS.ARCHIVE_DIRS.items()))
def test_price_kline_archive_matches_rest(emu: Emulator, folder: str, kind: str) -> None:
    base = f"{emu.archive_url}/data/futures/um/daily/{folder}/BTCUSDT/1h/BTCUSDT-1h-2026-11-30.zip"
    body = requests.get(base, timeout=10).content
    digest, name = requests.get(base + ".CHECKSUM", timeout=10).text.split()
    assert digest == hashlib.sha256(body).hexdigest() and name == "BTCUSDT-1h-2026-11-30.zip"
    lines = _unzip(body).splitlines()
    assert lines[0].startswith("open_time,open,high,low,close,volume,close_time")
    lo = D.ms(2026, 11, 30)
    rest = DS.price_rows(emu, kind, "BTCUSDT", "1h", lo, lo + D.DAY - 1)
    assert len(lines) == 25
    first = lines[1].split(",")
    assert int(first[0]) == rest[0][0] * 1000 and first[1:6] == rest[0][1:6]  # microseconds from 2025
    monthly = f"{emu.archive_url}/data/futures/um/monthly/{folder}/BTCUSDT/1h/BTCUSDT-1h-2026-11.zip"
    assert requests.get(monthly, timeout=10).status_code == 200
    today = f"{emu.archive_url}/data/futures/um/daily/{folder}/BTCUSDT/1h/BTCUSDT-1h-2026-12-01.zip"
    assert requests.get(today, timeout=10).status_code == 404  # published the next day


def test_metrics_archive_matches_rest_open_interest(emu: Emulator) -> None:
    url = f"{emu.archive_url}/data/futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-2026-11-29.zip"
    body = requests.get(url, timeout=10).content
    assert requests.get(url + ".CHECKSUM", timeout=10).text.split()[0] == hashlib.sha256(body).hexdigest()
    lines = _unzip(body).splitlines()
    assert lines[0] == DS.METRICS_HEADER and len(lines) == 289
    lo = D.ms(2026, 11, 29)
    rest = get(emu, OI, symbol="BTCUSDT", period="5m", startTime=lo, endTime=lo + D.DAY - 1, limit=500).json()
    assert len(rest) == 288
    first = lines[1].split(",")
    assert first[:4] == ["2026-11-29 00:00:00", "BTCUSDT", rest[0]["sumOpenInterest"], rest[0]["sumOpenInterestValue"]]
    emu.archive_missing.add("BTCUSDT-metrics-2026-11-29.zip")  # type: ignore[attr-defined]
    assert requests.get(url, timeout=10).status_code == 404
    old = f"{emu.archive_url}/data/futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-2024-03-01.zip"
    assert requests.get(old, timeout=10).status_code == 200  # years back, where REST no longer serves
