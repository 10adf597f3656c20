"""Close-to-row delay of the live tail (p50/p99) in SQLite and MariaDB, and the tail process's CPU and memory.

    .venv/bin/python benchmarks/bench_stream.py [--sinks sqlite,mysql] [--rounds 2] [--latency 0.05]
    .venv/bin/python benchmarks/bench_stream.py --contracts 400 [--update-ms 250] [--lead 75]   # #25: 2,000 streams

24 symbols x 5 intervals (5m, 15m, 30m, 1h, 1d) = 120 streams on one connection to the emulator's WebSocket
server. The emulator's market clock and the tail's library clock are the real clock shifted by the same offset,
so a round starts ``--lead`` seconds before a UTC midnight: the tail starts (REST fill of the day behind it), then
at midnight all 120 candles close at once (the worst burst there is) and the delay from each candle's close to
its committed row is measured by the tail itself (``lag_p50_ms``/``lag_p99_ms`` in its result). Each round is a
fresh ``python -m binance_extractor stream`` process one virtual day later; CPU and peak RSS are read with psutil
over the live part of the round (after the start-up fill).

Baseline, same run, same emulator: the scheduled REST path at its best, i.e. one ``run_job`` per stream fetching
just the candle that closed at midnight (what the DAG runs do at the boundary, before any scheduler or pod
start-up delay). The ratio says how much fresher the tail is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_TMP = Path(tempfile.mkdtemp(prefix="bx-bench-stream-"))
os.environ.setdefault("AIRFLOW_HOME", str(_TMP / "airflow"))
os.environ["BINANCE_EXTRACTOR_DATA_DIR"] = str(_TMP / "data")

import psutil  # noqa: E402

from tests.emulator import Emulator  # noqa: E402
from tests.emulator import data as D  # noqa: E402

SYMBOLS = [
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "SOLUSDT",
    "SYNTHUSDT",
    "DOGEUSDT",
    "ADAUSDT",
    "AVAXUSDT",
    "LINKUSDT",
    "DOTUSDT",
    "LTCUSDT",
    "BCHUSDT",
    "TRXUSDT",
    "ATOMUSDT",
    "NEARUSDT",
    "UNIUSDT",
    "ETCUSDT",
    "FILUSDT",
    "APTUSDT",
    "ARBUSDT",
    "OPUSDT",
    "SUIUSDT",
    "1000PEPEUSDT",
    "INJUSDT",
]  # fmt: skip  (the config's 24, with the synthetic SYNTHUSDT for XRPUSDT, whose real fixture data ends in the past)
INTERVALS = ["5m", "15m", "30m", "1h", "1d"]

BOOT = """
import sys, time
from binance_extractor import clock
OFFSET = int(sys.argv.pop(1))
class Shifted:
    def now_ms(self):
        return time.time_ns() // 1_000_000 + OFFSET
