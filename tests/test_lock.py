"""requirements.lock: the one pinned set (`make install`, both images) must cover requirements.txt exactly.

After editing requirements.txt, `make lock` regenerates it; this test names what is missing when that was
forgotten (e.g. after merging branches that add dependencies).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\],]+)==([^\s;\\]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def _pins(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            out[_norm(m.group(1))] = m.group(2)
    return out


def test_lock_holds_every_requirement_at_its_pinned_version() -> None:
    wanted = _pins(ROOT / "requirements.txt")
    locked = _pins(ROOT / "requirements.lock")
    assert wanted, "requirements.txt pins nothing"
    missing = {n: v for n, v in wanted.items() if locked.get(n) != v}
    assert not missing, f"requirements.lock is stale for {missing}: run `make lock`"
    # The transitive closure is pinned too (Airflow alone brings well over 100 packages).
    assert len(locked) > 100


def test_every_locked_package_has_hashes() -> None:
    text = (ROOT / "requirements.lock").read_text()
    assert "#    make lock" in text.splitlines()[1]
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if PIN.match(b)]
    assert blocks and all("--hash=sha256:" in b for b in blocks)
    # Dev and test tools never enter the runtime lock.
    locked = _pins(ROOT / "requirements.lock")
    assert not {"pytest", "ruff", "mypy", "secantusdb"} & set(locked)


def test_make_install_and_make_lock_use_the_lock() -> None:
    """README "Pins": `make install` installs the lock hash-checked, dev tools held to it; `make lock` rebuilds it."""
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert "--require-hashes -r requirements.lock" in install
    assert "-r requirements-dev.txt -c requirements.lock" in install
    makefile = (ROOT / "Makefile").read_text()
    lock_recipe = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    for flag in ("pip compile requirements.txt", "--universal", "--python-version 3.11", "--generate-hashes"):
        assert flag in lock_recipe, flag
    assert "-o requirements.lock" in lock_recipe
    assert "requirements.lock" in makefile.split("$(STAMP):", 1)[1].splitlines()[0]
