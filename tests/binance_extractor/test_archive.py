"""The archive path (data.binance.vision zips) against the real loopback emulator, compared with REST-only extraction.

The emulator's market clock is frozen at ``NOW`` (2025-03-10 12:34:56.789 UTC) so the layout is fixed:
monthly files up to 2025-02, daily files up to 2025-03-09, today (2025-03-10) only through REST. Files from
2022-01 have a header row; files from 2025-01 carry microsecond timestamps.
"""

from __future__ import annotations

import io
import itertools
import logging
import socket
import threading
import time
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
import requests

from binance_extractor import archive, extract, timeframes
from binance_extractor.archive import ArchiveError, ArchiveStats, Period
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.errors import InputError, ValidationError
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.timeutil import dt_to_ms, ms_to_dt, parse_time
from tests.emulator import Emulator

KLINES_M5 = Dataset.of_table("klines_m5")

NOW = dt_to_ms(parse_time("2025-03-10T12:34:56.789Z"))
TODAY = NOW - NOW % 86_400_000
M5 = timeframes.parse("m5")
H1 = timeframes.parse("h1")
PREFIX = "/data/futures/um"


def ms(text: str) -> int:
    return dt_to_ms(parse_time(text))


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator(clock=lambda: NOW)


def rest_only(client: BinanceFuturesClient, symbol: str, tf: timeframes.Timeframe, s: int, e: int) -> list[Kline]:
    return [k for batch in extract.iter_klines(client, symbol, tf, s, e, now_ms=NOW) for k in batch]


def run(
    client: Any, emu: Emulator, symbol: str, tf: timeframes.Timeframe, s: int, e: int, **kw: Any
) -> tuple[list[list[Kline]], ArchiveStats]:
    stats = ArchiveStats()
    kw.setdefault("now_ms", NOW)
    kw.setdefault("min_candles", 0)  # small ranges too: the threshold has its own test
    batches = list(archive.iter_klines(client, symbol, tf, s, e, base_url=emu.archive_url, stats=stats, **kw))
    return batches, stats


def check_batches(batches: list[list[Kline]], s: int, e: int, now: int = NOW) -> list[Kline]:
    """Non-empty, ordered, non-overlapping batches of closed candles inside [s, e); returns them flattened."""
    flat = [k for b in batches for k in b]
    assert all(batches), "empty batch"
    assert all(len(b) <= archive.BATCH_SIZE for b in batches)
    opens = [dt_to_ms(k.open_time) for k in flat]
    assert opens == sorted(set(opens)), "out of order or duplicated"
    assert not opens or (opens[0] >= s and opens[-1] < e)
    assert all(dt_to_ms(k.close_time) < now for k in flat), "an open candle was emitted"
    return flat


def zip_requests(emu: Emulator, name: str | None = None) -> list[str]:
    return [p for p in emu.archive_requests if p.endswith(".zip") and (name is None or p.endswith("/" + name))]


def rest_requests(emu: Emulator) -> int:
    return emu.count("/fapi/v1/klines")


def served_csv(emu: Emulator, path: str) -> list[str]:
    body = requests.get(emu.archive_url + path, timeout=10).content
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        return zf.read(zf.namelist()[0]).decode().splitlines()


# ----------------------------------------------------------------------------- planning


def test_plan_uses_monthly_files_for_whole_months_and_daily_files_around_them() -> None:
    plan = archive.plan_periods(ms("2024-12-30T07:00:00Z"), ms("2025-03-02T00:00:00Z"))
    labels = [(p.kind, p.label) for p in plan]
    assert labels == [
        ("daily", "2024-12-30"),
        ("daily", "2024-12-31"),
        ("monthly", "2025-01"),
        ("monthly", "2025-02"),
        ("daily", "2025-03-01"),
    ]
    # the periods tile the range's days without gap or overlap
    assert all(a.hi_ms == b.lo_ms for a, b in itertools.pairwise(plan))
    assert plan[-1].path("BTCUSDT", "5m") == "data/futures/um/daily/klines/BTCUSDT/5m/BTCUSDT-5m-2025-03-01.zip"
    # a month is only "whole" when the range covers all of it
    assert [p.kind for p in archive.plan_periods(ms("2025-01-01T00:05:00Z"), ms("2025-02-01"))] == ["daily"] * 31
    assert [p.label for p in Period("monthly", "2024-02", ms("2024-02-01"), ms("2024-03-01")).days()][-1] == (
        "2024-02-29"
    )