clock.set_clock(Shifted())
from binance_extractor.cli import main
sys.exit(main(sys.argv[1:]))
"""


class ShiftedClock:
    def __init__(self, offset_ms: int) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def __call__(self) -> int:
        return self.now_ms()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sink_env(sink: str) -> tuple[dict[str, str], Any]:
    if sink == "sqlite":
        path = _TMP / f"stream-{uuid.uuid4().hex[:8]}.sqlite"
        return {"AIRFLOW_CONN_SQLITE_DEFAULT": "sqlite://" + quote(str(path), safe="")}, None
    import MySQLdb

    db = f"bench_stream_{uuid.uuid4().hex[:8]}"
    admin = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", passwd="")
    admin.cursor().execute(f"CREATE DATABASE {db}")

    def drop() -> None:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        admin.close()

    return {"AIRFLOW_CONN_MYSQL_DEFAULT": f"mysql://root@127.0.0.1:3306/{db}"}, drop


def run_round(emu: Emulator, clock: ShiftedClock, sink: str, env: dict[str, str], midnight: int, lead: float) -> dict:
    """One tail process from ``lead`` seconds before ``midnight`` until the midnight burst is stored."""
    clock.offset_ms = midnight - int(lead * 1000) - time.time_ns() // 1_000_000
    before = emu.stream.closes_sent
    cmd = [sys.executable, "-c", BOOT, str(clock.offset_ms), "stream", "--symbols", ",".join(SYMBOLS)]
    cmd += ["--intervals", ",".join(INTERVALS), "--sink", sink]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    ps = psutil.Process(proc.pid)
    while not any("stream: REST fills done" in x for x in lines):
        if proc.poll() is not None:
            raise SystemExit("the tail exited early:\n" + "".join(lines[-30:]))
        time.sleep(0.05)
    live_at = clock.now_ms()
    if live_at >= midnight:
        print(f"  warning: start-up fill ended {(live_at - midnight) / 1000:.1f} s after midnight; raise --lead")
    cpu0 = ps.cpu_times()
    t0 = time.monotonic()
    peak_rss = ps.memory_info().rss
    while emu.stream.closes_sent < before + len(SYMBOLS) * len(INTERVALS) or clock.now_ms() < midnight + 3000:
        peak_rss = max(peak_rss, ps.memory_info().rss)
        time.sleep(0.1)
    cpu1 = ps.cpu_times()
    window = time.monotonic() - t0
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    reader.join(5)
    result = next(json.loads(x) for x in lines if x.startswith('{"command": "stream"'))
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    total = cpu1.user + cpu1.system  # start-up (imports, the day's REST fill) included
    return {**result, "cpu_pct": 100 * cpu / window, "cpu_total_s": total, "peak_rss_mb": peak_rss / 2**20}


def baseline(emu: Emulator, clock: ShiftedClock, sink: str, env: dict[str, str], midnight: int) -> float:
    """Seconds for the REST path to fetch just the 120 candles that closed at ``midnight`` (best case)."""
    from binance_extractor import clock as lib_clock
    from binance_extractor.client import BinanceFuturesClient
    from binance_extractor.kinds import DataKind
    from binance_extractor.pipeline import Job, run_job
    from binance_extractor.sinks import open_sinks
    from binance_extractor.timeframes import parse as parse_tf
    from binance_extractor.timeutil import ms_to_dt

    os.environ.update(env)
    clock.offset_ms = midnight + 1000 - time.time_ns() // 1_000_000
    client = BinanceFuturesClient(emu.url)
    (s,) = open_sinks([sink])
    try:
        with lib_clock.using(clock):
            t0 = time.perf_counter()
            for sym in SYMBOLS:
                for iv in INTERVALS:
                    start = ms_to_dt(midnight - D.INTERVAL_MS[iv])
                    job = Job(DataKind.KLINES, sym, parse_tf(iv), start=start, end=ms_to_dt(midnight), source="rest")
                    run_job(job, [s], client, now=lib_clock.now())
            return time.perf_counter() - t0
    finally:
        s.close()
        client.close()


def _wait(cond: Any, what: str, timeout: float, proc: subprocess.Popen[str], lines: list[str]) -> None:
    limit = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise SystemExit(f"the tail exited while waiting for {what}:\n" + "".join(lines[-30:]))
        if time.monotonic() > limit:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def stored_exactly(env: dict[str, str], sink: str, close_log: list[tuple[str, str, int, float]], emu: Emulator) -> int:
    """Every close the emulator sent is a stored row equal to what REST serves for it; returns how many."""
    from binance_extractor.kinds import Dataset
    from binance_extractor.models import Kline
    from binance_extractor.sinks import open_stores
    from binance_extractor.timeframes import parse as parse_tf
    from binance_extractor.timeutil import dt_to_ms, ms_to_dt

    os.environ.update(env)
    (store,) = open_stores([sink])
    wanted: dict[tuple[str, str], set[int]] = {}
    for sym, iv, open_ms, _ in close_log:
        wanted.setdefault((sym, iv), set()).add(open_ms)
    try:
        for (sym, iv), opens in wanted.items():
            lo, hi = min(opens), max(opens)
            rows = store.read(Dataset.klines(parse_tf(iv)), sym, ms_to_dt(lo), ms_to_dt(hi + 1))
            got = {dt_to_ms(r["open_time"]): Kline(**r) for r in rows}
            for t in opens:
                (served,) = emu.klines_rows(sym, iv, t, t)
                if got.get(t) != Kline.from_rest(sym, iv, served):
                    raise SystemExit(f"{sym} {iv} {t}: stored {got.get(t)} != served {served}")
    finally:
        store.close()
    return sum(len(v) for v in wanted.values())


def _scale_sink(
    emu: Emulator, clock: ShiftedClock, symbols: list[str], intervals: list[str], sink: str, hour: int, args: Any
) -> None:
    """One tail process over every stream into ``sink``, from ``args.lead`` s before ``hour`` to 5 s after it."""
    from binance_extractor.stream import plan
    from binance_extractor.timeframes import parse as parse_tf

    streams = len(symbols) * len(intervals)
    clock.offset_ms = hour - int(args.lead * 1000) - time.time_ns() // 1_000_000
    extra, cleanup = sink_env(sink)
    env = {
        **os.environ,
        "BINANCE_FUTURES_BASE_URL": emu.url,
        "BINANCE_FUTURES_WS_URL": emu.ws_url,
        "BINANCE_LOG_FORMAT": "json",
        **extra,
    }
    cmd = [sys.executable, "-c", BOOT, str(clock.offset_ms), "stream", "--symbols", ",".join(symbols)]
    cmd += ["--intervals", ",".join(intervals), "--sink", sink, "--no-fill", "--queue-size", "20000"]
    emu.stream.connection_streams.clear()
    emu.stream.close_log.clear()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    want = len(plan.split_streams([(s, parse_tf(i)) for s in symbols for i in intervals]))  # the tail's own plan
    _wait(lambda: emu.stream.active >= want, f"{want} connections", 120, proc, lines)
    ps = psutil.Process(proc.pid)
    sent0 = emu.stream.updates_sent + emu.stream.closes_sent
    cpu0, t0 = ps.cpu_times(), time.monotonic()
    if clock.now_ms() >= hour:
        print(f"  warning: the tail connected {(clock.now_ms() - hour) / 1000:.1f} s after the hour; raise --lead")
    _wait(lambda: clock.now_ms() >= hour + 5000, "the hour's closes", args.lead + 120, proc, lines)
    cpu1, window = ps.cpu_times(), time.monotonic() - t0
    sent = emu.stream.updates_sent + emu.stream.closes_sent - sent0
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    reader.join(5)
    result = next(json.loads(x) for x in lines if x.startswith('{"command": "stream"'))
    cpu = 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / window
    split = list(emu.stream.connection_streams)
    closes = list(emu.stream.close_log)
    now_perf, now_market = time.perf_counter(), clock.now_ms()  # the emulator's own delay: close time -> sent
    sent_late = [now_market - (now_perf - at) * 1000 - (t + D.INTERVAL_MS[iv]) for _, iv, t, at in closes]
    checked = stored_exactly(extra, sink, closes, emu)
    ok = max(split) <= plan.MAX_STREAMS_PER_CONNECTION and sum(split) == streams
    print(
        f"{sink:6s} {len(symbols)} contracts x {len(intervals)} intervals = {streams:,} streams on {len(split)} "
        f"connections (max {max(split)} streams each, documented limit {plan.MAX_STREAMS_PER_CONNECTION}: "
        f"{'ok' if ok else 'EXCEEDED'})\n"
        f"       {sent / window:,.0f} messages/s served (update every {args.update_ms} ms; the tail counted "
        f"{result['messages']:,}); tail CPU {cpu:.0f} % of one core = {cpu * 1000 / streams:.1f} % per 1,000 "
        f"streams\n"
        f"       close -> stored p50 {result['lag_p50_ms'] / 1000:.3f} s, p99 {result['lag_p99_ms'] / 1000:.3f} s "
        f"(target <= 2 s); {checked:,} closes sent, every one stored equal to REST; "
        f"{result['candles_stored']:,} stored, {result['write_failures']} write failures\n"
        f"       of which the emulator's own send delay (close time -> frame sent): p50 "
        f"{_pct(sent_late, 0.5) / 1000:.3f} s, p99 {_pct(sent_late, 0.99) / 1000:.3f} s"
    )
    if cleanup:
        cleanup()


def scale(args: argparse.Namespace) -> None:
    """#25: ``--contracts`` symbols x ``--scale-intervals`` streams, live updates every ``--update-ms``, no REST
    fill: messages/s, the tail's CPU per 1,000 streams, close -> stored p50/p99 through an hour boundary (every
    stream closes at once), every sampled close compared with REST, and the split into connections."""
    clock = ShiftedClock(0)
    emu = Emulator(clock=clock, latency=args.latency, contracts=args.contracts).start()
    emu.stream.update_ms = args.update_ms
    symbols = emu.perpetuals(args.contracts)
    intervals = args.scale_intervals.split(",")
    hour = D.ms(2026, 11, 2, 1)
    for n, sink in enumerate(args.sinks.split(",")):
        _scale_sink(emu, clock, symbols, intervals, sink, hour + n * 3600_000, args)  # each sink: the next hour
    emu.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sinks", default="sqlite,mysql")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lead", type=float, default=40.0, help="seconds before midnight each tail starts")
    ap.add_argument("--latency", type=float, default=0.05, help="emulator REST latency (s)")
    ap.add_argument("--contracts", type=int, default=0, help="#25 scale mode: this many contracts (e.g. 400)")
    ap.add_argument("--scale-intervals", default="1m,5m,15m,30m,1h", help="scale mode: intervals per contract")
    ap.add_argument("--update-ms", type=int, default=250, help="scale mode: live update period of each stream")
    args = ap.parse_args()
    if args.contracts:
        scale(args)
        return
    clock = ShiftedClock(0)
    emu = Emulator(clock=clock, latency=args.latency).start()
    base_env = {
        **os.environ,
        "BINANCE_FUTURES_BASE_URL": emu.url,
        "BINANCE_FUTURES_WS_URL": emu.ws_url,
        "BINANCE_EXTRACTOR_HISTORY_DAYS": "1",
        "BINANCE_LOG_FORMAT": "json",
    }
    day0 = D.ms(2026, 11, 1)
    print(f"live tail: {len(SYMBOLS)} symbols x {len(INTERVALS)} intervals = {len(SYMBOLS) * len(INTERVALS)} streams,")
    print(f"each round: a fresh tail {args.lead:.0f} s before a UTC midnight (all 120 candles close at once)")
    try:
        for sink in args.sinks.split(","):
            extra, cleanup = sink_env(sink)
            env = {**base_env, **extra}
            try:
                p50s, p99s, cpus, rss, totals = [], [], [], [], []
                for r in range(args.rounds + 1):  # round 0 warms the table with a day of history
                    out = run_round(emu, clock, sink, env, day0 + (r + 1) * D.DAY, args.lead)
                    assert out["candles_stored"] >= 120, out
                    if r == 0:
                        continue
                    p50s.append(out["lag_p50_ms"])
                    p99s.append(out["lag_p99_ms"])
                    cpus.append(out["cpu_pct"])
                    rss.append(out["peak_rss_mb"])
                    totals.append(out["cpu_total_s"])
                rest_s = baseline(emu, clock, sink, extra, day0 + (args.rounds + 2) * D.DAY)
                p99 = max(p99s) / 1000
                print(
                    f"{sink:6s}  close->row p50 {max(p50s) / 1000:.3f} s  p99 {p99:.3f} s (worst of {args.rounds} "
                    f"rounds, target < 2 s)  |  tail CPU live {max(cpus):.1f} % of one core (whole process incl. "
                    f"start-up fill {max(totals):.1f} s), peak RSS "
                    f"{max(rss):.0f} MiB  |  baseline REST run for the same 120 candles {rest_s:.2f} s "
                    f"(x{rest_s / max(p99, 1e-3):.1f} the tail's p99)"
                )
            finally:
                if cleanup:
                    cleanup()
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
