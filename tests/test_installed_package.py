"""The library as operators deploy it: a built wheel in a fresh venv, the DAG files alone in an empty folder.

Catches what a source checkout hides: files resolved from the repository root (config, pod template), a missing
package-data entry, a provider entry point that is not registered, a dependency the wheel does not declare. The
venv gets nothing but the wheel: its dependencies come from its own metadata (``Requires-Dist``, the compatible
ranges of pyproject.toml), resolved by uv with requirements.lock as constraints, so the versions are the tested ones
and come from uv's cache (filled by ``make install``) instead of whatever an index serves that day.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"
# What the Airflow image's build copies to build the library (see Dockerfile, stage airflow).
SOURCES = ("pyproject.toml", "binance_extractor", "include", "k8s_pod_templates")

PROBE = """
import json, os
from airflow.dag_processing.dagbag import DagBag
import binance_extractor.config as cfg
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
extract = [bag.dags[d].get_task("extract") for d in sorted(bag.dag_ids) if "extract" in bag.dags[d].task_dict]
templates = sorted({t.partial_kwargs.get("pod_template_file", "") for t in extract if hasattr(t, "partial_kwargs")})
print(json.dumps({"errors": bag.import_errors, "dags": sorted(bag.dag_ids), "library": cfg.__file__,
                  "config": str(cfg.DEFAULT_CONFIG), "templates": templates}))
"""


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{cmd[:4]} failed:\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the lock and the built wheel; returns its directory."""
    base = tmp_path_factory.mktemp("installed")
    src = base / "src"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(path, src / name)
    _run([str(UV), "build", "--quiet", "--wheel", "-o", str(base / "dist"), str(src)])
    (wheel,) = (base / "dist").glob("binance_extractor-*.whl")
    venv = base / "venv"
    _run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)])
    py = str(venv / "bin" / "python")
    # Only the wheel is named: everything else must come from its Requires-Dist.
    _run([str(UV), "pip", "install", "--quiet", "--python", py, "-c", str(ROOT / "requirements.lock"), str(wheel)])
    yield venv


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No project or Airflow settings from the test session: only what an operator's deployment would set."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    home = tmp / "airflow_home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(tmp), AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False", **extra)
    return env


@pytest.mark.parametrize("runtime", ["local", "kubernetes"])
def test_only_dags_folder_parses_with_the_installed_wheel(installed: Path, tmp_path: Path, runtime: str) -> None:
    dags = tmp_path / "dags"
    shutil.copytree(ROOT / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    empty = tmp_path / "cwd"
    empty.mkdir()
    # uv installs without bytecode, so this first import compiles Airflow and the Kubernetes client; on a busy
    # machine that alone can pass Airflow's 30 s per-file parse timeout. This test checks what parses, not how fast.
    env = _clean_env(
        tmp_path,
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="600",
        BINANCE_EXTRACTOR_RUNTIME=runtime,
    )
    out = _run([str(installed / "bin" / "python"), "-c", PROBE], cwd=empty, env=env)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    site = installed / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert Path(report["library"]).is_relative_to(site), "the library must come from the wheel, not the checkout"
    assert Path(report["config"]) == site / "binance_extractor" / "resources" / "config.yaml"
    assert Path(report["config"]).read_bytes() == (ROOT / "include" / "config.yaml").read_bytes()

    # Every DAG the repository defines is present (same ids as the checkout's own DagBag).
    from airflow.dag_processing.dagbag import DagBag

    expected = sorted(DagBag(dag_folder=str(ROOT / "dags")).dag_ids)
    assert report["dags"] == expected and len(expected) >= 10
    if runtime == "kubernetes":
        (template,) = report["templates"]
        assert Path(template) == site / "binance_extractor" / "resources" / "extractor-pod.yaml"
        assert Path(template).read_bytes() == (ROOT / "k8s_pod_templates" / "extractor-pod.yaml").read_bytes()


def test_wheel_registers_the_binance_provider(installed: Path, tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    airflow = str(installed / "bin" / "airflow")
    providers = json.loads(_run([airflow, "providers", "list", "-o", "json"], cwd=tmp_path, env=env).stdout)
    ours = [p for p in providers if p["package_name"] == "binance-extractor"]
    assert ours and ours[0]["version"] == "0.1.0"
    hooks = json.loads(_run([airflow, "providers", "hooks", "-o", "json"], cwd=tmp_path, env=env).stdout)
    binance = [h for h in hooks if h.get("connection_type") == "binance"]
    assert binance and binance[0]["class"] == "binance_extractor.airflow.hooks.BinanceFuturesHook"


def test_the_cli_starts(installed: Path, tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    for cmd in (
        [str(installed / "bin" / "binance-extractor"), "--help"],
        [str(installed / "bin" / "python"), "-m", "binance_extractor", "klines", "--help"],
    ):
        out = _run(cmd, cwd=tmp_path, env=env)
        assert "usage:" in out.stdout


def _requirement_pins(path: Path) -> dict[str, str]:
    pins = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pins if "==" in p}


# requirements.txt entries the Airflow deployment needs but the library does not import (its executor).
DEPLOYMENT_ONLY = {"apache-airflow-providers-celery", "celery"}


def test_wheel_declares_compatible_ranges_holding_the_pins(installed: Path) -> None:
    """pyproject's dependencies: one per direct requirement, each a range from the tested pin to the next major."""
    import tomllib

    declared = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    pins = _requirement_pins(ROOT / "requirements.txt")
    assert {canonicalize_name(r.name) for r in declared} == set(pins) - DEPLOYMENT_ONLY
    for req in declared:
        pin = Version(pins[canonicalize_name(req.name)])
        assert pin in req.specifier, f"{req} excludes the tested {pin}"
        lower = {s.version for s in req.specifier if s.operator == ">="}
        assert lower == {str(pin)}, f"{req}: the lower bound is the tested pin"
        assert any(s.operator == "<" for s in req.specifier), f"{req}: no upper bound"
    # The built wheel carries exactly these (the metadata pip and uv read).
    site = installed / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (metadata,) = site.glob("binance_extractor-*.dist-info/METADATA")
    requires = [
        line.split(":", 1)[1].strip() for line in metadata.read_text().splitlines() if line.startswith("Requires-Dist:")
    ]
    assert sorted(Requirement(r).name for r in requires) == sorted(r.name for r in declared)
