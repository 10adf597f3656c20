"""The pod image's Dockerfile, checked without a Docker engine.

It parses (dockerfile-parse), is multi-stage on slim Python 3.11, runs as a non-root user, its entrypoint is
the pod template's container command, and the files it copies are enough for the CLI: a copy of exactly
those files (minus what .dockerignore drops) runs ``python -m binance_extractor`` on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.k8s import image_sim as sim
from tests.k8s.image_sim import APP_DIR, POD_TEMPLATE, ROOT


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    return sim.parser()


def test_base_images_are_build_arguments_defaulting_to_the_real_ones(parser: DockerfileParser) -> None:
    """`make images` and the image tests pass stand-ins (or a mirror) the same way: --build-arg, same defaults."""
    assert sim.global_args(sim.parser(target=None)) == {
        "PYTHON_IMAGE": "python:3.11-slim",
        "AIRFLOW_IMAGE": "apache/airflow:3.3.2-python3.11",
    }
    froms = [line.split()[1] for line in sim.DOCKERFILE.read_text().splitlines() if line.startswith("FROM ")]
    assert set(froms) == {"${PYTHON_IMAGE}", "${AIRFLOW_IMAGE}"}


def test_multistage_slim_python_311(parser: DockerfileParser) -> None:
    stages = sim.stages(parser)
    assert parser.is_multistage and len(stages) >= 2
    assert all(stage[0][1].split()[0] == "python:3.11-slim" for stage in stages)
    assert parser.baseimage == "python:3.11-slim"
    builder, runtime = stages[0], stages[-1]
    builder_runs = " ".join(v for i, v in builder if i == "RUN")
    # mysqlclient compiles only with pkg-config and the MariaDB headers (NOTES-verified).
    for pkg in ("build-essential", "pkg-config", "libmariadb-dev"):
        assert pkg in builder_runs
    # The pinned pip first (whatever the base ships), then the pod's subset of the lock, both hash-checked.
    assert builder_runs.index("-r /tmp/requirements-build.lock") < builder_runs.index("-r /tmp/requirements.lock")
    assert "pip install --no-compile --require-hashes -r /tmp/requirements.lock" in builder_runs
    assert (["requirements-build.lock"], "/tmp/requirements-build.lock", {}) in sim.copies(builder)
    assert (["requirements-extractor.lock"], "/tmp/requirements.lock", {}) in sim.copies(builder)
    runtime_runs = " ".join(v for i, v in runtime if i == "RUN")
    # The runtime stage gets the shared library only, never a compiler or headers.
    assert "libmariadb3" in runtime_runs
    for pkg in ("build-essential", "libmariadb-dev", "gcc"):
        assert pkg not in runtime_runs
    assert (["/opt/venv"], "/opt/venv", {"from": "builder"}) in sim.copies(runtime)


def test_requirements_are_the_pinned_runtime_set(parser: DockerfileParser) -> None:
    reqs = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert reqs and all("==" in r for r in reqs)
    names = {r.split("==")[0].lower() for r in reqs}
    # What the sinks and the CLI import in the pod.
    assert {"mysqlclient", "apache-airflow-providers-mysql", "pymongo", "pydantic"} <= names
    dev_only = {"pytest", "kubernetes-validate", "dockerfile-parse", "secantusdb", "ruff", "mypy"}
    assert not names & dev_only


def test_final_stage_runs_as_non_root(parser: DockerfileParser) -> None:
    runtime = sim.stages(parser)[-1]
    users = [v for i, v in runtime if i == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == 10001, "numeric UID so runAsNonRoot can verify it"
    assert gid == "" or (gid.isdigit() and int(gid) != 0)
    # The pod template runs the same UID/GID.
    pod = yaml.safe_load(POD_TEMPLATE.read_text())
    assert pod["spec"]["securityContext"]["runAsUser"] == int(uid)
    if gid:
        assert pod["spec"]["securityContext"]["runAsGroup"] == int(gid)
    workdirs = [v for i, v in runtime if i == "WORKDIR"]
    assert workdirs[-1] == APP_DIR


def test_entrypoint_is_the_pod_template_command(parser: DockerfileParser) -> None:
    entrypoint = sim.entrypoint(parser)
    assert entrypoint == ["python", "-m", "binance_extractor"]
    assert json.loads(parser.cmd) == ["--help"]
    pod = yaml.safe_load(POD_TEMPLATE.read_text())
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    assert base["command"] == entrypoint
    # The image tag the pod template runs is the version the image labels and the library declare.
    from binance_extractor import __version__

    assert base["image"] == f"binance-extractor:{__version__}"
    assert parser.labels["org.opencontainers.image.version"] == __version__


def test_make_images_tags_both_images_with_the_package_version() -> None:
    """`make images`' default tags, the ones docs/DEPLOY.md and the Helm values name. (Its version once came from
    a `version = "..."` line pyproject.toml no longer has: the tags ended in ':', which no engine accepts.) Only the
    script's own logic is run here, with `true` as the engine; tests/images/ builds both images for real."""
    from binance_extractor import __version__

    env = {"PATH": "/usr/bin:/bin", "ENGINE": "true", "STANDINS": "0"}
    out = subprocess.run(["bash", "scripts/images.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    built = [line.split(" as ")[1].split()[0] for line in out.stdout.splitlines() if line.startswith("== building")]
    assert built == [f"localhost/binance-extractor:{__version__}", f"localhost/binance-airflow:{__version__}"]


def test_environment_matches_the_read_only_pod(parser: DockerfileParser) -> None:
    env = parser.envs
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONPATH"] == APP_DIR
    assert env["PATH"].startswith("/opt/venv/bin:")
    # Everything the CLI writes lives under /tmp, the pod's only writable mount besides /airflow/xcom.
    for name in ("HOME", "AIRFLOW_HOME", "BINANCE_EXTRACTOR_DATA_DIR"):
        assert env[name].startswith("/tmp"), name
    pod = yaml.safe_load(POD_TEMPLATE.read_text())
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    pod_env = {e["name"]: e.get("value") for e in base["env"]}
    for name in ("HOME", "AIRFLOW_HOME", "BINANCE_EXTRACTOR_DATA_DIR"):
        assert pod_env[name] == env[name], name
    assert [m["mountPath"] for m in base["volumeMounts"]] == ["/tmp"]


def test_copied_paths_exist_and_cover_the_cli(parser: DockerfileParser) -> None:
    runtime = sim.stages(parser)[-1]
    local = [(srcs, dest) for srcs, dest, flags in sim.copies(runtime) if "from" not in flags]
    sources = [s.rstrip("/") for srcs, _ in local for s in srcs]
    for src in sources:
        assert (ROOT / src).exists(), f"COPY source {src} missing from the repository"
        assert not sim.ignored(src, sim.dockerignore()), f"COPY source {src} is dropped by .dockerignore"
    assert "binance_extractor" in sources
    assert "include" in sources
    assert (ROOT / "include" / "config.yaml").is_file()
    assert not any(s == "tests" or s.startswith("tests/") or s == "." for s in sources)
    # Layout: /app/binance_extractor next to /app/include, so the resources/config.yaml link resolves.
    dests = {src.rstrip("/"): dest.rstrip("/") for srcs, dest in local for src in srcs}
    assert dests["binance_extractor"] == f"{APP_DIR}/binance_extractor"
    assert dests["include"] == f"{APP_DIR}/include"


def test_dockerignore_keeps_local_state_out_but_not_the_sources(parser: DockerfileParser) -> None:
    rules = sim.dockerignore()
    for path in (
        ".venv/bin/python",
        "tests/k8s/test_manifests.py",
        "airflow_home/airflow.db",
        "data/x.db",
        ".git/HEAD",
    ):
        assert sim.ignored(path, rules), path
    assert sim.ignored("binance_extractor/__pycache__/cli.cpython-311.pyc", rules)
    for path in ("requirements.txt", "binance_extractor/__init__.py", "include/config.yaml"):
        assert not sim.ignored(path, rules), path


def test_cli_runs_from_only_the_copied_files(parser: DockerfileParser, tmp_path: Path) -> None:
    app = sim.image_app(parser, tmp_path / "image")
    writable = tmp_path / "writable-tmp"
    writable.mkdir()
    env = sim.image_env(parser, {APP_DIR: app, "/tmp": writable})
    assert env["PYTHONPATH"] == str(app)
    copied = sorted(p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file())
    assert "include/config.yaml" in copied and "binance_extractor/__main__.py" in copied
    assert not any("__pycache__" in p or p.startswith("tests/") for p in copied)

    # The venv's interpreter stands in for /opt/venv (same pinned requirements); cwd and PYTHONPATH are the
    # copy, so the library and its config must come from there, not from the repository.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, binance_extractor.cli as c, binance_extractor.config as cfg;"
            "print(json.dumps([c.__file__, str(cfg.DEFAULT_CONFIG), len(cfg.settings().symbols)]))",
        ],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    cli_file, config_file, n_symbols = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(cli_file).resolve().is_relative_to(app.resolve())
    # The package resource (a link to include/config.yaml in the repository) is found inside the copy.
    assert Path(config_file).is_relative_to(app) and Path(config_file).name == "config.yaml"
    assert Path(config_file).read_bytes() == (ROOT / "include" / "config.yaml").read_bytes()
    assert n_symbols >= 20

    entrypoint = sim.entrypoint(parser)
    assert entrypoint[0] == "python"
    cmd = [sys.executable, *entrypoint[1:], *json.loads(parser.cmd)]
    result = subprocess.run(cmd, cwd=app, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for sub in ("klines", "funding", "trades", "symbols"):
        assert sub in result.stdout
    # Nothing was written outside the writable mounts (the image's root filesystem is read-only).
    assert sorted(p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file()) == copied
