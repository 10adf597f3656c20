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
