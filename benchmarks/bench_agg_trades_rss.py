"""Peak memory of extracting aggregate trades of a busy symbol: pages are streamed, never a whole hour.

The emulator serves a synthetic symbol at about 2 million trades a day (two trades every 86 ms) with no weight
limit; a child process runs the real job (``pipeline.run_job`` into a JSON-lines sink on /dev/null) over
``--hours`` hours and reports its peak RSS, next to the RSS of the same process before extracting (the
baseline, measured in the same run). Target: peak below 300 MiB for 24 h.

    .venv/bin/python benchmarks/bench_agg_trades_rss.py [--hours 24] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the emulator lives in tests/
HOUR = 3_600_000
TARGET_MIB = 300


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(url: str, start_ms: int, end_ms: int, in_flight: int) -> None:
    from binance_extractor.client import BinanceFuturesClient
    from binance_extractor.kinds import DataKind
    from binance_extractor.pipeline import Job, run_job
    from binance_extractor.sinks.jsonl import JsonlSink

    client = BinanceFuturesClient(url, "test-key", max_in_flight=in_flight)
    client.exchange_info()
    baseline = rss_mib()
    job = Job(
        DataKind.AGG_TRADES,
        "BTCUSDT",
        start=datetime.fromtimestamp(start_ms / 1000, UTC),
        end=datetime.fromtimestamp(end_ms / 1000, UTC),
    )
    t0 = time.perf_counter()
    result = run_job(job, [JsonlSink(os.devnull)], client)
    seconds = time.perf_counter() - t0
    print(json.dumps({"rows": result.rows_written, "seconds": seconds, "baseline": baseline, "peak": rss_mib()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--child", nargs=3, metavar=("URL", "START", "END"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), args.in_flight)
        return 0

    from binance_extractor.clock import FixedClock
    from tests.emulator import Emulator

    now = int(time.time() * 1000)
    end = now - now % HOUR - 24 * HOUR
    start = end - args.hours * HOUR
    with Emulator(weight_limit=10**9, clock=FixedClock(now), trade_bucket_ms=86) as emu:
        cmd = [sys.executable, __file__, "--in-flight", str(args.in_flight), "--child", emu.url, str(start), str(end)]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "child failed", file=sys.stderr)
        return 1
    r = json.loads(out.stdout.strip().splitlines()[-1])
    per_day = r["rows"] * 24 / args.hours
    print(f"agg trades: {r['rows']} in {args.hours} h ({per_day / 1e6:.2f} million a day), {r['seconds']:.1f} s")
    print(f"  {r['rows'] / r['seconds']:,.0f} trades/s with {args.in_flight} requests in flight")
    ratio = r["peak"] / r["baseline"]
    print(f"  peak RSS {r['peak']:.0f} MiB; before extracting {r['baseline']:.0f} MiB (ratio {ratio:.2f})")
    print(f"  target < {TARGET_MIB} MiB: {'met' if r['peak'] < TARGET_MIB else 'NOT met'}")
    return 0 if r["peak"] < TARGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
