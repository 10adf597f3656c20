"""Market data served by the emulator: real fixture data plus deterministic synthetic symbols.

Real data (``../shared/fixtures/binance-real`` beside the repository, or ``BINANCE_REAL_FIXTURES``):
XRPUSDT klines 5m/1h (15m/30m aggregated from 5m), XRPUSDT funding, XRPETH trades. Fields the fixtures lack
are derived exactly (integer/Decimal arithmetic, decimal strings) from a hash, so every run serves the same bytes.

Synthetic symbols: prices follow a smooth deterministic function of time ``p(t)`` (slow sines + per-timestamp
noise), so a candle's close equals the next candle's open, candle boundaries agree across intervals, and any
candle is computed in O(1) from (symbol, interval, open_time) without history. All values are integers scaled
by a per-symbol number of decimals and formatted as exact strings.
"""

from __future__ import annotations

import calendar
import json
import math
import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any


def _fixtures_dir() -> Path:
    """``BINANCE_REAL_FIXTURES``, else ``shared/`` beside the repository (as CI lays it), else the workplace copy."""
    if os.environ.get("BINANCE_REAL_FIXTURES"):
        return Path(os.environ["BINANCE_REAL_FIXTURES"])
    beside = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "binance-real"
    return beside if beside.is_dir() else Path("/work/shared/fixtures/binance-real")


FIXTURES = _fixtures_dir()

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
INTERVAL_MS = {
    "1m": MINUTE,
    "3m": 3 * MINUTE,
    "5m": 5 * MINUTE,
    "15m": 15 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": HOUR,
    "2h": 2 * HOUR,
    "4h": 4 * HOUR,
    "6h": 6 * HOUR,
    "8h": 8 * HOUR,
    "12h": 12 * HOUR,
    "1d": DAY,
    "3d": 3 * DAY,
    "1w": 7 * DAY,
}
INTERVALS = (*INTERVAL_MS, "1M")
_MONDAY = 4 * DAY  # 1970-01-05 was a Monday
_M64 = (1 << 64) - 1


def ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, 0, 0)) * 1000


# ----------------------------------------------------------------------------- interval arithmetic


def floor_open(interval: str, t: int) -> int:
    """Open time of the candle containing ``t`` (weeks open on Mondays, months on the 1st)."""
    if interval == "1M":
        dt = datetime.fromtimestamp(t / 1000, UTC)
        return ms(dt.year, dt.month, 1)
    step = INTERVAL_MS[interval]
    if interval == "1w":
        return t - (t - _MONDAY) % step
    return t - t % step


def next_open(interval: str, t: int) -> int:
    if interval == "1M":
        dt = datetime.fromtimestamp(t / 1000, UTC)
        y, m = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
        return ms(y, m, 1)
    return t + INTERVAL_MS[interval]


def prev_open(interval: str, t: int) -> int:
    if interval == "1M":
        dt = datetime.fromtimestamp(t / 1000, UTC)
        y, m = (dt.year - 1, 12) if dt.month == 1 else (dt.year, dt.month - 1)
        return ms(y, m, 1)
    return t - INTERVAL_MS[interval]


def ceil_open(interval: str, t: int) -> int:
    f = floor_open(interval, t)
    return f if f == t else next_open(interval, f)


def interval_minutes(interval: str) -> float:
    return (31 * DAY if interval == "1M" else INTERVAL_MS[interval]) / MINUTE


# ----------------------------------------------------------------------------- helpers


