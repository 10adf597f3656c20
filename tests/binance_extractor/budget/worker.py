"""One extractor process for the multi-process budget tests and the benchmark.

``python -m tests.binance_extractor.budget.worker --url URL --symbol BTCUSDT --pages 20`` fetches ``pages``
full 1m kline pages (weight 2 each) through a real ``BinanceFuturesClient`` whose budget comes from the
environment (``BINANCE_EXTRACTOR_BUDGET_URL`` / ``_NAME`` / ``_TTL``); ``--funding N`` makes N fundingRate
requests instead; ``--go-file`` holds the first request until the test says go. Prints one JSON line: klines
fetched, HTTP statuses seen, the error (if any). Exit 1 on error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from binance_extractor import timeframes
from binance_extractor.budget import SharedBudget, budget_key, open_budget_store
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.errors import ExtractorError
from binance_extractor.extract import KLINE_PAGE, iter_klines

START = 1_704_067_200_000  # 2024-01-01T00:00Z


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--start", type=int, default=START, help="epoch ms of the first candle")
    ap.add_argument("--page", type=int, default=KLINE_PAGE, help="klines per request (499: weight 2, 1500: 10)")
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--margin", type=float, default=0.95)
    ap.add_argument("--max-ban-wait", type=float, default=300.0)
    ap.add_argument("--funding", type=int, default=0, help="fundingRate requests instead of klines")
    ap.add_argument("--funding-limit", default="500/300", help="requests/seconds")
    ap.add_argument("--seconds", type=float, default=0.0, help="stop after this long (benchmark); 0 = all pages")
    ap.add_argument("--go-file", help="print 'ready', then start only once this file exists (a start barrier)")
    args = ap.parse_args()
    n, window = args.funding_limit.split("/")
    budget = SharedBudget(
        open_budget_store(),
        budget_key(args.url),
        margin=args.margin,
        max_ban_wait=args.max_ban_wait,
        funding_limit=(int(n), float(window)),
    )
    client = BinanceFuturesClient(
        args.url, None, max_in_flight=args.in_flight, budget=budget, backoff_initial=0.05, backoff_max=1.0
    )
    out: dict = {"klines": 0, "funding": 0, "error": None}
    if args.go_file:  # imported and built: however slow the machine, every worker starts together
        print("ready", flush=True)
        while not os.path.exists(args.go_file):
            time.sleep(0.01)
    try:
        if args.funding:
            for _ in range(args.funding):
                client.funding_rate(args.symbol, START, START + 86_400_000, limit=10)
                out["funding"] += 1
        else:
            tf = timeframes.parse("1m")
            end = args.start + args.pages * args.page * tf.ms
            deadline = time.time() + args.seconds if args.seconds else None
            for batch in iter_klines(client, args.symbol, tf, args.start, end, page=args.page):
                out["klines"] += len(batch)
                if deadline is not None and time.time() >= deadline:
                    break
    except ExtractorError as exc:
        out["error"] = str(exc)
    out["statuses"] = {str(k): v for k, v in client.status_counts.items()}
    print(json.dumps(out), flush=True)
    return 1 if out["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
