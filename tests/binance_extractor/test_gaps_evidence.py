"""The ledger records a hole exchange-side only on evidence (``gaps/evidence.py``), tried from outside.

The exchange emulator's clock is skewed against this machine's (the library's pinned clock), ``fill-gaps`` runs
within a second of a candle close, the archive lacks what it has not published: in every case the ledger ends up
holding exactly the exchange's real outages that REST was asked for, and nothing the exchange serves later.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from binance_extractor import cli, clock, gaps
from binance_extractor.clock import FixedClock
from binance_extractor.kinds import Dataset
from binance_extractor.sinks import open_sinks
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt, parse_time
from tests.emulator import Emulator

FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_M5 = Dataset.of_table("klines_m5")

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
M5 = 5 * MIN
MIDNIGHT = dt_to_ms(datetime(2026, 12, 2, tzinfo=UTC))  # a 5m, 1h and day close at once (the archive's "today")
SYMBOL = "BTCUSDT"


def write(start: int, end: int) -> None:
    span = ["--start", iso(ms_to_dt(start)), "--end", iso(ms_to_dt(end))]
    cli.execute(["klines", "--interval", "5m", "--symbols", SYMBOL, "--source", "rest", *span, "--sink", "sqlite"])


def fill(source: str, *extra: str) -> dict[str, Any]:
    argv = ["fill-gaps", "--table", "klines_m5", "--symbols", SYMBOL, "--sink", "sqlite", "--source", source]
    (report,) = cli.execute([*argv, *extra])
    return dict(report)


def ledger(dataset: Dataset = KLINES_M5, symbol: str = SYMBOL) -> list[tuple[int, int]]:
    """The confirmed (exchange-side) ranges of the ledger, epoch ms."""
    (sink,) = open_sinks(["sqlite"])
    try:
        return [(dt_to_ms(s), dt_to_ms(e)) for s, e in sink.known_gaps(dataset, symbol)]
    finally:
        sink.close()


def delete(lo: int, hi: int) -> None:
    """Lose our own candles opening in [lo, hi) (the exchange still has them)."""
    (sink,) = open_sinks(["sqlite"])
    try:
        sink._tx(
            lambda cur: cur.execute(
                "DELETE FROM klines_m5 WHERE symbol = ? AND open_time >= ? AND open_time < ?", (SYMBOL, lo, hi)
            )
        )
    finally:
        sink.close()


def served(emu: Emulator, lo: int, hi: int) -> list[int]:
    """Open times of the candles the exchange serves in [lo, hi) at its current instant (closed or not)."""
    return [int(r[0]) for r in emu.klines_rows(SYMBOL, "5m", lo, hi - 1, include_open=True)]


@pytest.fixture
def machine(sqlite_conn_id: str) -> Iterator[FixedClock]:
    """This machine's clock (the library's), pinned; each test sets the instant and the exchange's skew."""
    local = FixedClock(MIDNIGHT)
    with clock.using(local):
        yield local


def exchange(make_emulator: Any, local: FixedClock, skew_ms: int) -> Emulator:
    """The emulator with its clock ``skew_ms`` ahead of this machine's (negative: behind)."""
    return make_emulator(clock=lambda: local.now_ms() + skew_ms)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ path 1: the ledger confirmed candles


