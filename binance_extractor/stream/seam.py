"""The live tail's seam rule, pure: which candles of a stream REST must fill after a (re)connect, restart or rotation.

Why: a new socket sends closing events only for candles that close after it opened, while a REST fill can only
take what is closed on the exchange's clock minus the safety margin. A candle that closed just before the socket
opened is on neither path unless the fill reaches it, and a fill that fails must not lose where it started (the
socket keeps storing newer candles meanwhile, so "the newest stored candle" moves past the hole).

The invariant (per stream): after any (re)connect the tail's REST fills cover every candle from the newest
stored one to the first final close received on the new socket. The seam opens when the socket goes live
(``opened``) with the tail's mark (the first candle not known stored) as its start; its end is the open time of
that first close (``closed``). Until the end is known a fill goes up to the closed bound, and once the close has
arrived the fill runs again up to it. A fill that fails changes nothing: the start stays, however many newer
candles the socket stores meanwhile. When the start is unknown (a start-up whose store could not be read), the
store must be read for it (``needs_start`` / ``started``) before any candle of the stream is written.

Clock-driven and free of I/O, threads and clock reads: every fact comes in with its time (epoch ms on the
exchange's clock: a message's event time ``E``, or ``exchange_clock.closed_before``), so the tail and a
simulation drive it alike, from one thread. API (a stream is a ``(symbol, Timeframe)`` pair):

- ``Seams(pairs)``: every stream's state; nothing known yet.
- ``opened(pairs, at_ms)``: a socket carrying ``pairs`` went live (its first message; ``at_ms``: that message's
  event time, or None): a seam opens for each (one still open keeps its start and waits for this socket's close).
- ``closed(pair, open_ms, stored=True) -> bool``: a final close arrived on the current socket (``stored=False``:
  the candle was rejected and never written, so REST must bring it). True: queue a fill for the stream now.
- ``tick(pair, at_ms) -> bool``: the exchange's time seen on the socket (every message). True once per start when
  a fill since the socket opened stopped at a candle that closed before the socket opened (the socket will never
  send it; the fill's closed bound had not passed it yet) and the exchange's time is now ``EARLY_MS`` past its
  close: queue a fill now instead of waiting for the first close.
- ``early(at_ms) -> list[Pair]``: ``tick`` for every stream whose seam is open, at the time of a message of any
  stream (a quiet stream's own messages may be hours apart).
- ``stored(pair, open_ms)``: the candle is committed to the store (the tail's own writes).
- ``needs_start(pair) -> bool`` / ``started(pair, start_ms)``: the seam's start is unknown; the store said where it is.
- ``due(pair, bound_ms) -> FillRange | None``: the REST range to fill now under the closed bound ``bound_ms``
  (``start_ms`` None: read the store for it first), None when nothing can be filled yet (which counts as a fill
  that reached the bound, for ``tick``: else a candle lost just before a reconnect waited for the next close).
- ``filled(pair, rng)``: that fill succeeded; the seam closes once it reaches the first close. (A failure: call
  nothing, retry ``due`` later.)
- ``pending(pair) -> bool``, ``state(pair) -> PairSeam``: for logs and tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from binance_extractor.timeframes import Timeframe

Pair = tuple[str, Timeframe]
EARLY_MS = 3_000  # past a close by more than the closed bound's margin (1 s) and its clock's uncertainty


@dataclass(frozen=True)
class FillRange:
    """Candles of ``pair`` opening in ``[start_ms, end_ms)`` to fill from REST; ``start_ms`` None: read the store
    for the newest stored candle first (and report it with ``Seams.started``)."""

    pair: Pair
    start_ms: int | None
    end_ms: int


@dataclass
class PairSeam:
    """One stream: ``mark`` (every candle opening before it is stored or was asked of REST; None: unknown), and
    the open seam if ``pending``: REST must fill from ``start`` (None: unknown) to ``end`` (the first close on the
    current socket; None: not seen yet). ``opened_at``: the exchange's time the current socket went live."""

    timeframe: Timeframe
    mark: int | None = None
    pending: bool = False
    start: int | None = None
    end: int | None = None
    opened_at: int | None = None
    swept: bool = False  # a fill succeeded since the current socket opened
    early_for: int | None = None  # the start an early fill was asked for (once per start)

    def close_if_done(self) -> None:
        if self.pending and self.start is not None and self.end is not None and self.start >= self.end:
            self.pending = False
            self.end = None


