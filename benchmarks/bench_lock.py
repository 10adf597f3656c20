"""How fast the pinned set installs and regenerates: `make install`'s lock install and `make lock`.

Prints seconds for, in the same run and from the same uv cache:
- baseline: a fresh venv installing requirements.txt (uv resolves the ~160 transitive packages itself);
- the lock: a fresh venv installing requirements.lock hash-checked (what `make install` and the images do);
- `make lock`'s compile, starting from the current lock (versions kept), into a temporary file.
Run: .venv/bin/python benchmarks/bench_lock.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = str(Path(sys.executable).parent / "uv")


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def fresh_install(tmp: Path, name: str, args: list[str]) -> float:
    venv = tmp / name
    subprocess.run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    return timed([UV, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *args])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        baseline = fresh_install(tmp, "unlocked", ["-r", str(ROOT / "requirements.txt")])
        locked = fresh_install(tmp, "locked", ["--require-hashes", "-r", str(ROOT / "requirements.lock")])
        out = tmp / "requirements.lock"
        shutil.copy(ROOT / "requirements.lock", out)
        lock_args = ["--universal", "--python-version", "3.11", "--generate-hashes", "--quiet", "-o", str(out)]
        compile_s = timed([UV, "pip", "compile", str(ROOT / "requirements.txt"), *lock_args])
        same = out.read_text().split("\n", 2)[2] == (ROOT / "requirements.lock").read_text().split("\n", 2)[2]
    packages = sum(1 for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line)
    print(f"packages in requirements.lock:                  {packages}")
    print(f"fresh venv, requirements.txt (resolve), s:      {baseline:.2f}")
    print(f"fresh venv, requirements.lock (hashes), s:      {locked:.2f}")
    print(f"ratio lock / unlocked:                          {locked / baseline:.2f}")
    print(f"make lock compile (from the current lock), s:   {compile_s:.2f}")
    print(f"regenerated lock identical to the committed one: {same}")


if __name__ == "__main__":
    main()
