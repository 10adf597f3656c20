"""Fixtures shared by the library's tests: a client of the test file's own emulator (``emu``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from binance_extractor.client import BinanceFuturesClient
from tests.emulator import Emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[BinanceFuturesClient]:
    """A client of ``emu`` (each test file defines its emulator: its clock, its data)."""
    c = BinanceFuturesClient(base_url=emu.url)
    yield c
    c.close()
