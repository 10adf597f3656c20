"""The pod a DAG would send to the cluster, run as a real pod with ``podman kube play``.

KubernetesPodOperator renders the pod of one mapped task of ``binance_klines_h1`` offline (as tests/k8s does), with
the Helm values' settings in the environment: the extractor image, and the ``kubernetes_default`` connection that
names the XCom sidecar's image and resources. podman then runs that manifest: its securityContext (UID 10001,
read-only root, no capabilities), its emptyDir volumes (/tmp; /airflow/xcom shared with the sidecar), its env
(downward API included) and its Secret, a podman secret holding the Kubernetes Secret's keys, read through
``envFrom``. podman 4.3 does not expand ``$(VAR)`` in env values as the kubelet does, so the pod's
``OTEL_RESOURCE_ATTRIBUTES`` reach the collector unexpanded here (tests/k8s/test_pod_rendering.py checks the
expansion); the pod's spans are found by the Airflow task's trace they join.

The XCom hand-off is KubernetesPodOperator's own: once the base container has exited, the commands it sends through
``kubectl exec`` run in the sidecar container (read ``/airflow/xcom/return.json``, then SIGINT to the sidecar's
shell, which exits 0). The sidecar image is a busybox stand-in tagged as the pinned alpine image
(scripts/standin-images.sh), so the pod runs as rendered.

Test-only differences, each made where it is named below: the Secret's values (the emulator instead of Binance, a
fresh MariaDB database, a per-test budget name, the emulator's archive URL), the podman secret's name (unique per
test), the OTLP endpoint (a loopback receiver instead of the cluster's collector), and the two downward-API fields
podman 4.3 does not resolve (``metadata.namespace``, ``spec.nodeName``: set to what the kubelet would give).
"""

from __future__ import annotations

import base64
import json
import shlex
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.images import klines, podman
from tests.images.podman import MARKS, ROOT, SIDECAR_IMAGE, Images
from tests.k8s.test_pod_rendering import OtlpReceiver, as_manifest, otlp_receiver, plan_argvs, render  # noqa: F401

pytestmark = [*MARKS, pytest.mark.mysql]

VALUES = yaml.safe_load((ROOT / "deploy" / "airflow-values.yaml").read_text())
VALUES_ENV = {e["name"]: e["value"] for e in VALUES["env"]}
SECRET = next(yaml.safe_load_all((ROOT / "k8s_pod_templates" / "secret.example.yaml").read_text()))
END = datetime(2024, 3, 1, tzinfo=UTC)  # the scheduled run's data interval end: a fixed, long-closed past
SYMBOL = "BTCUSDT"


@pytest.fixture
def podman_secret(emulator: Any, mysql_database: str) -> Iterator[str]:
    """The example Secret's keys with this test's values, as a podman secret (kube play reads it for envFrom)."""
    name = f"binance-extractor-connections-{uuid.uuid4().hex[:8]}"
    values = dict(SECRET["stringData"])
    values.update(
        AIRFLOW_CONN_BINANCE_DEFAULT=json.dumps({"conn_type": "binance", "host": emulator.url, "password": "test-key"}),
        AIRFLOW_CONN_MYSQL_DEFAULT=f"mysql://root@127.0.0.1:3306/{mysql_database}",
        BINANCE_API_KEY="test-key",
        BINANCE_EXTRACTOR_BUDGET_URL="redis://127.0.0.1:6379/0",
        # Test-only keys: this test's own budget in the shared Redis, the emulator's archive.
        BINANCE_EXTRACTOR_BUDGET_NAME=f"kube-play-{uuid.uuid4().hex[:8]}",
        BINANCE_ARCHIVE_BASE_URL=emulator.archive_url,
    )
    # podman 4.3 reads a secret for envFrom as a JSON map of base64 values (a Kubernetes Secret's `data`).
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    podman.run(["secret", "create", name, "-"], input=json.dumps(data))
    yield name
    podman.run(["secret", "rm", name], check=False)