@pytest.mark.parametrize(
    ("offset_ms", "skew_ms"),
    [(300, 0), (0, 0), (10_000, -30_000)],
    ids=["run-0.3s-after-a-close", "run-at-a-close", "machine-30s-ahead-of-the-exchange"],
)
def test_fill_gaps_never_confirms_a_candle_the_exchange_has_not_closed_yet(
    make_emulator: Any, machine: FixedClock, offset_ms: int, skew_ms: int
) -> None:
    """Detection used this machine's clock, the refetch the exchange's: the newest candle, closed for this machine
    but not yet (with the margin) for the exchange, came back with 0 rows and went into the ledger for good."""
    machine.set(MIDNIGHT + offset_ms)
    emu = exchange(make_emulator, machine, skew_ms)
    write(MIDNIGHT - 6 * HOUR, MIDNIGHT - 30 * MIN)  # the last half hour is ours to fill
    fill("auto")
    assert ledger() == []  # the 23:55 candle was not closed on the exchange: it is no exchange-side hole
    machine.advance(2 * MIN)
    assert served(emu, MIDNIGHT - M5, MIDNIGHT) == [MIDNIGHT - M5]  # the exchange serves it once closed ...
    report = fill("auto")
    assert ledger() == [] and report["totals"]["remaining"] == 0  # ... and the next run stores it
    (sink,) = open_sinks(["sqlite"])
    try:
        assert sink.count(KLINES_M5, SYMBOL, ms_to_dt(MIDNIGHT - 6 * HOUR), ms_to_dt(MIDNIGHT)) == 72
    finally:
        sink.close()


# ------------------------------------------------------------------------------ path 2: --source archive


def test_fill_gaps_from_the_archive_leaves_what_it_lacks_open_not_confirmed(
    make_emulator: Any, machine: FixedClock
) -> None:
    """The archive publishes a day the next day: a hole of today, filled with ``--source archive``, was logged as
    "not in the archive yet" and recorded exchange-side, so REST never filled it."""
    machine.set(MIDNIGHT + 15 * HOUR)
    emu = exchange(make_emulator, machine, 0)
    write(MIDNIGHT - DAY, MIDNIGHT + 15 * HOUR)  # everything closed
    delete(MIDNIGHT - 12 * HOUR, MIDNIGHT - 11 * HOUR)  # yesterday: the archive has it
    delete(MIDNIGHT + 10 * HOUR, MIDNIGHT + 10 * HOUR + 30 * MIN)  # today: only REST has it
    emu.reset_stats()
    report = fill("archive")
    assert ledger() == []  # the archive alone proves nothing
    assert emu.count("/fapi/v1/klines") == 0  # --source archive asked REST for nothing
    assert report["totals"]["filled"] == 1 and report["totals"]["confirmed"] == 0
    assert report["totals"]["not_fillable_yet"] == 1 and report["totals"]["remaining"] == 0
    (pending,) = report["not_fillable_yet"]
    assert (pending["start"], pending["end"]) == (
        iso(ms_to_dt(MIDNIGHT + 10 * HOUR)),
        iso(ms_to_dt(MIDNIGHT + 10 * HOUR + 30 * MIN)),
    )
    assert "archive" in pending["reason"]
    report = fill("auto")  # REST fills it
    assert ledger() == [] and report["totals"]["filled"] == 1 and report["totals"]["not_fillable_yet"] == 0


# ------------------------------------------------------------------------------ the proof: any skew, any instant


