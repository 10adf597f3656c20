"""The emulator's WebSocket kline streams: in step with REST, and Binance's limits and failure modes."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from binance_extractor.clock import FixedClock
from tests.emulator import Emulator
from tests.emulator import data as D

T0 = D.ms(2026, 11, 30, 12) + 30_000


@pytest.fixture
def fc() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def emu(make_emulator: Any, fc: FixedClock) -> Emulator:
    return make_emulator(clock=fc)  # type: ignore[no-any-return]


async def _events(url: str, n: int, then: Any = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with connect(url) as ws:
        while len(out) < n:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            if then is not None and len(out) == 1:
                then()
    return out


def test_closes_in_step_with_rest(emu: Emulator, fc: FixedClock) -> None:
    url = emu.ws_url + "/stream?streams=btcusdt@kline_1m/ethusdt@kline_5m"
    events = asyncio.run(_events(url, 5, then=lambda: fc.advance(5 * 60_000)))
    live = [e for e in events if not e["data"]["k"]["x"]]
    closed = [e for e in events if e["data"]["k"]["x"]]
    assert live and all(e["stream"] in ("btcusdt@kline_1m", "ethusdt@kline_5m") for e in events)
    for e in closed:
        k = e["data"]["k"]
        (row,) = emu.query_klines(k["s"], k["i"], k["t"], k["t"], 1)
        assert [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"], k["Q"]] == row[:11]
        assert k["T"] < fc.now_ms()  # closed on REST too


def test_rejects_more_than_1024_streams_and_unknown_streams(emu: Emulator) -> None:
    names = "/".join(f"btcusdt@kline_{iv}" for iv in ["1m"] * 1025)
    for query in (names, "foousdt@kline_1m", "btcusdt@kline_7m", "BTCUSDT@kline_1m"):
        with pytest.raises(InvalidStatus) as info:
            asyncio.run(_events(emu.ws_url + "/stream?streams=" + query, 1))
        # 1025 names do not even fit the request line (414): the tail keeps its URLs far shorter (plan.MAX_URL)
        assert info.value.response.status_code == (414 if query == names else 400)


def test_more_than_10_client_messages_per_second_cut(emu: Emulator) -> None:
    async def chatty() -> int | None:
        async with connect(emu.ws_url + "/stream?streams=btcusdt@kline_1m") as ws:
            for i in range(11):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed:
                return ws.close_code

    assert asyncio.run(chatty()) == 1008
    assert emu.stream.cuts["rate"] == 1 and emu.stream.client_messages == 11


def test_slow_reader_is_cut(emu: Emulator, fc: FixedClock) -> None:
    emu.stream.slow_reader_seconds = 0.3
    streams = "/".join(f"{s.lower()}@kline_1m" for s in ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT"])

    async def never_reads() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        sock.connect(("127.0.0.1", emu.stream.port))
        async with connect(emu.ws_url + "/stream?streams=" + streams, max_queue=1, sock=sock) as ws:
            await ws.recv()  # subscribed: the server sends the live candles
            ws.transport.pause_reading()  # a reader that stopped reading
            fc.advance(20 * 3_600_000)  # 5 x 1200 closes (under the 24 h lifetime): more than the buffers hold
            for _ in range(500):
                if emu.stream.cuts["slow"]:
                    return
                await asyncio.sleep(0.02)

    asyncio.run(never_reads())
    assert emu.stream.cuts["slow"] == 1


def test_24h_lifetime_cut_and_forced_drop(emu: Emulator, fc: FixedClock) -> None:
    async def lifetime() -> int | None:
        async with connect(emu.ws_url + "/stream?streams=btcusdt@kline_1h") as ws:
            await ws.recv()
            fc.advance(D.DAY)
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed:
                return ws.close_code

    assert asyncio.run(lifetime()) == 1001
    assert emu.stream.cuts["lifetime"] == 1

    async def dropped() -> None:
        async with connect(emu.ws_url + "/stream?streams=btcusdt@kline_1h") as ws:
            await ws.recv()
            assert emu.stream.drop_all() == 1
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)

    asyncio.run(dropped())
    emu.stream.refuse = True
    with pytest.raises(InvalidStatus):
        asyncio.run(_events(emu.ws_url + "/stream?streams=btcusdt@kline_1h", 1))
