"""deploy/: Helm values for the official Airflow chart, checked against the chart's own values.schema.json
(chart 1.22.0, kept in tests/deploy/data) and against the manifests and code they must agree with."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TEMPLATES = ROOT / "k8s_pod_templates"
SCHEMA = json.loads((Path(__file__).parent / "data" / "airflow-chart-1.22.0.values.schema.json").read_text())
BASE = yaml.safe_load((DEPLOY / "airflow-values.yaml").read_text())
GITSYNC = yaml.safe_load((DEPLOY / "airflow-values-gitsync.yaml").read_text())


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Helm's -f layering: maps merge key by key, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.path))}: {e.message[:200]}" for e in validator.iter_errors(values)]


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _env(values: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in values["env"]}


@pytest.mark.parametrize("values", [BASE, merge(BASE, GITSYNC)], ids=["airflow-values", "airflow-values+gitsync"])
def test_values_validate_against_the_chart_schema(values: dict[str, Any]) -> None:
    assert _errors(values) == []


def test_the_schema_is_strict_enough_to_catch_a_typo() -> None:
    assert SCHEMA["properties"]["defaultAirflowTag"]["type"] == "string"
    typo = merge(BASE, {"workers": {"serviceAcount": {"name": "x"}}})
    assert any("serviceAcount" in e for e in _errors(typo))
    assert _errors(merge(BASE, {"executor": 3}))


def test_executor_image_and_runtime() -> None:
    assert BASE["executor"] == "CeleryExecutor"
    assert BASE["airflowVersion"] == "3.3.2"
    image = BASE["images"]["airflow"]
    assert (image["repository"], image["tag"]) == (BASE["defaultAirflowRepository"], BASE["defaultAirflowTag"])
    from binance_extractor import __version__

    assert image["tag"] == __version__
    env = _env(BASE)
    assert env["BINANCE_EXTRACTOR_RUNTIME"] == "kubernetes"
    assert env["BINANCE_EXTRACTOR_IMAGE"].endswith(f"/binance-extractor:{__version__}")
    assert int(env["BINANCE_API_POOL_SLOTS"]) >= 1
    assert BASE["config"]["core"]["test_connection"] == "Enabled"
    # DAGs from the image by default; git-sync as the documented alternative, pointing at dags/.
    assert BASE["dags"]["gitSync"]["enabled"] is False and BASE["dags"]["persistence"]["enabled"] is False
    assert GITSYNC["dags"]["gitSync"]["enabled"] is True and GITSYNC["dags"]["gitSync"]["subPath"] == "dags"


def test_connections_come_from_the_secret_the_pods_read() -> None:
    secret = next(d for d in _docs(TEMPLATES / "secret.example.yaml") if d["kind"] == "Secret")
    pod = _docs(TEMPLATES / "extractor-pod.yaml")[0]
    pod_secret = pod["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"]
    entries = BASE["secret"]
    assert {e["secretName"] for e in entries} == {secret["metadata"]["name"]} == {pod_secret}
    assert all(e["envName"] == e["secretKey"] for e in entries)
    names = {e["envName"] for e in entries}
    assert "AIRFLOW_CONN_BINANCE_DEFAULT" in names
    assert names <= set(secret["stringData"])


def test_namespace_service_accounts_and_rbac_are_one_wiring() -> None:
    env = _env(BASE)
    rbac = _docs(TEMPLATES / "rbac.yaml")
    pod = _docs(TEMPLATES / "extractor-pod.yaml")[0]
    policies = _docs(TEMPLATES / "networkpolicy.yaml")
    namespace = env["BINANCE_EXTRACTOR_NAMESPACE"]
    assert pod["metadata"]["namespace"] == namespace
    assert {d["metadata"]["namespace"] for d in rbac + policies} == {namespace}
    # The pods' account: the one the template names and rbac.yaml creates.
    accounts = {d["metadata"]["name"] for d in rbac if d["kind"] == "ServiceAccount"}
    assert env["BINANCE_EXTRACTOR_SERVICE_ACCOUNT"] == pod["spec"]["serviceAccountName"]
    assert env["BINANCE_EXTRACTOR_SERVICE_ACCOUNT"] in accounts
    # The Celery workers (which launch the pods) run as the account bound to the pod-launcher Role.
    workers = BASE["workers"]["serviceAccount"]
    assert workers["create"] is False and workers["name"] in accounts
    binding = next(d for d in rbac if d["kind"] == "RoleBinding")
    assert {"kind": "ServiceAccount", "name": workers["name"], "namespace": namespace} in binding["subjects"]
    role = next(d for d in rbac if d["kind"] == "Role" and d["metadata"]["name"] == binding["roleRef"]["name"])
    pod_rule = next(r for r in role["rules"] if "pods" in r["resources"])
    assert {"create", "get", "watch", "delete"} <= set(pod_rule["verbs"])
    # The code's defaults match the manifests (no constant elsewhere).
    from binance_extractor import config

    assert config.settings().kubernetes["namespace"] == namespace
    assert config.settings().kubernetes["service_account"] == pod["spec"]["serviceAccountName"]
    assert BASE["networkPolicies"]["enabled"] is True


def test_setup_job_runs_the_idempotent_setup_command() -> None:
    job = BASE["createUserJob"]
    assert job["useHelmHooks"] is True and job["applyCustomEnv"] is True
    assert job["args"][-1] == "exec python -m binance_extractor setup-airflow"
    from binance_extractor import cli

    assert cli.build_parser().parse_args(["setup-airflow"]).command == "setup-airflow"


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_the_values_rely_on_validate(path: Path) -> None:
    for doc in _docs(path):
        assert kv.validate(doc, "1.33", strict=True) == "1.33"
