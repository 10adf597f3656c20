"""deploy/: Helm values for the official Airflow chart, checked against the chart's own values.schema.json
(chart 1.22.0, kept in tests/deploy/data) and against the manifests and code they must agree with."""

from __future__ import annotations

import copy
import json
import re
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
REMOTE_LOGGING = yaml.safe_load((DEPLOY / "airflow-values-remote-logging.yaml").read_text())
DEPLOY_DOC = (ROOT / "docs" / "DEPLOY.md").read_text()


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


@pytest.mark.parametrize(
    "values",
    [BASE, merge(BASE, GITSYNC), merge(BASE, REMOTE_LOGGING)],
    ids=["airflow-values", "airflow-values+gitsync", "airflow-values+remote-logging"],
)
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


def _secret() -> dict[str, Any]:
    return next(d for d in _docs(TEMPLATES / "secret.example.yaml") if d["kind"] == "Secret")


def test_one_secret_reaches_every_airflow_component_and_every_pod() -> None:
    """extraEnvFrom hands every key of the pods' Secret to every Airflow container (the chart adds it to the
    scheduler, workers, triggerer, dag-processor, api-server and, with applyCustomEnv, its Jobs): one list."""
    pod = _docs(TEMPLATES / "extractor-pod.yaml")[0]
    (pod_source,) = pod["spec"]["containers"][0]["envFrom"]
    (airflow_source,) = yaml.safe_load(BASE["extraEnvFrom"])
    assert airflow_source == pod_source == {"secretRef": {"name": _secret()["metadata"]["name"]}}
    assert "secret" not in BASE, "connections come from the one Secret, not from a second, partial list"
    assert BASE["createUserJob"]["applyCustomEnv"] is True


def test_the_secret_holds_the_budget_and_every_connection_the_sinks_use() -> None:
    from binance_extractor.airflow.hooks import BinanceFuturesHook
    from binance_extractor.sinks import mongo, mysql, postgres

    keys = set(_secret()["stringData"])
    # Every server store's connection (SQLite is a file: on a pod's emptyDir it would vanish with the pod).
    for module in (mysql, postgres, mongo):
        assert f"AIRFLOW_CONN_{module.DEFAULT_CONN_ID.upper()}" in keys, module.__name__
    assert f"AIRFLOW_CONN_{BinanceFuturesHook.default_conn_name.upper()}" in keys
    # The IP's one weight budget: workers' exchange calls (symbol checks, fundingInfo) and pods share it.
    assert {"BINANCE_EXTRACTOR_BUDGET_URL", "BINANCE_API_KEY"} <= keys
    assert _secret()["stringData"]["BINANCE_EXTRACTOR_BUDGET_URL"].startswith("redis://")


def test_otel_for_airflow_and_the_library_point_at_the_pods_collector() -> None:
    env = _env(BASE)
    pod = _docs(TEMPLATES / "extractor-pod.yaml")[0]
    pod_env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_METRICS_EXPORTER"):
        assert env[name] == pod_env[name], name  # metrics by remote write, not OTLP as well (docs/MONITORING.md)
    # Airflow's own metrics and traces (Airflow 3.3 reads the endpoint from the standard OTEL_* variables).
    assert BASE["config"]["metrics"]["otel_on"] == "True" and BASE["config"]["traces"]["otel_on"] == "True"
    assert BASE["statsd"]["enabled"] is False  # Airflow exports its metrics to one place


def test_jwt_and_api_secret_keys_come_from_secrets_the_readme_creates() -> None:
    """Without them the chart generates new keys on every upgrade (users logged out, running tasks rejected)."""
    for value, key in (("jwtSecretName", "jwt-secret"), ("apiSecretKeySecretName", "api-secret-key")):
        name = BASE[value]
        assert name, value
        pattern = rf"create secret generic {name} \\\n\s*--from-literal={key}="
        assert re.search(pattern, DEPLOY_DOC), f"docs/DEPLOY.md step 4 creates no Secret {name} with the key {key}"


def test_create_user_job_is_set_explicitly() -> None:
    job = BASE["createUserJob"]
    assert job["enabled"] is True and job["defaultUser"]["enabled"] is True
    assert job["useHelmHooks"] is True and job["applyCustomEnv"] is True
    assert job["command"] is None


def test_xcom_sidecar_image_and_resources_reach_the_rendered_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults

    from binance_extractor.airflow import dagfactory
    from tests.k8s.test_pod_rendering import as_manifest, plan_argvs, render

    conn = json.loads(_env(BASE)["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    assert conn["conn_type"] == "kubernetes" and conn["extra"]["in_cluster"] is True
    resources = json.loads(conn["extra"]["xcom_sidecar_container_resources"])
    assert set(resources) == {"requests", "limits"}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", _env(BASE)["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    dag = dagfactory.funding_dag(runtime="kubernetes")
    manifest = as_manifest(render(dag, plan_argvs(dag, ["BTCUSDT"])[0])[1])
    sidecar = next(c for c in manifest["spec"]["containers"] if c["name"] == PodDefaults.SIDECAR_CONTAINER_NAME)
    assert sidecar["image"] == conn["extra"]["xcom_sidecar_container_image"]
    assert ":" in sidecar["image"].rsplit("/", 1)[-1], "a pinned tag, never :latest"
    assert sidecar["resources"] == resources
    assert kv.validate(manifest, "1.33", strict=True) == "1.33"


def test_remote_logging_example_names_its_own_connection() -> None:
    logging = REMOTE_LOGGING["config"]["logging"]
    assert logging["remote_logging"] == "True" and logging["remote_base_log_folder"].startswith("s3://")
    (entry,) = REMOTE_LOGGING["secret"]
    assert entry["envName"] == f"AIRFLOW_CONN_{logging['remote_log_conn_id'].upper()}"
    # The log store's credentials stay out of the pods' Secret.
    assert entry["secretName"] != _secret()["metadata"]["name"]


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
