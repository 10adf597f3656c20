"""DAG parse time: the DAG files' own share on top of importing Airflow, measured in the same run.

Each round starts a fresh interpreter (like a dag-processor parsing a file), imports Airflow (``airflow`` and
``airflow.sdk``: the baseline every DAG file pays), then imports every file in ``dags/``; the child times both
steps. Rounds alternate the runtimes (``local``: in-process tasks, ``kubernetes``: KubernetesPodOperator), with no
exchange or database reachable. Prints medians per runtime and the DAG files' share as a ratio of the Airflow
import measured in the same rounds, so a loaded machine slows both sides alike.

    .venv/bin/python benchmarks/bench_parse.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.offline import offline_parse_env  # noqa: E402

RUNTIMES = ("local", "kubernetes")

CHILD = """
import glob, importlib, json, os, sys, time
t0 = time.perf_counter()
import airflow, airflow.sdk
t1 = time.perf_counter()
sys.path.insert(0, "dags")
files = sorted(glob.glob("dags/*.py"))
for path in files:
    importlib.import_module(os.path.basename(path)[:-3])
t2 = time.perf_counter()
print(json.dumps({"airflow": t1 - t0, "dags": t2 - t1, "files": len(files)}))
"""


def one_round(runtime: str) -> dict[str, float]:
    env = offline_parse_env(runtime)
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"parsing failed ({runtime}): {out.stderr.strip().splitlines()[-1:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="fresh interpreters per runtime (default 5)")
    args = parser.parse_args()

    samples: dict[str, list[dict[str, float]]] = {r: [] for r in RUNTIMES}
    for _ in range(args.rounds):
        for runtime in RUNTIMES:  # interleaved: a load spike hits both runtimes, not one
            samples[runtime].append(one_round(runtime))
    print(f"DAG parse, fresh interpreter, median of {args.rounds} rounds")
    for runtime, rows in samples.items():
        base = statistics.median(r["airflow"] for r in rows)
        dags = statistics.median(r["dags"] for r in rows)
        files = int(rows[0]["files"])
        print(
            f"  {runtime:<10} import Airflow {base:6.2f} s | {files} DAG files on top {dags:6.2f} s "
            f"({dags / base:4.2f} x the Airflow import) | total {base + dags:6.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
