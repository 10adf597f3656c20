"""The end of a seed: every store equals the exchange, the ledger equals the true outages, no 418, no unreported hole.

The truth is the emulator's own data as it stands at the end (late outages published by then), read through its
``klines_rows`` / ``funding_rows`` / ``agg_trades`` (the exact strings REST serves), compared with what the store
holds, decimals by their exact text (``format(Decimal, "f")`` keeps trailing zeros).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from binance_extractor.kinds import DataKind, Dataset
from binance_extractor.sinks import open_stores
from binance_extractor.sinks.base import GAP_CONFIRMED
from binance_extractor.timeutil import dt_to_ms
from tests.emulator import data as D
from tests.simulation.schedule import DAGS
from tests.simulation.tail import TAIL_TIMEFRAMES
from tests.simulation.world import DAY, World, _iso


def _text(value: Any) -> str:
    """SQLite keeps the exchange's decimal text: compared as that exact text (trailing zeros included)."""
    return format(Decimal(str(value)), "f")


def _value(value: Any) -> str:
    """A fixed-scale column (MariaDB's DECIMAL(36,18)) holds the exact value at the column's scale: compared as
    that value (trailing zeros dropped on both sides), never as a float."""
    d = Decimal(str(value))
    return format(d.normalize() if d != 0 else Decimal(0), "f")


_EXACT = {"sqlite": _text, "mysql": _value}  # how each store keeps a decimal
_as: list[Callable[[Any], str]] = [_text]  # the store being checked (``check_all`` sets it)


def _d(value: Any) -> str:
    return _as[0](value)


def _kline_row(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        dt_to_ms(r["open_time"]),
        _d(r["open"]),
        _d(r["high"]),
        _d(r["low"]),
        _d(r["close"]),
        _d(r["volume"]),
        dt_to_ms(r["close_time"]),
        _d(r["quote_volume"]),
        int(r["trade_count"]),
        _d(r["taker_buy_base_volume"]),
        _d(r["taker_buy_quote_volume"]),
    )


def _exchange_kline(row: list[Any]) -> tuple[Any, ...]:
    return (row[0], _d(row[1]), _d(row[2]), _d(row[3]), _d(row[4]), _d(row[5]), row[6], _d(row[7]), int(row[8]),
            _d(row[9]), _d(row[10]))  # fmt: skip


def check_all(w: World, final_tick: int) -> list[str]:
    """Every violation, one line each (empty: the seed passed)."""
    emu = w.emu
    assert emu is not None
    problems: list[str] = []
    if emu.count_418:
        problems.append(f"the exchange had to send {emu.count_418} HTTP 418 (an IP ban)")
    stores = open_stores(list(w.sinks))
    try:
        for name, store in zip(w.sinks, stores, strict=True):
            _as[0] = _EXACT[name]
            found = _store(w, store, final_tick)
            problems += [f"{name}: {p}" for p in found] if len(stores) > 1 else found
    finally:
        for s in stores:
            s.close()
    return problems


def _store(w: World, store: Any, final_tick: int) -> list[str]:
    """One store against the exchange: the DAG tables, the ledger and the tail's tables."""
    problems: list[str] = []
    ledger = store.gap_records()
    for dag in DAGS:
        table = dag.kind.table(dag.timeframe)
        for symbol in w.symbols:
            if dag.timeframe is not None:
                problems += _klines(w, store, ledger, table, symbol, dag.timeframe.interval, final_tick, True)
            elif table == "funding_rates":
                problems += _funding(w, store, ledger, symbol, final_tick)
            else:
                problems += _trades(w, store, ledger, symbol, final_tick)
    for tf in TAIL_TIMEFRAMES:
        for symbol in w.symbols:
            problems += _klines(w, store, ledger, DataKind.KLINES.table(tf), symbol, tf.interval, final_tick, False)
    return problems


def _klines(
    w: World, store: Any, ledger: list[Any], table: str, symbol: str, interval: str, final_tick: int, filled: bool
) -> list[str]:
    """``filled``: a table the DAGs and the gap filler keep (the ledger must equal the true outages); otherwise the
    tail's alone (only outage candles, true or published late after the tail passed, may be missing)."""
    emu = w.emu
    assert emu is not None
    where = f"{table} {symbol}"
    rows = store.read(Dataset.of_table(table), symbol)
    if not rows:
        return [f"{where}: nothing stored"]
    stored = {dt_to_ms(r["open_time"]): _kline_row(r) for r in rows}
    if len(stored) != len(rows):
        return [f"{where}: {len(rows) - len(stored)} candle(s) stored twice"]
    first, last = min(stored), max(stored)
    truth = {r[0]: _exchange_kline(r) for r in emu.klines_rows(symbol, interval, first, last)}
    out: list[str] = []
    extra = sorted(set(stored) - set(truth))
    if extra:
        out.append(f"{where}: {len(extra)} candle(s) the exchange does not have, first {_iso(extra[0])}")
    wrong = sorted(t for t in set(stored) & set(truth) if stored[t] != truth[t])
    if wrong:
        t = wrong[0]
        out.append(f"{where}: {len(wrong)} candle(s) differ, first {_iso(t)}: {stored[t]} != {truth[t]}")
    missing = sorted(set(truth) - set(stored))
    step = D.next_open(interval, first) - first
    if first > w.start + 3 * DAY:  # the first successful run loads 2 days back (a database outage may delay it)
        out.append(f"{where}: the history starts at {_iso(first)}, days after the start")
    if last + 2 * step < (final_tick if filled else w.end):
        out.append(f"{where}: the newest candle opens at {_iso(last)}, not near the end")
    grid = set(range(first, last + 1, step)) if interval != "1M" else set(truth)
    absent = grid - set(truth)  # the exchange's true holes inside the stored range
    if filled:
        if missing:
            out.append(f"{where}: {len(missing)} candle(s) missing, first {_iso(missing[0])}")
        covered: set[int] = set()
        for g in ledger:
            if g.table == table and g.symbol == symbol and g.status == GAP_CONFIRMED:
                covered |= {t for t in range(dt_to_ms(g.gap_start), dt_to_ms(g.gap_end), step)}
        if covered - absent:
            wrong_conf = sorted(covered - absent)
            out.append(f"{where}: the ledger confirms {len(wrong_conf)} candle(s) the exchange has, first "
                       f"{_iso(wrong_conf[0])}")  # fmt: skip
        if absent - covered:
            lost = sorted(absent - covered)
            out.append(f"{where}: {len(lost)} true outage candle(s) not in the ledger, first {_iso(lost[0])}")
    else:
        allowed = {t for t in missing if any(o.symbol == symbol and o.start <= t <= o.end for o in w.outages)}
        if set(missing) - allowed:
            lost = sorted(set(missing) - allowed)
            out.append(f"{where}: the tail lost {len(lost)} closed candle(s), first {_iso(lost[0])}")
    return out


