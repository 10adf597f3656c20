"""How much of the IP's weight budget extractor processes use together, through the shared budget.

Each scenario starts N real extractor processes (``tests/binance_extractor/budget/worker.py``, one
``BinanceFuturesClient`` each, sharing a fresh SQLite budget) against the emulator with Binance's standard
2400 weight / 60 s limit, lets them warm up, then counts the weight the exchange served over whole windows.
Ratios are against the configured budget (limit x weight_margin 0.95) and against the exchange's limit, in
the same run. Targets: 4 processes >= 0.85 with 0 bans; 1 process >= 0.9; 1 process at 150 ms >= 0.9.

    .venv/bin/python benchmarks/bench_budget.py [--windows 2] [--only 4x0.04]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.emulator import Emulator  # noqa: E402

SCENARIOS = {"1x0.04": (1, 0.04), "4x0.04": (4, 0.04), "1x0.15": (1, 0.15)}
MARGIN = 0.95
START_2019 = 1_568_073_600_000  # 2019-09-10: years of 1m candles, more demand than any measurement needs


def run(procs: int, latency: float, windows: int, limit: int, window_s: int) -> dict[str, float]:
    emu = Emulator(weight_limit=limit, window_seconds=window_s, latency=latency).start()
    tmp = tempfile.mkdtemp(prefix="bench-budget-")
    env = dict(os.environ)
    env.update(
        BINANCE_EXTRACTOR_BUDGET_URL=f"sqlite:///{tmp}/budget.sqlite",
        BINANCE_EXTRACTOR_BUDGET_NAME=f"bench-{uuid.uuid4().hex[:8]}",
        BINANCE_EXTRACTOR_DATA_DIR=tmp,
    )
    seconds = (windows + 2) * window_s + 5
    cmd = [sys.executable, "-m", "tests.binance_extractor.budget.worker", "--url", emu.url, "--pages", "100000"]
    cmd += ["--start", str(START_2019), "--margin", str(MARGIN), "--seconds", str(seconds)]
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL) for _ in range(procs)]
    try:
        while emu.count(path="/fapi/v1/klines") < procs:  # every process is extracting
            time.sleep(0.1)
        begin = (int(time.time() // window_s) + 1) * window_s  # the next whole window of the exchange's counter
        end = begin + windows * window_s
        time.sleep(max(0.0, end - time.time()) + 0.5)
        served = sum(r.weight for r in emu.requests if begin <= r.time < end and r.status == 200)
        n429, n418 = emu.count_429, emu.count_418
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
        emu.stop()
    budget = int(limit * MARGIN)
    return {
        "served": served,
        "of_budget": served / (windows * budget),
        "of_limit": served / (windows * limit),
        "n429": n429,
        "n418": n418,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=2, help="whole weight windows measured per scenario")
    ap.add_argument("--limit", type=int, default=2400)
    ap.add_argument("--window-seconds", type=int, default=60)
    ap.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    args = ap.parse_args()
    print(f"limit {args.limit} / {args.window_seconds} s, weight_margin {MARGIN}, {args.windows} windows each")
    head = ("processes", "latency s", "weight served", "of budget", "of limit", "429", "418")
    print("{:>9} {:>9} {:>13} {:>9} {:>8} {:>4} {:>4}".format(*head))
    bad = 0
    for name in args.only or list(SCENARIOS):
        procs, latency = SCENARIOS[name]
        r = run(procs, latency, args.windows, args.limit, args.window_seconds)
        bad += int(r["n418"] > 0)
        print(
            f"{procs:>9} {latency:>9.2f} {r['served']:>13,.0f} {r['of_budget']:>9.3f} {r['of_limit']:>8.3f} "
            f"{r['n429']:>4.0f} {r['n418']:>4.0f}",
            flush=True,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
