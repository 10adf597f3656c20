"""The one symbol rule: what a USD-M Futures symbol may look like, checked the same way everywhere.

Perpetuals are upper-case letters and digits (``BTCUSDT``, ``1000PEPEUSDT``); delivery contracts add ``_YYMMDD``
(``BTCUSDT_250328``). Checking syntax locally rejects typos and injection before any request or query is made;
whether the symbol exists is exchangeInfo's call (``client.validate_symbols``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from binance_extractor.errors import InputError

SYMBOL_PATTERN = r"^[A-Z0-9]{1,24}(_[0-9]{6})?$"
SYMBOL_RE = re.compile(SYMBOL_PATTERN)


def is_symbol(value: Any) -> bool:
    """True when ``value`` is a string shaped like a futures symbol (already upper case)."""
    return isinstance(value, str) and SYMBOL_RE.match(value) is not None


def malformed(symbols: Iterable[str]) -> list[str]:
    """The symbols that break the rule, in order."""
    return [s for s in symbols if not is_symbol(s)]


def split_syntax(symbols: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """(well-formed, {malformed: reason}), order kept: drop symbols that cannot exist before asking the exchange."""
    ok: list[str] = []
    bad: dict[str, str] = {}
    for sym in symbols:
        if is_symbol(sym):
            ok.append(sym)
        else:
            bad[sym] = f"malformed symbol (must match {SYMBOL_PATTERN})"
    return ok, bad


def require(symbols: Iterable[str], message: str = "malformed symbol {symbol!r}") -> list[str]:
    """``symbols`` as a list, or InputError on the first malformed one (``message`` may use ``{symbol}``)."""
    out = list(symbols)
    bad = malformed(out)
    if bad:
        raise InputError(message.format(symbol=bad[0]))
    return out
