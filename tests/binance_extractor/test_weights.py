"""Every endpoint's weight comes from one table, and it agrees with what the exchange (emulator) charges."""

from __future__ import annotations

import pytest

from binance_extractor import weights
from tests.emulator.server import _ROUTES


@pytest.mark.parametrize("limit", [None, 1, 99, 100, 499, 500, 1000, 1001, 1500])
def test_klines_weight_by_limit_matches_the_exchange(limit):
    params = {} if limit is None else {"limit": str(limit)}
    assert weights.weight("/fapi/v1/klines", params) == _ROUTES["/fapi/v1/klines"][0](params)


def test_every_endpoint_the_exchange_charges_is_in_the_table():
    for path, (charge, _funding) in _ROUTES.items():
        for params in ({}, {"symbol": "BTCUSDT"}):
            assert weights.weight(path, params) == charge(params), path
    assert {p for p, (_, funding) in _ROUTES.items() if funding} <= weights.FUNDING_PATHS


def test_an_endpoint_missing_from_the_table_is_an_error_not_a_guess():
    with pytest.raises(KeyError, match=r"add it to binance_extractor\.weights\.WEIGHTS"):
        weights.weight("/fapi/v1/unknown")
