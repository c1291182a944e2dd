"""deploy/kubernetes/ and deploy/compose.yaml: valid offline against the schemas their tools use,
setting only variables Chorus reads, probing paths a real node answers, draining within the time
they give a node, scaling on metrics the nodes export."""

import ast
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from cloudcoil.models.keda.v1alpha1 import ScaledObject

from realtime import drain
from realtime.models import Stream
from tests.conftest import Stack
from tests.support.processes import ROOT, AsgiNode, wait_until
from tests.support.ws import WsClient

KUBE = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose.yaml"
KUBERNETES_VERSION = "1.30"  # the oldest release the manifests support
NOT_APPLIED = {"kustomization.yaml", "secret.example.yaml"}  # the secret is made by hand, from the example
POD_HOST = "10.42.0.7:8000"  # probes carry the pod's address as Host, which is no allowed host


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in sorted(KUBE.glob("*.yaml")) for doc in _documents(path)]


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _manifests() if doc["kind"] == kind}


def _chorus_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec, container) of every container running the Chorus image."""
    found = []
    for _, doc in _manifests():
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        for container in (pod or {}).get("containers", []):
            if container["image"].split(":")[0] == "chorus":
                found.append((doc["metadata"]["name"], pod, container))
    return found


def _variables_read() -> set[str]:
    """Names project/settings/environment.py reads (the first argument of its reads of the environment)."""
    tree = ast.parse((ROOT / "project" / "settings" / "environment.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            value = node.args[0].value
            if isinstance(value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", value):
                names.add(value)
    assert {"DATABASE_URL", "CHORUS_NODE_ID", "DJANGO_SECRET_KEY"} <= names
    return names


def _script_variables(command: list[str]) -> set[str]:
    """Variables read by the script a container runs (scripts/serve.sh reads its own few)."""
    script = ROOT / command[0]
    if command[0].startswith("scripts/") and script.exists():
        return set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", script.read_text()))
    return set()


def live_probe_path(container: dict[str, Any]) -> str:
    return container["livenessProbe"]["httpGet"]["path"]


def _status(node: AsgiNode, path: str) -> int | None:
    """The node's answer to a probe, None once it no longer listens."""
    try:
        return httpx.get(f"{node.http}{path}", headers={"Host": POD_HOST}, timeout=2).status_code
    except httpx.TransportError:
        return None


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


# --- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_kubernetes_manifest_is_valid_offline(name, doc) -> None:
    """Each resource against the API schemas kubernetes-validate bundles (strict: no unknown
    field), KEDA's ScaledObject against its CRD's model (round trip: no field dropped as unknown)."""
    if doc["kind"] == "Kustomization":
        return  # checked below
    if doc["kind"] == "ScaledObject":
        model = ScaledObject.model_validate(doc)
        assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc
        return
    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    (kustomization,) = _documents(KUBE / "kustomization.yaml")
    files = {path.name for path in KUBE.glob("*.yaml")} - NOT_APPLIED
    assert sorted(kustomization["resources"]) == sorted(files)