def test_missing_ranges_groups_absent_candles() -> None:
    lo = ms("2025-01-01")
    have = [lo + i * 300_000 for i in (0, 1, 4, 5)]
    assert archive.missing_ranges(M5, lo, lo + 8 * 300_000, have) == [
        (lo + 2 * 300_000, lo + 4 * 300_000),
        (lo + 6 * 300_000, lo + 8 * 300_000),
    ]
    assert archive.missing_ranges(M5, lo, lo + 2 * 300_000, have) == []


# ----------------------------------------------------------------------------- equality with REST


def test_multi_month_range_mixes_monthly_daily_and_rest_and_equals_rest(emu: Emulator, client: Any) -> None:
    s, e = ms("2024-12-20T07:03:00Z"), NOW + 3_600_000  # end beyond now: only closed candles
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="auto")
    got = check_batches(batches, s, e)
    rest_before = rest_requests(emu)
    expected = rest_only(client, "BTCUSDT", M5, s, e)
    assert got == expected
    assert len(got) == M5.count_between(M5.ceil_ms(s), NOW - NOW % 300_000)  # every closed candle, once
    zips = [p.rsplit("/", 1)[1] for p in zip_requests(emu)]
    assert "BTCUSDT-5m-2025-01.zip" in zips and "BTCUSDT-5m-2025-02.zip" in zips
    assert "BTCUSDT-5m-2024-12-20.zip" in zips and "BTCUSDT-5m-2025-03-09.zip" in zips
    assert not any(z.startswith("BTCUSDT-5m-2025-03-10") for z in zips)  # today is not published
    assert len(zips) == 12 + 2 + 9
    assert stats.rest_ranges == [(TODAY, e)]  # REST only for today
    assert stats.rest_rows == (NOW - NOW % 300_000 - TODAY) // 300_000
    assert rest_before > 0 and stats.files == len(zips)
    assert stats.archive_rows + stats.rest_rows == len(got)


def test_header_and_microsecond_files_are_both_parsed(emu: Emulator, client: Any) -> None:
    old = served_csv(emu, f"{PREFIX}/monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2021-11.zip")
    assert old[0].split(",")[0].isdigit() and len(old[0].split(",")[0]) == 13  # no header, ms
    mid = served_csv(emu, f"{PREFIX}/monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2022-01.zip")
    assert mid[0].startswith("open_time,") and len(mid[1].split(",")[0]) == 13  # header, ms
    new = served_csv(emu, f"{PREFIX}/monthly/klines/ETHUSDT/1h/ETHUSDT-1h-2025-01.zip")
    assert new[0].startswith("open_time,") and len(new[1].split(",")[0]) == 16  # header, us
    assert new[1].split(",")[6].endswith("999999")
    for s, e in ((ms("2021-10-20T05:00:00Z"), ms("2022-02-03T00:00:00Z")), (ms("2024-12-30"), ms("2025-02-02"))):
        batches, stats = run(client, emu, "ETHUSDT", H1, s, e, source="archive")
        assert check_batches(batches, s, e) == rest_only(client, "ETHUSDT", H1, s, e)
        assert stats.rest_ranges == [] and not stats.unfilled_ranges


def test_parse_csv_converts_microseconds_exactly_and_skips_header() -> None:
    text = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
        "taker_buy_quote_volume,ignore\n"
        "1735689600000000,1.5,1.6,1.4,1.55,10,1735689899999999,15.5,3,5,7.75,0\n"
        "1735689900000000,1.55,1.6,1.5,1.5,2,1735690199999999,3.1,1,1,1.55,0\n"
    )
    rows, opens = archive.parse_csv(text, "XUSDT", "5m", 0, 2**62)
    assert opens == [1735689600000, 1735689900000]
    assert rows[0] == Kline.from_rest(
        "XUSDT", "5m", [1735689600000, "1.5", "1.6", "1.4", "1.55", "10", 1735689899999, "15.5", 3, "5", "7.75", "0"]
    )
    same, _ = archive.parse_csv(text.split("\n", 1)[1].replace("000000,", "000,").replace("999999,", "999,"), "XUSDT",
                                "5m", 0, 2**62)  # fmt: skip
    assert same == rows
    window, _ = archive.parse_csv(text, "XUSDT", "5m", 1735689900000, 2**62)
    assert window == rows[1:]


