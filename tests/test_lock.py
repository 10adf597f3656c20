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
    """docs/DEPLOY.md "Pins": `make install` installs the lock with hashes, dev tools held to it; `make lock`
    redoes it."""
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert "--require-hashes -r requirements.lock" in install
    assert "-r requirements-dev.txt -c requirements.lock" in install
    makefile = (ROOT / "Makefile").read_text()
    lock_recipe = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    for flag in ("pip compile requirements.txt", "--universal", "--python-version 3.11", "--generate-hashes"):
        assert flag in lock_recipe, flag
    assert "-o requirements.lock" in lock_recipe
    assert "requirements.lock" in makefile.split("$(STAMP):", 1)[1].splitlines()[0]


# requirements.txt entries the pod image leaves out (requirements-extractor.txt says why).
NOT_IN_PODS = {"apache-airflow-providers-cncf-kubernetes", "pandas", "apache-airflow-providers-celery", "celery"}


def _locked_versions(path: Path) -> dict[tuple[str, str], str]:
    """(name, environment marker) -> version: numpy, for one, is pinned twice, per Python version."""
    out: dict[tuple[str, str], str] = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            marker = line.split(";", 1)[1].rstrip(" \\").strip() if ";" in line else ""
            out[(_norm(m.group(1)), marker)] = m.group(2)
    return out


def test_the_pod_images_lock_is_a_subset_of_the_lock_at_the_same_versions() -> None:
    """The extractor image installs requirements-extractor.lock: never a version the Airflow image does not have."""
    wanted = _pins(ROOT / "requirements-extractor.txt")
    assert set(wanted) == set(_pins(ROOT / "requirements.txt")) - NOT_IN_PODS
    assert all(_pins(ROOT / "requirements.txt")[name] == version for name, version in wanted.items())
    main, pods = _locked_versions(ROOT / "requirements.lock"), _locked_versions(ROOT / "requirements-extractor.lock")
    differ = {key: (version, main.get(key)) for key, version in pods.items() if main.get(key) != version}
    assert not differ, f"requirements-extractor.lock differs from requirements.lock: {differ}; run `make lock`"
    assert not {name for name, _ in pods} & {"pandas", "kubernetes", "celery"}
    text = (ROOT / "requirements-extractor.lock").read_text()
    blocks = [b for b in re.split(r"\n(?=[A-Za-z0-9])", text) if PIN.match(b)]
    assert blocks and all("--hash=sha256:" in b for b in blocks)


def test_the_image_builds_install_with_a_pinned_pip_new_enough_for_the_lock() -> None:
    """pip 23.0 refuses the hashed lock (uvicorn[standard]); the images never use whichever pip their base ships."""
    pins = _pins(ROOT / "requirements-build.lock")
    assert int(pins["pip"].split(".")[0]) >= 24
    assert pins == _pins(ROOT / "requirements-build.txt")
    assert "--hash=sha256:" in (ROOT / "requirements-build.lock").read_text()
    makefile = (ROOT / "Makefile").read_text()
    lock_recipe = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    assert "-o requirements-extractor.lock" in lock_recipe and "-c requirements.lock" in lock_recipe
    assert "-o requirements-build.lock" in lock_recipe
