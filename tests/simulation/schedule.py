"""The DAGs' scheduled work on the simulated clock: what each task calls, at its cron's instants.

Each run is the one Airflow makes for a cron tick (``CronDataIntervalTimetable``: the data interval ends at the
tick), started a drawn moment after the tick (sometimes within a second of a candle's close), and it calls the
library as the DAG's tasks do: ``orchestration.plan_scheduled`` then ``cli.execute`` of each spec's argv
(``dagfactory.extract_local``), and for the 02:00 gap filler ``gapfill.scan`` (detect, with the ledger recheck),
``gaps.plan_groups`` / ``gap_tasks.fill_spec`` (chunk), ``cli.execute`` of each fill argv (fill), ``gapfill.verify``
(verify) and ``gaps.build_report`` (report). A task that raises failed (as its Airflow task would); the next runs
heal what it left.

Speed: a seed runs only a drawn share of the ticks of the frequent DAGs (a scheduler that is busy or down for
most ticks; any run that does run is the exact run of its tick). Incremental runs then catch up whatever the
skipped ticks left, and the trades DAG (exact intervals) leaves holes the gap filler must find and fill.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from binance_extractor import cli, gaps
from binance_extractor.airflow import gap_tasks, gapfill, orchestration
from binance_extractor.airflow.dagfactory import GAP_FILLER_CRON
from binance_extractor.kinds import DataKind
from binance_extractor.timeframes import Timeframe, parse
from binance_extractor.timeutil import ms_to_dt
from tests.simulation.world import DAY, HOUR, MINUTE, World, _iso


@dataclass(frozen=True)
class Dag:
    name: str
    kind: DataKind
    timeframe: Timeframe | None
    period_ms: int
    runs_per_day: float  # how many of its ticks a day the simulated scheduler runs (all: 86_400_000 / period)


DAGS = (
    Dag("binance_klines_m5", DataKind.KLINES, parse("m5"), 5 * MINUTE, 0.5),
    Dag("binance_klines_m15", DataKind.KLINES, parse("m15"), 15 * MINUTE, 0.25),
    Dag("binance_klines_m30", DataKind.KLINES, parse("m30"), 30 * MINUTE, 0.25),
    Dag("binance_klines_h1", DataKind.KLINES, parse("h1"), HOUR, 0.5),
    Dag("binance_klines_d1", DataKind.KLINES, parse("d1"), DAY, 1),
    Dag("binance_funding_rates", DataKind.FUNDING, None, HOUR, 0.5),
    Dag("binance_trades", DataKind.AGG_TRADES, None, HOUR, 0.5),
)
assert GAP_FILLER_CRON == "0 2 * * *"  # the gap filler's instant below
FILLER_SHARE = 1 / 3


@dataclass
class Stats:
    runs: int = 0
    failed: int = 0
    filler_runs: int = 0
    filler_failed: int = 0
    reported_not_fillable: int = 0
    failures: list[str] = field(default_factory=list)


class Scheduler:
    """Puts every DAG run and gap filler run of the month on the world's event heap."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.stats = Stats()
        self.last_report: dict[str, Any] | None = None
        self.unreported: list[str] = []  # holes a gap filler run left open without reporting them

    def plan(self) -> None:
        w, rng = self.w, self.w.rng
        for dag in DAGS:
            first = (w.start // dag.period_ms + 1) * dag.period_ms
            ticks = range(first, w.end + 1, dag.period_ms)
            share = min(1.0, dag.runs_per_day * dag.period_ms / DAY)
            for tick in ticks:
                if tick == first or rng.random() < share:
                    w.at(tick + self._delay(), dag.name, lambda d=dag, t=tick: self.run_dag(d, t))
        day = (w.start // DAY + 1) * DAY
        while day + 2 * HOUR <= w.end:  # the 02:00 run, on a third of the days (and the last one, after the end)
            tick = day + 2 * HOUR
            if rng.random() < FILLER_SHARE:
                w.at(tick + self._delay(), "gap_filler", lambda t=tick: self.run_gap_filler(t))
            day += DAY

    def _delay(self) -> int:
        """When a run starts after its tick: often within a second or two (the closed bound's edge), else later."""
        rng = self.w.rng
        if rng.random() < 0.4:
            return rng.randrange(0, 2500)
        return rng.randrange(2500, 90_000)

    # ------------------------------------------------------------------ runs

    def run_dag(self, dag: Dag, tick: int) -> None:
        """plan -> extract (mapped over symbols), as ``dagfactory._scheduled_dag``."""
        specs = orchestration.plan_scheduled(
            dag.kind,
            list(self.w.symbols),
            run_type="scheduled",
            data_interval_start=ms_to_dt(tick - dag.period_ms),
            data_interval_end=ms_to_dt(tick),
            timeframe=dag.timeframe,
            requested_by=f"sim:{dag.name}",
        )
        for spec in specs:
            self.execute(dag.name, spec.to_argv())

    def execute(self, name: str, argv: list[str]) -> list[Any] | None:
        """One task instance (``extract_local``): its results, or None when it failed."""
        self.stats.runs += 1
        try:
            with self.w.reaper.task():
                return list(cli.execute(argv))
        except Exception as exc:  # the task failed; Airflow would mark it failed and the next run heals
            self.stats.failed += 1
            self.w.log.add(self.w.now(), f"{name} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            return None

    def run_gap_filler(self, tick: int) -> dict[str, Any] | None:
        """detect -> chunk -> fill (mapped) -> verify -> report, as ``dagfactory.gap_filler_dag``."""
        w = self.w
        self.stats.filler_runs += 1
        end = ms_to_dt(tick)
        symbols = list(w.symbols)
        try:
            with w.reaper.task():
                scans = gapfill.scan(symbols, end, recheck=True)  # detect
        except Exception as exc:
            self.stats.filler_failed += 1
            w.log.add(w.now(), f"gap filler detect failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            return None
        holes = gaps.holes_of(scans)
        settings = gaps.GapSettings.load()
        groups = gaps.plan_groups(holes, settings)  # chunk
        specs = [gap_tasks.fill_spec(g, requested_by="sim:gap_filler") for g in groups]
        results: list[dict[str, Any]] = []
        for spec in specs:  # fill
            out = self.execute("gap_filler.fill", spec.to_argv())
            for report in out or []:
                if isinstance(report, dict):
                    results.extend(report.get("chunks") or [])
        chunks = [c for s in specs for c in s.chunks]
        try:  # verify + report (both trigger_rule all_done)
            open_holes = gapfill.verify(chunks, results)
            after = gapfill.scan(symbols, end)
            report = gaps.build_report([s.to_dict() for s in scans], results, after, open_holes)
        except Exception as exc:
            self.stats.filler_failed += 1
            w.log.add(w.now(), f"gap filler verify/report failed: {type(exc).__name__}: {str(exc)[:160]}")
            return None
        failures = gaps.failures(open_holes)
        waiting = [h for h in open_holes if h["status"] == gaps.NOT_FILLABLE_YET]
        self.stats.reported_not_fillable += len(waiting)
        if failures:
            self.stats.filler_failed += 1
            w.log.add(w.now(), f"gap filler closure failed: {gaps.closure_message(failures)[:300]}")
        w.log.add(
            w.now(),
            f"gap filler {_iso(tick)}: {len(holes)} hole(s), {len(chunks)} chunk(s), "
            f"{len(waiting)} not fillable yet, {len(failures)} open",
        )
        reported = [gaps.Hole.from_dict(h) for h in open_holes]
        for scan in after:
            for hole in scan.holes:
                if not any(h.table == hole.table and h.symbol == hole.symbol and h.start_ms < hole.end_ms
                           and hole.start_ms < h.end_ms for h in reported):  # fmt: skip
                    self.unreported.append(f"gap filler {_iso(tick)} left {hole.describe()} open and unreported")
        self.last_report = {"open_holes": open_holes, "report": report, "after": after}
        return self.last_report


def run_all_once(sched: Scheduler, tick: int, runner: Callable[[Dag, int], None] | None = None) -> None:
    """Every DAG once for the tick at or before ``tick`` (the final catch-up before the checks)."""
    for dag in DAGS:
        with contextlib.suppress(Exception):
            (runner or sched.run_dag)(dag, tick - tick % dag.period_ms)