def test_real_fixture_symbol_from_archive_equals_rest(emu: Emulator, client: Any) -> None:
    s, e = ms("2021-11-15"), ms("2021-11-22")
    batches, stats = run(client, emu, "XRPUSDT", M5, s, e, source="auto")
    assert check_batches(batches, s, e) == rest_only(client, "XRPUSDT", M5, s, e)
    assert stats.files >= 6 and stats.rest_rows == 0


def test_daily_candles_one_row_per_file(emu: Emulator, client: Any) -> None:
    d1 = timeframes.parse("d1")
    s, e = ms("2024-11-28"), NOW
    batches, stats = run(client, emu, "SOLUSDT", d1, s, e, source="auto")
    got = check_batches(batches, s, e)
    assert got == rest_only(client, "SOLUSDT", d1, s, e)
    assert dt_to_ms(got[-1].open_time) == TODAY - 86_400_000  # today's d1 candle is still open
    assert stats.rest_rows == 0


# ----------------------------------------------------------------------------- faults


def test_corrupt_file_is_retried_then_raises_in_archive_mode(emu: Emulator, client: Any) -> None:
    name = "BTCUSDT-5m-2025-02.zip"
    emu.archive_corrupt = {name}  # type: ignore[attr-defined]
    s, e = ms("2025-01-01"), ms("2025-03-01")
    got: list[Kline] = []
    with pytest.raises(ArchiveError, match=r"BTCUSDT-5m-2025-02\.zip: checksum mismatch") as info:
        for batch in archive.iter_klines(client, "BTCUSDT", M5, s, e, source="archive", now_ms=NOW):
            got.extend(batch)
    assert info.value.filename == name
    assert len(zip_requests(emu, name)) == archive.ATTEMPTS
    assert all(k.open_time.month == 1 for k in got)  # nothing of the corrupt month was emitted
    assert rest_requests(emu) == 0


def test_corrupt_file_falls_back_to_rest_in_auto_mode(
    emu: Emulator, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = "BTCUSDT-5m-2025-02.zip"
    emu.archive_corrupt = {name}  # type: ignore[attr-defined]
    s, e = ms("2025-01-25"), ms("2025-03-03")
    with caplog.at_level(logging.ERROR, logger="binance_extractor.archive"):
        batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="auto")
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", M5, s, e)
    assert stats.files_failed == [name]
    assert stats.rest_ranges == [(ms("2025-02-01"), ms("2025-03-01"))]
    assert any(name in r.getMessage() and "checksum mismatch" in r.getMessage() for r in caplog.records)


def test_truncated_file_is_reported_as_truncated(emu: Emulator, client: Any) -> None:
    name = "BTCUSDT-5m-2025-03-02.zip"
    emu.archive_truncated = {name}  # type: ignore[attr-defined]
    s, e = ms("2025-03-01"), ms("2025-03-04")
    with pytest.raises(ArchiveError, match=r"BTCUSDT-5m-2025-03-02\.zip: truncated"):
        run(client, emu, "BTCUSDT", M5, s, e, source="archive")
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="auto")
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", M5, s, e)
    assert stats.rest_ranges == [(ms("2025-03-02"), ms("2025-03-03"))]


class _Once:
    """A fault set that holds a name only for its first lookup: a transient fault."""

    def __init__(self, name: str) -> None:
        self.name, self.used, self.lock = name, False, threading.Lock()

    def __contains__(self, item: object) -> bool:
        with self.lock:
            if item == self.name and not self.used:
                self.used = True
                return True
            return False


def test_transient_corruption_is_retried_without_rest(emu: Emulator, client: Any) -> None:
    name = "BTCUSDT-5m-2025-01.zip"
    emu.archive_corrupt = _Once(name)  # type: ignore[attr-defined]
    s, e = ms("2025-01-01"), ms("2025-02-01")
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="archive")
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", M5, s, e)
    assert len(zip_requests(emu, name)) == 2 and stats.files_failed == [] and stats.rest_rows == 0


def test_missing_day_falls_back_to_rest_in_auto_mode(emu: Emulator, client: Any) -> None:
    name = "BTCUSDT-5m-2025-03-05.zip"
    emu.archive_missing = {name}  # type: ignore[attr-defined]
    s, e = ms("2025-03-03T10:00:00Z"), ms("2025-03-08")
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="auto")
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", M5, s, e)
    assert stats.files_missing == [name]
    assert stats.rest_ranges == [(ms("2025-03-05"), ms("2025-03-06"))]


