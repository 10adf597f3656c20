"""Issue #23 library pieces: mark/index/premium-index klines and open interest, against the emulator.

Pagination is checked at every edge the trade klines' tests check (multi-page ranges not aligned to candles,
the monthly interval, the in-progress candle at every pinned instant, outages, a cursor the exchange ignores),
plus the open-interest endpoint's own ones (end-anchored pages, the 30-day horizon, its own request limit).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from binance_extractor import archive, open_interest, timeframes, weights
from binance_extractor.catalog import DataKind
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.clock import FixedClock
from binance_extractor.derivative_models import PRICE_MODELS, MarkKline, OpenInterest, PremiumKline
from binance_extractor.errors import InputError, ValidationError
from binance_extractor.extract import StuckCursorError, iter_klines
from binance_extractor.prices import Price, pair_of
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt
from tests.emulator import datasets as DS
from tests.fixtures.clock import at_instants

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = dt_to_ms(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
DERIVED = [Price.MARK, Price.INDEX, Price.PREMIUM]


def client_for(emu) -> BinanceFuturesClient:
    return BinanceFuturesClient(emu.url, "test-key", backoff_initial=0.05)


def flat(batches) -> list:
    return [row for batch in batches for row in batch]


def expected(emu, price: Price, symbol: str, interval: str, start: int, end: int) -> list:
    build = PRICE_MODELS[price].from_rest
    rows = DS.price_rows(emu, price.value, symbol, interval, start, end - 1)
    return [build(price.subject(symbol), interval, r) for r in rows]


# ----------------------------------------------------------------------------- types and rules


def test_symbol_to_pair() -> None:
    assert pair_of("BTCUSDT") == "BTCUSDT"
    assert pair_of("BTCUSDT_250328") == "BTCUSDT"
    assert pair_of("1000PEPEUSDT") == "1000PEPEUSDT"
    assert (
        Price.INDEX.subject("ETHUSDT_251226") == "ETHUSDT" and Price.MARK.subject("ETHUSDT_251226") == "ETHUSDT_251226"
    )
    for bad in ("btcusdt", "BTC-USDT", "", "BTCUSDT_25"):
        with pytest.raises(InputError):
            pair_of(bad)


def test_price_types() -> None:
    assert [Price.parse(p).table_prefix for p in ("trade", "MARK", "index", " premium ")] == [
        "klines",
        "mark_klines",
        "index_klines",
        "premium_klines",
    ]
    assert Price.INDEX.param == "pair" and Price.PREMIUM.param == "symbol"
    assert Price.MARK.archive_dir == "markPriceKlines" and Price.TRADE.endpoint == "/fapi/v1/klines"
    with pytest.raises(InputError, match="unknown price 'last'"):
        Price.parse("last")


def test_weights_of_the_new_endpoints() -> None:
    for p in DERIVED:
        assert [weights.weight(p.endpoint, {"limit": n}) for n in (99, 100, 499, 500, 1000, 1001)] == [
            1,
            2,
            2,
            5,
            5,
            10,
        ]
        assert weights.weight(p.endpoint, {}) == 5  # default limit 500
    assert weights.weight("/futures/data/openInterestHist", {"limit": 500}) == 0
    assert weights.OPEN_INTEREST_LIMIT == (1000, 300.0)


def test_models_keep_decimals_and_refuse_impossible_rows() -> None:
    row = [1_700_000_000_000 - 1_700_000_000_000 % 300_000, "-0.00042931", "-0.00023641", "-0.00059406"]
    row += ["-0.00043659", "0", row[0] + 299_999, "0", 12, "0", "0", "0"]
    p = PremiumKline.from_rest("BTCUSDT", "5m", row)
    assert p.low == Decimal("-0.00059406") and p.sample_count == 12
    with pytest.raises(ValidationError, match="negative price"):
        MarkKline.from_rest("BTCUSDT", "5m", row)
    with pytest.raises(ValidationError, match="close_time"):
        PremiumKline.from_rest("BTCUSDT", "5m", [*row[:6], row[6] + 1, *row[7:]])
    with pytest.raises(ValidationError, match="floats"):
        MarkKline.from_rest("BTCUSDT", "5m", [row[0], 1.5, "2", "1", "1.5", "0", row[6], "0", 1, "0", "0", "0"])
    a = OpenInterest.from_rest(
        {
            "symbol": "BTCUSDT",
            "sumOpenInterest": "20403.637",
            "sumOpenInterestValue": "1.5",
            "timestamp": "1583127900000",
        }
    )
    b = OpenInterest.from_metrics(
        ["2020-03-02 05:45:00", "BTCUSDT", "20403.63700000", "1.50000000", "1", "1", "1", "1"]
    )
    assert a.time == b.time == ms_to_dt(1583127900000) and a.open_interest == b.open_interest
    assert str(b.open_interest) == "20403.63700000"  # the exchange's places kept
    with pytest.raises(ValidationError):
        OpenInterest.from_rest(
            {"symbol": "BTCUSDT", "sumOpenInterest": "x", "sumOpenInterestValue": "1", "timestamp": 1}
        )


# ----------------------------------------------------------------------------- price klines over REST


@pytest.mark.parametrize("price", DERIVED)
@pytest.mark.parametrize(
    ("interval", "days", "page"), [("5m", 5, 499), ("1h", 45, 499), ("1d", 1200, 499), ("1w", 1500, 50)]
)
def test_multi_page_range_equals_source_exactly_once(emulator, price, interval, days, page):
    client = client_for(emulator)
    end = dt_to_ms(datetime(2025, 6, 1, 7, 3, tzinfo=UTC))  # not aligned: range ends mid-candle
    start = end - days * DAY + 12_345
    tf = timeframes.parse(interval)
    got = flat(iter_klines(client, "BTCUSDT", tf, start, end, page=page, price=price))
    want = expected(emulator, price, "BTCUSDT", interval, tf.ceil_ms(start), end)
    assert len(want) > 2 * page and got == want
    assert all(type(k) is PRICE_MODELS[price] for k in got)
    assert len({k.open_time for k in got}) == len(got)
    sent = {r.path for r in emulator.requests} & {p.endpoint for p in Price}
    assert sent == {price.endpoint}


def test_monthly_interval_pages_by_calendar_month(emulator):
    got = flat(
        iter_klines(
            client_for(emulator),
            "BTCUSDT",
            timeframes.parse("1M"),
            0,
            dt_to_ms(datetime(2025, 1, 1, tzinfo=UTC)),
            price=Price.MARK,
        )
    )
    assert [k.open_time.day for k in got] == [1] * len(got)
    assert got[0].open_time == datetime(2019, 9, 1, tzinfo=UTC) and got[-1].open_time == datetime(
        2024, 12, 1, tzinfo=UTC
    )


@at_instants
@pytest.mark.parametrize("price", DERIVED)
def test_in_progress_candle_is_never_emitted(frozen_clock, emulator, price):
    client = client_for(emulator)
    tf = timeframes.parse("5m")
    now = frozen_clock.now_ms()
    got = flat(iter_klines(client, "ETHUSDT", tf, now - DAY, now + DAY, price=price))
    cutoff = client.closed_before_ms()
    last_open = tf.floor_ms(cutoff) - tf.ms
    assert [dt_to_ms(k.open_time) for k in got] == list(range(tf.ceil_ms(now - DAY), last_open + 1, tf.ms))
    assert all(dt_to_ms(k.close_time) < cutoff for k in got)
    served = DS.query_price_klines(emulator, price.value, "ETHUSDT", "5m", tf.floor_ms(now), None, 1)
    assert served and served[0][6] >= now  # the exchange does serve the live candle


def test_outage_stays_a_hole_and_index_asks_for_the_pair(emulator):
    tf = timeframes.parse("1h")
    start = dt_to_ms(datetime(2024, 3, 1, tzinfo=UTC))
    emulator.add_outage("SOLUSDT", start + 10 * HOUR, start + 14 * HOUR - 1)
    got = flat(iter_klines(client_for(emulator), "SOLUSDT", tf, start, start + 30 * HOUR, price=Price.INDEX))
    assert [(dt_to_ms(k.open_time) - start) // HOUR for k in got] == [h for h in range(30) if not 10 <= h < 14]
    sent = [r.params for r in emulator.requests if r.path == Price.INDEX.endpoint]
    assert sent and all(p.get("pair") == "SOLUSDT" and "symbol" not in p for p in sent)


def test_cursor_ignored_fails_instead_of_dropping_a_window(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    client = client_for(emu)
    client.max_in_flight = 1
    emu.inject("repeat_page", times=1000, path=Price.PREMIUM.endpoint, after=1)
    with pytest.raises(StuckCursorError, match="premiumIndexKlines BTCUSDT"):
        flat(
            iter_klines(client, "BTCUSDT", timeframes.parse("1h"), NOW - 60 * DAY, NOW, now_ms=NOW, price=Price.PREMIUM)
        )
    assert emu.count(Price.PREMIUM.endpoint) == 2


# ----------------------------------------------------------------------------- price klines from the archive


@pytest.mark.parametrize("price", DERIVED)
def test_archive_path_equals_rest(make_emulator, price):
    emu = make_emulator(clock=FixedClock(NOW))
    tf = timeframes.parse("1h")
    start, end = dt_to_ms(datetime(2026, 9, 20, tzinfo=UTC)), NOW  # monthly + daily files + today from REST
    stats = archive.ArchiveStats()
    got = flat(
        archive.iter_klines(
            client_for(emu),
            "BTCUSDT",
            tf,
            start,
            end,
            source="auto",
            now_ms=NOW,
            stats=stats,
            price=price,
            base_url=emu.archive_url,
        )
    )
    assert got == expected(emu, price, "BTCUSDT", "1h", start, end)
    assert stats.files >= 3 and stats.archive_rows > stats.rest_rows > 0
    assert any(f"/{price.archive_dir}/BTCUSDT/1h/" in p for p in emu.archive_requests)
    emu.archive_corrupt.add("BTCUSDT-1h-2026-10.zip")
    with pytest.raises(archive.ArchiveError, match="checksum"):
        flat(
            archive.iter_klines(
                client_for(emu),
                "BTCUSDT",
                tf,
                start,
                end,
                source="archive",
                now_ms=NOW,
                price=price,
                base_url=emu.archive_url,
            )
        )


# ----------------------------------------------------------------------------- open interest


def test_open_interest_rest_pages_exactly_once(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    client = client_for(emu)
    start = NOW - 5 * DAY + 12_345  # not on the 5-minute grid
    got = flat(open_interest.iter_rest(client, "BTCUSDT", start, NOW, now_ms=NOW))
    first = start + (-start) % 300_000
    assert [dt_to_ms(o.time) for o in got] == list(range(first, NOW, 300_000))
    want = DS.query_open_interest(emu, "BTCUSDT", "5m", first, NOW - 1, 10**6)
    assert [(o.open_interest, o.open_interest_value) for o in got] == [
        (Decimal(r["sumOpenInterest"]), Decimal(r["sumOpenInterestValue"])) for r in want
    ]
    params = [r.params for r in emu.requests if r.path == "/futures/data/openInterestHist"]
    assert len(params) == -(-len(got) // 500)  # one request per 500 samples
    assert all(r.weight == 0 for r in emu.requests if r.path.startswith("/futures"))


def test_open_interest_full_end_anchored_page_is_followed_backwards(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    lo = NOW - 6 * DAY
    got = open_interest._fetch_window(client_for(emu), DataKind.OPEN_INTEREST, "ETHUSDT", lo, lo + 1200 * 300_000)
    assert [dt_to_ms(o.time) for o in got] == list(range(lo, lo + 1200 * 300_000, 300_000))
    ends = [int(r.params["endTime"]) for r in emu.requests if r.path == "/futures/data/openInterestHist"]
    assert len(ends) == 3 and ends == sorted(ends, reverse=True)


def test_open_interest_outage_stays_a_hole(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    lo = NOW - DAY
    emu.add_outage("BTCUSDT", lo + HOUR, lo + 2 * HOUR - 1)
    got = flat(open_interest.iter_rest(client_for(emu), "BTCUSDT", lo, lo + 3 * HOUR, now_ms=NOW))
    assert len(got) == 24
    assert open_interest.holes([dt_to_ms(o.time) for o in got], lo, lo + 3 * HOUR) == [(lo + HOUR, lo + 2 * HOUR)]


def test_open_interest_horizon(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    with pytest.raises(InputError, match="older than the 30 days the REST endpoint serves"):
        flat(open_interest.iter_rest(client_for(emu), "BTCUSDT", NOW - 31 * DAY, NOW, now_ms=NOW))
    assert emu.count("/futures/data/openInterestHist") == 0  # refused before any request
    floor = open_interest.rest_floor(NOW)
    assert NOW - 30 * DAY < floor < NOW - 29 * DAY
    assert open_interest.plan_sources(NOW - 40 * DAY, NOW, NOW) == [
        ("archive", NOW - 40 * DAY, floor),
        ("rest", floor, NOW),
    ]
    assert open_interest.plan_sources(NOW - DAY, NOW, NOW) == [("rest", NOW - DAY, NOW)]
    assert open_interest.plan_sources(NOW - 90 * DAY, NOW - 60 * DAY, NOW) == [
        ("archive", NOW - 90 * DAY, NOW - 60 * DAY)
    ]
    got = flat(open_interest.iter_rest(client_for(emu), "BTCUSDT", floor, floor + HOUR, now_ms=NOW))
    assert len(got) == 12  # the edge itself is served


def test_open_interest_archive_equals_rest_and_goes_back_years(make_emulator):
    emu = make_emulator(clock=FixedClock(NOW))
    day = NOW - NOW % DAY - 2 * DAY
    days = list(open_interest.iter_archive("BTCUSDT", day, day + DAY, emu.archive_url))
    assert len(days) == 1 and days[0][1] is not None
    rest = flat(open_interest.iter_rest(client_for(emu), "BTCUSDT", day, day + DAY, now_ms=NOW))
    assert days[0][1] == rest and len(rest) == 288
    old = dt_to_ms(datetime(2023, 3, 1, tzinfo=UTC))
    part = list(open_interest.iter_archive("BTCUSDT", old + HOUR, old + DAY + HOUR, emu.archive_url))
    assert [p.label for p, _ in part] == ["2023-03-01", "2023-03-02"]
    assert sum(len(rows or []) for _, rows in part) == 288
    emu.archive_missing.add("BTCUSDT-metrics-2023-03-02.zip")
    emu.archive_corrupt.add("BTCUSDT-metrics-2023-03-01.zip")
    with pytest.raises(archive.ArchiveError, match=r"BTCUSDT-metrics-2023-03-01\.zip"):
        list(open_interest.iter_archive("BTCUSDT", old, old + 2 * DAY, emu.archive_url))
    emu.archive_corrupt.clear()
    got = list(open_interest.iter_archive("BTCUSDT", old, old + 2 * DAY, emu.archive_url))
    assert got[1][1] is None  # not published: reported, not guessed


def test_open_interest_has_its_own_request_window(make_emulator, tmp_path, monkeypatch):
    """OI requests are counted in their own shared window, never in the weight budget."""
    monkeypatch.setenv("BINANCE_EXTRACTOR_BUDGET_URL", f"sqlite:///{tmp_path}/budget.sqlite")
    emu = make_emulator(clock=FixedClock(NOW))
    client = client_for(emu)
    flat(open_interest.iter_rest(client, "BTCUSDT", NOW - 3 * DAY, NOW, now_ms=NOW))
    oi_limiter = client._limiter_for("/futures/data/openInterestHist")
    assert oi_limiter is not client.limiter and oi_limiter.key.endswith(":open-interest")
    state = oi_limiter.store.transact(oi_limiter.key, dict)
    assert len(state["funding"]) == emu.count("/futures/data/openInterestHist") == 1 + 3 * 288 // 500
    main = client.limiter.store.transact(client.limiter.key, dict)
    assert not main.get("funding")


@pytest.mark.parametrize("source", ["auto", "archive", "rest"])
def test_open_interest_sources(make_emulator, source):
    emu = make_emulator(clock=FixedClock(NOW))
    client = client_for(emu)
    start, end = NOW - 32 * DAY, NOW
    if source == "rest":
        with pytest.raises(InputError, match="--source archive or --source auto"):
            flat(open_interest.iter_source(client, "BTCUSDT", start, end, source=source, now_ms=NOW))
        return
    url = emu.archive_url
    got = flat(open_interest.iter_source(client, "BTCUSDT", start, end, source=source, now_ms=NOW, base_url=url))
    times = [dt_to_ms(o.time) for o in got]
    assert times == sorted(set(times))
    today = NOW - NOW % DAY
    last = today if source == "archive" else NOW  # the archive has no file for today yet
    assert times == list(range(start, last, 300_000))
    used_rest = emu.count("/futures/data/openInterestHist") > 0
    assert used_rest == (source == "auto")


# ----------------------------------------------------------------------------- freshness


def test_freshness_lag_covers_every_new_series(frozen_clock, make_emulator, tmp_path, monkeypatch):
    """``binance.freshness.lag`` is set after the jobs of every series on a time grid, kept apart by ``kind``:
    the price klines per timeframe (newest closed candle) and open interest (newest 5-minute mark before now)."""
    from binance_extractor import cli, telemetry

    monkeypatch.setenv("BINANCE_EXTRACTOR_DATA_DIR", str(tmp_path))
    make_emulator()
    hour = frozen_clock.now_ms() - frozen_clock.now_ms() % HOUR
    now = hour + 7 * 60_000 + 30_000  # HH:07:30: the 5m candle HH:05 is forming, HH:00 is the newest closed
    frozen_clock.set(now)

    def span(end_ms: int) -> list[str]:
        return ["--symbols", "BTCUSDT", "--start", iso(ms_to_dt(now - 2 * HOUR)), "--end", iso(ms_to_dt(end_ms)),
                "--sink", "sqlite"]  # fmt: skip

    behind = now - 20 * 60_000  # HH-1:47:30: the newest candle stored opens HH-1:45 (closed now), the newest mark too
    with telemetry.capture() as cap:
        cli.execute(["klines", "--price", "mark", "--interval", "5m", *span(now)])
        cli.execute(["klines", "--price", "index", "--interval", "5m", *span(behind)])
        cli.execute(["klines", "--price", "premium", "--interval", "1h", *span(now)])
        cli.execute(["open-interest", *span(now)])
        cli.execute(["open-interest", "--symbols", "ETHUSDT", *span(behind)[2:]])
        lag = {(p.attributes["kind"], p.attributes["symbol"], p.attributes["timeframe"]): p.value
               for p in cap.points("binance.freshness.lag")}  # fmt: skip
    assert lag == {
        ("mark_klines", "BTCUSDT", "5m"): 0,
        ("index_klines", "BTCUSDT", "5m"): 15 * 60,  # HH-1:50 .. HH:00 missing
        ("premium_klines", "BTCUSDT", "1h"): 0,
        ("open_interest", "BTCUSDT", "5m"): 0,  # the HH:05 mark is stored
        ("open_interest", "ETHUSDT", "5m"): 20 * 60,  # HH-1:50 .. HH:05 missing
    }
