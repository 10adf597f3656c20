"""Streams split over connections inside Binance's documented limits; events parsed into the REST model."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from binance_extractor import timeframes
from binance_extractor.errors import InputError, ValidationError
from binance_extractor.models import Kline
from binance_extractor.stream import plan
from binance_extractor.stream.messages import closed_kline


def test_split_respects_the_per_connection_limit() -> None:
    tfs = [timeframes.parse(iv) for iv in ("5m", "15m", "30m", "1h", "1d")]
    pairs = [(f"S{i}USDT", tf) for i in range(300) for tf in tfs]  # 1500 streams
    groups = plan.split_streams(pairs, plan.MAX_STREAMS_PER_CONNECTION)
    assert all(len(g) <= 1024 for g in groups) and len(groups) >= 2
    assert all(len(plan.ws_url(g, "wss://x")) < 8000 for g in groups)  # the request line fits (no 414)
    assert [p for g in groups for p in g] == pairs
    assert len(plan.split_streams(pairs[:120])) == 1  # 24 symbols x 5 intervals: one connection by default
    with pytest.raises(InputError):
        plan.split_streams(pairs, 1025)


def test_url_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BINANCE_FUTURES_WS_URL", raising=False)
    assert plan.ws_url([("BTCUSDT", timeframes.parse("m5")), ("ETHUSDT", timeframes.parse("1d"))]) == (
        "wss://fstream.binance.com/stream?streams=btcusdt@kline_5m/ethusdt@kline_1d"
    )
    monkeypatch.setenv("BINANCE_FUTURES_WS_URL", "ws://127.0.0.1:1/")
    assert plan.ws_url([("BTCUSDT", timeframes.parse("1h"))]).startswith(
        "ws://127.0.0.1:1/stream?streams=btcusdt@kline_1h"
    )


def _event(x: bool, **k: object) -> str:
    base: dict[str, object] = {
        "t": 1_699_999_800_000,
        "T": 1_700_000_099_999,
        "s": "BTCUSDT",
        "i": "5m",
        "o": "37000.10",
        "c": "37010.20",
        "h": "37020.00",
        "l": "36990.00",
        "v": "12.345",
        "n": 42,
        "x": x,
        "q": "456789.0123",
        "V": "6.000",
        "Q": "222000.0000",
    }
    base.update(k)
    return json.dumps({"stream": "btcusdt@kline_5m", "data": {"e": "kline", "E": 1, "s": "BTCUSDT", "k": base}})


def test_closed_event_is_the_rest_model_exactly() -> None:
    k = closed_kline(_event(True))
    rest = Kline.from_rest(
        "BTCUSDT",
        "5m",
        [1_699_999_800_000, "37000.10", "37020.00", "36990.00", "37010.20", "12.345", 1_700_000_099_999,
         "456789.0123", 42, "6.000", "222000.0000", "0"],
    )  # fmt: skip
    assert k == rest and k.open == Decimal("37000.10")
    assert closed_kline(_event(False)) is None  # the live candle is never stored
    assert closed_kline('{"result": null, "id": 1}') is None
    with pytest.raises(ValidationError):
        closed_kline(_event(True, h="1.0"))  # impossible candle: never written
    with pytest.raises(ValidationError):
        closed_kline("not json")
