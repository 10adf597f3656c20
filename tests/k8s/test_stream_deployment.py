"""The live tail's Deployment and PodDisruptionBudget: one replica that never overlaps a second, the extraction
pods' image, Secret, account, hardening and NetworkPolicy, and arguments the real CLI accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv

from binance_extractor.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "k8s_pod_templates"
DOCS = [d for d in yaml.safe_load_all((TEMPLATES / "stream-deployment.yaml").read_text()) if d]


def _kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in DOCS if d["kind"] == kind]
    return doc


def _pod_template() -> dict[str, Any]:
    return yaml.safe_load((TEMPLATES / "extractor-pod.yaml").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", ["1.33", kv.major_minor(kv.latest_version())])
def test_validates_strictly(version: str) -> None:
    assert sorted(d["kind"] for d in DOCS) == ["Deployment", "PodDisruptionBudget"]
    for doc in DOCS:
        assert kv.validate(doc, version, strict=True) == version
        assert doc["metadata"]["namespace"] == "petrosa-apps"


def test_single_replica_rule() -> None:
    spec = _kind("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # the old tail stops before the new one starts
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pdb = _kind("PodDisruptionBudget")["spec"]
    assert pdb["selector"] == spec["selector"]
    assert pdb == {"maxUnavailable": 1, "selector": spec["selector"]}  # drains never blocked


def test_same_image_secret_account_hardening_and_network_policy() -> None:
    pod = _pod_template()
    base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
    tpl = _kind("Deployment")["spec"]["template"]
    (container,) = tpl["spec"]["containers"]
    assert container["image"] == base["image"] and container["command"] == base["command"]
    assert container["envFrom"] == base["envFrom"]
    assert container["securityContext"] == base["securityContext"]
    for key in ("serviceAccountName", "automountServiceAccountToken", "securityContext"):
        assert tpl["spec"][key] == pod["spec"][key]
    policy = yaml.safe_load((TEMPLATES / "networkpolicy.yaml").read_text())
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items()
    assert container["resources"]["limits"]["memory"]  # bounded queue, bounded memory: a limit is set
    assert tpl["spec"]["terminationGracePeriodSeconds"] >= 30  # time to flush on SIGTERM


def test_arguments_are_a_valid_stream_command() -> None:
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "stream" and args.intervals == "5m,15m,30m,1h,1d"


def test_probes_call_the_health_endpoint_the_arguments_serve() -> None:
    """/livez and /readyz (binance_extractor/stream/health.py) on the port given by --health-port."""
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == args.health_port > 0
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    # the kubelet restarts only after the tail's own liveness threshold has passed, never on one slow answer
    live = container["livenessProbe"]
    assert live["failureThreshold"] * live["periodSeconds"] >= 60


def test_metrics_go_to_prometheus_by_remote_write() -> None:
    (container,) = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BINANCE_METRICS_REMOTE_WRITE_URL"].endswith("/api/v1/write")
    assert env["OTEL_METRICS_EXPORTER"] == "none"  # not twice (OTLP carries traces only)
    pod_env = {e["name"]: e.get("value") for e in _pod_template()["spec"]["containers"][0]["env"]}
    assert pod_env["BINANCE_METRICS_REMOTE_WRITE_URL"] == env["BINANCE_METRICS_REMOTE_WRITE_URL"]