@pytest.mark.parametrize("skew_ms", [-60_000, -3_000, 0, 3_000, 60_000], ids=lambda s: f"exchange{s:+d}ms")
@pytest.mark.parametrize("offset_ms", [-1_000, 0, 300, 999, 1_500], ids=lambda o: f"close{o:+d}ms")
def test_fill_gaps_never_records_a_hole_the_exchange_later_serves(
    make_emulator: Any, machine: FixedClock, skew_ms: int, offset_ms: int
) -> None:
    """Around a close (of a 5m candle, an hour and a day: the archive's "today"), with the exchange's clock up to a
    minute off this machine's, ``fill-gaps`` from every source records exactly the real outage REST was asked for
    and settled: not the candles still closing, not an outage the exchange publishes late, not what the archive
    lacks."""
    machine.set(MIDNIGHT + offset_ms)
    emu = exchange(make_emulator, machine, skew_ms)
    outage = (MIDNIGHT - 5 * HOUR, MIDNIGHT - 4 * HOUR - 30 * MIN)  # never published
    late = (MIDNIGHT - 40 * MIN, MIDNIGHT - 15 * MIN)  # published after the run, within ledger_settle
    emu.add_outage(SYMBOL, outage[0], outage[1] - 1)
    emu.add_outage(SYMBOL, late[0], late[1] - 1)
    write(MIDNIGHT - 6 * HOUR, MIDNIGHT + HOUR)  # up to what the exchange has closed
    delete(MIDNIGHT - 3 * HOUR, MIDNIGHT - 2 * HOUR - 50 * MIN)  # a hole of ours
    reports = {source: fill(source) for source in ("archive", "rest", "auto")}
    assert ledger() == [outage]  # no more, no less
    pending = {(h["start"], h["end"]) for h in reports["auto"]["not_fillable_yet"]}
    assert (iso(ms_to_dt(late[0])), iso(ms_to_dt(late[1]))) in pending  # reported, neither failed nor confirmed
    emu.clear_outages()
    emu.add_outage(SYMBOL, outage[0], outage[1] - 1)  # the late candles are published ...
    machine.advance(DAY)
    for lo, hi in ledger():
        assert served(emu, lo, hi) == []  # ... and nothing the ledger holds is ever served
    report = fill("auto")
    assert report["totals"]["remaining"] == 0 and report["totals"]["not_fillable_yet"] == 0
    assert ledger() == [outage]


MONDAY = MIDNIGHT - 2 * DAY  # 2026-11-30: a boundary of the gap filler's weekly chunks


@pytest.mark.parametrize(
    ("outage", "run_at"),
    [
        ((MIDNIGHT - 3 * HOUR, MIDNIGHT + 10 * MIN), MIDNIGHT),
        ((MONDAY - 30 * MIN, MONDAY + 2 * HOUR), MONDAY + 90 * MIN),
    ],
    ids=["outage-still-going-on", "outage-across-a-weekly-chunk-boundary"],
)
def test_a_hole_whose_outage_is_still_going_on_is_never_confirmed_in_part(
    make_emulator: Any, machine: FixedClock, outage: tuple[int, int], run_at: int
) -> None:
    """Found by the simulation (seed 190, docs/SIMULATION.md): the 02:00 gap filler ran two hours into an outage
    that the exchange published late, an hour after it ended. The rule split the hole at the settle instant and
    confirmed its older part, although the outage had not ended: its candles were served later and never fetched.
    A hole's end is where detection stopped looking (its bound, a weekly chunk's end), not where the exchange
    resumed; a hole is confirmed only once the stores hold a row after it older than the settle instant."""
    machine.set(run_at)
    emu = exchange(make_emulator, machine, -254)
    publish = outage[1] + 48 * MIN  # within ledger_settle of its end
    emu.add_outage(SYMBOL, outage[0], outage[1] - 1, publish)
    write(outage[0] - 6 * HOUR, run_at)
    report = fill("rest")
    assert ledger() == []  # nothing confirmed: the outage was going on
    assert report["totals"]["remaining"] == 0 and report["totals"]["not_fillable_yet"] >= 1, report["totals"]
    machine.set(publish + DAY)  # the exchange has published it: the next run fetches every candle
    report = fill("rest")
    assert ledger() == [] and report["totals"]["remaining"] == 0 and report["totals"]["not_fillable_yet"] == 0
    (sink,) = open_sinks(["sqlite"])
    try:
        span = (ms_to_dt(outage[0] - 6 * HOUR), ms_to_dt(outage[1]))
        assert sink.count(KLINES_M5, SYMBOL, *span) == (outage[1] - outage[0] + 6 * HOUR) // M5
    finally:
        sink.close()


