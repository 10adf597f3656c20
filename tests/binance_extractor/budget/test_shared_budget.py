"""SharedBudget over a real SQLite store with a fake time source (waits move the time instead of sleeping)."""

from __future__ import annotations

import logging

import pytest

from binance_extractor import weights
from binance_extractor.budget import SharedBudget, open_budget_store
from binance_extractor.budget.sqlite_store import SqliteBudgetStore
from binance_extractor.catalog import DataKind
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.errors import BudgetUnavailableError, IPBannedError
from binance_extractor.ratelimit import WeightRule


class FakeTime:
    def __init__(self) -> None:
        self.t = 1_764_590_430.0  # 2025-12-01T12:00:30Z, 30 s into a minute window
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def budget(tmp_path, ft: FakeTime, **kw) -> SharedBudget:
    store = SqliteBudgetStore(tmp_path / "budget.sqlite")
    return SharedBudget(store, "k", rule=WeightRule(100, 60), margin=1.0, now=ft.now, sleep=ft.sleep, **kw)


def test_a_long_ban_fails_at_once_naming_its_end(tmp_path):
    ft = FakeTime()
    b = budget(tmp_path, ft, max_ban_wait=60)
    b.ban(600)
    other = budget(tmp_path, ft, max_ban_wait=60)  # another process: it learns the ban from the store
    with pytest.raises(IPBannedError) as err:
        other.acquire(1)
    assert str(err.value) == (
        "IP banned by Binance (HTTP 418) until 2025-12-01T12:10:30Z (another 600 s, longer than the 60 s "
        "this run may wait); nothing was sent"
    )
    assert ft.slept == []


def test_a_short_pause_is_waited_out_with_one_line_naming_its_end(tmp_path, caplog):
    ft = FakeTime()
    b = budget(tmp_path, ft)
    b.pause(20)
    with caplog.at_level(logging.WARNING, logger="binance_extractor.budget"):
        ticket = budget(tmp_path, ft).acquire(1)
    assert ticket.weight == 1 and ft.t >= 1_764_590_450.0
    assert "waiting until 2025-12-01T12:00:50Z" in caplog.text


def test_the_rule_from_exchange_info_is_shared(tmp_path):
    ft = FakeTime()
    b = budget(tmp_path, ft)
    b.set_rule(WeightRule(300, 60))
    fresh = SharedBudget(SqliteBudgetStore(tmp_path / "budget.sqlite"), "k", now=ft.now)
    assert not fresh.rule_known and fresh.load_shared_rule()
    assert fresh.rule == WeightRule(300, 60) and fresh.budget == 285  # x weight_margin 0.95
    ft.t += 7200
    stale = SharedBudget(SqliteBudgetStore(tmp_path / "budget.sqlite"), "k", now=ft.now)
    assert not stale.load_shared_rule()  # an old answer is asked again


def test_a_release_the_store_cannot_record_only_logs_and_the_next_acquire_fails_cleanly(redis_server, caplog):
    server, url = redis_server
    b = SharedBudget(open_budget_store(url), "k", rule=WeightRule(100, 60), ttl_s=90)
    ticket = b.acquire(2)
    server.kill()
    server.wait()
    with caplog.at_level(logging.WARNING, logger="binance_extractor.budget"):
        b.release(ticket, 10)  # the answer already came: losing the store must not lose it
    assert "unreachable" in caplog.text and "expires in 90 s" in caplog.text
    with pytest.raises(BudgetUnavailableError, match="nothing was sent"):
        b.acquire(2)


@pytest.mark.parametrize(
    ("window", "label"),
    [
        (weights.FUNDING_WINDOW, "fundingRate limit (500 / 5 min / IP)"),
        (weights.OPEN_INTEREST_WINDOW, "openInterestHist limit (1000 / 5 min / IP)"),
    ],
)
def test_a_wait_in_a_separate_window_names_that_window(tmp_path, caplog, window, label):
    """Each separate window's wait is logged with its own endpoint and numbers (from weights/catalog), never the
    fundingRate text for the open-interest window."""
    ft = FakeTime()
    store = SqliteBudgetStore(tmp_path / "budget.sqlite")
    b = SharedBudget(store, "k", rule=WeightRule(100, 60), margin=0.002, now=ft.now, sleep=ft.sleep, window=window)
    assert b.window is window and b.limits().funding_window_s == 300.0
    with caplog.at_level(logging.WARNING, logger="binance_extractor.budget"):
        for _ in range(b.limits().funding_budget + 1):  # one more than the window holds: a wait
            b.release(b.acquire(0, funding=True), None)
    waits = [r.getMessage() for r in caplog.records if "waiting until" in r.getMessage()]
    assert len(waits) == 1 and waits[0].startswith(f"{label}: waiting until 2025-12-01T12:0")
    assert ft.slept


def test_the_client_counts_open_interest_in_the_open_interest_window(tmp_path, monkeypatch):
    monkeypatch.setenv("BINANCE_EXTRACTOR_BUDGET_URL", f"sqlite:///{tmp_path}/budget.sqlite")
    client = BinanceFuturesClient("http://127.0.0.1:9", "key")
    oi = client._limiter_for(DataKind.OPEN_INTEREST.entry.endpoint)
    assert oi.window is weights.OPEN_INTEREST_WINDOW and oi.funding_limit == (1000, 300.0)
    assert client.limiter.window is weights.FUNDING_WINDOW  # fundingRate and fundingInfo: the budget's own window
    assert weights.FUNDING_WINDOW.paths == {DataKind.FUNDING.entry.endpoint, "/fapi/v1/fundingInfo"}