def _render_pod(images: Images, monkeypatch: pytest.MonkeyPatch, tracer: Any) -> tuple[dict[str, Any], Any, Any]:
    """The manifest KubernetesPodOperator builds for the run's one mapped task, and the task span it joins."""
    from binance_extractor.airflow import dagfactory

    for name in ("BINANCE_EXTRACTOR_NAMESPACE", "BINANCE_EXTRACTOR_SERVICE_ACCOUNT", "AIRFLOW_CONN_KUBERNETES_DEFAULT"):
        monkeypatch.setenv(name, VALUES_ENV[name])
    # The Helm values name REGISTRY/binance-extractor:<version>; here the image is this session's build.
    monkeypatch.setenv("BINANCE_EXTRACTOR_IMAGE", images.extractor)
    dag = dict(dagfactory.klines_dags(runtime="kubernetes"))["binance_klines_h1"]
    (argv,) = plan_argvs(dag, [SYMBOL], "scheduled", END)
    op, _ = render(dag, argv)
    with tracer.start_as_current_span(f"extract {SYMBOL}") as task_span:
        op.add_trace_env()  # what TracedKubernetesPodOperator.execute does inside the task's span
    return as_manifest(op.build_pod_request_obj(dry_run=True)), task_span.get_span_context(), argv


# KubernetesPodOperator's commands to stop the XCom sidecar (PodManager.extract_xcom_kill), sent to /bin/sh's stdin.
KILL = "kill -2 $(pgrep -u $(id -u) -f 'sh')\n"
KILL_FALLBACK = (
    "for f in /proc/[0-9]*/comm; do "
    '[ -O $f ] && read c < $f && [ "$c" = "sh" ] && pid=${f%/comm} && kill -2 ${pid##*/}; '
    "done\n"
)

# The downward-API fields podman 4.3 cannot resolve (it does metadata.name and metadata.uid), and what the kubelet
# would put there: the pod's namespace, and a node name.
KUBELET_FIELDS = {"metadata.namespace": lambda m: m["metadata"]["namespace"], "spec.nodeName": lambda m: "podman-node"}


