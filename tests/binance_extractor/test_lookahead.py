"""``lookahead``: the next symbol's archive files fetched while the current symbol loads, against the loopback
emulator's archive (its clock frozen at 2025-03-10 12:34:56.789 UTC); the stores are the sinks' own tests'."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from binance_extractor import archive, clock, timeframes
from binance_extractor.archive import ArchiveError
from binance_extractor.archive_columns import KlineBlock
from binance_extractor.kinds import DataKind
from binance_extractor.lookahead import Lookahead, lookahead_for
from binance_extractor.pipeline import Job
from binance_extractor.timeutil import dt_to_ms, parse_time
from tests.emulator import Emulator

NOW = dt_to_ms(parse_time("2025-03-10T12:34:56.789Z"))
M5 = timeframes.parse("5m")
START, END = parse_time("2023-01-01T00:00:00Z"), parse_time("2025-01-01T00:00:00Z")  # 24 monthly files


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Iterator[Emulator]:
    with clock.using(clock.FixedClock(NOW)) as clk:
        yield make_emulator(clock=clk)


@pytest.fixture(autouse=True)
def no_feed_left() -> Iterator[None]:
    yield
    assert not alive(), "a lookahead thread outlived its test"


def job(symbol: str, source: str = "archive", **kw: Any) -> Job:
    kw.setdefault("start", START)
    kw.setdefault("end", END)
    return Job(DataKind.KLINES, symbol, M5, source=source, **kw)


def zips(emu: Emulator, symbol: str) -> int:
    return sum(1 for p in getattr(emu, "archive_requests", []) if p.endswith(".zip") and f"/{symbol}-" in p)


def settled(count: Callable[[], int], quiet_s: float = 1.0, guard_s: float = 120.0) -> int:
    """``count()`` once it is above 0 and has not moved for ``quiet_s`` (a loaded machine may take long to
    start the first download; ``guard_s`` only stops a hung test)."""
    deadline = time.monotonic() + guard_s
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif last > 0 and time.monotonic() - since >= quiet_s:
            return last
    raise AssertionError(f"the fetch did not settle within {guard_s:.0f} s (at {last})")


def alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("binance-lookahead")]


def test_only_archive_runs_with_a_fixed_end_look_ahead(client: Any) -> None:
    """No REST request from another thread, no range that moves with the clock, nothing to look ahead to."""
    assert lookahead_for([job("BTCUSDT"), job("ETHUSDT")], client) is not None
    assert lookahead_for([job("BTCUSDT", "auto"), job("ETHUSDT", "auto")], client) is None
    assert lookahead_for([job("BTCUSDT", "rest"), job("ETHUSDT", "rest")], client) is None
    assert lookahead_for([job("BTCUSDT", end=None), job("ETHUSDT", end=None)], client) is None
    assert lookahead_for([job("BTCUSDT")], client) is None
    funding = Job(DataKind.FUNDING, "ETHUSDT", None, START, END, source="archive")
    assert lookahead_for([job("BTCUSDT"), funding], client) is None


def test_the_next_job_is_fetched_in_order_and_bounded(emu: Emulator, client: Any) -> None:
    first, second = job("BTCUSDT"), job("ETHUSDT")
    ahead = Lookahead([first, second], client, depth=2)
    ahead.plan_after(first, [])  # an explicit range: planned without reading any store
    assert zips(emu, "ETHUSDT") == 0
    ahead.start()
    try:
        # nobody takes the pages: the queue (2) and the source's pool (workers + 1) bound the fetch
        fetched = settled(lambda: zips(emu, "ETHUSDT"))
        assert 0 < fetched <= 2 + 1 + archive.BULK_WORKERS + 1 < 24
    except BaseException:
        ahead.close()
        raise
    feed = ahead.claim(second, START, END)
    assert feed is not None and ahead.claimed == 1
    blocks = list(feed)
    feed.close()
    assert all(isinstance(b, KlineBlock) and b.symbol == "ETHUSDT" for b in blocks)
    opens = [t for b in blocks for t in b.open_ms()]
    assert opens == sorted(set(opens)) and len(opens) == M5.count_between(dt_to_ms(START), dt_to_ms(END))
    assert zips(emu, "ETHUSDT") == 24 and not alive()


def test_a_feed_for_another_range_or_job_is_dropped_and_stopped(emu: Emulator, client: Any) -> None:
    first, second, third = job("BTCUSDT"), job("ETHUSDT"), job("SOLUSDT")
    ahead = Lookahead([first, second, third], client, depth=1)
    ahead.plan_after(first, [])
    ahead.start()
    other_start = parse_time("2023-02-01T00:00:00Z")
    assert ahead.claim(second, other_start, END) is None  # the job planned another range: its own source
    assert not alive()
    n = zips(emu, "ETHUSDT")
    time.sleep(0.5)
    assert zips(emu, "ETHUSDT") == n  # stopped: no download after it was dropped
    ahead.plan_after(second, [])
    ahead.start()
    assert ahead.claim(first, START, END) is None and not alive()  # the planned job was skipped
    ahead.plan_after(second, [])
    ahead.start()
    ahead.close()  # the batch ended (or failed) before the planned job ran
    assert not alive() and ahead.claimed == 0


def test_the_prefetched_source_raises_in_the_job_that_takes_it(emu: Emulator, client: Any) -> None:
    emu.archive_corrupt = {"ETHUSDT-5m-2023-03.zip"}  # type: ignore[attr-defined]
    first, second = job("BTCUSDT"), job("ETHUSDT")
    ahead = Lookahead([first, second], client)
    ahead.plan_after(first, [])
    ahead.start()
    feed = ahead.claim(second, START, END)
    assert feed is not None
    got: list[KlineBlock] = []
    with pytest.raises(ArchiveError, match=r"ETHUSDT-5m-2023-03\.zip: checksum mismatch"):
        for block in feed:
            got.append(block)
    feed.close()
    assert [b.open_ms()[0] for b in got] == [dt_to_ms(parse_time(f"2023-0{m}-01T00:00:00Z")) for m in (1, 2)]
    assert not alive()


def test_the_same_symbol_twice_is_not_looked_ahead(client: Any) -> None:
    """Its range may depend on what the previous job stores (an incremental run): planned by its own job."""
    first, again = job("BTCUSDT"), job("BTCUSDT", start=parse_time("2023-02-01T00:00:00Z"))
    ahead = Lookahead([first, again], client)
    ahead.plan_after(first, [])
    ahead.start()
    assert not alive() and ahead.claim(again, again.start, END) is None  # type: ignore[arg-type]
