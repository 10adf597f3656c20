"""The pod image, built and run: as UID 10001 from a read-only root filesystem with only /tmp writable, it loads
exact klines from the exchange emulator (on the host network) into MariaDB, and it is lean.

The container runs as the pod template runs it (tests/images/test_pod_kube_play.py runs the rendered pod itself):
the image's own user, every capability dropped, no privilege escalation, a read-only root and one tmpfs at /tmp.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.images import klines, podman
from tests.images.podman import MARKS, Images

pytestmark = MARKS

# The pod's confinement (k8s_pod_templates/extractor-pod.yaml: runAsUser 10001, readOnlyRootFilesystem, drop ALL,
# allowPrivilegeEscalation false; emptyDir at /tmp).
CONFINED = [
    "--read-only",
    "--read-only-tmpfs=false",
    "--tmpfs",
    "/tmp:rw,mode=1777,size=512m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]

WRITE_PROBE = """
import json, os
out = {"uid": os.getuid(), "gid": os.getgid(), "writable": {}}
for d in ("/", "/app", "/app/binance_extractor", "/opt/venv", "/etc", "/var/tmp", "/run", "/root", "/tmp"):
    try:
        path = os.path.join(d, ".probe")
        with open(path, "w") as f:
            f.write("x")
        os.remove(path)
        out["writable"][d] = True
    except OSError:
        out["writable"][d] = False
print(json.dumps(out))
"""


def test_runs_as_10001_with_only_tmp_writable(images: Images) -> None:
    probe = podman.run(
        ["run", "--rm", "--network", "none", *CONFINED, "--entrypoint", "python", images.extractor, "-c", WRITE_PROBE]
    )
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert (report["uid"], report["gid"]) == (10001, 10001), "the image's own USER, as the pod template expects"
    assert [d for d, ok in report["writable"].items() if ok] == ["/tmp"]


def test_default_command_is_the_cli_help(images: Images) -> None:
    out = podman.run(["run", "--rm", "--network", "none", *CONFINED, images.extractor])
    for command in ("klines", "funding", "trades", "fill-gaps"):
        assert command in out.stdout


# The CLI process compiles a module in memory, with the root filesystem read-only, when the image holds no byte-code
# for it; PYTHONVERBOSE names each: "# code object from /path/module.py" (from a .pyc it names the .pyc).
COMPILED_FROM_SOURCE = re.compile(r"^# code object from '?(/\S+\.py)'?$", re.MULTILINE)


@pytest.mark.mysql
def test_loads_exact_klines_from_the_emulator_into_mariadb(
    images: Images, emulator: Any, mysql_database: str, tmp_path: Any
) -> None:
    start, end = datetime(2024, 1, 30, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)  # a month: archive + REST
    symbols = ["BTCUSDT", "ETHUSDT"]
    binance = json.dumps({"conn_type": "binance", "host": emulator.url, "password": "test-key"})
    env = {
        "AIRFLOW_CONN_BINANCE_DEFAULT": binance,
        "AIRFLOW_CONN_MYSQL_DEFAULT": f"mysql://root@127.0.0.1:3306/{mysql_database}",
        "BINANCE_ARCHIVE_BASE_URL": emulator.archive_url,
        "BINANCE_EXTRACTOR_BUDGET_NAME": f"images-{uuid.uuid4().hex[:8]}",
        "PYTHONVERBOSE": "1",
    }
    argv = ["klines", "--interval", "1h", "--symbols", ",".join(symbols), "--start", start.isoformat()]
    argv += ["--end", end.isoformat(), "--sink", "mysql", "--binance-conn-id", "binance_default"]
    argv += ["--xcom-file", "/tmp/return.json"]
    flags = [f"--env={k}={v}" for k, v in env.items()]
    out = podman.run(["run", "--rm", "--network", "host", *CONFINED, *flags, images.extractor, *argv], timeout=600)
    for symbol in symbols:
        served = klines.served(emulator, symbol, start, end)
        assert len(served) == 31 * 24
        assert klines.stored(mysql_database, symbol) == served, symbol

    # Every module the run imported had byte-code in the image (scripts/pod-bytecode.py), so a pod starts without
    # compiling anything; a new lazy import of a third-party module shows up here by name.
    compiled = sorted(set(COMPILED_FROM_SOURCE.findall(out.stderr)))
    assert compiled == [], f"modules without byte-code in the image (add them to scripts/pod-bytecode.py): {compiled}"


def test_no_compiler_and_no_installer_left(images: Images) -> None:
    """Multi-stage: gcc and the MariaDB headers stayed in the builder stages; the pod image has no pip either."""
    for image in (images.extractor, images.airflow):
        probe = (
            "for c in gcc cc c++ g++ clang make; do command -v $c; done; "
            "dpkg-query -W -f='${Package} ${Status}\\n' build-essential gcc libmariadb-dev 2>/dev/null"
            " | grep 'ok installed'"
        )
        out = podman.run(["run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", probe], check=False)
        assert out.stdout.strip() == "", f"{image}: {out.stdout}"
    no_pip = podman.run(
        ["run", "--rm", "--network", "none", "--entrypoint", "python", images.extractor, "-m", "pip", "--version"],
        check=False,
    )
    assert no_pip.returncode != 0 and "No module named pip" in no_pip.stderr


def test_extractor_image_is_at_most_half_the_airflow_image(images: Images) -> None:
    extractor, airflow = images.sizes[images.extractor], images.sizes[images.airflow]
    assert extractor <= airflow / 2, f"extractor {extractor / 1e6:.0f} MB, Airflow {airflow / 1e6:.0f} MB"
