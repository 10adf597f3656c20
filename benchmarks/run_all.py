"""Run every benchmark script in this folder, one after the other, and print their figures (``make bench``).

Each ``bench_*.py`` is a standalone script that measures its own baseline in the same run; this runner only
sequences them (they would disturb each other's figures if run together) and reports which ones failed.
``python benchmarks/run_all.py bench_client bench_parse`` runs a subset.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    wanted = {a.removesuffix(".py") for a in argv}
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not wanted or p.stem in wanted)
    if wanted - {p.stem for p in scripts}:
        print(f"unknown benchmark(s): {', '.join(sorted(wanted - {p.stem for p in scripts}))}", file=sys.stderr)
        return 2
    failed: list[str] = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        started = time.monotonic()
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"=== {script.name}: exit {rc} after {time.monotonic() - started:.0f} s ===", flush=True)
        if rc != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
