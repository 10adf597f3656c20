"""The default build target: the Airflow deployment image (checked without a Docker engine).

Same pinned set as the extractor image and ``make install`` (requirements.lock, hash-checked), the library
installed as a package (so its resources and provider entry point exist), DAGs/plugins/include where the official
image and chart expect them, and a non-root user at the end.
"""

from __future__ import annotations

import re

import pytest
from dockerfile_parse import DockerfileParser

from tests.k8s import image_sim as sim
from tests.k8s.image_sim import ROOT


@pytest.fixture(scope="module")
def parser() -> DockerfileParser:
    return sim.parser(target=None)


def _runs(stage: list[sim.Instruction]) -> str:
    return " ".join(v for i, v in stage if i == "RUN")


def test_default_target_is_the_official_airflow_image_of_the_pinned_version(parser: DockerfileParser) -> None:
    stages = sim.stages(parser)
    airflow = stages[-1]
    assert airflow[0] == ("FROM", "apache/airflow:3.3.2-python3.11 AS airflow")
    pins = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    assert pins["apache-airflow"] == "3.3.2"
    # Every stage is named; the extractor is a target of its own; each image compiles in a builder stage of its own.
    names = [stage[0][1].split()[-1] for stage in stages]
    assert names == ["builder", "extractor", "airflow-builder", "airflow"]
    assert stages[2][0] == ("FROM", "apache/airflow:3.3.2-python3.11 AS airflow-builder")


def test_both_images_install_the_one_hash_checked_lock(parser: DockerfileParser) -> None:
    builder, _, airflow_builder, airflow = sim.stages(parser)
    assert "pip install --no-compile --require-hashes -r /tmp/requirements.lock" in _runs(builder)
    assert "pip install --require-hashes -r /tmp/requirements.lock" in _runs(airflow)
    assert any(srcs == ["requirements.lock"] for srcs, _, _ in sim.copies(airflow))
    # Every stage that installs anything first installs the pinned pip.
    for stage in (builder, airflow_builder, airflow):
        assert "pip install --require-hashes -r /tmp/requirements-build.lock" in _runs(stage)
    # mysqlclient's wheel is built from the lock's hash-checked sdist in airflow-builder, installed before the lock.
    assert "pip wheel --no-deps --require-hashes -r /tmp/mysqlclient.txt" in _runs(airflow_builder)
    runs = _runs(airflow)
    assert runs.index("pip install --no-deps /tmp/wheels/deps/*.whl") < runs.index("-r /tmp/requirements.lock")
    # The library itself: a real install (a wheel built with the pinned setuptools), no resolution beyond the lock.
    assert re.search(r"pip wheel --no-deps --no-build-isolation /tmp/src\b", _runs(airflow_builder))
    assert "pip install --no-deps /tmp/wheels/library/*.whl" in runs


def test_no_compiler_in_either_final_stage(parser: DockerfileParser) -> None:
    builder, extractor, airflow_builder, airflow = sim.stages(parser)
    for stage in (builder, airflow_builder):
        assert "build-essential" in _runs(stage)
    for stage in (extractor, airflow):
        for pkg in ("build-essential", "gcc", "-dev"):
            assert pkg not in _runs(stage)
        assert all(flags.get("from") in (None, "builder", "airflow-builder") for _, _, flags in sim.copies(stage))


def test_dags_plugins_include_and_library_sources_are_copied(parser: DockerfileParser) -> None:
    airflow_builder, airflow = sim.stages(parser)[-2:]
    dests = {srcs[0].rstrip("/"): dest.rstrip("/") for srcs, dest, flags in sim.copies(airflow) if "from" not in flags}
    assert dests["dags"] == "/opt/airflow/dags"
    assert dests["plugins"] == "/opt/airflow/plugins"
    assert dests["include"] == "/opt/airflow/include"
    built = {srcs[0].rstrip("/") for srcs, _, flags in sim.copies(airflow_builder) if "from" not in flags}
    for needed in ("pyproject.toml", "binance_extractor", "k8s_pod_templates", "include"):
        assert needed in built
    rules = sim.dockerignore()
    for path in (
        "dags/binance_klines.py",
        "plugins/binance_listener.py",
        "include/config.yaml",
        "k8s_pod_templates/extractor-pod.yaml",
        "pyproject.toml",
        "requirements.lock",
        "binance_extractor/resources/config.yaml",
    ):
        assert (ROOT / path).exists() and not sim.ignored(path, rules), path
    assert sim.ignored("tests/test_dockerfile.py", rules) and sim.ignored(".venv/bin/python", rules)


def test_runs_as_the_airflow_user_with_the_shipped_config(parser: DockerfileParser) -> None:
    airflow = sim.stages(parser)[-1]
    assert [v for i, v in airflow if i == "USER"][-1] == "airflow"
    env = parser.envs
    assert env["BINANCE_EXTRACTOR_CONFIG"] == "/opt/airflow/include/config.yaml"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"  # the Binance connection's Test button


def test_astro_dev_start_is_not_supported_as_documented() -> None:
    """docs/DEPLOY.md "astro dev start: not supported": no Astro Runtime base, packages.txt or airflow_settings.yaml."""
    text = (ROOT / "Dockerfile").read_text()
    assert "astro-runtime" not in text and "astrocrpublic" not in text
    assert not (ROOT / "packages.txt").exists() and not (ROOT / "airflow_settings.yaml").exists()
    assert "### `astro dev start`: not supported" in (ROOT / "docs" / "DEPLOY.md").read_text()
