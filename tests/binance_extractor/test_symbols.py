"""The one symbol rule, and that every entry point (models, CLI, gap chunks, DAG params, callbacks) applies it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from binance_extractor import gaps, models, symbols
from binance_extractor.airflow import callbacks, orchestration
from binance_extractor.errors import InputError, ValidationError

GOOD = ["BTCUSDT", "1000PEPEUSDT", "BTCUSDT_250328", "A"]
ROW = [1735689600000, "1", "1", "1", "1", "1", 1735689899999, "1", 1, "1", "1", "0"]
BAD = ["btcusdt", "BTC-USDT", "BTC USDT", "", "BTCUSDT_25", "ÄUSDT", "X" * 25, "BTC;DROP"]


@pytest.mark.parametrize("sym", GOOD)
def test_well_formed(sym: str) -> None:
    assert symbols.is_symbol(sym)
    assert symbols.require([sym]) == [sym]


@pytest.mark.parametrize("sym", BAD)
def test_malformed_everywhere(sym: str) -> None:
    assert not symbols.is_symbol(sym)
    with pytest.raises(InputError, match="malformed symbol"):
        symbols.require(["BTCUSDT", sym])
    ok, bad = orchestration.check_symbol_syntax(["BTCUSDT", sym])
    assert ok == ["BTCUSDT"] and "malformed symbol" in bad[sym]
    with pytest.raises(ValidationError, match="malformed symbol"):
        models.Kline.from_rest(sym, "5m", ROW)


def test_not_a_string_is_malformed() -> None:
    assert not symbols.is_symbol(None) and not symbols.is_symbol(123)


def test_gap_chunk_uses_the_rule() -> None:
    assert gaps.Chunk.parse("klines_m5/btcusdt_250328/2024-01-01/2024-01-02").symbol == "BTCUSDT_250328"
    with pytest.raises(InputError, match="malformed symbol in chunk"):
        gaps.Chunk.parse("klines_m5/BTCÄ/2024-01-01/2024-01-02")


def test_manual_schema_pattern_is_the_rule() -> None:
    assert orchestration.MANUAL_SCHEMA["symbols"]["items"]["pattern"] == symbols.SYMBOL_PATTERN


def test_callback_symbol_from_map_index() -> None:
    assert callbacks.symbol_of({"ti": {"rendered_map_index": "BTCUSDT_250328"}}) == "BTCUSDT_250328"
    assert callbacks.symbol_of({"ti": {"rendered_map_index": "not a symbol"}}) is None


def test_resolve_symbols_rejects_malformed_before_asking_the_exchange(tmp_path: Path) -> None:
    from binance_extractor import cli_options

    class NoExchange:
        def validate_symbols(self, syms: list[str]) -> tuple[list[str], dict[str, str]]:
            raise AssertionError("exchange asked about a malformed symbol")

    args = argparse.Namespace(symbols="BTCUSDT,BTC-USDT")
    with pytest.raises(InputError, match="symbol BTC-USDT: malformed symbol"):
        cli_options.resolve_symbols(args, NoExchange())  # type: ignore[arg-type]
