"""REST extraction throughput against the emulator under Binance's standard weight budget.

Prints klines/s achieved over whole weight windows and the ratio to the budget-limited maximum for the page size
used (limit/weight x candles/page), plus the rate-limit events the exchange saw. Target: ratio >= 0.9, zero 418s.

    .venv/bin/python benchmarks/bench_client.py [--windows 2] [--latency 0.04] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from binance_extractor import timeframes
from binance_extractor.client import BinanceFuturesClient, klines_weight
from binance_extractor.extract import KLINE_PAGE, iter_klines

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 60  # Binance's REQUEST_WEIGHT window (seconds); 2400 weight per window


def start_emulator(latency: float) -> tuple[subprocess.Popen, str]:
    """The exchange in its own process, so it does not share the client's interpreter lock."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--latency", str(latency), "--weight-limit", "2400"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, match.group(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2, help="whole weight windows to measure (default 2)")
    parser.add_argument("--latency", type=float, default=0.04, help="emulated latency per request, seconds")
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent requests per process")
    args = parser.parse_args()

    proc, url = start_emulator(args.latency)
    try:
        client = BinanceFuturesClient(url, None, max_in_flight=args.in_flight)
        client.exchange_info()
        limit = client.limiter.rule.limit
        tf = timeframes.parse("1m")
        weight = klines_weight(KLINE_PAGE)
        budget_rate = limit / weight * KLINE_PAGE / WINDOW

        # Start on a window boundary so the measurement covers whole windows of the exchange's counter.
        time.sleep(WINDOW - time.time() % WINDOW + 0.05)
        client.status_counts.clear()
        client.limiter.max_reported = 0
        deadline = time.time() + args.windows * WINDOW
        counted = 0
        started = time.time()
        end_ms = int(started * 1000) - 86_400_000
        start_ms = end_ms - 5 * 365 * 86_400_000  # far more demand than the budget allows in the measurement
        for batch in iter_klines(client, "BTCUSDT", tf, start_ms, end_ms):
            if time.time() >= deadline:
                break
            counted += len(batch)
        elapsed = time.time() - started
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rate = counted / elapsed
    n429, n418 = client.status_counts[429], client.status_counts[418]
    rows = [
        ("page size (limit) / weight", f"{KLINE_PAGE} / {weight}"),
        ("latency per request (s)", f"{args.latency:.3f}"),
        ("requests in flight", str(args.in_flight)),
        ("measured seconds", f"{elapsed:.1f}"),
        ("klines extracted", f"{counted:,}"),
        ("klines/s achieved", f"{rate:,.0f}"),
        ("klines/s budget-limited maximum", f"{budget_rate:,.0f}"),
        ("ratio (target >= 0.9)", f"{rate / budget_rate:.3f}"),
        ("max used weight reported (limit)", f"{client.limiter.max_reported} ({limit})"),
        ("HTTP 429 / 418 responses", f"{n429} / {n418}"),
    ]
    print(f"{'metric':<38}{'value':>16}")
    for name, value in rows:
        print(f"{name:<38}{value:>16}")
    client.close()
    return 0 if n418 == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
