"""The budget's bookkeeping as pure functions over one JSON-able dict (the shared state).

Every store runs these functions inside one atomic transaction (SQLite ``BEGIN IMMEDIATE``, Redis
``WATCH``/``MULTI``), so there is one algorithm whatever the store. Times are epoch seconds of the machines'
(NTP-synchronised) wall clocks: rate windows are real time at the exchange, while the market clock
(``binance_extractor.clock``) may be pinned by a test.

State keys: ``win`` (current window index), ``reported`` (highest IP-wide weight the exchange reported this
window), ``done`` (weight of our requests answered this window), ``seen`` (a header arrived this window),
``res`` (reservations in flight: id -> [weight, expires_at, window, probe, funding]; ``probe`` 1 for a request
sent while nothing was known about the window, ``funding`` 1 for a fundingRate/fundingInfo request; both absent
in states written by older versions), ``pause_until`` (429), ``ban_until`` (418), ``funding`` (answer times of the
fundingRate requests in the sliding funding window), ``rule`` (the limit learned from exchangeInfo, shared so
other processes need not ask).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

State = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    """What one acquire must respect (weight budget already multiplied by the margin)."""

    budget: int
    window_s: float
    funding_budget: int
    funding_window_s: float
    ttl_s: float  # a reservation left by a killed process is forgotten after this long
    lag_s: float  # roll to a new window this long after the boundary (clock skew with the exchange)
    probe_poll_s: float = 0.02


@dataclass(frozen=True)
class Grant:
    """Either a reservation id (``ticket``) or how long to wait and why."""

    ticket: str | None
    wait_s: float = 0.0
    reason: str = ""
    until: float = 0.0


def _roll(state: State, now: float, limits: Limits) -> int:
    win = math.floor((now - limits.lag_s) / limits.window_s)
    if win > int(state.get("win", -1)):
        state.update(win=win, reported=0, done=0, seen=False)
    return int(state["win"])


def _purge(state: State, now: float) -> None:
    res = state.setdefault("res", {})
    for rid in [rid for rid, r in res.items() if r[1] <= now]:
        if _is_funding(res[rid]):  # it may have been counted by the exchange until now
            state["funding"] = [*state.get("funding", []), round(now, 3)]
        del res[rid]


def _is_probe(r: list[Any]) -> bool:
    return len(r) > 3 and bool(r[3])


def _is_funding(r: list[Any]) -> bool:
    return len(r) > 4 and bool(r[4])


def in_flight(state: State) -> int:
    return sum(int(r[0]) for r in state.get("res", {}).values())


def acquire(state: State, now: float, weight: int, limits: Limits, funding: bool = False) -> Grant:
    """Reserve ``weight`` now, or say how long to wait (ban, 429 pause, full window, pending probe)."""
    _purge(state, now)
    ban_until = float(state.get("ban_until", 0.0))
    if ban_until > now:
        return Grant(None, ban_until - now, "ban", ban_until)
    pause_until = float(state.get("pause_until", 0.0))
    if pause_until > now:
        return Grant(None, pause_until - now, "pause", pause_until)
    win = _roll(state, now, limits)
    res = state["res"]
    next_window = (win + 1) * limits.window_s + limits.lag_s
    probing = not state.get("seen") and not state.get("done")
    if probing and any(r[2] == win or _is_probe(r) for r in res.values()):
        # Until one answer tells what the whole IP used this window (clients outside this budget count
        # too), only one probe is in flight. A probe of an earlier window still unanswered holds this one too:
        # its answer may be a 418 ban, which a second probe sent at the roll would only repeat.
        return Grant(None, min(limits.probe_poll_s, next_window - now), "probe", next_window)
    estimate = max(int(state.get("reported", 0)), int(state.get("done", 0))) + in_flight(state)
    if estimate + weight > limits.budget:
        return Grant(None, next_window - now, "window", next_window)
    if funding:
        # A sliding window over the requests' ANSWER times, those still in flight counting as now: the exchange
        # counts a request somewhere between its sending and its answer, so two requests counted in one fixed
        # window of the exchange's, however aligned and however late, are both seen by the later one's acquire.
        # (Send times alone let a batch whose answers came late share a window with the next batch.)
        done = sorted(t for t in state.get("funding", []) if t > now - limits.funding_window_s)
        state["funding"] = done
        flying = sum(1 for r in res.values() if _is_funding(r))
        if len(done) + flying >= limits.funding_budget:
            if flying >= limits.funding_budget:  # only an answer frees a place: look again soon
                latest = min(r[1] for r in res.values() if _is_funding(r))  # (a stable end to announce)
                return Grant(None, limits.probe_poll_s, "funding", latest)
            until = done[len(done) + flying - limits.funding_budget] + limits.funding_window_s
            return Grant(None, until - now, "funding", until)
    rid = uuid.uuid4().hex[:16]
    res[rid] = [weight, now + limits.ttl_s, win, 1 if probing else 0, 1 if funding else 0]
    state["sent"] = int(state.get("sent", 0)) + weight
    return Grant(rid)


def release(state: State, now: float, ticket: str, used: int | None, limits: Limits) -> None:
    """An answer came back (``used`` is its X-MBX-USED-WEIGHT header, None if it had none)."""
    _purge(state, now)
    r = state["res"].pop(ticket, None)
    win = _roll(state, now, limits)
    if r is None:  # expired meanwhile: its weight is unknown to this window, the header still counts
        r = [0, 0.0, None]
    if _is_funding(r):  # counted by the exchange at the latest now
        state["funding"] = [*state.get("funding", []), round(now, 3)]
    state["done"] = int(state.get("done", 0)) + int(r[0])  # a straggler from the last window counts here
    if used is not None:
        state["max_reported"] = max(int(state.get("max_reported", 0)), used)
        if r[2] == win:  # reserved and answered in the same window: the header is about this window
            state["reported"] = max(int(state.get("reported", 0)), used)
            state["seen"] = True


def cancel(state: State, now: float, ticket: str) -> None:
    """The request was never sent: give the weight back."""
    state.setdefault("res", {}).pop(ticket, None)
    _purge(state, now)


def pause(state: State, now: float, seconds: float, limits: Limits) -> float:
    """HTTP 429: nobody sends before ``now + seconds``; this window counts as full."""
    until = max(float(state.get("pause_until", 0.0)), now + seconds)
    state["pause_until"] = until
    _roll(state, now, limits)
    state["reported"] = max(int(state.get("reported", 0)), limits.budget)
    state["seen"] = True
    state["n429"] = int(state.get("n429", 0)) + 1
    return until


def ban(state: State, now: float, seconds: float) -> float:
    """HTTP 418: the IP is banned until ``now + seconds``."""
    until = max(float(state.get("ban_until", 0.0)), now + seconds)
    state["ban_until"] = until
    state["n418"] = int(state.get("n418", 0)) + 1
    return until