def test_missing_day_is_reported_not_fetched_in_archive_mode(
    emu: Emulator, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = "BTCUSDT-5m-2025-03-05.zip"
    emu.archive_missing = {name}  # type: ignore[attr-defined]
    s, e = ms("2025-03-04"), ms("2025-03-07")
    with caplog.at_level(logging.WARNING, logger="binance_extractor.archive"):
        batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="archive")
    got = check_batches(batches, s, e)
    expected = [k for k in rest_only(client, "BTCUSDT", M5, s, e) if k.open_time.day != 5]
    assert got == expected and len(got) == 2 * 288
    assert stats.unfilled_ranges == [(ms("2025-03-05"), ms("2025-03-06"))]
    assert any(name in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_archive_mode_sends_no_rest_request(emu: Emulator) -> None:
    s, e = ms("2025-02-27"), NOW
    batches, stats = run(None, emu, "BTCUSDT", M5, s, e, source="archive")  # no client at all
    check_batches(batches, s, e)
    assert rest_requests(emu) == 0
    assert stats.unfilled_ranges == [(TODAY, e)]  # today is reported, not fetched


def test_rows_missing_inside_a_file_come_from_rest(emu: Emulator, client: Any) -> None:
    name = "BTCUSDT-5m-2025-02.zip"
    dropped = [ms("2025-02-10T00:00:00Z") + i * 300_000 for i in range(5)] + [ms("2025-02-28T23:55:00Z")]
    emu.archive_drop = {name: dropped}  # type: ignore[attr-defined]
    s, e = ms("2025-02-01"), ms("2025-03-01")
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="auto")
    got = check_batches(batches, s, e)
    assert got == rest_only(client, "BTCUSDT", M5, s, e) and len(got) == 28 * 288
    assert stats.rest_ranges == [(dropped[0], dropped[4] + 300_000), (dropped[5], e)]
    assert stats.rest_rows == 6


def test_exchange_outage_is_left_as_a_hole(emu: Emulator, client: Any) -> None:
    lo, hi = ms("2025-02-12T03:00:00Z"), ms("2025-02-12T04:30:00Z")
    emu.add_outage("BTCUSDT", lo, hi - 1)
    s, e = ms("2025-02-01"), ms("2025-03-01")
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="auto")
    got = check_batches(batches, s, e)
    assert got == rest_only(client, "BTCUSDT", M5, s, e)
    assert len(got) == 28 * 288 - 18
    assert stats.unfilled_ranges == [(lo, hi)]  # asked REST once, it had nothing either


def test_monthly_file_not_yet_published_uses_daily_files(emu: Emulator, client: Any) -> None:
    emu.archive_monthly_lag_days = 15  # type: ignore[attr-defined]
    s, e = ms("2025-01-01"), ms("2025-03-01")
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="auto")
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", M5, s, e)
    zips = [p.rsplit("/", 1)[1] for p in zip_requests(emu)]
    assert "BTCUSDT-5m-2025-01.zip" in zips and "BTCUSDT-5m-2025-02-28.zip" in zips
    assert stats.rest_ranges == [] and stats.files_missing == []


def test_yesterday_before_publication_comes_from_rest(emu: Emulator, client: Any) -> None:
    emu.archive_daily_lag_days = 1  # type: ignore[attr-defined]
    s, e = ms("2025-03-07"), NOW
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="auto")
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", M5, s, e)
    yesterday = TODAY - 86_400_000
    assert stats.rest_ranges == [(yesterday, TODAY), (TODAY, e)]


def test_listing_inside_the_range(emu: Emulator, client: Any) -> None:
    s, e = ms("2023-03-20"), ms("2023-04-03")  # ARBUSDT listed 2023-03-23
    batches, stats = run(client, emu, "ARBUSDT", H1, s, e, source="auto")
    got = check_batches(batches, s, e)
    assert got == rest_only(client, "ARBUSDT", H1, s, e)
    assert got[0].open_time.day == 23
    assert len(stats.files_missing) == 3  # no file before listing; REST confirms there is nothing


# ----------------------------------------------------------------------------- bounded memory, sources