def test_a_hole_not_fillable_yet_is_listed_so_until_a_run_fills_it(
    make_emulator: Any, machine: FixedClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """An outage that ended 30 minutes ago is not confirmed (the exchange may still publish it): ``gaps`` lists it
    as not fillable yet with why; once published and stored by an ordinary run, the next ``fill-gaps`` forgets it."""
    machine.set(MIDNIGHT + 15 * HOUR)
    emu = exchange(make_emulator, machine, 0)
    late = (MIDNIGHT + 14 * HOUR, MIDNIGHT + 14 * HOUR + 30 * MIN)
    emu.add_outage(SYMBOL, late[0], late[1] - 1)
    write(MIDNIGHT + 10 * HOUR, MIDNIGHT + 15 * HOUR)
    report = fill("auto")
    assert ledger() == [] and report["totals"]["not_fillable_yet"] == 1
    capsys.readouterr()
    assert cli.main(["gaps", "--table", "klines_m5", "--sink", "sqlite"]) == 0
    (listed,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert (listed["start"], listed["status"]) == (iso(ms_to_dt(late[0])), "not_fillable_yet")
    assert "ledger_settle" in listed["reason"]
    emu.clear_outages()  # published late ...
    write(late[0], late[1])  # ... and stored by an ordinary run
    report = fill("auto")
    assert report["totals"]["found"] == 0
    (sink,) = open_sinks(["sqlite"])
    try:
        assert sink.gap_records(KLINES_M5, SYMBOL) == []  # no stale "not fillable yet" left behind
    finally:
        sink.close()


# ------------------------------------------------------------------------------ funding holes are judged whole


def test_a_funding_hole_is_never_split_into_a_ledger_row_that_misses_nothing(
    make_emulator: Any, machine: FixedClock
) -> None:
    """Found by the simulation (seed 0, docs/SIMULATION.md): the 02:00 run split a funding hole reaching past the
    settle time at "closed bound - 1 h" and confirmed its older part; the next run confirmed the rest, a range in
    which no funding event was due, so the ledger held a row for nothing. A funding hole has no time grid: it is
    confirmed whole, once all of it has settled."""
    sym, day = "ETHUSDT", MIDNIGHT  # funding every 8 h: 00:00, 08:00, 16:00 (ms jitter)
    machine.set(day - DAY + 17 * HOUR)
    emu = exchange(make_emulator, machine, -2_669)
    emu.add_outage(sym, day - 5 * MIN, day + 5 * MIN - 1)  # the exchange never had the 00:00 event
    span = ["--start", iso(ms_to_dt(day - 2 * DAY)), "--end", iso(ms_to_dt(day - DAY + 17 * HOUR))]
    cli.execute(["funding", "--symbols", sym, *span, "--sink", "sqlite"])
    argv = ["fill-gaps", "--table", "funding_rates", "--symbols", sym, "--sink", "sqlite", "--source", "rest"]
    for instant in (day + 2 * HOUR, day + DAY + 2 * HOUR, day + 2 * DAY + 2 * HOUR):  # the gap filler's 02:00
        machine.set(instant)
        cli.execute(argv)
    rows = ledger(FUNDING_RATES, sym)
    missing = [day + t for t in range(0, 16)]  # the 00:00 event, whatever its ms jitter
    assert len(rows) == 1, [(iso(ms_to_dt(s)), iso(ms_to_dt(e))) for s, e in rows]
    assert any(rows[0][0] <= t < rows[0][1] for t in missing)


def test_a_funding_tail_not_fillable_yet_of_an_hourly_contract_is_reported_not_left_unsaid(
    make_emulator: Any, machine: FixedClock
) -> None:
    """Found by the simulation (seeds 164 and 196, docs/SIMULATION.md): the fill judged an hourly contract's missing
    funding tail by its 1 h interval and recorded it "not fillable yet", but the closure check re-detected the chunk
    with the 8 h default, saw no hole, and listed nothing; the scan after the fill (1 h again) still found it. The run
    succeeded and said nothing of a hole the exchange may yet publish. Verify now judges as the fill judged."""
    sym, day = SYMBOL, MIDNIGHT  # funding every hour (the emulator's fundingInfo)
    machine.set(day - 2 * HOUR)
    emu = exchange(make_emulator, machine, 1_200)
    emu.add_outage(sym, day - 5 * MIN, day + HOUR + 5 * MIN - 1)  # 00:00 and 01:00 missing, ended 55 min before 02:00
    span = ["--start", iso(ms_to_dt(day - DAY)), "--end", iso(ms_to_dt(day - 2 * HOUR))]
    cli.execute(["funding", "--symbols", sym, *span, "--sink", "sqlite"])
    machine.set(day + 2 * HOUR)  # the gap filler's 02:00, up to its data interval's end (not the 02:00 event)
    argv = ["fill-gaps", "--table", "funding_rates", "--symbols", sym, "--sink", "sqlite", "--source", "rest"]
    argv += ["--end", iso(ms_to_dt(day + 2 * HOUR))]
    (report,) = cli.execute(argv)
    chunks = [gaps.Chunk.parse(r["chunk"]) for r in report["chunks"]]
    (sink,) = open_sinks(["sqlite"])
    try:
        checked = gaps.verify(chunks, [sink], report["chunks"])  # the DAG's verify and report tasks
        assert sink.known_gaps(FUNDING_RATES, sym) == []
    finally:
        sink.close()
    assert [h["status"] for h in checked] == [gaps.NOT_FILLABLE_YET], checked
    start, end = dt_to_ms(parse_time(checked[0]["start"])), dt_to_ms(parse_time(checked[0]["end"]))
    assert start <= day + 16 and day + HOUR < end  # the 00:00 and 01:00 events (ms jitter), not confirmed
    assert report["totals"]["remaining"] == 0, report["totals"]  # nothing the run left unsaid


def test_a_funding_hole_cut_at_a_weekly_chunk_end_is_not_confirmed_while_its_outage_goes_on(
    make_emulator: Any, machine: FixedClock
) -> None:
    """The funding twin of seed 190: a hole cut at a weekly chunk's end (the detection stopped looking there, not
    the exchange resumed) lay more than ledger_settle before the closed bound, so it was confirmed while the outage
    still went on; the events the exchange published later were never fetched. It is confirmed only once the
    stores hold an event after it older than the settle instant, like a kline hole."""
    sym = "ETHUSDT"  # funding every 8 h: 00:00, 08:00, 16:00 (ms jitter)
    run_at = MONDAY + 90 * MIN
    machine.set(run_at)
    emu = exchange(make_emulator, machine, -254)
    outage = (MONDAY - 9 * HOUR, MONDAY + 2 * HOUR)  # the 16:00 and 00:00 events; ends after this run
    publish = outage[1] + 48 * MIN  # within ledger_settle of its end
    emu.add_outage(sym, outage[0], outage[1] - 1, publish)
    span = ["--start", iso(ms_to_dt(MONDAY - 3 * DAY)), "--end", iso(ms_to_dt(run_at))]
    cli.execute(["funding", "--symbols", sym, *span, "--sink", "sqlite"])
    argv = ["fill-gaps", "--table", "funding_rates", "--symbols", sym, "--sink", "sqlite", "--source", "rest"]
    (report,) = cli.execute([*argv, "--end", iso(ms_to_dt(run_at))])
    assert ledger(FUNDING_RATES, sym) == []  # nothing confirmed: the outage was going on
    assert report["totals"]["remaining"] == 0 and report["totals"]["not_fillable_yet"] >= 1, report["totals"]
    machine.set(publish + DAY)  # the exchange has published it: the next run fetches both events
    (report,) = cli.execute(argv)
    assert ledger(FUNDING_RATES, sym) == [] and report["totals"]["not_fillable_yet"] == 0, report["totals"]
    (sink,) = open_sinks(["sqlite"])
    try:
        lo, hi = ms_to_dt(outage[0]), ms_to_dt(outage[1])
        assert sink.count(FUNDING_RATES, sym, lo, hi) == 2  # 16:00 on Sunday and 00:00 on Monday
    finally:
        sink.close()