def _resolve_unsupported_fields(manifest: dict[str, Any]) -> None:
    for container in manifest["spec"]["containers"]:
        for env in container.get("env") or []:
            field = (env.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
            if field in KUBELET_FIELDS:
                env.pop("valueFrom")
                env["value"] = KUBELET_FIELDS[field](manifest)


def _container(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in manifest["spec"]["containers"] if c["name"] == name)


def test_rendered_pod_runs_under_kube_play_and_hands_back_its_xcom(
    images: Images,
    emulator: Any,
    mysql_database: str,
    podman_secret: str,
    otlp_receiver: OtlpReceiver,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from airflow.providers.cncf.kubernetes.utils.pod_manager import EMPTY_XCOM_RESULT
    from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults
    from opentelemetry.sdk.trace import TracerProvider

    manifest, task_ctx, argv = _render_pod(images, monkeypatch, TracerProvider().get_tracer("airflow-task-stand-in"))
    pod_name = manifest["metadata"]["name"]
    base, sidecar = _container(manifest, "base"), _container(manifest, PodDefaults.SIDECAR_CONTAINER_NAME)
    # What the Helm values configure is what the operator rendered.
    assert base["image"] == images.extractor
    sidecar_settings = json.loads(VALUES_ENV["AIRFLOW_CONN_KUBERNETES_DEFAULT"])["extra"]
    assert sidecar["image"] == sidecar_settings["xcom_sidecar_container_image"] == SIDECAR_IMAGE
    assert sidecar["resources"] == json.loads(sidecar_settings["xcom_sidecar_container_resources"])
    assert base["args"][-2:] == ["--xcom-file", f"{PodDefaults.XCOM_MOUNT_PATH}/return.json"]

    # Test-only: the podman secret's name, the loopback collector, two downward-API fields podman cannot resolve.
    _resolve_unsupported_fields(manifest)
    (env_from,) = base["envFrom"]
    env_from["secretRef"]["name"] = podman_secret
    otel = next(e for e in base["env"] if e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT")
    otel["value"] = otlp_receiver.url
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(manifest))

    try:
        podman.run(["kube", "play", "--network", "host", str(path)], timeout=300)
        base_name, sidecar_name = f"{pod_name}-base", f"{pod_name}-{PodDefaults.SIDECAR_CONTAINER_NAME}"
        exit_code = podman.run(["wait", base_name], timeout=600).stdout.strip()
        logs = podman.run(["logs", base_name], check=False)
        assert exit_code == "0", f"the pod's base container exited {exit_code}:\n{logs.stderr[-3000:]}"

        # Confinement as the template asks for it, applied by podman.
        inspect = json.loads(podman.run(["container", "inspect", base_name]).stdout)[0]
        assert inspect["Config"]["User"].split(":")[0] == "10001"
        assert inspect["HostConfig"]["ReadonlyRootfs"] is True
        assert inspect["HostConfig"]["CapDrop"] and not inspect["HostConfig"]["CapAdd"]
        mounts = {m["Destination"] for m in inspect["Mounts"]}
        assert {"/tmp", PodDefaults.XCOM_MOUNT_PATH} <= mounts
        # The downward API (the pod's name resolved by podman) and every key of the Secret, through envFrom.
        env = dict(item.split("=", 1) for item in inspect["Config"]["Env"])
        assert env["K8S_POD_NAME"] == pod_name and env["K8S_NAMESPACE_NAME"] == manifest["metadata"]["namespace"]
        assert set(SECRET["stringData"]) <= set(env)

        # KubernetesPodOperator's extract_xcom: read the file through the sidecar, then stop the sidecar.
        read = (
            f"if [ -s {PodDefaults.XCOM_MOUNT_PATH}/return.json ]; "
            f"then cat {PodDefaults.XCOM_MOUNT_PATH}/return.json; else echo {EMPTY_XCOM_RESULT}; fi"
        )
        xcom = podman.run(["exec", sidecar_name, "/bin/sh", "-c", read]).stdout
        # Its kill command, and the fallback it sends when that one writes to stderr (the busybox stand-in has no
        # pgrep). Either may take its own exec'd shell down with the sidecar's: only the sidecar's exit counts.
        kill = podman.run(["exec", "-i", sidecar_name, "/bin/sh"], input=KILL, check=False)
        if kill.stderr.strip():
            podman.run(["exec", "-i", sidecar_name, "/bin/sh"], input=KILL_FALLBACK, check=False)
        assert podman.run(["wait", sidecar_name], timeout=60).stdout.strip() == "0"
    finally:
        podman.run(["pod", "rm", "-f", pod_name], check=False, timeout=120)

    (result,) = json.loads(xcom)
    assert [result[k] for k in ("symbol", "kind", "interval", "table")] == [SYMBOL, "klines", "1h", "klines_h1"]
    stored = klines.stored(mysql_database, SYMBOL)
    # An empty table: the scheduled (incremental) run starts history_days (30, include/config.yaml) back.
    served = klines.served(emulator, SYMBOL, END - timedelta(days=30), END)
    assert len(served) == 30 * 24
    assert stored == served
    assert result["rows_written"] == len(stored)
    assert datetime.fromisoformat(result["last_time"].replace("Z", "+00:00")) == END - timedelta(hours=1)

    # The pod's spans joined the Airflow task's trace (TRACEPARENT, set by the operator).
    trace_id = task_ctx.trace_id.to_bytes(16, "big")
    pod_spans = [span for _, span in otlp_receiver.spans() if span.trace_id == trace_id]
    (cli_span,) = [span for span in pod_spans if span.name == "cli.klines"]
    assert cli_span.parent_span_id == task_ctx.span_id.to_bytes(8, "big")
    assert {"cli.klines", "binance.http", "sink.write"} <= {span.name for span in pod_spans}, shlex.join(argv)
