"""Real processes sharing one budget against the loopback exchange: no ban, no burst, no deadlock.

Every worker is a separate Python process (``worker.py``) with its own ``BinanceFuturesClient``; they meet only
in the shared store (SQLite file or Redis). Small budgets and 2 s windows keep the tests short; nothing here
asserts a duration (process timeouts only guard against hangs).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from binance_extractor.budget import SharedBudget, budget_key, open_budget_store
from binance_extractor.budget import state as S
from binance_extractor.ratelimit import WeightRule
from tests.emulator import Emulator

ROOT = Path(__file__).resolve().parents[3]
HANG_GUARD = 240  # seconds: only stops a hung test, never a measured duration


def _env(store_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["BINANCE_EXTRACTOR_BUDGET_URL"] = store_url
    env.update(extra)
    return env


def spawn(emu: Emulator, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.binance_extractor.budget.worker", "--url", emu.url, *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=HANG_GUARD)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else {}), err


def budget_for(emu: Emulator, store_url: str) -> SharedBudget:
    return SharedBudget(open_budget_store(store_url), budget_key(emu.url))


@pytest.mark.parametrize(("procs", "backend"), [(4, "sqlite"), (8, "sqlite"), (4, "redis"), (4, "mysql")])
def test_processes_over_ten_times_the_budget_get_no_ban(procs, backend, tmp_path, make_emulator):
    emu = make_emulator(window_seconds=2, weight_limit=100)
    store = {"redis": "redis://127.0.0.1:6379/0", "mysql": "mysql://root@127.0.0.1:3306/test"}.get(
        backend, f"sqlite:///{tmp_path / 'budget.sqlite'}"
    )
    margin = 0.9
    budget = int(100 * margin)
    pages = 10 * budget // 2 // procs  # weight 2 a page: together ten windows' worth of budget
    env = _env(store)
    workers = [spawn(emu, env, "--pages", str(pages), "--margin", str(margin)) for _ in range(procs)]
    results = [finish(p) for p in workers]
    for rc, out, err in results:
        assert rc == 0, (out, err[-500:])  # the error is in the JSON line
        assert out["klines"] == pages * 499
    assert emu.count_418 == 0
    assert emu.count_429 <= 1
    assert emu.max_used_weight <= 100
    assert emu.count(path="/fapi/v1/klines", status=200) == procs * pages
    state = budget_for(emu, store).snapshot()
    assert S.in_flight(state) == 0  # every reservation was released


def test_sigkilled_process_reservations_expire_and_never_deadlock(tmp_path, make_emulator):
    emu = make_emulator(window_seconds=2, weight_limit=48)  # budget int(48 * 0.95) = 45
    store = f"sqlite:///{tmp_path / 'budget.sqlite'}"
    env = _env(store, BINANCE_EXTRACTOR_BUDGET_TTL="4")
    # The victim's requests hang in flight and never reach the exchange. ("slow" would count their weight once its
    # delay is over: on a loaded machine that fell inside the survivor's run and made it a 429.)
    emu.inject("hang", times=4, path="/fapi/v1/klines")
    victim = spawn(emu, env, "--pages", "8", "--page", "1500", "--in-flight", "4")  # weight 10 a page
    shared = budget_for(emu, store)
    survivor_limits = SharedBudget(open_budget_store(store), shared.key, rule=WeightRule(48, 2), ttl_s=4).limits()

    def blocks_the_survivor(state: S.State) -> bool:
        """What the victim holds keeps a weight-10 request out: four pages in flight (40 + 10 > 45), or, when its
        pages went out in a window of their own, an unanswered probe (no second request until it is answered)."""
        grant = S.acquire(copy.deepcopy(state), time.time(), 10, survivor_limits)
        return bool(state.get("res")) and grant.ticket is None

    def hung() -> int:
        return 4 - (emu.faults[0][1] if emu.faults else 0)

    while hung() < 1 or not blocks_the_survivor(shared.snapshot()):
        assert victim.poll() is None, victim.communicate()[1][-500:]  # (hung: it cannot finish on its own)
        time.sleep(0.05)
    held = dict(shared.snapshot()["res"])
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert held and sum(r[0] for r in held.values()) in (10, 20, 30, 40)
    # only the expiry of what the killed process held lets the survivor through
    survivor = spawn(emu, env, "--pages", "3", "--page", "1500", "--in-flight", "2")
    rc, out, err = finish(survivor)
    assert rc == 0, (out, err[-500:])  # the error is in the JSON line
    assert out["klines"] == 3 * 1500
    assert not set(held) & set(shared.snapshot()["res"])  # the killed process's reservations are gone
    assert emu.count_418 == 0 and emu.count_429 == 0


def _cli(emu: Emulator, env: dict[str, str]) -> subprocess.Popen[str]:
    """The CLI as a task or pod runs it."""
    cmd = [sys.executable, "-m", "binance_extractor", "klines", "--interval", "1m", "--symbols", "BTCUSDT"]
    cmd += ["--start", "2024-01-01", "--end", "2024-01-02", "--source", "rest", "--sink", "jsonl", "--output", "-"]
    env = {**env, "BINANCE_FUTURES_BASE_URL": emu.url}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_ban_seen_by_one_process_stops_every_other(tmp_path, make_emulator):
    emu = make_emulator(window_seconds=2, weight_limit=20, ban_seconds=600)
    env = _env(f"sqlite:///{tmp_path / 'budget.sqlite'}")
    while requests.get(f"{emu.url}/fapi/v1/time", timeout=5).status_code != 418:
        pass  # a careless client elsewhere on the IP gets it banned
    rc, out, _ = finish(spawn(emu, env, "--pages", "2", "--max-ban-wait", "30"))
    assert rc == 1 and out["statuses"] == {"418": 1}  # one process sees the ban ...
    assert "IP banned by Binance (HTTP 418) until 20" in out["error"]
    sent = emu.count()
    others = [spawn(emu, env, "--pages", "2", "--max-ban-wait", "30") for _ in range(3)]
    cli = _cli(emu, env)  # ... a new pod or an Airflow retry learns it from the shared state
    for rc, out, _ in [finish(p) for p in others]:
        assert rc == 1 and out["statuses"] == {}
        assert "until 20" in out["error"] and "nothing was sent" in out["error"]
    stdout, stderr = cli.communicate(timeout=HANG_GUARD)
    assert cli.returncode == 1 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "banned by Binance (HTTP 418) until 20" in lines[0], stderr
    assert emu.count() == sent  # nobody sent anything while the ban holds


def ready(emu: Emulator, env: dict[str, str], go: Path, n: int, *args: str) -> list[subprocess.Popen[str]]:
    """``n`` workers, imported and waiting at the start barrier ``go`` (however long a loaded machine takes)."""
    workers = [spawn(emu, env, *args, "--go-file", str(go)) for _ in range(n)]
    for w in workers:
        line = w.stdout.readline() if w.stdout else ""
        assert line.strip() == "ready", (line, w.communicate()[1][-500:])
    return workers


def ban(emu: Emulator) -> int:
    """A careless client elsewhere on the IP gets it banned; returns how many requests the emulator saw."""
    while requests.get(f"{emu.url}/fapi/v1/time", timeout=5).status_code != 418:
        pass
    return emu.count()


def test_a_short_ban_is_waited_out_by_every_process_without_a_request(tmp_path, make_emulator):
    emu = make_emulator(window_seconds=2, weight_limit=20, ban_seconds=3)
    env = _env(f"sqlite:///{tmp_path / 'budget.sqlite'}")
    go = tmp_path / "go"
    workers = ready(emu, env, go, 3, "--pages", "3", "--max-ban-wait", "30")  # started before the ban ...
    careless = ban(emu)
    go.touch()  # ... and sending while it holds
    results = [finish(p) for p in workers]
    for rc, out, err in results:
        assert rc == 0, (out, err[-500:])  # the error is in the JSON line
        assert out["klines"] == 3 * 499
    ours = emu.requests[careless:]
    assert sum(r.status == 418 for r in ours) <= 1  # at most the one request that discovered the ban
    assert all(r.status in (200, 418) for r in ours)  # then every process waited it out: no 429, no new ban


def test_a_ban_found_by_a_slow_answer_gets_no_second_request(tmp_path, make_emulator):
    """The request that finds the ban is answered only after a window boundary (a slow exchange, or this machine
    under load). The other processes wait for that answer instead of sending the new window's first request
    into the ban: before the fix each of them got a 418 too (the cause of the failures of the test above on a
    busy machine; see test_state.py::test_an_unanswered_probe_holds_the_next_window_too)."""
    emu = make_emulator(window_seconds=2, weight_limit=20, ban_seconds=10, slow_seconds=3)
    store = f"sqlite:///{tmp_path / 'budget.sqlite'}"
    env = _env(store)
    budget_for(emu, store).set_rule(WeightRule(20, 2, emu.weight_header))  # learned by an earlier run: 2 s windows
    go = tmp_path / "go"
    workers = ready(emu, env, go, 3, "--pages", "2", "--max-ban-wait", "60")
    careless = ban(emu)
    emu.inject("slow", times=1, path="/fapi/v1/time")  # the first request (the exchange clock's) takes 3 s
    go.touch()
    results = [finish(p) for p in workers]
    for rc, out, err in results:
        assert rc == 0, (out, err[-500:])  # the error is in the JSON line
        assert out["klines"] == 2 * 499
    ours = emu.requests[careless:]
    assert sum(r.status == 418 for r in ours) <= 1, [(r.path, r.status) for r in ours]
    assert all(r.status in (200, 418) for r in ours)


def test_the_store_going_away_stops_every_process_without_a_burst(redis_server, make_emulator):
    server, url = redis_server
    emu = make_emulator(window_seconds=2, weight_limit=40)
    env = _env(url)
    workers = [spawn(emu, env, "--pages", "300", "--in-flight", "2") for _ in range(3)]
    while emu.count(path="/fapi/v1/klines") < 20:
        assert all(w.poll() is None for w in workers)
        time.sleep(0.05)
    server.kill()
    server.wait()
    at_kill = emu.count()
    results = [finish(w) for w in workers]
    assert emu.count() - at_kill <= 3 * 2  # only requests already reserved (in flight) when it went away
    for rc, out, _ in results:
        assert rc == 1
        assert f"weight budget store {url} unreachable" in out["error"] and "nothing was sent" in out["error"]
    assert emu.count_429 == 0 and emu.count_418 == 0


def test_the_funding_rate_window_is_shared_by_every_process(tmp_path, make_emulator):
    emu = make_emulator(funding_limit=10, funding_window_seconds=2)
    env = _env(f"sqlite:///{tmp_path / 'budget.sqlite'}")
    workers = [spawn(emu, env, "--funding", "6", "--funding-limit", "10/2") for _ in range(4)]
    for rc, out, err in [finish(w) for w in workers]:
        assert rc == 0, (out, err[-500:])
        assert out["funding"] == 6
    assert emu.count(path="/fapi/v1/fundingRate", status=200) == 24
    assert emu.count_429 == 0 and emu.count_418 == 0


def test_the_funding_window_holds_when_answers_come_late(tmp_path, make_emulator):
    """The first fundingRate requests reach the exchange's counter 1.5 s after they were sent (a slow path, or
    this machine under load). The next ones must not go out one window after the SENDING of the first, or both
    land in one fixed window of the exchange: the budget counts a request's window from its answer."""
    emu = make_emulator(funding_limit=10, funding_window_seconds=2, slow_seconds=1.5)
    env = _env(f"sqlite:///{tmp_path / 'budget.sqlite'}")
    go = tmp_path / "go"
    workers = ready(emu, env, go, 4, "--funding", "6", "--funding-limit", "10/2")
    emu.inject("slow", times=9, path="/fapi/v1/fundingRate")  # the first budget's worth
    go.touch()
    for rc, out, err in [finish(w) for w in workers]:
        assert rc == 0, (out, err[-500:])
        assert out["funding"] == 6
    assert emu.count(path="/fapi/v1/fundingRate", status=200) == 24
    assert emu.count_429 == 0 and emu.count_418 == 0