def _funding(w: World, store: Any, ledger: list[Any], symbol: str, final_tick: int) -> list[str]:
    emu = w.emu
    assert emu is not None
    where = f"funding_rates {symbol}"
    rows = store.read(Dataset.of_table("funding_rates"), symbol)
    if not rows:
        return [f"{where}: nothing stored"]
    stored = {dt_to_ms(r["funding_time"]): (_d(r["funding_rate"]), _d(r["mark_price"])) for r in rows}
    first, last = min(stored), max(stored)
    truth = {
        r["fundingTime"]: (_d(r["fundingRate"]), _d(r["markPrice"]))
        for r in emu.funding_rows(symbol, first, last, 1_000_000)
    }
    out: list[str] = []
    if stored != truth:
        diff = sorted(set(stored) ^ set(truth)) or sorted(t for t in stored if stored[t] != truth.get(t))
        out.append(f"{where}: differs from the exchange ({len(diff)} time(s)), first {_iso(diff[0])}")
    if last < final_tick - 9 * 3_600_000:
        out.append(f"{where}: the newest funding is {_iso(last)}, not near the end")
    spec = emu.symbols[symbol]
    every = {t + D.funding_jitter(spec, t) for t in D.funding_times(spec, first - 16, last)}
    absent = {t for t in every if first <= t <= last} - set(truth)
    # A funding hole may be recorded in pieces (the gap filler's weekly chunks split it at Monday 00:00), and a
    # piece can hold no due event although the hole does: the ledger is compared as ranges, touching rows merged.
    confirmed = _merged(
        (dt_to_ms(g.gap_start), dt_to_ms(g.gap_end))
        for g in ledger
        if g.table == "funding_rates" and g.symbol == symbol and g.status == GAP_CONFIRMED
    )
    for lo, hi in confirmed:
        if not any(lo <= t < hi for t in absent):
            out.append(f"{where}: the ledger confirms [{_iso(lo)}, {_iso(hi)}) where the exchange lacks nothing")
    for t in sorted(absent):
        if not any(lo <= t < hi for lo, hi in confirmed):
            out.append(f"{where}: the true outage at {_iso(t)} is not in the ledger")
    return out


def _merged(ranges: Any) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _trades(w: World, store: Any, ledger: list[Any], symbol: str, final_tick: int) -> list[str]:
    emu = w.emu
    assert emu is not None
    where = f"agg_trades {symbol}"
    rows = store.read(Dataset.of_table("agg_trades"), symbol)
    if not rows:
        return [f"{where}: nothing stored"]
    stored = {
        int(r["agg_trade_id"]): (_d(r["price"]), _d(r["quantity"]), int(r["first_trade_id"]), int(r["last_trade_id"]),
                                 dt_to_ms(r["time"]), bool(r["is_buyer_maker"]))
        for r in rows
    }  # fmt: skip
    first, last = min(stored), max(stored)
    truth: dict[int, tuple[Any, ...]] = {}
    cursor = first
    while cursor <= last:
        page = emu.agg_trades(symbol, cursor, None, None, 1000)
        if not page:
            break
        for a in page:
            if a["a"] <= last:
                truth[a["a"]] = (_d(a["p"]), _d(a["q"]), a["f"], a["l"], a["T"], bool(a["m"]))
        cursor = page[-1]["a"] + 1
    out: list[str] = []
    if stored != truth:
        diff = sorted(set(stored) ^ set(truth)) or sorted(t for t in stored if stored[t] != truth.get(t))
        out.append(f"{where}: differs from the exchange ({len(diff)} id(s)), first id {diff[0]}")
    newest = max(v[4] for v in stored.values())
    if newest < final_tick - 2 * 3_600_000:
        out.append(f"{where}: the newest trade is at {_iso(newest)}, not near the end")
    if any(g.table == "agg_trades" and g.symbol == symbol for g in ledger):
        out.append(f"{where}: the ledger has rows, but the exchange lacks no trade")
    return out
