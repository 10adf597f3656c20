"""Benchmark (#25): `make run` (scripts/run-airflow.sh: airflow standalone, LocalExecutor, SQLite store) against
the emulator's N contracts, every DAG unpaused: freshness per table, DAG-run durations and CPU-s per symbol per run.

    .venv/bin/python benchmarks/bench_scheduler.py [--contracts 400] [--minutes 12] [--history-days 2]
        [--symbols-per-task N] [--max-tasks-per-run N] [--preload] [--pods]

What runs: the emulator as its own process (``python -m tests.emulator --contracts N``, the real 2400 weight/min
limit, 20 ms latency) and `make run`'s script with ``BINANCE_SYMBOLS`` = the first N perpetuals, a fresh
AIRFLOW_HOME and data dir, ``BINANCE_EXTRACTOR_HISTORY_DAYS`` (2). Every 15 s the SQLite store is read: per table
(klines m5..d1, funding, agg trades) how many contracts are fresh by the KPI's rule (``kpis.overdue_seconds`` for
klines: the first missing candle closed less than 5 min ago; ``health.is_stale`` with 5 min grace for funding and
trades). CPU: every process of the Airflow session, sampled each second (a process that ends between samples
loses at most its last second). At the end the REST API gives every DAG run's duration and mapped task count.

``--preload`` loads every kline table's and funding's history with the CLI before Airflow starts (a first load at
this size is a history job), so the run measures the steady state sooner. Either way the report ends with the KPI
in steady state: from the first instant every table had been fresh once, in how many samples every contract of
every table was fresh, and the worst overdue (klines) or lag (funding, trades) seen per table.

``--pods`` measures the kubernetes runtime's pod rendering instead (no scheduler): for the m5 DAG at N contracts,
per mapped task ``unmap`` + ``render_template_fields`` + ``build_pod_request_obj(dry_run=True)``: ms per pod and
per symbol, for ``symbols_per_task`` 1 and the configured rule.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import requests  # noqa: E402

TABLES = ("klines_m5", "klines_m15", "klines_m30", "klines_h1", "klines_d1", "funding_rates", "agg_trades")
DAGS = {
    "binance_klines_m5": "klines_m5",
    "binance_klines_m15": "klines_m15",
    "binance_klines_m30": "klines_m30",
    "binance_klines_h1": "klines_h1",
    "binance_klines_d1": "klines_d1",
    "binance_funding_rates": "funding_rates",
    "binance_trades": "agg_trades",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(contracts: int, symbols_file: Path, latency: float) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    extra = max(0, contracts - 24)
    cmd = [sys.executable, "-m", "tests.emulator", "--port", str(port), "--latency", str(latency)]
    cmd += ["--contracts", str(extra), "--symbols-file", str(symbols_file), "--list-symbols", str(contracts)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening" not in line:
        raise SystemExit(f"emulator did not start: {line}")
    return proc, f"http://127.0.0.1:{port}"


class CpuMeter:
    """CPU seconds of every process in the script's session and its children's (standalone's own), sampled;
    ended processes keep their last sample."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.seen: dict[tuple[int, float], float] = {}

    def sample(self) -> None:
        sids = {self.pgid}  # run-airflow.sh starts standalone with setsid: its own session, found as a child
        try:
            for child in psutil.Process(self.pgid).children():
                sids.add(os.getsid(child.pid))
        except (psutil.Error, OSError):
            pass
        for p in psutil.process_iter(["pid", "create_time"]):
            try:
                if os.getsid(p.pid) not in sids:
                    continue
                t = p.cpu_times()
                self.seen[(p.pid, p.info["create_time"])] = t.user + t.system
            except (psutil.Error, ProcessLookupError, OSError):
                continue

    @property
    def total(self) -> float:
        return sum(self.seen.values())


def freshness(data_dir: Path, symbols: list[str]) -> dict[str, tuple[int, float | None]]:
    """Per table: (contracts fresh by the KPI rule, worst overdue/lag seconds) at this instant."""
    from binance_extractor import clock, health, kpis
    from binance_extractor.kinds import Dataset
    from binance_extractor.sinks.sqlite import SqliteStore

    now = clock.now_ms()
    path = data_dir / "binance.sqlite"
    out: dict[str, tuple[int, float | None]] = {}
    if not path.exists():
        return {t: (0, None) for t in TABLES}
    os.environ["BINANCE_EXTRACTOR_DATA_DIR"] = str(data_dir)  # the store `make run` writes (sqlite_default)
    os.environ.pop("AIRFLOW_CONN_SQLITE_DEFAULT", None)
    store = SqliteStore()
    try:
        for table in TABLES:
            fresh, worst = 0, 0.0
            for sym in symbols:
                try:
                    last = store.last_time(Dataset.of_table(table), sym)
                except Exception:
                    last = None
                if table.startswith("klines_"):
                    over = kpis.overdue_seconds(table, last, now)
                    ok = over is not None and over < kpis.FRESHNESS_TARGET_S
                    worst = max(worst, over if over is not None else float("inf"))
                else:
                    ok = last is not None and not health.is_stale(Dataset.parse(table), last, now, 300_000)
                    lag = health.lag_seconds(Dataset.parse(table), last, now)
                    worst = max(worst, lag if lag is not None else float("inf"))
                fresh += ok
            out[table] = (fresh, worst)
    finally:
        store.close()
    return out


def dag_runs(url: str, home: Path) -> dict[str, list[dict[str, Any]]]:
    passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
    token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": passwords["admin"]}, timeout=10)
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    out: dict[str, list[dict[str, Any]]] = {}
    for dag_id in DAGS:
        resp = requests.get(f"{url}/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}, headers=headers, timeout=30)
        runs = resp.json().get("dag_runs", []) if resp.status_code == 200 else []
        for run in runs:
            tis = requests.get(
                f"{url}/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances",
                params={"limit": 1000},
                headers=headers,
                timeout=30,
            ).json()
            run["extract_tasks"] = sum(1 for t in tis.get("task_instances", []) if t["task_id"] == "extract")
        out[dag_id] = runs
    return out


def _secs(run: dict[str, Any]) -> float | None:
    if not run.get("start_date") or not run.get("end_date"):
        return None
    a = datetime.fromisoformat(run["start_date"].replace("Z", "+00:00"))
    b = datetime.fromisoformat(run["end_date"].replace("Z", "+00:00"))
    return (b - a).total_seconds()


def preload(symbols: list[str], env: dict[str, str]) -> None:
    """The first loads as the history job they are (docs/SCALE.md), before Airflow starts: every kline table and
    funding, incremental from ``history_days`` back, one CLI run each (trades' runs take exactly their hour)."""
    t0 = time.monotonic()
    commands = [["klines", "--interval", tf] for tf in ("5m", "15m", "30m", "1h", "1d")] + [["funding"]]
    for command in commands:
        argv = [sys.executable, "-m", "binance_extractor", *command, "--symbols", ",".join(symbols), "--incremental"]
        argv += ["--keep-going", "--sink", "sqlite", "--xcom-file", os.devnull]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"preload {' '.join(command)} failed: {done.stderr.strip()[-400:]}")
    print(f"preloaded {len(commands)} tables' history for {len(symbols)} contracts in {time.monotonic() - t0:.0f} s")


def scheduler(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bx-bench-sched-"))
    symbols_file = tmp / "symbols.txt"
    emu, url = start_emulator(args.contracts, symbols_file, args.latency)
    symbols = symbols_file.read_text().strip().split(",")
    port = free_port()
    home, data = tmp / "airflow", tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BINANCE_"))}
    env.update(
        RUN_AIRFLOW_HOME=str(home),
        AIRFLOW_PORT=str(port),
        BINANCE_EXTRACTOR_DATA_DIR=str(data),
        BINANCE_SYMBOLS=",".join(symbols),
        BINANCE_FUTURES_BASE_URL=url,
        BINANCE_ARCHIVE_BASE_URL=f"{url}/archive",
        BINANCE_EXTRACTOR_HISTORY_DAYS=str(args.history_days),
        OTEL_SDK_DISABLED="true",
    )
    if args.symbols_per_task:
        env["BINANCE_EXTRACTOR_SYMBOLS_PER_TASK"] = str(args.symbols_per_task)
    if args.max_tasks_per_run:
        env["BINANCE_EXTRACTOR_MAX_TASKS_PER_RUN"] = str(args.max_tasks_per_run)
    if args.preload:
        preload(symbols, env)
    log = open(tmp / "run-airflow.log", "w")  # noqa: SIM115
    airflow = subprocess.Popen(
        ["bash", str(ROOT / "scripts/run-airflow.sh")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    meter = CpuMeter(airflow.pid)
    started = time.monotonic()
    timeline: list[tuple[float, dict[str, tuple[int, float | None]]]] = []
    first_all: dict[str, float] = {}
    print(f"{len(symbols)} contracts, every DAG unpaused, history {args.history_days} d, {args.minutes} min; "
          f"log {tmp / 'run-airflow.log'}", flush=True)  # fmt: skip
    try:
        next_read = 0.0
        while time.monotonic() - started < args.minutes * 60:
            if airflow.poll() is not None:
                raise SystemExit(f"run-airflow.sh exited: see {tmp / 'run-airflow.log'}")
            meter.sample()
            elapsed = time.monotonic() - started
            if elapsed >= next_read:
                next_read = elapsed + 15
                state = freshness(data, symbols)
                timeline.append((elapsed, state))
                for table, (fresh, _) in state.items():
                    if fresh == len(symbols) and table not in first_all:
                        first_all[table] = elapsed
                print(f"  {elapsed:6.0f} s  " + "  ".join(f"{t.replace('klines_', '')}:{f}" for t, (f, _) in
                      state.items()) + f"  cpu {meter.total:.0f} s", flush=True)  # fmt: skip
            time.sleep(1)
        try:
            runs = dag_runs(f"http://localhost:{port}", home)
        except Exception as exc:  # the figures above still stand
            print(f"could not read the DAG runs: {type(exc).__name__}: {exc}")
            runs = {}
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(airflow.pid, sig)
            except ProcessLookupError:
                break
            try:
                airflow.wait(20)
                break
            except subprocess.TimeoutExpired:
                continue
        emu.terminate()
        emu.wait(10)
    report(args, symbols, timeline, first_all, runs, meter.total)


def report(
    args: argparse.Namespace,
    symbols: list[str],
    timeline: list[tuple[float, dict[str, tuple[int, float | None]]]],
    first_all: dict[str, float],
    runs: dict[str, list[dict[str, Any]]],
    cpu: float,
) -> None:
    n = len(symbols)
    print(f"\n{n} contracts, {args.minutes} min, CPU of the whole Airflow session {cpu:.0f} s "
          f"({100 * cpu / (args.minutes * 60):.0f} % of one core)")  # fmt: skip
    symbol_runs = 0
    print(f"{'dag':<24}{'runs done':>10}{'tasks/run':>10}{'run s p50':>10}{'run s max':>10}"
          f"{'all fresh at':>14}{'fresh at end':>14}{'worst at end':>14}")  # fmt: skip
    last = timeline[-1][1] if timeline else {}
    for dag_id, table in DAGS.items():
        done = [r for r in runs.get(dag_id, []) if r.get("state") in ("success", "failed")]
        secs = sorted(s for s in (_secs(r) for r in done) if s is not None)
        tasks = [r["extract_tasks"] for r in done if r.get("extract_tasks")]
        symbol_runs += n * len(done)
        fresh, worst = last.get(table, (0, None))
        p50 = f"{secs[len(secs) // 2]:.0f}" if secs else "-"
        mx = f"{secs[-1]:.0f}" if secs else "-"
        at = f"{first_all[table]:.0f} s" if table in first_all else "never"
        w = "-" if worst is None or worst == float("inf") else f"{worst:.0f} s"
        tpr = f"{sum(tasks) / len(tasks):.0f}" if tasks else "-"
        print(f"{dag_id:<24}{len(done):>10}{tpr:>10}{p50:>10}{mx:>10}{at:>14}{f'{fresh}/{n}':>14}{w:>14}")
    steady(n, timeline, first_all)
    if symbol_runs:
        print(f"CPU-s per symbol per run (every DAG's runs, start-up and history load included): "
              f"{cpu / symbol_runs:.3f}")  # fmt: skip
    out = ROOT / "benchmarks" / f".bench_scheduler_{n}.json"
    out.write_text(json.dumps({"contracts": n, "cpu_s": cpu, "first_all_fresh_s": first_all, "runs": {
        d: [{k: r.get(k) for k in ("dag_run_id", "state", "start_date", "end_date", "extract_tasks")} for r in rs]
        for d, rs in runs.items()}, "timeline": timeline}, default=str))  # fmt: skip


Timeline = list[tuple[float, dict[str, tuple[int, float | None]]]]


def steady(n: int, timeline: Timeline, first_all: dict[str, float]) -> None:
    """The KPI in steady state: from the first sample at which every table had been fresh once (every first load
    done), each later sample must find every contract of every table fresh (klines: the first missing candle
    closed < 5 min ago; funding and trades: lag within their period + 5 min)."""
    if len(first_all) < len(TABLES):
        missing = ", ".join(t for t in TABLES if t not in first_all)
        print(f"steady state: not reached (never all fresh: {missing})")
        return
    since = max(first_all.values())
    after = [(t, state) for t, state in timeline if t >= since]
    held = sum(1 for _, state in after if all(fresh == n for fresh, _ in state.values()))
    worst = {table: max((state[table][1] or 0.0) for _, state in after) for table in TABLES}
    print(f"steady state from {since:.0f} s ({(after[-1][0] - since) / 60 if after else 0:.1f} min, {len(after)} "
          f"samples): every table fresh in {held} of {len(after)} samples; worst overdue/lag per table: "
          + ", ".join(f"{t.replace('klines_', '')} {w:.0f} s" for t, w in worst.items()))  # fmt: skip


def pods(args: argparse.Namespace) -> None:
    """Pod-rendering cost of the kubernetes runtime, offline (no scheduler, no cluster)."""
    os.environ["BINANCE_EXTRACTOR_RUNTIME"] = "kubernetes"
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bx-bench-pods-"))
    from binance_extractor.airflow import dagfactory, orchestration
    from binance_extractor.kinds import DataKind
    from binance_extractor.timeframes import parse

    symbols = [f"C{i:04d}USDT" for i in range(args.contracts)]
    dag = dagfactory.klines_dag("m5", runtime="kubernetes")
    mapped = dag.task_dict["extract"]
    end = datetime(2026, 12, 1, 12, tzinfo=UTC)
    for label, per_task in (("symbols_per_task 1", 1), ("config rule", orchestration.symbols_per_task(len(symbols)))):
        specs = orchestration.plan_scheduled(
            DataKind.KLINES, symbols, run_type="scheduled", data_interval_start=end.replace(minute=55, hour=11),
            data_interval_end=end, timeframe=parse("m5"), requested_by="airflow:bench/run", xcom=True,
            symbols_per_task=per_task,
        )  # fmt: skip
        t0 = time.perf_counter()
        for spec in specs:
            op = mapped.unmap(spec.task_kwargs(pod=True))
            op.render_template_fields({"task": op, "ti": None})
            op.build_pod_request_obj(dry_run=True)
        secs = time.perf_counter() - t0
        print(f"{label:<20} ({per_task} per task): {len(specs)} pods in {secs:.2f} s = {1000 * secs / len(specs):.1f} "
              f"ms per pod, {1000 * secs / len(symbols):.2f} ms per symbol")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contracts", type=int, default=400)
    ap.add_argument("--minutes", type=float, default=12)
    ap.add_argument("--history-days", type=int, default=2)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--symbols-per-task", type=int, default=0, help="0: the config's rule")
    ap.add_argument("--max-tasks-per-run", type=int, default=0, help="0: the config's value")
    ap.add_argument("--pods", action="store_true", help="the kubernetes runtime's pod rendering only")
    ap.add_argument("--preload", action="store_true", help="load the history with the CLI before Airflow starts")
    args = ap.parse_args()
    if args.pods:
        pods(args)
    else:
        scheduler(args)


if __name__ == "__main__":
    main()