def test_downloads_stay_bounded_while_the_consumer_waits(emu: Emulator, client: Any) -> None:
    s, e = ms("2024-01-01"), ms("2024-09-01")  # eight monthly files of ~8.9k rows
    stats = ArchiveStats()
    it = archive.iter_klines(client, "BTCUSDT", M5, s, e, now_ms=NOW, base_url=emu.archive_url, workers=2, stats=stats)
    first = next(it)
    assert len(first) == archive.BATCH_SIZE
    time.sleep(1.0)  # a slow sink: nothing more may be downloaded meanwhile
    assert len(zip_requests(emu)) <= 2 + 1
    rest = [k for batch in it for k in batch]
    assert len(first) + len(rest) == M5.count_between(s, e)
    assert len(zip_requests(emu)) == 8
    assert stats.max_outstanding == 3


def test_abandoned_iteration_stops_downloading(emu: Emulator, client: Any) -> None:
    s, e = ms("2024-01-01"), ms("2024-09-01")
    it = archive.iter_klines(client, "BTCUSDT", M5, s, e, now_ms=NOW, base_url=emu.archive_url, workers=2)
    next(it)
    it.close()
    n = len(zip_requests(emu))
    time.sleep(0.5)
    assert len(zip_requests(emu)) == n <= 3


def test_auto_sends_small_ranges_to_rest(emu: Emulator, client: Any) -> None:
    s, e = TODAY - 1_800_000, NOW  # an incremental run across midnight: yesterday's last half hour
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="auto", min_candles=archive.AUTO_MIN_CANDLES)
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", M5, s, e)
    d1 = timeframes.parse("d1")
    s = ms("2024-03-01")  # a year of daily candles: one REST page beats 12 monthly and 9 daily files
    batches, stats = run(client, emu, "BTCUSDT", d1, s, e, source="auto", min_candles=archive.AUTO_MIN_CANDLES)
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", d1, s, e)
    assert getattr(emu, "archive_requests", []) == [] and stats.rest_ranges == [(s, e)]
    batches, _ = run(client, emu, "BTCUSDT", d1, s, e, source="archive", min_candles=archive.AUTO_MIN_CANDLES)
    assert len(zip_requests(emu)) == 12 + 9  # explicit --source archive still uses the archive


def test_rest_source_never_touches_the_archive(emu: Emulator, client: Any) -> None:
    s, e = ms("2025-02-20"), ms("2025-03-02")
    batches, _ = run(client, emu, "BTCUSDT", H1, s, e, source="rest")
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", H1, s, e)
    assert emu.archive_requests == [] if hasattr(emu, "archive_requests") else True


def test_bad_source_and_unsupported_interval(emu: Emulator, client: Any) -> None:
    with pytest.raises(InputError, match="unknown source"):
        list(archive.iter_klines(client, "BTCUSDT", M5, 0, 1, source="ftp"))
    w1 = timeframes.parse("1w")
    with pytest.raises(InputError, match="--source rest"):
        list(archive.iter_klines(client, "BTCUSDT", w1, ms("2025-01-06"), ms("2025-03-03"), source="archive"))
    s, e = ms("2025-01-06"), ms("2025-03-03")
    batches, _ = run(client, emu, "BTCUSDT", w1, s, e, source="auto")  # auto: REST
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", w1, s, e)


# ----------------------------------------------------------------------------- through the real pipeline


