"""The library as operators deploy it: a built wheel in a fresh venv, the DAG files alone in an empty folder.

Catches what a source checkout hides: files resolved from the repository root (config, pod template), a missing
package-data entry, a provider entry point that is not registered. The venv gets the pinned lock (hash-checked,
from uv's cache, filled by ``make install``) and then the wheel without dependencies, exactly like the image.
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
    _run(
        [
            str(UV),
            "pip",
            "install",
            "--quiet",
            "--python",
            py,
            "--require-hashes",
            "-r",
            str(ROOT / "requirements.lock"),
        ]
    )
    _run([str(UV), "pip", "install", "--quiet", "--python", py, "--no-deps", str(wheel)])
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
    env = _clean_env(tmp_path, AIRFLOW__CORE__DAGS_FOLDER=str(dags), BINANCE_EXTRACTOR_RUNTIME=runtime)
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
