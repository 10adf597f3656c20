"""The seam rule alone (``stream/seam.py``): pure, driven by the times the test gives it."""

from __future__ import annotations

from binance_extractor import timeframes
from binance_extractor.stream.seam import EARLY_MS, FillRange, Seams

M1 = timeframes.parse("1m")
H1 = timeframes.parse("1h")
MIN = 60_000
PAIR = ("BTCUSDT", M1)
T = 1_800_000_000_000 - 1_800_000_000_000 % (24 * 3_600_000)  # a UTC midnight: a close of every timeframe
MARGIN = 1_000  # the closed bound's margin (exchange_clock): bound = exchange now - margin


def started_at(seams: Seams, newest_stored: int, now: int) -> FillRange:
    """A tail starting at ``now`` whose store's newest candle opens at ``newest_stored``: its first fill."""
    seams.opened([PAIR], now)
    first = seams.due(PAIR, now - MARGIN)
    assert first is not None and first.start_ms is None  # unknown: read the store
    seams.started(PAIR, newest_stored)
    rng = seams.due(PAIR, now - MARGIN)
    assert rng is not None
    return rng


def test_a_fill_that_could_not_reach_the_candle_just_closed_runs_again_at_the_first_close() -> None:
    seams = Seams([PAIR])
    rng = started_at(seams, T - 10 * MIN, T + 300)  # 0.3 s after a close: the bound is before it
    assert rng == FillRange(PAIR, T - 10 * MIN, T - MIN)  # the candle [T - 1 min, T) is not closed by the bound
    seams.filled(PAIR, rng)
    assert seams.pending(PAIR)
    assert seams.closed(PAIR, T)  # the first close on the socket: candle T; the seam ends there
    assert seams.due(PAIR, T + MIN + 500 - MARGIN) == FillRange(PAIR, T - MIN, T)
    seams.filled(PAIR, FillRange(PAIR, T - MIN, T))
    assert not seams.pending(PAIR)
    assert not seams.closed(PAIR, T + MIN)  # later closes are the socket's business


def test_no_fill_at_the_first_close_when_the_start_up_fill_reached_it() -> None:
    seams = Seams([PAIR])
    rng = started_at(seams, T - 10 * MIN, T + 30_000)  # mid-minute: every closed candle is below the bound
    assert rng == FillRange(PAIR, T - 10 * MIN, T)
    seams.filled(PAIR, rng)
    assert not seams.closed(PAIR, T)  # its close arrives on the socket: the seam closes, nothing to fill
    assert not seams.pending(PAIR)


def test_an_early_fill_once_the_bound_passes_a_candle_the_socket_never_sends() -> None:
    seams = Seams([PAIR])
    rng = started_at(seams, T - 10 * MIN, T + 300)
    seams.filled(PAIR, rng)
    assert not seams.tick(PAIR, T + 300)  # the bound has not passed [T - 1 min, T) yet
    assert not seams.tick(PAIR, T + EARLY_MS - 1)
    assert seams.tick(PAIR, T + EARLY_MS)  # now it has: fill it without waiting a minute for the first close
    assert not seams.tick(PAIR, T + EARLY_MS + 1000)  # once
    assert seams.due(PAIR, T + EARLY_MS - MARGIN) == FillRange(PAIR, T - MIN, T)


def test_no_early_fill_for_a_candle_that_closes_after_the_socket_opened() -> None:
    seams = Seams([("BTCUSDT", H1)])
    pair = ("BTCUSDT", H1)
    seams.opened([pair], T + 30 * MIN)
    seams.started(pair, T - 5 * 3_600_000)
    rng = seams.due(pair, T + 30 * MIN - MARGIN)
    assert rng == FillRange(pair, T - 5 * 3_600_000, T)
    seams.filled(pair, rng)
    assert not seams.tick(pair, T + 2 * 3_600_000)  # the hour in progress at the opening: its close will come
    assert not seams.closed(pair, T)


def test_a_failed_fill_keeps_its_start_whatever_the_socket_stores_meanwhile() -> None:
    seams = Seams([PAIR])
    seams.filled(PAIR, started_at(seams, T - 60 * MIN, T + 30_000))  # up to T
    for t in range(T, T + 5 * MIN, MIN):  # the socket stores five candles
        assert not seams.closed(PAIR, t)
        seams.stored(PAIR, t)
    seams.opened([PAIR], T + 12 * MIN + 300)  # a reconnect after seven minutes away
    rng = seams.due(PAIR, T + 12 * MIN + 300 - MARGIN)
    assert rng == FillRange(PAIR, T + 5 * MIN, T + 11 * MIN)
    # the fill fails (the store is down): nothing is reported; the socket stores a newer candle meanwhile
    assert seams.closed(PAIR, T + 12 * MIN)
    seams.stored(PAIR, T + 12 * MIN)
    assert seams.due(PAIR, T + 13 * MIN - MARGIN) == FillRange(PAIR, T + 5 * MIN, T + 12 * MIN)  # same start