@pytest.mark.mysql
@pytest.mark.parametrize("frozen_clock", ["month-start", "leap-day"], indirect=True)
def test_cli_backfill_from_archive_into_mysql_equals_rest(
    frozen_clock: Any, make_emulator: Callable[..., Emulator], mysql_conn_id: str
) -> None:
    """At 00:00:30 on the 1st (last month's and yesterday's files published 30 s ago) and midday on 29 Feb: the
    pipeline decides by itself what is closed and published, from the pinned clock it shares with the exchange."""
    from binance_extractor import cli
    from binance_extractor.sinks import open_sinks
    from binance_extractor.timeutil import iso, ms_to_dt

    emu = make_emulator()  # follows the pinned library clock
    now = emu.now_ms()
    today = now - now % 86_400_000
    end = now - now % 3_600_000 - 3_600_000  # a closed hour: REST-only below sees the same candles
    d = ms_to_dt(today)
    y, m = (d.year, d.month - 2) if d.month > 2 else (d.year - 1, d.month + 10)
    start = ms(f"{y}-{m:02d}-01") - 3 * 86_400_000  # 3 days, a whole month, this month's days, today
    argv = ["klines", "--interval", "5m", "--symbols", "BTCUSDT,SOLUSDT", "--start", iso(ms_to_dt(start))]
    results = cli.execute([*argv, "--end", iso(ms_to_dt(end)), "--source", "auto", "--sink", "mysql"])
    assert [r.outcome for r in results] == ["success", "success"]
    assert any(p.endswith(".zip") and "/monthly/" in p for p in emu.archive_requests)
    client = BinanceFuturesClient(base_url=emu.url)
    sink = open_sinks(["mysql"], {"mysql": mysql_conn_id})[0]
    try:
        for result, symbol in zip(results, ("BTCUSDT", "SOLUSDT"), strict=True):
            expected = [
                k.model_dump()
                for batch in extract.iter_klines(client, symbol, M5, start, end, now_ms=emu.now_ms())
                for k in batch
            ]
            stored = sink.read(KLINES_M5, symbol, ms_to_dt(start), ms_to_dt(end))
            assert stored == expected
            assert result.rows_written == len(expected) == M5.count_between(start, end)
    finally:
        sink.close()
        client.close()


class _DroppingHost:
    """A host that accepts every connection and closes it at once (a ConnectionError), counting the attempts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_unreachable_archive_host(emu: Emulator, client: Any) -> None:
    s, e = ms("2025-01-20"), ms("2025-03-03")
    host = _DroppingHost()
    try:
        stats = ArchiveStats()
        it = archive.iter_klines(client, "BTCUSDT", H1, s, e, now_ms=NOW, base_url=host.url, stats=stats, min_candles=0)
        got = [k for batch in it for k in batch]
    finally:
        host.close()
    assert got == rest_only(client, "BTCUSDT", H1, s, e)
    files = len(archive.plan_periods(s, e))
    assert len(stats.files_failed) == files
    # the first failures mark the host down: the rest is not retried (counted attempts, not seconds)
    assert 0 < host.accepted <= archive.ATTEMPTS * 5 < files * archive.ATTEMPTS  # at most the 4 workers + 1 in flight
    dead = "http://127.0.0.1:9"  # nothing listens there: connection refused
    with pytest.raises(ArchiveError, match=r"BTCUSDT-1h-2025-01-20\.zip: download failed: ConnectionError"):
        list(archive.iter_klines(None, "BTCUSDT", H1, s, e, source="archive", now_ms=NOW, base_url=dead))


def test_archive_5xx_is_retried(emu: Emulator, client: Any) -> None:
    name = "BTCUSDT-5m-2025-02-03.zip"
    emu.archive_unavailable = {name: 2}  # type: ignore[attr-defined]
    s, e = ms("2025-02-02"), ms("2025-02-05")
    batches, stats = run(client, emu, "BTCUSDT", M5, s, e, source="archive")
    assert check_batches(batches, s, e) == rest_only(client, "BTCUSDT", M5, s, e)
    assert len(zip_requests(emu, name)) == 3 and stats.files_failed == [] and stats.rest_rows == 0
    emu.archive_unavailable = {name: 10}  # type: ignore[attr-defined]
    with pytest.raises(ArchiveError, match=r"BTCUSDT-5m-2025-02-03\.zip: HTTP 503 \(after 3 attempts\)"):
        run(client, emu, "BTCUSDT", M5, s, e, source="archive")


def test_impossible_row_in_a_verified_file_is_rejected_not_written(emu: Emulator, client: Any) -> None:
    bad_open = ms("2025-02-10T12:00:00Z")
    row = emu.klines_rows("BTCUSDT", "5m", bad_open, bad_open)[0]
    emu.set_kline_override("BTCUSDT", "5m", bad_open, [*row[:2], "1.00", *row[3:]])  # high below low
    s, e = ms("2025-02-01"), ms("2025-03-01")
    got: list[Kline] = []
    with pytest.raises(ValidationError, match=r"BTCUSDT at 2025-02-10T12:00:00\.000Z\): .*high 1\.00 below"):
        for batch in archive.iter_klines(client, "BTCUSDT", M5, s, e, now_ms=NOW, base_url=emu.archive_url):
            got.extend(batch)
    assert all(k.open_time < ms_to_dt(bad_open) for k in got)  # its batch never left the iterator