class Seams:
    """Every stream's seam (module docstring); one thread calls it."""

    def __init__(self, pairs: Iterable[Pair]) -> None:
        self._pairs = {pair: PairSeam(pair[1]) for pair in pairs}
        self._open: set[Pair] = set()  # streams whose seam may be open (``early`` looks only at these)

    def state(self, pair: Pair) -> PairSeam:
        return self._pairs[pair]

    def __contains__(self, pair: object) -> bool:
        return pair in self._pairs

    def pending(self, pair: Pair) -> bool:
        return self._pairs[pair].pending

    def opened(self, pairs: Iterable[Pair], at_ms: int | None) -> None:
        for pair in pairs:
            s = self._pairs[pair]
            if not s.pending:
                s.pending, s.start = True, s.mark
            s.end, s.opened_at, s.swept, s.early_for = None, at_ms, False, None
            self._open.add(pair)

    def closed(self, pair: Pair, open_ms: int, stored: bool = True) -> bool:
        s = self._pairs[pair]
        step = s.timeframe.ms
        if s.pending and s.end is None:  # the first close on this socket: the seam's end
            s.end = open_ms if stored else open_ms + step
            s.close_if_done()
            return s.pending
        if stored:
            return False
        if s.pending:  # a rejected candle inside an open seam: widen it
            s.start = None if s.start is None else min(s.start, open_ms)
            s.end = max(s.end or 0, open_ms + step)
        else:
            s.pending, s.start, s.end = True, open_ms, open_ms + step
            self._open.add(pair)
        return True

    def tick(self, pair: Pair, at_ms: int) -> bool:
        s = self._pairs[pair]
        if not s.pending or not s.swept or s.end is not None or s.start is None or s.opened_at is None:
            return False  # (until a fill since the opening is done, that fill is what covers the start)
        step = s.timeframe.ms
        if s.start + step - 1 >= s.opened_at:  # that candle closes after the socket opened: its close will come
            return False
        if at_ms < s.start + step + EARLY_MS or s.early_for == s.start:
            return False
        s.early_for = s.start
        return True

    def early(self, at_ms: int) -> list[Pair]:
        """``tick`` for every stream with an open seam, at the exchange's time seen on any socket: a quiet stream
        (an h4 or 1d candle, a thin contract) sends nothing for a long while, and its lost candle must not wait
        for its own next message. The streams to fill now."""
        due: list[Pair] = []
        for pair in list(self._open):
            if not self._pairs[pair].pending:
                self._open.discard(pair)
            elif self.tick(pair, at_ms):
                due.append(pair)
        return due

    def stored(self, pair: Pair, open_ms: int) -> None:
        s = self._pairs[pair]
        if s.mark is not None:
            s.mark = max(s.mark, open_ms + s.timeframe.ms)

    def needs_start(self, pair: Pair) -> bool:
        s = self._pairs[pair]
        return s.pending and s.start is None

    def started(self, pair: Pair, start_ms: int) -> None:
        s = self._pairs[pair]
        if s.mark is None:
            s.mark = start_ms
        if s.pending and s.start is None:
            s.start = start_ms
            s.close_if_done()

    def due(self, pair: Pair, bound_ms: int) -> FillRange | None:
        s = self._pairs[pair]
        if not s.pending:
            return None
        closed = s.timeframe.floor_ms(bound_ms)  # the candle opening there is not closed yet
        end = closed if s.end is None else min(s.end, closed)
        if s.start is None:
            return FillRange(pair, None, end)
        if end <= s.start:  # nothing closed by the bound to fill: as good as a fill that reached it (``tick``)
            s.swept = True
            return None
        return FillRange(pair, s.start, end)

    def filled(self, pair: Pair, rng: FillRange) -> None:
        s = self._pairs[pair]
        if rng.start_ms is None or s.start is None or not s.pending or rng.start_ms > s.start:
            return
        s.start = max(s.start, rng.end_ms)
        s.mark = rng.end_ms if s.mark is None else max(s.mark, rng.end_ms)
        s.swept = True
        s.close_if_done()