def mix(x: int) -> int:
    """splitmix64 finaliser: a fast, deterministic 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def seed_of(text: str) -> int:
    h = 1469598103934665603
    for ch in text.encode():
        h = ((h ^ ch) * 1099511628211) & _M64
    return mix(h)


def fmt(units: int, dp: int) -> str:
    """Integer in units of 10**-dp -> exact decimal string with ``dp`` decimals."""
    if dp == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    q, r = divmod(abs(units), 10**dp)
    return f"{sign}{q}.{r:0{dp}d}"


def dec(value: Decimal) -> str:
    return format(value, "f")


# ----------------------------------------------------------------------------- symbols


@dataclass
class SymbolSpec:
    """Static description of a symbol; ``synthetic`` ones get generated candles and funding."""

    symbol: str
    onboard_ms: int
    base_price: float = 10.0
    price_dp: int = 4
    tick_units: int = 1  # tick size in units of 10**-price_dp
    qty_dp: int = 1
    vol_per_min: float = 1000.0  # base-asset volume per minute
    status: str = "TRADING"
    delist_ms: int | None = None
    quote_asset: str = "USDT"
    synthetic: bool = True
    # funding schedule: list of (from_ms, interval_hours), ascending
    funding: list[tuple[int, int]] = field(default_factory=list)

    @property
    def base_asset(self) -> str:
        return self.symbol[: -len(self.quote_asset)]

    @property
    def seed(self) -> int:
        return seed_of(self.symbol)


def _spec(sym: str, date: tuple[int, int, int], price: float, dp: int, tick: int, qdp: int, vol: float) -> SymbolSpec:
    return SymbolSpec(sym, ms(*date), price, dp, tick, qdp, vol)


def default_symbols(now_ms: int) -> dict[str, SymbolSpec]:
    """The emulator's symbol universe; ``now_ms`` fixes the onboard date of NEWUSDT (listed 10 days ago)."""
    specs = [
        _spec("BTCUSDT", (2019, 9, 8), 40000.0, 2, 10, 3, 700.0),
        _spec("ETHUSDT", (2019, 11, 27), 2500.0, 2, 1, 3, 3000.0),
        _spec("BNBUSDT", (2020, 2, 10), 400.0, 3, 10, 2, 800.0),
        _spec("SOLUSDT", (2020, 9, 14), 80.0, 4, 10, 0, 9000.0),
        _spec("DOGEUSDT", (2020, 7, 10), 0.12, 6, 10, 0, 3_000_000.0),
        _spec("ADAUSDT", (2020, 1, 31), 0.45, 5, 10, 0, 500_000.0),
        _spec("AVAXUSDT", (2020, 9, 23), 25.0, 4, 10, 0, 6000.0),
        _spec("LINKUSDT", (2020, 1, 17), 12.0, 3, 1, 2, 9000.0),
        _spec("DOTUSDT", (2020, 8, 22), 7.0, 3, 1, 1, 12000.0),
        _spec("LTCUSDT", (2020, 1, 9), 90.0, 2, 1, 3, 2000.0),
        _spec("BCHUSDT", (2019, 12, 18), 300.0, 2, 1, 3, 300.0),
        _spec("TRXUSDT", (2020, 1, 15), 0.09, 5, 1, 0, 1_500_000.0),
        _spec("ATOMUSDT", (2020, 2, 7), 9.0, 3, 1, 2, 8000.0),
        _spec("NEARUSDT", (2020, 10, 15), 3.0, 4, 10, 0, 20000.0),
        _spec("UNIUSDT", (2020, 9, 18), 7.0, 4, 10, 0, 9000.0),
        _spec("ETCUSDT", (2020, 1, 16), 20.0, 3, 1, 2, 4000.0),
        _spec("FILUSDT", (2020, 10, 16), 5.0, 3, 1, 1, 9000.0),
        _spec("APTUSDT", (2022, 10, 19), 8.0, 5, 10, 1, 9000.0),
        _spec("ARBUSDT", (2023, 3, 23), 1.0, 4, 1, 1, 60000.0),
        _spec("OPUSDT", (2022, 6, 1), 1.8, 7, 1000, 1, 30000.0),
        _spec("SUIUSDT", (2023, 5, 3), 1.5, 6, 100, 1, 50000.0),
        _spec("1000PEPEUSDT", (2023, 5, 5), 0.0112345, 7, 1, 0, 4_000_000.0),
        _spec("INJUSDT", (2020, 10, 27), 20.0, 3, 1, 1, 4000.0),
        _spec("SYNTHUSDT", (2024, 1, 1), 100.0, 2, 1, 3, 100.0),
    ]
    today = now_ms - now_ms % DAY
    specs.append(SymbolSpec("NEWUSDT", today - 10 * DAY + 8 * HOUR, 0.5, 5, 1, 0, 100_000.0))
    old = SymbolSpec("OLDUSDT", ms(2021, 1, 1), 3.0, 4, 1, 1, 5000.0, status="SETTLING", delist_ms=ms(2023, 6, 1))
    specs.append(old)
    # real-data symbols (no synthetic generation)
    specs.append(SymbolSpec("XRPUSDT", ms(2020, 1, 6), 1.0, 4, 1, 1, synthetic=False))
    specs.append(SymbolSpec("XRPETH", ms(2019, 10, 1), 0.0015, 8, 1, 0, quote_asset="ETH", synthetic=False))
    out = {s.symbol: s for s in specs}
    for s in out.values():
        s.funding = [(s.onboard_ms, 8)]
    out["BTCUSDT"].funding = [(out["BTCUSDT"].onboard_ms, 8), (ms(2025, 6, 1), 4), (ms(2025, 10, 1), 1)]
    out["SYNTHUSDT"].funding = [(out["SYNTHUSDT"].onboard_ms, 8), (ms(2024, 7, 1), 4), (ms(2025, 1, 1), 1)]
    out["1000PEPEUSDT"].funding = [(out["1000PEPEUSDT"].onboard_ms, 4)]
    return out


