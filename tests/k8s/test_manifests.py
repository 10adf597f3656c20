"""Every manifest in k8s_pod_templates/ validated offline against Kubernetes JSON schemas, then checked for
what the schemas cannot say: hardening, resources, identities, permissions, network reach, no secrets."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "k8s_pod_templates"
NAMESPACE = "petrosa-apps"
# Strict schemas (unknown fields rejected) of a current release and of the newest one the package bundles.
K8S_VERSIONS = ("1.33", kv.major_minor(kv.latest_version()))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFEST_FILES = sorted(TEMPLATES.glob("*.yaml"))
ALL_DOCS = [(p.name, d) for p in MANIFEST_FILES for d in _docs(p)]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in ALL_DOCS if d["kind"] == kind and (name is None or d["metadata"].get("name") == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod() -> dict[str, Any]:
    return _docs(TEMPLATES / "extractor-pod.yaml")[0]


def _base(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


def test_expected_manifests_exist() -> None:
    names = {p.name for p in MANIFEST_FILES}
    assert {"extractor-pod.yaml", "rbac.yaml", "networkpolicy.yaml", "secret.example.yaml"} <= names
    kinds = sorted(d["kind"] for _, d in ALL_DOCS)
    assert kinds.count("Pod") == 1
    for kind in ("ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "Secret"):
        assert kind in kinds
    assert (TEMPLATES / "README.md").is_file()


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("filename", "doc"), ALL_DOCS, ids=[f"{f}:{d['kind']}" for f, d in ALL_DOCS])
def test_manifest_validates_against_kubernetes_schema(filename: str, doc: dict[str, Any], version: str) -> None:
    assert kv.validate(doc, version, strict=True) == version


def test_strict_validation_really_rejects_bad_manifests() -> None:
    """Guards the test above: a misspelt field and a wrong type both fail."""
    typo = copy.deepcopy(_pod())
    _base(typo)["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(typo, K8S_VERSIONS[0], strict=True)
    wrong_type = copy.deepcopy(_pod())
    wrong_type["spec"]["securityContext"]["runAsUser"] = "10001"
    with pytest.raises(kv.ValidationError):
        kv.validate(wrong_type, K8S_VERSIONS[0], strict=True)


def test_namespaced_objects_live_in_petrosa_apps() -> None:
    for filename, doc in ALL_DOCS:
        assert doc["metadata"].get("namespace") == NAMESPACE, f"{filename}: {doc['kind']}"


def test_pod_template_hardening() -> None:
    pod = _pod()
    spec = pod["spec"]
    assert [c["name"] for c in spec["containers"]] == ["base"], "KubernetesPodOperator merges into 'base'"
    assert spec["serviceAccountName"] == "binance-extractor"
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001 and psc["fsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = _base(pod)["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in csc["capabilities"]
    assert csc.get("privileged", False) is False
    assert csc["runAsNonRoot"] is True
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(forbidden)
    assert not any("hostPath" in v for v in spec.get("volumes", []))


def test_pod_template_container() -> None:
    base = _base(_pod())
    assert base["image"] == "binance-extractor:0.1.0"
    assert base["command"] == ["python", "-m", "binance_extractor"]
    assert "args" not in base, "arguments come from the operator, one symbol per mapped task"
    assert base["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    # The only writable paths: /tmp (emptyDir) here; /airflow/xcom is added by the operator's xcom sidecar.
    mounts = {m["mountPath"]: m["name"] for m in base["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    volumes = {v["name"]: v for v in _pod()["spec"]["volumes"]}
    assert "emptyDir" in volumes["tmp"]


def test_pod_template_environment() -> None:
    base = _base(_pod())
    assert base["envFrom"] == [{"secretRef": {"name": "binance-extractor-connections"}}]
    env = base["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    values = {e["name"]: e.get("value") for e in env}
    assert values["BINANCE_EXTRACTOR_SINKS"] == "mysql"
    assert values["HOME"] == "/tmp"
    assert values["AIRFLOW_HOME"] == "/tmp/airflow"
    assert values["BINANCE_EXTRACTOR_DATA_DIR"] == "/tmp/data"
    assert values["OTEL_SERVICE_NAME"] == "binance-extractor"
    assert values["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in env if "valueFrom" in e}
    assert downward["K8S_POD_NAME"] == "metadata.name"
    assert downward["K8S_NAMESPACE_NAME"] == "metadata.namespace"
    assert downward["K8S_NODE_NAME"] == "spec.nodeName"
    attrs = dict(pair.split("=", 1) for pair in values["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attrs["k8s.pod.name"] == "$(K8S_POD_NAME)"
    assert attrs["k8s.namespace.name"] == "$(K8S_NAMESPACE_NAME)"
    assert attrs["k8s.node.name"] == "$(K8S_NODE_NAME)"
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    position = names.index("OTEL_RESOURCE_ATTRIBUTES")
    for ref in re.findall(r"\$\((\w+)\)", values["OTEL_RESOURCE_ATTRIBUTES"]):
        assert ref in names[:position], f"{ref} must come before OTEL_RESOURCE_ATTRIBUTES"
    # No credentials inline: they come from the Secret only.
    for e in env:
        assert not re.search(r"PASSWORD|API_KEY|SECRET|AIRFLOW_CONN_", e["name"]), e["name"]


def test_service_accounts_and_rbac() -> None:
    extractor = _one("ServiceAccount", "binance-extractor")
    assert extractor.get("automountServiceAccountToken") is False
    binding = _one("RoleBinding")
    role = _one("Role")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    for subject in binding["subjects"]:
        assert subject["kind"] == "ServiceAccount"
        _one("ServiceAccount", subject["name"])  # the bound account is defined here too
        assert subject["namespace"] == NAMESPACE
        assert subject["name"] != "binance-extractor", "the pods themselves get no API access"

    granted: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""], "core API only"
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        for resource in rule["resources"]:
            granted.setdefault(resource, set()).update(rule["verbs"])
    assert {"create", "get", "list", "watch", "delete", "patch"} <= granted["pods"]
    assert "get" in granted["pods/log"]
    assert "create" in granted["pods/exec"]
    # Least privilege: nothing beyond pods, their logs/exec and events; never secrets.
    assert set(granted) <= {"pods", "pods/log", "pods/exec", "events"}
    assert granted.get("events", set()) <= {"get", "list", "watch"}


def _egress_ports(policy: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}


def test_network_policy_egress_only_dns_binance_databases() -> None:
    pod_labels = _pod()["metadata"]["labels"]
    policy = _one("NetworkPolicy", "binance-extractor-egress")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items(), "the policy must select the extraction pods"
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["spec"].get("ingress", []) == []
    assert _egress_ports(policy) == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 443),
        ("TCP", 3306),
        ("TCP", 5432),
        ("TCP", 27017),
        ("TCP", 6379),
    }
    for rule in policy["spec"]["egress"]:
        ports = {p["port"] for p in rule["ports"]}
        peers = rule["to"]
        assert peers, "a rule without peers would allow every destination"
        if ports == {53}:
            assert peers[0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
            assert peers[0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
        elif ports == {443}:
            block = peers[0]["ipBlock"]
            assert block["cidr"] == "0.0.0.0/0"
            excluded = [ipaddress.ip_network(c) for c in block["except"]]
            for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
                assert ipaddress.ip_network(private) in excluded
        elif ports in ({3306}, {5432}, {27017}, {6379}):
            # In-cluster database pods only (Redis: the shared weight budget), never an ipBlock.
            assert all("ipBlock" not in peer and "podSelector" in peer for peer in peers)
            expected = {3306: "mysql", 5432: "postgresql", 27017: "mongodb", 6379: "redis"}[next(iter(ports))]
            assert all(peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": expected} for peer in peers)
        else:
            pytest.fail(f"unexpected egress rule for ports {ports}")


def test_telemetry_policy_adds_only_the_collector_and_prometheus() -> None:
    """Traces to the OTLP collector, metrics to Prometheus's remote-write receiver: both in one namespace."""
    policy = _one("NetworkPolicy", "binance-extractor-telemetry")
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert _egress_ports(policy) == {("TCP", 4318), ("TCP", 9090)}
    env = {e["name"]: e.get("value") for e in _base(_pod())["env"]}
    collector, prometheus = (
        urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"]),
        urlsplit(env["BINANCE_METRICS_REMOTE_WRITE_URL"]),
    )
    assert (collector.port, prometheus.port) == (4318, 9090)
    namespace = collector.hostname.split(".")[1]
    assert prometheus.hostname.split(".")[1] == namespace
    (peer,) = policy["spec"]["egress"][0]["to"]
    assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def test_secret_example_has_placeholders_only() -> None:
    secret = _one("Secret")
    assert secret["metadata"]["name"] == "binance-extractor-connections"
    assert secret["type"] == "Opaque"
    assert "data" not in secret, "base64 data could hide real values; use stringData placeholders"
    values = secret["stringData"]
    assert set(values) == {
        "AIRFLOW_CONN_BINANCE_DEFAULT",
        "AIRFLOW_CONN_MYSQL_DEFAULT",
        "AIRFLOW_CONN_POSTGRES_DEFAULT",
        "AIRFLOW_CONN_MONGO_DEFAULT",
        "BINANCE_API_KEY",
        "BINANCE_EXTRACTOR_BUDGET_URL",
    }
    binance = json.loads(values["AIRFLOW_CONN_BINANCE_DEFAULT"])
    assert binance == {"conn_type": "binance", "host": "https://fapi.binance.com", "password": "CHANGE_ME"}
    for key, value in values.items():
        assert "CHANGE_ME" in value, key
        # Binance API keys are 64 alphanumerics; nothing key-like may sit in the example.
        assert not re.search(r"[A-Za-z0-9]{32,}", value), key
    mysql = urlsplit(values["AIRFLOW_CONN_MYSQL_DEFAULT"])
    mongo = urlsplit(values["AIRFLOW_CONN_MONGO_DEFAULT"])
    assert mysql.scheme == "mysql" and mysql.password == "CHANGE_ME" and mysql.port == 3306
    assert mongo.scheme == "mongo" and mongo.password == "CHANGE_ME" and mongo.port == 27017
    postgres = urlsplit(values["AIRFLOW_CONN_POSTGRES_DEFAULT"])
    assert postgres.scheme == "postgres" and postgres.password == "CHANGE_ME" and postgres.port == 5432
    assert values["BINANCE_API_KEY"] == "CHANGE_ME"
    budget = urlsplit(values["BINANCE_EXTRACTOR_BUDGET_URL"])
    assert budget.scheme == "redis" and budget.password == "CHANGE_ME" and budget.port == 6379
    # The pod template loads exactly this Secret.
    assert _base(_pod())["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]


def test_secret_is_the_only_secret_and_the_pod_uses_the_defined_account() -> None:
    assert [f for f, d in ALL_DOCS if d["kind"] == "Secret"] == ["secret.example.yaml"]
    _one("ServiceAccount", _pod()["spec"]["serviceAccountName"])