def test_there_are_nodes_workers_and_one_beat_with_their_budgets_and_scalers() -> None:
    deployments = _by_kind("Deployment")
    assert set(deployments) == {"chorus-node", "chorus-worker", "chorus-beat"}
    beat = deployments["chorus-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"  # never two beats
    assert set(_by_kind("Service")) == {"chorus-node"}
    budgets = _by_kind("PodDisruptionBudget")
    assert {name: doc["spec"]["selector"]["matchLabels"] for name, doc in budgets.items()} == {
        "chorus-node": {"app.kubernetes.io/name": "chorus-node"},
        "chorus-worker": {"app.kubernetes.io/name": "chorus-worker"},
    }
    hpa = _by_kind("HorizontalPodAutoscaler")["chorus-node"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "chorus-node"
    keda = _by_kind("ScaledObject")["chorus-worker"]["spec"]
    assert keda["scaleTargetRef"]["name"] == "chorus-worker"


def test_every_variable_the_manifests_set_is_read_by_chorus() -> None:
    """env and every key of the ConfigMap and Secret they load: a misspelt name would be ignored."""
    read = _variables_read()
    maps = {**_by_kind("ConfigMap"), **{d["metadata"]["name"]: d for d in _documents(KUBE / "secret.example.yaml")}}
    containers = _chorus_containers()
    assert {workload for workload, _, _ in containers} >= {"chorus-node", "chorus-worker", "chorus-beat"}
    for workload, _, container in containers:
        names = {env["name"] for env in container.get("env", [])}
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef")
            doc = maps[ref["name"]]
            names |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
        unknown = names - read - _script_variables(container["command"])
        assert not unknown, f"{workload} sets variables Chorus never reads: {sorted(unknown)}"


def test_node_grace_period_covers_the_prestop_hook_and_the_whole_drain() -> None:
    """terminationGracePeriodSeconds >= preStop + CHORUS_DRAIN_SECONDS + the drain's HTTP and exit graces."""
    pod = _by_kind("Deployment")["chorus-node"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain_seconds = float(_by_kind("ConfigMap")["chorus-config"]["data"]["CHORUS_DRAIN_SECONDS"])
    needed = int(command[1]) + drain_seconds + drain.HTTP_GRACE_SECONDS + drain.EXIT_GRACE_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= needed
    assert pod["terminationGracePeriodSeconds"] <= needed + 15, "a node that hangs is killed soon after"
    strategy = _by_kind("Deployment")["chorus-node"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0  # a replacement is ready before a node drains


def test_hpa_and_scaledobject_use_metrics_the_nodes_export(live: Stack) -> None:
    """The HPA's per-pod metric is a prometheus-adapter rule over a series /metrics has, and the
    ScaledObject's query reads the queue depth /metrics has."""
    (rules,) = _documents(KUBE / "prometheus-adapter" / "rules.yaml")
    custom = {rule["name"]["as"]: rule for rule in rules["rules"]["custom"]}
    (metric,) = _by_kind("HorizontalPodAutoscaler")["chorus-node"]["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in custom
    exported = live.nodes[0].metrics()
    for rule in [*rules["rules"]["custom"], *rules["rules"]["external"]]:
        named = re.match(r"\w+", rule["seriesQuery"])
        assert named is not None, rule["seriesQuery"]
        series = named.group(0)
        assert series in exported, series
    (trigger,) = _by_kind("ScaledObject")["chorus-worker"]["spec"]["triggers"]
    assert re.search(r"\bchorus_celery_queue_depth\b", trigger["metadata"]["query"])
    assert "chorus_celery_queue_depth" in exported


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_a_node_configured_as_the_manifest_says_answers_its_probes_and_drains_in_time(
    live: Stack, stream: Stream, server
) -> None:
    """A real node with the ConfigMap's settings: the probe paths answer 200 to a pod-address Host;
    on SIGTERM readiness turns 503 while liveness stays 200, and it exits within its grace period."""
    pod = _by_kind("Deployment")["chorus-node"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = dict(_by_kind("ConfigMap")["chorus-config"]["data"])
    # Plain HTTP in the test, and the harness's own requests from 127.0.0.1 allowed.
    env.update({"CHORUS_NODE_POOL": f"manifest-{server}", "CHORUS_HTTPS": "0"})
    env["DJANGO_ALLOWED_HOSTS"] += ",127.0.0.1"
    node = AsgiNode(f"node-manifest-{server}", server=server, env=env).start()
    try:
        node.wait_ready()
        probes = [container["readinessProbe"], container["livenessProbe"], container["startupProbe"]]
        for probe in probes:
            answer = httpx.get(f"{node.http}{probe['httpGet']['path']}", headers={"Host": POD_HOST}, timeout=5)
            assert answer.status_code == 200, (probe, answer.text)
        socket = WsClient(f"{node.ws}/ws/streams/{stream.slug}/")  # a client to hand over

        stopped = time.monotonic()
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        ready, live_path = container["readinessProbe"]["httpGet"]["path"], live_probe_path(container)
        wait_until(lambda: _status(node, ready) != 200, timeout=5, what="readiness to turn off")
        while node.alive() and time.monotonic() - stopped < pod["terminationGracePeriodSeconds"]:
            # Until it stops listening: never ready again, always alive.
            assert _status(node, ready) in (503, None) and _status(node, live_path) in (200, None)
            time.sleep(0.05)  # sampling interval of an invariant held until exit (bounded by the grace period)
        assert socket.wait_closed(timeout=5) == 4503
        node.proc.wait(timeout=5)
        prestop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert time.monotonic() - stopped <= pod["terminationGracePeriodSeconds"] - prestop
    finally:
        node.stop()


# --- Compose ----------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    """Against the Compose Specification's JSON schema, as check-jsonschema bundles it (offline)."""
    schema = get_builtin_schema("vendor.compose-spec")
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(schema).iter_errors(_compose())
    ]
    assert not errors, errors


def test_compose_sets_only_variables_chorus_reads_and_gives_the_node_its_drain() -> None:
    compose = _compose()
    read = _variables_read()
    chorus = {name: svc for name, svc in compose["services"].items() if svc["image"].startswith("chorus")}
    assert set(chorus) == {"migrate", "node", "worker", "beat"}
    for name, service in chorus.items():
        unknown = set(service["environment"]) - read - _script_variables(service.get("command", []))
        assert not unknown, f"{name} sets variables Chorus never reads: {sorted(unknown)}"
    node = compose["services"]["node"]
    drain_seconds = float(node["environment"]["CHORUS_DRAIN_SECONDS"])
    needed = drain_seconds + drain.HTTP_GRACE_SECONDS + drain.EXIT_GRACE_SECONDS
    assert needed <= _seconds(node["stop_grace_period"]) <= needed + 15
    assert drain.READY_PATH in " ".join(node["healthcheck"]["test"])
