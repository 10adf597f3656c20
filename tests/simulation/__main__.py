"""``python -m tests.simulation run --seed N [--days 30]`` / ``soak --seeds 200 [--first 0] [--jobs 2]``.

A failing seed prints its problems, its last events and the command that replays it alone; the exit status is 1
when any seed failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

from tests.simulation.run import one_seed as _one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation")
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="one seed")
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--days", type=int, default=30)
    many = sub.add_parser("soak", help="many seeds")
    many.add_argument("--seeds", type=int, default=200)
    many.add_argument("--first", type=int, default=0)
    many.add_argument("--days", type=int, default=30)
    many.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "run":
        seed, ok, text, _ = _one((args.seed, args.days))
        print(text, flush=True)
        return 0 if ok else 1
    seeds = [(s, args.days) for s in range(args.first, args.first + args.seeds)]
    failed: list[int] = []
    started = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no state from the parent
    with ctx.Pool(args.jobs, maxtasksperchild=25) as pool:
        for seed, ok, text, _secs in pool.imap_unordered(_one, seeds):
            print(text, flush=True)
            if not ok:
                failed.append(seed)
    took = time.perf_counter() - started
    print(f"soak: {len(seeds)} seeds, {len(failed)} failed {sorted(failed)} in {took:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
