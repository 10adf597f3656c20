"""The emulator's extra synthetic contracts (#25): any number, listed, and served by REST, archive and WebSocket."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import zipfile
from typing import Any

import requests
from websockets.asyncio.client import connect

from binance_extractor.clock import FixedClock
from binance_extractor.symbols import is_symbol
from tests.emulator import Emulator
from tests.emulator import data as D

T0 = D.ms(2026, 11, 30, 12) + 30_000


def test_contracts_listed_and_served_by_rest_and_archive(make_emulator: Any) -> None:
    emu: Emulator = make_emulator(clock=FixedClock(T0), contracts=400)
    info = requests.get(emu.url + "/fapi/v1/exchangeInfo", timeout=30).json()
    listed = {s["symbol"]: s for s in info["symbols"]}
    names = emu.perpetuals(400)
    assert len(names) == len(set(names)) == 400 and all(is_symbol(s) for s in names)
    assert names[:3] == ["BTCUSDT", "ETHUSDT", "BNBUSDT"] and names[-1] == "C0375USDT"  # the defaults come first
    assert all(listed[s]["status"] == "TRADING" and listed[s]["quoteAsset"] == "USDT" for s in names)
    assert "C0399USDT" in listed and "C0400USDT" not in listed and len(emu.perpetuals()) == 424

    day = D.ms(2026, 11, 28)
    rest = requests.get(
        emu.url + "/fapi/v1/klines",
        params={"symbol": "C0399USDT", "interval": "5m", "startTime": day, "endTime": day + D.DAY - 1, "limit": 1500},
        timeout=30,
    ).json()
    assert len(rest) == 288 and rest == emu.klines_rows("C0399USDT", "5m", day, day + D.DAY - 1)
    assert all(rest[i][4] == rest[i + 1][1] for i in range(287))  # close == next open

    zip_url = f"{emu.archive_url}/data/futures/um/daily/klines/C0399USDT/5m/C0399USDT-5m-2026-11-28.zip"
    body = requests.get(zip_url, timeout=30).content
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        rows = [r for r in csv.reader(io.StringIO(zf.read(zf.namelist()[0]).decode())) if r[0].isdigit()]
    as_ms = [[int(r[0]) // 1000 if int(r[0]) > 10**14 else int(r[0]), *r[1:6]] for r in rows]  # 2025+: microseconds
    assert as_ms == [[r[0], *r[1:6]] for r in rest]

    funding = requests.get(emu.url + "/fapi/v1/fundingRate", params={"symbol": "C0200USDT"}, timeout=30).json()
    assert funding and all(f["symbol"] == "C0200USDT" for f in funding)


def test_contracts_are_deterministic(make_emulator: Any) -> None:
    a: Emulator = make_emulator(clock=FixedClock(T0), contracts=3)
    b: Emulator = make_emulator(clock=FixedClock(T0), contracts=5)
    day = D.ms(2026, 11, 28)
    assert a.klines_rows("C0002USDT", "1h", day, day + D.DAY) == b.klines_rows("C0002USDT", "1h", day, day + D.DAY)
    assert a.symbols["C0002USDT"] == b.symbols["C0002USDT"]
    assert len({spec.price_dp for spec in D.extra_contracts(50).values()}) > 1  # they are not all alike


def test_contracts_stream_closes_like_rest(make_emulator: Any) -> None:
    fc = FixedClock(T0)
    emu: Emulator = make_emulator(clock=fc, contracts=400)
    url = emu.ws_url + "/stream?streams=c0000usdt@kline_1m/c0399usdt@kline_5m"

    async def closes() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with connect(url) as ws:
            first = True
            while len(out) < 2:
                event = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if first:
                    fc.advance(5 * 60_000)
                    first = False
                if event["data"]["k"]["x"] and event["stream"] not in {e["stream"] for e in out}:
                    out.append(event)
        return out

    for e in asyncio.run(closes()):
        k = e["data"]["k"]
        (row,) = emu.query_klines(k["s"], k["i"], k["t"], k["t"], 1)
        assert [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"]] == row[:7]
