"""One seed from start to verdict: plan the month, run it, end the faults, catch up, check."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.simulation.checks import check_all
from tests.simulation.schedule import Scheduler, run_all_once
from tests.simulation.tail import SimTail
from tests.simulation.world import DAY, HOUR, World, quiet_logs


@dataclass
class Result:
    seed: int
    days: int
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    summary: dict[str, int] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        head = f"seed {self.seed} ({self.days} days, {self.seconds:.1f} s): "
        if self.ok:
            return head + "ok " + " ".join(f"{k}={v}" for k, v in self.summary.items())
        lines = [head + f"FAILED: {len(self.problems)} problem(s)", *("  " + p for p in self.problems[:20])]
        lines += ["  last events:", *("    " + line for line in self.log_tail)]
        lines.append(f"  reproduce: python -m tests.simulation run --seed {self.seed} --days {self.days}")
        return "\n".join(lines)


def run_seed(seed: int, days: int = 30, tamper: Callable[[World], None] | None = None) -> Result:
    """Run ``seed`` for ``days`` simulated days. ``tamper(world)`` runs just before the checks (the tests' proof
    that the checks catch a store or a ledger that differs from the exchange)."""
    with quiet_logs():
        return _run_seed(seed, days, tamper)


def _run_seed(seed: int, days: int, tamper: Callable[[World], None] | None) -> Result:
    started = time.perf_counter()
    result = Result(seed, days)
    with World(seed, days) as w:
        rng = w.rng
        w.plan_outages(rng.randint(1, 4))
        w.plan_http_faults(rng.randint(3, 12), with_429=rng.random() < 0.3)
        w.plan_db_outages(rng.randint(0, 3))
        w.plan_kills(rng.randint(1, 4))
        sched = Scheduler(w)
        sched.plan()
        tail = SimTail(w)
        tail.plan()
        try:
            w.run_until(w.end)
            # The end: the faults stop, the database is up, the exchange has published everything it will.
            assert w.emu is not None
            w.emu.clear_faults()
            w.reaper.pending.clear()
            if w.db_down:
                w.db_down_until = w.now()
                w._db_up()
            tail.drain()
            final_tick = (w.end // DAY + 1) * DAY + 2 * HOUR
            if final_tick - w.end < 3 * HOUR:
                final_tick += DAY
            w.clock.set(final_tick + 1500)
            tail.stop()
            run_all_once(sched, final_tick)
            last = sched.run_gap_filler(final_tick)
            if last is None:
                result.problems.append("the last gap filler run (no faults) failed")
            else:
                failures = [h for h in last["open_holes"] if h["status"] == "open"]
                if failures:
                    result.problems.append(f"the last gap filler left {len(failures)} open hole(s): {failures[:3]}")
                waiting = [h for h in last["open_holes"] if h["status"] != "open"]
                if waiting:
                    result.problems.append(f"the last gap filler left {len(waiting)} hole(s) not fillable yet")
                remaining = [h for s in last["after"] for h in s.holes]
                if remaining:
                    result.problems.append(f"holes remain after the last gap filler: {remaining[:3]}")
            result.problems += sched.unreported
            if tamper is not None:
                tamper(w)
            result.problems += check_all(w, final_tick)
        except Exception as exc:  # the simulation itself broke: a failure of the seed, with its trace
            import traceback

            result.problems.append(f"crashed: {type(exc).__name__}: {exc}")
            result.problems += traceback.format_exc().splitlines()[-12:]
        finally:
            result.summary = {
                "mariadb": int("mysql" in w.sinks),
                "outages": len(w.outages),
                "late": sum(1 for o in w.outages if o.publish_at is not None),
                "skew_ms": w.skew,
                "runs": sched.stats.runs,
                "failed_runs": sched.stats.failed,
                "killed": w.reaper.kills,
                "fillers": sched.stats.filler_runs,
                "not_fillable_reported": sched.stats.reported_not_fillable,
                "tail_closes": tail.closes,
                "tail_drops": tail.drops,
                "tail_restarts": tail.restarts,
                "tail_write_failures": tail.write_failures,
                "tail_fill_failures": tail.fill_failures,
                "requests": len(w.emu.requests) if w.emu else 0,
                "status_429": w.emu.count_429 if w.emu else 0,
            }
            result.log_tail = w.log.lines[-25:]
            if tail.tail is not None:
                tail.stop()
    result.seconds = time.perf_counter() - started
    return result


def one_seed(args: tuple[int, int]) -> tuple[int, bool, str, float]:
    """``run_seed`` for a worker process of the soak (importable, so a spawned worker can unpickle it)."""
    seed, days = args
    result = run_seed(seed, days)
    return seed, result.ok, result.describe(), result.seconds
