"""The budget's bookkeeping with controlled times (the pure functions every store runs atomically)."""

from __future__ import annotations

from binance_extractor.budget import state as S

LIMITS = S.Limits(budget=100, window_s=60, funding_budget=3, funding_window_s=300, ttl_s=90, lag_s=0.1)
T0 = 6_000_030.0  # 30 s into a window (6_000_000 is a boundary)


def grant(st: S.State, now: float, weight: int, funding: bool = False) -> S.Grant:
    return S.acquire(st, now, weight, LIMITS, funding)


def answered(st: S.State, now: float, weight: int, used: int | None) -> None:
    g = grant(st, now, weight)
    assert g.ticket is not None
    S.release(st, now, g.ticket, used, LIMITS)


def test_one_probe_per_window_until_the_exchange_reports_the_ip_wide_usage():
    st: S.State = {}
    probe = grant(st, T0, 2)
    assert probe.ticket is not None
    waiting = grant(st, T0, 2)
    assert waiting.ticket is None and waiting.reason == "probe" and 0 < waiting.wait_s <= LIMITS.probe_poll_s
    S.release(st, T0 + 0.01, probe.ticket, 40, LIMITS)  # another client outside this budget used 38
    tickets = [grant(st, T0 + 0.02, 2).ticket for _ in range(4)]
    assert all(tickets) and S.in_flight(st) == 8


def test_reported_and_in_flight_weight_both_count_then_wait_for_the_next_window():
    st: S.State = {}
    answered(st, T0, 30, used=60)
    g = grant(st, T0, 30)
    assert g.ticket is not None
    full = grant(st, T0, 30)  # 60 reported + 30 in flight + 30 > 100
    assert full.ticket is None and full.reason == "window"
    assert abs(full.wait_s - (30 + LIMITS.lag_s)) < 1e-6  # to the boundary, plus the lag for clock skew


def test_window_roll_forgets_the_count_but_not_reservations_in_flight():
    st: S.State = {}
    answered(st, T0, 50, used=90)
    straggler = grant(st, T0 + 29.9, 10)
    assert straggler.ticket is not None
    nxt = T0 + 30.2
    answered(st, nxt, 2, used=12)  # new window: only the straggler still counts
    assert st["reported"] == 12 and S.in_flight(st) == 10
    # the straggler's header may be about either window: its weight counts, its header does not
    S.release(st, nxt + 0.1, straggler.ticket, 95, LIMITS)
    assert st["reported"] == 12 and st["done"] == 12 and st["max_reported"] == 95


def test_reservation_of_a_killed_process_expires_after_its_ttl():
    st: S.State = {}
    answered(st, T0, 1, used=1)
    held = grant(st, T0, 99)
    assert held.ticket is not None and grant(st, T0 + 31, 90).ticket is None
    later = T0 + LIMITS.ttl_s + 1
    assert grant(st, later, 90).ticket is not None
    assert held.ticket not in st["res"]


def test_a_429_pauses_everyone_and_fills_the_window():
    st: S.State = {}
    until = S.pause(st, T0, 5, LIMITS)
    g = grant(st, T0 + 1, 1)
    assert g.reason == "pause" and g.until == until == T0 + 5 and abs(g.wait_s - 4) < 1e-6
    assert grant(st, T0 + 6, 1).reason == "window"  # the rest of this window counts as used up
    assert grant(st, T0 + 30.2, 1).ticket is not None


def test_a_418_ban_holds_until_its_end_and_is_never_shortened():
    st: S.State = {}
    S.ban(st, T0, 600)
    S.ban(st, T0 + 1, 10)
    g = grant(st, T0 + 2, 1)
    assert g.reason == "ban" and g.until == T0 + 600
    assert grant(st, T0 + 600.5, 1).ticket is not None


def test_funding_requests_share_a_sliding_window():
    st: S.State = {}
    for i in range(3):
        answered_f = grant(st, T0 + i, 1, funding=True)
        assert answered_f.ticket is not None
        S.release(st, T0 + i, answered_f.ticket, 1 + i, LIMITS)
    g = grant(st, T0 + 10, 1, funding=True)
    assert g.reason == "funding" and g.until == T0 + 300
    assert grant(st, T0 + 10, 1).ticket is not None  # other endpoints are not held back
    assert grant(st, T0 + 300.5, 1, funding=True).ticket is not None


def test_a_cancelled_reservation_gives_its_weight_back():
    st: S.State = {}
    g = grant(st, T0, 50)
    assert g.ticket is not None
    S.cancel(st, T0, g.ticket)
    assert S.in_flight(st) == 0


def test_an_unanswered_probe_holds_the_next_window_too():
    """The first request after a quiet time goes alone until it is answered, even when the window rolls before the
    answer comes (a slow exchange, a loaded machine): the answer may be a 418 ban that every other request sent
    meanwhile would also get. A second probe in the new window was the second 418 of
    test_processes.py::test_a_short_ban_is_waited_out_by_every_process_without_a_request."""
    st: S.State = {}
    probe = grant(st, T0 + 29.95, 1)  # just before the boundary at T0 + 30
    assert probe.ticket is not None
    nxt = grant(st, T0 + 30.2, 1)  # the next window: the probe is still unanswered
    assert nxt.ticket is None and nxt.reason == "probe"
    until = S.ban(st, T0 + 30.5, 120)  # its answer: the IP is banned
    S.release(st, T0 + 30.5, probe.ticket, 20, LIMITS)
    g = grant(st, T0 + 30.6, 1)
    assert g.reason == "ban" and g.until == until  # nobody else sent a request into the ban


def test_a_request_answered_after_the_roll_is_no_probe_of_the_new_window():
    """Only a probe holds the next window: a request sent once the usage was known, still in flight at the roll,
    does not (the new window's own probe goes at once, as before)."""
    st: S.State = {}
    answered(st, T0, 2, used=10)
    busy = grant(st, T0 + 29.9, 2)
    assert busy.ticket is not None
    assert grant(st, T0 + 30.2, 2).ticket is not None  # the new window's probe


def test_a_funding_request_counts_in_the_window_from_its_answer():
    """The exchange counts a request somewhere between its sending and its answer: a window measured from the
    sending would let a late-answered batch and the next one land in one fixed window of the exchange's."""
    st: S.State = {}
    answered(st, T0, 1, used=1)  # the window's usage is known: no probe holds the others
    sent = [grant(st, T0, 1, funding=True) for _ in range(LIMITS.funding_budget)]
    assert all(g.ticket for g in sent)
    assert grant(st, T0 + 1, 1, funding=True).reason == "funding"  # all in flight: only an answer frees a place
    for g in sent:
        S.release(st, T0 + 250, g.ticket, 1, LIMITS)  # answered late
    early = grant(st, T0 + 301, 1, funding=True)  # one window after the sending: too early
    assert early.ticket is None and early.reason == "funding" and early.until == T0 + 250 + 300
    assert grant(st, T0 + 550.5, 1, funding=True).ticket is not None


def test_a_funding_request_that_is_never_sent_frees_its_place():
    st: S.State = {}
    answered(st, T0, 1, used=1)
    held = [grant(st, T0, 1, funding=True) for _ in range(LIMITS.funding_budget)]
    S.cancel(st, T0, held[0].ticket)  # e.g. the process stopped before sending it
    assert grant(st, T0 + 1, 1, funding=True).ticket is not None