def contract_name(i: int) -> str:
    """The ``i``-th extra synthetic contract (0-based): ``C0000USDT``, ``C0001USDT``... (sorts in index order)."""
    return f"C{i:04d}USDT"


def extra_contracts(count: int) -> dict[str, SymbolSpec]:
    """``count`` deterministic synthetic USDT perpetuals for scale tests (#25), all TRADING, funding every 8 h.

    Listed a day apart from 2024-01-01 (the 400th in early 2025), so a history of a few months or days has
    candles for every one of them; prices, decimals and volumes vary by index, derived from its name's hash.
    """
    out: dict[str, SymbolSpec] = {}
    for i in range(count):
        name = contract_name(i)
        h = seed_of(name)
        dp = 2 + h % 6  # 2..7 price decimals
        price = (1 + (h >> 8) % 9000) / 10 ** (dp - 1)
        qty_dp = (h >> 24) % 4
        spec = SymbolSpec(name, ms(2024, 1, 1) + i * DAY, price, dp, 1, qty_dp, 100.0 + (h >> 32) % 50_000)
        spec.funding = [(spec.onboard_ms, 8)]
        out[name] = spec
    return out


# ----------------------------------------------------------------------------- synthetic candles

_TWO_PI = 2 * math.pi


class Synthetic:
    """O(1) candle generator for one symbol."""

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        s = spec.seed
        self.seed = s
        self.ph = [((mix(s + i) >> 11) / (1 << 53)) * _TWO_PI for i in range(4)]
        self.tick = spec.tick_units
        self.price_scale = 10**spec.price_dp
        self.qv_dp = spec.qty_dp + spec.price_dp + 1
        self.qv_cut = 10 ** max(0, self.qv_dp - 8)
        self.qv_dp_out = min(self.qv_dp, 8)

    def price_units(self, t: int) -> int:
        """p(t) in units of 10**-price_dp, rounded to the tick; continuous in t apart from tiny noise."""
        ph = self.ph
        x = (
            0.55 * math.sin(t / (420 * DAY) * _TWO_PI + ph[0])
            + 0.12 * math.sin(t / (9.3 * DAY) * _TWO_PI + ph[1])
            + 0.02 * math.sin(t / (5.1 * HOUR) * _TWO_PI + ph[2])
            + 0.004 * math.sin(t / (37 * MINUTE) * _TWO_PI + ph[3])
        )
        noise = ((mix(self.seed ^ t) >> 40) / (1 << 24) - 0.5) * 0.0016
        p = self.spec.base_price * math.exp(x + noise) * self.price_scale
        ticks = max(1, round(p / self.tick))
        return ticks * self.tick

    def candle(self, interval: str, open_ms: int, close_ms: int, upto: int | None = None) -> list[Any]:
        """One 12-field kline row. ``upto`` (ms) makes the in-progress candle as of that time."""
        minutes = (close_ms + 1 - open_ms) / MINUTE
        h = mix(self.seed ^ (open_ms * 31 + len(interval) * 7 + ord(interval[-1])))
        u1 = (h & 0xFFFF) / 65536.0
        u2 = ((h >> 16) & 0xFFFF) / 65536.0
        u3 = ((h >> 32) & 0xFFFF) / 65536.0
        u4 = (h >> 48) / 65536.0
        frac = 1.0
        o = self.price_units(open_ms)
        if upto is None:
            c = self.price_units(close_ms + 1)
        else:
            c = self.price_units(upto)
            frac = max(0.0, min(1.0, (upto - open_ms) / (close_ms + 1 - open_ms)))
        scale = min(0.25, 0.0012 * math.sqrt(minutes)) * (frac**0.5)
        hi0 = o if o > c else c
        lo0 = o if o < c else c
        tick = self.tick
        hi = hi0 + int(hi0 * u1 * scale) // tick * tick
        lo = lo0 - int(lo0 * u2 * scale) // tick * tick
        if lo < tick:
            lo = tick if lo0 >= tick else lo0
        vol = int(self.spec.vol_per_min * minutes * (0.6 + 0.8 * u3) * frac * 10**self.spec.qty_dp)
        count = int(minutes * (20 + 60 * u4) * frac) + (1 if vol else 0)
        tb = vol * (30 + int(u4 * 41)) // 100
        mid5 = (o + c) * 5
        qv = vol * mid5 // self.qv_cut
        tbq = tb * mid5 // self.qv_cut
        pdp = self.spec.price_dp
        qdp = self.spec.qty_dp
        vdp = self.qv_dp_out
        return [
            open_ms,
            fmt(o, pdp),
            fmt(hi, pdp),
            fmt(lo, pdp),
            fmt(c, pdp),
            fmt(vol, qdp),
            close_ms,
            fmt(qv, vdp),
            count,
            fmt(tb, qdp),
            fmt(tbq, vdp),
            "0",
        ]

    def mark_price(self, t: int) -> str:
        """Mark price with 8 decimals near p(t)."""
        p = self.price_units(t) * 10 ** (8 - self.spec.price_dp) if self.spec.price_dp <= 8 else self.price_units(t)
        jitter = (mix(self.seed ^ (t * 7)) % 2001) - 1000  # +-1000e-8 relative-ish wiggle
        return fmt(max(1, p + jitter * max(1, p // 10**9)), 8)


# ----------------------------------------------------------------------------- real fixtures


def _load(name: str) -> Any:
    with open(FIXTURES / name, encoding="utf-8") as fh:
        return json.load(fh)


_Q8 = Decimal("1e-8")


def _derive_row(interval: str, raw: list[Any]) -> list[Any]:
    """Fixture [open_time, o, h, l, c, v] -> Binance's 12 fields with exact derived strings."""
    ot, o, hi, lo, c, v = raw
    close = next_open(interval, ot) - 1
    vol = Decimal(v)
    mid = (Decimal(o) + Decimal(c)) / 2
    h = mix(seed_of("XRPUSDT") ^ ot)
    qv = (vol * mid).quantize(_Q8)
    vexp = Decimal(1).scaleb(vol.as_tuple().exponent)  # type: ignore[arg-type]
    k = Decimal(30 + h % 41) / 100
    tb = (vol * k).quantize(vexp, rounding=ROUND_DOWN)
    tbq = (tb * mid).quantize(_Q8, rounding=ROUND_DOWN)
    count = 0 if vol == 0 else 1 + int(vol / 2000) + (h >> 20) % 500
    return [ot, o, hi, lo, c, v, close, dec(qv), count, dec(tb), dec(tbq), "0"]


def _aggregate(interval: str, rows: list[list[Any]]) -> list[list[Any]]:
    """Aggregate complete, contiguous groups of smaller candles into ``interval`` candles."""
    step = INTERVAL_MS[interval]
    out: list[list[Any]] = []
    groups: dict[int, list[list[Any]]] = {}
    for r in rows:
        groups.setdefault(r[0] - r[0] % step, []).append(r)
    for start, grp in sorted(groups.items()):
        n = step // (grp[0][6] + 1 - grp[0][0])
        if len(grp) != n:
            continue
        hi = max(grp, key=lambda r: Decimal(r[2]))[2]
        lo = min(grp, key=lambda r: Decimal(r[3]))[3]
        out.append(
            [
                start,
                grp[0][1],
                hi,
                lo,
                grp[-1][4],
                dec(sum((Decimal(r[5]) for r in grp), Decimal(0))),
                start + step - 1,
                dec(sum((Decimal(r[7]) for r in grp), Decimal(0))),
                sum(r[8] for r in grp),
                dec(sum((Decimal(r[9]) for r in grp), Decimal(0))),
                dec(sum((Decimal(r[10]) for r in grp), Decimal(0))),
                "0",
            ]
        )
    return out


class RealData:
    """The fixture-backed series, loaded once per process."""

    def __init__(self, trade_id_offset: int = 2**32) -> None:
        m5 = [_derive_row("5m", r) for r in _load("XRPUSDT-5m-ohlcv.json")]
        h1 = [_derive_row("1h", r) for r in _load("XRPUSDT-1h-ohlcv.json")]
        self.klines: dict[str, dict[str, list[list[Any]]]] = {
            "XRPUSDT": {"5m": m5, "15m": _aggregate("15m", m5), "30m": _aggregate("30m", m5), "1h": h1}
        }
        self.kline_times = {
            sym: {iv: [r[0] for r in rows] for iv, rows in by.items()} for sym, by in self.klines.items()
        }
        # funding: [time, rate] -> {symbol, fundingTime, fundingRate, markPrice}
        self.funding: dict[str, list[dict[str, Any]]] = {"XRPUSDT": []}
        for t, rate in _load("XRPUSDT-funding.json"):
            self.funding["XRPUSDT"].append(
                {"symbol": "XRPUSDT", "fundingTime": t, "fundingRate": rate, "markPrice": self._xrp_mark(t)}
            )
        self.trades: dict[str, list[dict[str, Any]]] = {"XRPETH": []}
        self.agg_trades: dict[str, list[dict[str, Any]]] = {"XRPETH": []}
        self._load_trades("XRPETH", trade_id_offset)

    def _xrp_mark(self, t: int) -> str:
        """Mark price: the 5m close around ``t`` where known, else a hash-derived value near 1.05."""
        times = self.kline_times["XRPUSDT"]["5m"]
        i = bisect_right(times, t) - 1
        if 0 <= i < len(times) and t - times[i] < 5 * MINUTE:
            base = Decimal(self.klines["XRPUSDT"]["5m"][i][4])
        else:
            base = Decimal("1.05")
        wiggle = Decimal((mix(t) % 20001) - 10000) / Decimal(10**8)
        return dec((base + wiggle).quantize(_Q8))

    def _load_trades(self, symbol: str, offset: int) -> None:
        raw = _load(f"{symbol}-trades.json")
        trades = self.trades[symbol]
        for t, tid, side, price, qty in raw:
            trades.append(
                {
                    "id": tid + offset,
                    "price": price,
                    "qty": qty,
                    "quoteQty": dec((Decimal(price) * Decimal(qty)).quantize(_Q8)),
                    "time": t,
                    "isBuyerMaker": side == "sell",
                }
            )
        aggs = self.agg_trades[symbol]
        agg_base = offset + 7_000_000
        for tr in trades:
            last = aggs[-1] if aggs else None
            if last and last["T"] == tr["time"] and last["m"] == tr["isBuyerMaker"] and last["p"] == tr["price"]:
                last["q"] = dec(Decimal(last["q"]) + Decimal(tr["qty"]))
                last["l"] = tr["id"]
                continue
            aggs.append(agg_of_trade(tr, agg_base + len(aggs)))


_REAL: dict[int, RealData] = {}


def real_data(trade_id_offset: int = 2**32) -> RealData:
    """Cached per offset: parsing and deriving the fixtures takes ~0.3 s."""
    if trade_id_offset not in _REAL:
        _REAL[trade_id_offset] = RealData(trade_id_offset)
    return _REAL[trade_id_offset]


# ----------------------------------------------------------------------------- funding schedule


def funding_times(spec: SymbolSpec, lo: int, hi: int) -> list[int]:
    """Nominal funding times (no jitter) of a synthetic symbol in [lo, hi], ascending."""
    out: list[int] = []
    sched = spec.funding
    end_all = spec.delist_ms if spec.delist_ms is not None else None
    for i, (start, hours) in enumerate(sched):
        seg_end = sched[i + 1][0] - 1 if i + 1 < len(sched) else hi
        if end_all is not None:
            seg_end = min(seg_end, end_all)
        a, b = max(lo, start), min(hi, seg_end)
        if a > b:
            continue
        step = hours * HOUR
        t = a + (-a) % step
        out.extend(range(t, b + 1, step))
    return out


def funding_jitter(spec: SymbolSpec, t: int) -> int:
    h = mix(spec.seed ^ (t * 13))
    return 0 if h % 3 == 0 else int(h >> 58) % 16


def funding_rate(spec: SymbolSpec, t: int) -> str:
    h = mix(spec.seed ^ (t * 17 + 5))
    if h % 4 != 0:
        return "0.00010000"
    return fmt(int((h >> 8) % 60000) - 20000, 8)


def agg_of_trade(tr: dict[str, Any], agg_id: int) -> dict[str, Any]:
    """An aggregate trade (``/aggTrades`` shape) covering exactly one trade."""
    return {
        "a": agg_id,
        "p": tr["price"],
        "q": tr["qty"],
        "f": tr["id"],
        "l": tr["id"],
        "T": tr["time"],
        "m": tr["isBuyerMaker"],
    }


def search_left(seq: list[int], x: int) -> int:
    return bisect_left(seq, x)


# ----------------------------------------------------------------------------- synthetic trades

TRADE_BUCKET_MS = 10_000  # every 10 s bucket holds exactly two trades, so ids map to times in O(1)
AGG_ID_BASE = 500_000_000


class SyntheticTrades:
    """Deterministic trades of a synthetic symbol from its onboard date on.

    Ids are contiguous (offset + 2 * bucket + slot); a quarter of the buckets put both trades in the same
    millisecond (with different prices, so aggregate trades map 1:1 and their ids stay contiguous too).
    """

    def __init__(self, gen: Synthetic, offset: int, bucket_ms: int = TRADE_BUCKET_MS) -> None:
        self.gen = gen
        self.spec = gen.spec
        self.bucket_ms = bucket_ms  # smaller buckets: a busier symbol (86 ms is ~2 million trades a day)
        self.base = gen.spec.onboard_ms - gen.spec.onboard_ms % bucket_ms
        self.id0 = offset
        self.agg0 = offset + AGG_ID_BASE

    def _bucket(self, b: int) -> list[tuple[int, int, int, int, bool]]:
        """(slot, time, price_units, qty_units, is_buyer_maker) for bucket ``b``."""
        size = self.bucket_ms
        start = self.base + b * size
        h = mix(self.gen.seed ^ (start * 3 + 11))
        t0 = start + h % size
        t1 = t0 if (h >> 20) % 4 == 0 else start + (h >> 24) % size
        t0, t1 = min(t0, t1), max(t0, t1)
        p0 = self.gen.price_units(start)
        p1 = p0 + self.gen.tick if t1 == t0 else self.gen.price_units(start + size // 2)
        qscale = max(1, int(self.spec.vol_per_min * 10**self.spec.qty_dp / 6))
        q0 = 1 + (h >> 32) % qscale
        q1 = 1 + (h >> 44) % qscale
        return [(0, t0, p0, q0, bool((h >> 56) & 1)), (1, t1, p1, q1, bool((h >> 57) & 1))]

    def first_bucket_at(self, t: int) -> int:
        return max(0, (t - self.base) // self.bucket_ms)

    def last_bucket(self, now: int) -> int:
        return (now - self.base) // self.bucket_ms - 1  # only finished buckets (their trades are all past)

    def trades(self, b0: int, b1: int) -> list[dict[str, Any]]:
        """Trades of buckets b0..b1 inclusive as ``/fapi/v1/trades`` objects."""
        pdp, qdp = self.spec.price_dp, self.spec.qty_dp
        out = []
        for b in range(max(0, b0), b1 + 1):
            for slot, t, p, q, m in self._bucket(b):
                out.append(
                    {
                        "id": self.id0 + 2 * b + slot,
                        "price": fmt(p, pdp),
                        "qty": fmt(q, qdp),
                        "quoteQty": fmt(p * q, pdp + qdp),
                        "time": t,
                        "isBuyerMaker": m,
                    }
                )
        return out

    def aggs(self, b0: int, b1: int) -> list[dict[str, Any]]:
        return [agg_of_trade(tr, tr["id"] - self.id0 + self.agg0) for tr in self.trades(b0, b1)]
