"""Close-to-row delay of the live tail (p50/p99) in SQLite and MariaDB, and the tail process's CPU and memory.

    .venv/bin/python benchmarks/bench_stream.py [--sinks sqlite,mysql] [--rounds 2] [--latency 0.05]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sinks", default="sqlite,mysql")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lead", type=float, default=40.0, help="seconds before midnight each tail starts")
    ap.add_argument("--latency", type=float, default=0.05, help="emulator REST latency (s)")
    args = ap.parse_args()
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