def test_a_reconnect_during_a_fill_keeps_the_older_start() -> None:
    seams = Seams([PAIR])
    seams.filled(PAIR, started_at(seams, T - 60 * MIN, T + 30_000))
    seams.opened([PAIR], T + 3 * MIN + 10_000)
    running = seams.due(PAIR, T + 3 * MIN + 10_000 - MARGIN)
    assert running == FillRange(PAIR, T, T + 3 * MIN)
    seams.opened([PAIR], T + 5 * MIN + 300)  # the connection dropped and came back while that fill ran
    seams.filled(PAIR, running)
    assert seams.pending(PAIR)
    assert seams.due(PAIR, T + 5 * MIN + 300 - MARGIN) == FillRange(PAIR, T + 3 * MIN, T + 4 * MIN)
    assert seams.closed(PAIR, T + 5 * MIN)  # first close on the newest socket
    assert seams.due(PAIR, T + 6 * MIN - MARGIN) == FillRange(PAIR, T + 3 * MIN, T + 5 * MIN)


def test_an_unknown_start_is_read_before_the_streams_candles_are_written() -> None:
    seams = Seams([PAIR])
    seams.opened([PAIR], T + 300)  # start-up; the store could not be read
    assert seams.needs_start(PAIR)
    assert seams.closed(PAIR, T)  # the first close: a fill is due, and its start must be read first
    assert seams.due(PAIR, T + MIN - MARGIN) == FillRange(PAIR, None, T)
    seams.started(PAIR, T - 30 * MIN)  # read before writing the socket's candle T
    assert not seams.needs_start(PAIR)
    seams.stored(PAIR, T)
    assert seams.due(PAIR, T + MIN - MARGIN) == FillRange(PAIR, T - 30 * MIN, T)


def test_a_rejected_candle_is_asked_of_rest() -> None:
    seams = Seams([PAIR])
    seams.filled(PAIR, started_at(seams, T - 60 * MIN, T + 30_000))
    assert not seams.closed(PAIR, T)
    assert seams.closed(PAIR, T + MIN, stored=False)  # impossible values: never written
    assert seams.due(PAIR, T + 2 * MIN + 1500 - MARGIN) == FillRange(PAIR, T + MIN, T + 2 * MIN)
    seams.filled(PAIR, FillRange(PAIR, T + MIN, T + 2 * MIN))
    assert not seams.pending(PAIR)


def test_an_early_fill_when_the_reconnect_had_nothing_closed_to_fill() -> None:
    """Found by the simulation (seed 101): a 4 h stream's socket dropped 79 ms after a close, before that close's
    message came, and reconnected 0.4 s later. The reconnect's fill had nothing below the closed bound to take (the
    lost candle was not closed by it yet), so no fill "swept", and the early fill waited for that sweep; it also
    waited for a message of that very stream, which a 4 h stream may not send for a long while. The lost candle was
    left for the new socket's first close, 4 hours later (a day for 1d). An empty sweep is a sweep, and any
    stream's message tells the exchange's time."""
    h4 = ("BTCUSDT", timeframes.parse("4h"))
    seams = Seams([PAIR, h4])
    seams.opened([PAIR, h4], T - 30 * MIN)
    seams.started(PAIR, T - MIN)
    seams.started(h4, T - 4 * 3_600_000)  # every candle before [T - 4 h, T) is stored; that one's close was lost
    for pair, start in ((PAIR, T - MIN), (h4, T - 4 * 3_600_000)):
        seams.filled(pair, FillRange(pair, start, start))
    seams.opened([PAIR, h4], T + 500)  # the reconnect, 0.5 s after the close
    assert seams.due(h4, T + 500 - MARGIN) is None  # nothing closed by the bound to fill yet
    assert seams.early(T + EARLY_MS - 1) == []
    assert h4 in seams.early(T + EARLY_MS)  # a message of any stream: the bound has passed it, fill it now
    assert seams.early(T + EARLY_MS + 1000) == []  # once
    assert seams.due(h4, T + EARLY_MS - MARGIN) == FillRange(h4, T - 4 * 3_600_000, T)
