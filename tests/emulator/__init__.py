"""Offline Binance USD-M Futures exchange emulator (a real HTTP server on loopback) for tests and benchmarks.

    with Emulator(weight_limit=200, window_seconds=5) as emu:
        requests.get(emu.url + "/fapi/v1/klines", params={"symbol": "BTCUSDT", "interval": "5m"})

See ``server.Emulator`` for the configuration, knobs (outages, overrides, fault injection) and statistics.
"""

from tests.emulator.server import FAULT_KINDS, ApiError, Emulator, RequestRecord

__all__ = ["FAULT_KINDS", "ApiError", "Emulator", "RequestRecord"]
