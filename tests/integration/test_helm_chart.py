"""The Helm chart (helm/kqueue): lint, render and check every example values file offline.

No cluster and no Kafka: `helm lint` and `helm template` run on each ci/*.yaml, every rendered
object is validated against the Kubernetes 1.30 OpenAPI schemas (kubernetes-validate, strict:
unknown fields fail), CRDs (KEDA, prometheus-operator) are checked field by field here, and the
properties that matter for a kqueue worker are asserted. helm comes from $KQUEUE_HELM or
.ci/install-helm (built once through the Go module proxy, then cached).

The checks are plain functions; test_checks_catch_broken_objects feeds each of them a broken copy
of a rendered object, so none of them can pass vacuously.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.helm import CHART, FULLNAME, KUBE_VERSION, Doc, arg_after, helm_binary, run_helm, template

CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
DEFAULT_PARTITIONS = 6
# Objects whose schema is not part of Kubernetes: checked structurally below.
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
SENSITIVE = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE", re.IGNORECASE)


# -- helm --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm() -> str:
    return helm_binary()


@cache
def rendered(helm: str, values: Path) -> tuple[Doc, ...]:
    done = template(helm, values)
    assert done.returncode == 0, f"helm template -f {values.name} failed:\n{done.stderr}"
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def load_values(values: Path) -> Doc:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    given = yaml.safe_load(values.read_text()) or {}
    return {"defaults": defaults, "given": given}


def worker_settings(values: Path) -> dict[str, Doc]:
    """Deployment name -> the worker's effective settings (chart defaults < workerDefaults < entry)."""
    v = load_values(values)
    chart_defaults = v["defaults"]["workerDefaults"]
    given_defaults = v["given"].get("workerDefaults", {})
    out = {}
    for entry in v["given"].get("workers", []):
        w: Doc = {}
        for layer in (chart_defaults, given_defaults, entry):
            for key, value in layer.items():
                if key in ("autoscaling", "podDisruptionBudget") and isinstance(value, dict):
                    w[key] = {**w.get(key, {}), **value}
                else:
                    w[key] = value
        out[f"{FULLNAME}-{entry['name']}"] = w
    return out


def global_value(values: Path, *path: str) -> Any:
    v = load_values(values)
    found: list[Any] = []
    for source in (v["defaults"], v["given"]):
        node: Any = source
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            found.append(node)
    return found[-1] if found else None


def of_kind(docs: tuple[Doc, ...] | list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def worker_deployments(docs: tuple[Doc, ...] | list[Doc]) -> list[Doc]:
    return [d for d in of_kind(docs, "Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]


# -- checks (each raises AssertionError naming what is wrong) ----------------------------------------


def check_kubernetes_schema(doc: Doc) -> None:
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}") from None


def check_scaled_object(doc: Doc, deployments: set[str], auths: set[str]) -> None:
    name = doc["metadata"]["name"]
    spec = doc["spec"]
    assert set(spec) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                         "cooldownPeriod", "idleReplicaCount", "advanced", "fallback", "triggers"}, spec.keys()
    assert spec["scaleTargetRef"]["name"] in deployments, f"{name} scales a Deployment that is not rendered"
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    for key in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        assert isinstance(spec[key], int) and spec[key] >= 0, f"{name}.{key} = {spec[key]!r}"
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["triggers"], f"{name} has no triggers"
    for trigger in spec["triggers"]:
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert all(isinstance(v, str) for v in meta.values()), f"{name}: KEDA metadata values must be strings: {meta}"
        for key in ("bootstrapServers", "consumerGroup", "topic", "lagThreshold"):
            assert meta.get(key), f"{name}: trigger metadata lacks {key}"
        assert int(meta["lagThreshold"]) > 0
        assert meta.get("sasl", "plaintext") in {"plaintext", "scram_sha256", "scram_sha512", "oauthbearer"}
        assert meta.get("tls", "enable") == "enable"
        if "authenticationRef" in trigger:
            assert trigger["authenticationRef"]["name"] in auths, f"{name}: unknown TriggerAuthentication"
        else:
            assert "sasl" not in meta and "tls" not in meta, f"{name}: SASL/TLS without a TriggerAuthentication"


def check_trigger_authentication(doc: Doc, secrets: dict[str, set[str] | None]) -> None:
    refs = doc["spec"]["secretTargetRef"]
    assert refs and set(doc["spec"]) == {"secretTargetRef"}
    params = [r["parameter"] for r in refs]
    assert len(params) == len(set(params)), f"parameters repeated: {params}"
    assert set(params) <= {"username", "password", "ca", "cert", "key", "oauthTokenEndpointUri"}, params
    assert ("cert" in params) == ("key" in params), "KEDA needs cert and key together"
    assert ("username" in params) == ("password" in params)
    # The keys are a contract with the Secrets the workers load (KQUEUE_KAFKA_<PROPERTY>, kubernetes.io/tls).
    expected_keys = {
        "username": {"KQUEUE_KAFKA_SASL_USERNAME", "KQUEUE_KAFKA_SASL_OAUTHBEARER_CLIENT_ID"},
        "password": {"KQUEUE_KAFKA_SASL_PASSWORD", "KQUEUE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET"},
        "oauthTokenEndpointUri": {"KQUEUE_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL"},
        "ca": {"ca.crt"}, "cert": {"tls.crt"}, "key": {"tls.key"},
    }
    for ref in refs:
        assert ref["key"] in expected_keys[ref["parameter"]], f"{ref['parameter']} read from key {ref['key']}"
        assert set(ref) == {"parameter", "name", "key"} and all(isinstance(v, str) and v for v in ref.values()), ref
        known = secrets.get(ref["name"], set())
        if known is not None:  # a Secret rendered here: the key must be in it (existing ones: None, unknown)
            assert ref["key"] in known, f"{ref['name']} has no key {ref['key']}"


def check_service_monitor(doc: Doc, services: list[Doc]) -> None:
    selector = doc["spec"]["selector"]["matchLabels"]
    matching = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    assert matching, f"ServiceMonitor selects no rendered Service: {selector}"
    ports = {p["name"] for s in matching for p in s["spec"]["ports"]}
    assert doc["spec"]["endpoints"], "ServiceMonitor without endpoints"
    for endpoint in doc["spec"]["endpoints"]:
        assert endpoint["port"] in ports, f"endpoint port {endpoint['port']} is not a port of {ports}"
        assert endpoint.get("path", "/metrics") == "/metrics"


def check_worker(deploy: Doc, w: Doc, metrics_port: int) -> None:
    name = deploy["metadata"]["name"]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "consume"
    assert arg_after(args, "--app") == w["app"] and arg_after(args, "--group") == w["group"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--queue"] == list(w.get("queues", []))
    assert arg_after(args, "--log-format") in {"json", "text"}
    grace = float(arg_after(args, "--grace"))
    assert grace == float(w["grace"])

    # The drain gets grace, the revoke on leaving up to grace again: SIGKILL must come later.
    tgps = pod["terminationGracePeriodSeconds"]
    assert tgps > grace, f"{name}: terminationGracePeriodSeconds {tgps} <= grace {grace}"
    assert tgps == 2 * math.ceil(grace) + 15, f"{name}: terminationGracePeriodSeconds {tgps}, want 2*grace+15"

    assert int(arg_after(args, "--metrics-port")) == metrics_port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports.get("metrics") == metrics_port, f"{name}: container port 'metrics' is {ports}"
    for probe_name, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")):
        probe = container[probe_name]
        got = probe["httpGet"]
        assert got["path"] == path, f"{name}: {probe_name} on {got['path']}"
        port = got["port"]
        assert (ports.get(port) if isinstance(port, str) else port) == metrics_port, f"{name}: {probe_name} port {port}"
    live = container["livenessProbe"]
    # A commit stuck for 60 s ends the worker by itself; liveness must not kill it sooner.
    assert live["periodSeconds"] * live["failureThreshold"] > 60, f"{name}: liveness gives up within 60 s"

    env = {e["name"]: e for e in container.get("env", [])}
    if w.get("staticMembership", True):
        instance = env.get("KQUEUE_INSTANCE_ID")
        assert instance is not None, f"{name}: no KQUEUE_INSTANCE_ID"
        assert instance.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", instance
        assert "value" not in instance
    else:
        assert "KQUEUE_INSTANCE_ID" not in env
    assert env["KQUEUE_BOOTSTRAP_SERVERS"]["value"]

    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/tmp" in mounts, "read-only root needs a writable /tmp"
    if "/etc/kqueue/tls" in mounts:
        assert mounts["/etc/kqueue/tls"]["readOnly"] is True


def check_no_secret_values(docs: list[Doc], secret_values: set[str]) -> None:
    """Secret values appear only in Secrets; sensitive env vars come from secretKeyRef/envFrom."""
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for value in secret_values:
            assert value not in text, f"{doc['kind']}/{doc['metadata']['name']} contains a secret value"
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for e in container.get("env", []):
                if SENSITIVE.search(e["name"]):
                    assert "value" not in e, f"{doc['metadata']['name']}: {e['name']} given as a plain value"
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{e['name']} must come from a Secret"
            for arg in container.get("args", []):
                assert not SENSITIVE.search(str(arg)), f"{doc['metadata']['name']}: sensitive argument {arg!r}"


def check_autoscaler_cap(doc: Doc, w: Doc) -> None:
    """Never more group members than partitions: a member beyond them owns nothing and idles."""
    spec = doc["spec"]
    high = spec["maxReplicaCount"] if doc["kind"] == "ScaledObject" else spec["maxReplicas"]
    partitions = w.get("partitions", DEFAULT_PARTITIONS)
    processes = w.get("processes", 1)
    assert high <= partitions, f"{doc['metadata']['name']}: max {high} replicas > {partitions} partitions"
    assert high * processes <= partitions, f"{doc['metadata']['name']}: {high} x {processes} processes > partitions"


def lane_topics(w: Doc, prefix: str) -> list[str]:
    suffix = {"high": ".high", "normal": "", "low": ".low"}
    return [f"{prefix}{q}{suffix[lane]}" for q in w["queues"] for lane in w["autoscaling"]["lanes"]]


# -- tests -------------------------------------------------------------------------------------


def test_every_example_is_tested() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"minimal-values.yaml", "keda-values.yaml", "tls-sasl-values.yaml"} <= names, names


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_lint(helm: str, values: Path) -> None:
    done = run_helm(helm, "lint", str(CHART), "-f", str(values), "--strict", "--kube-version", KUBE_VERSION)
    assert done.returncode == 0, done.stdout + done.stderr


def test_lint_without_values(helm: str) -> None:
    done = run_helm(helm, "lint", str(CHART), "--strict")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_rendered_objects(helm: str, values: Path) -> None:
    docs = list(rendered(helm, values))
    workers = worker_settings(values)
    assert workers, f"{values.name} configures no worker"
    metrics_port = global_value(values, "metricsPort")
    mode = global_value(values, "autoscaling", "mode")
    prefix = global_value(values, "topicPrefix") or ""

    # Kubernetes objects against the API schemas; CRDs structurally.
    secrets: dict[str, set[str] | None] = {
        d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {})) for d in of_kind(docs, "Secret")}
    existing = (global_value(values, "kafka", "existingSecret"), global_value(values, "kafka", "tls", "existingSecret"))
    for name in existing:
        if name:
            secrets.setdefault(name, None)
    deployment_names = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    auth_names = {d["metadata"]["name"] for d in of_kind(docs, "TriggerAuthentication")}
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key not in CRD_KINDS:
            check_kubernetes_schema(doc)
        elif doc["kind"] == "ScaledObject":
            check_scaled_object(doc, deployment_names, auth_names)
        elif doc["kind"] == "TriggerAuthentication":
            check_trigger_authentication(doc, secrets)
        else:
            check_service_monitor(doc, of_kind(docs, "Service"))

    # One Deployment and PodDisruptionBudget per worker, with kqueue's settings.
    deployed = {d["metadata"]["name"]: d for d in worker_deployments(docs)}
    assert set(deployed) == set(workers)
    for name, w in workers.items():
        check_worker(deployed[name], w, metrics_port)
    pdbs = {d["metadata"]["name"]: d for d in of_kind(docs, "PodDisruptionBudget")}
    for name, w in workers.items():
        if not w["podDisruptionBudget"]["enabled"]:
            assert name not in pdbs
            continue
        pod_labels = deployed[name]["spec"]["template"]["metadata"]["labels"]
        assert pdbs[name]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    # Secrets: their values only in Secrets (or not rendered at all, for existing ones).
    secret_values = {str(v) for d in of_kind(docs, "Secret") for k, v in d.get("stringData", {}).items()
                     if SENSITIVE.search(k)}
    given_kafka = load_values(values)["given"].get("kafka", {})
    if given_kafka.get("sasl", {}).get("password"):
        secret_values.add(given_kafka["sasl"]["password"])
        assert any(given_kafka["sasl"]["password"] in json.dumps(s) for s in of_kind(docs, "Secret"))
    check_no_secret_values(docs, secret_values)

    # Autoscaling: capped by partitions, one trigger/metric per lane topic, replicas left to it.
    scalers = of_kind(docs, "ScaledObject") + of_kind(docs, "HorizontalPodAutoscaler")
    scaled = {name for name, w in workers.items() if mode != "none" and w["autoscaling"]["enabled"]}
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scalers} == scaled
    for scaler in scalers:
        target = scaler["spec"]["scaleTargetRef"]["name"]
        w = workers[target]
        check_autoscaler_cap(scaler, w)
        assert "replicas" not in deployed[target]["spec"], "an autoscaled Deployment must leave replicas alone"
        if scaler["kind"] == "ScaledObject":
            triggers = [t["metadata"] for t in scaler["spec"]["triggers"]]
            assert [t["topic"] for t in triggers] == lane_topics(w, prefix)
            assert {t["consumerGroup"] for t in triggers} == {w["group"]}
        else:
            selectors = [m["external"]["metric"]["selector"]["matchLabels"] for m in scaler["spec"]["metrics"]]
            assert [(s["queue"], s["lane"]) for s in selectors] == [
                (q, lane) for q in w["queues"] for lane in w["autoscaling"]["lanes"]]
            assert {s["group"] for s in selectors} == {w["group"]}
    for name, w in workers.items():
        if name not in scaled:
            assert deployed[name]["spec"]["replicas"] == w["replicas"]


@pytest.mark.parametrize(("values", "override", "members"), [
    ("keda-values.yaml", "workers[0].autoscaling.maxReplicas=13", "13 group members, more than the queue's 12"),
    ("keda-values.yaml", "workers[1].autoscaling.maxReplicas=4", "maxReplicas (4) x processes (2) = 8 group members"),
    ("hpa-values.yaml", "workers[0].autoscaling.maxReplicas=7", "7 group members, more than the queue's 6"),
])
def test_more_replicas_than_partitions_fails(helm: str, values: str, override: str, members: str) -> None:
    done = template(helm, CHART / "ci" / values, "--set", override)
    assert done.returncode != 0, f"helm template accepted {override}"
    assert members in done.stderr, done.stderr
    assert "a worker beyond the partition count owns nothing and idles" in done.stderr, done.stderr


@pytest.mark.parametrize(("override", "message"), [
    ("kafka.bootstrapServers=", "kafka.bootstrapServers is required"),
    ("kafka.sasl.password=oops", "kafka.existingSecret is set: put the SASL credentials in it"),
    ("kafka.existingSecret=", "needs credentials"),
])
def test_bad_kafka_settings_fail(helm: str, override: str, message: str) -> None:
    done = template(helm, CHART / "ci" / "tls-sasl-values.yaml", "--set", override)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_checks_catch_broken_objects(helm: str) -> None:
    """Every check above fails on an object broken the way it guards against."""
    values = CHART / "ci" / "tls-sasl-values.yaml"
    docs = list(rendered(helm, values))
    (w_name, w), = worker_settings(values).items()
    deploy = next(d for d in worker_deployments(docs) if d["metadata"]["name"] == w_name)
    scaled = of_kind(docs, "ScaledObject")[0]
    auth = of_kind(docs, "TriggerAuthentication")[0]
    secrets: dict[str, set[str] | None] = {"kafka-credentials": None, "kafka-ca": None}

    def container(d: Doc) -> Doc:
        return d["spec"]["template"]["spec"]["containers"][0]

    def env(d: Doc, name: str) -> Doc:
        return next(e for e in container(d)["env"] if e["name"] == name)

    breakages: list[tuple[str, Callable[[Doc], None], Callable[[Doc], Any]]] = [
        ("grace", lambda d: check_worker(d, w, 9400),
         lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=30)),
        ("liveness path", lambda d: check_worker(d, w, 9400),
         lambda d: container(d)["livenessProbe"]["httpGet"].update(path="/metrics")),
        ("readiness port", lambda d: check_worker(d, w, 9400),
         lambda d: container(d)["readinessProbe"]["httpGet"].update(port=8080)),
        ("liveness too eager", lambda d: check_worker(d, w, 9400),
         lambda d: container(d)["livenessProbe"].update(failureThreshold=3)),
        ("instance id", lambda d: check_worker(d, w, 9400),
         lambda d: env(d, "KQUEUE_INSTANCE_ID").update(valueFrom={"fieldRef": {"fieldPath": "metadata.uid"}})),
        ("root filesystem", lambda d: check_worker(d, w, 9400),
         lambda d: container(d)["securityContext"].update(readOnlyRootFilesystem=False)),
        ("plain password", lambda d: check_no_secret_values([d], set()),
         lambda d: container(d)["env"].append({"name": "KQUEUE_KAFKA_SASL_PASSWORD", "value": "hunter2"})),
        ("secret value", lambda d: check_no_secret_values([d], {"hunter2"}),
         lambda d: container(d)["args"].extend(["--note", "hunter2"])),
        ("schema", check_kubernetes_schema,
         lambda d: container(d).update(livenessProbes=container(d)["livenessProbe"])),
        ("cap", lambda d: check_autoscaler_cap(d, w), lambda d: d["spec"].update(maxReplicaCount=7)),
        ("keda target", lambda d: check_scaled_object(d, {w_name}, {auth["metadata"]["name"]}),
         lambda d: d["spec"]["scaleTargetRef"].update(name="elsewhere")),
        ("keda metadata", lambda d: check_scaled_object(d, {w_name}, {auth["metadata"]["name"]}),
         lambda d: d["spec"]["triggers"][0]["metadata"].update(lagThreshold=100)),
        ("keda auth", lambda d: check_trigger_authentication(d, secrets),
         lambda d: d["spec"]["secretTargetRef"].append({"parameter": "cert", "name": "kafka-ca", "key": "tls.crt"})),
        ("keda auth key", lambda d: check_trigger_authentication(d, secrets),
         lambda d: d["spec"]["secretTargetRef"][1].update(key="PASSWORD")),
    ]
    originals = {"grace": deploy, "cap": scaled, "keda target": scaled, "keda metadata": scaled, "keda auth": auth,
                 "keda auth key": auth}
    for what, check, breaks in breakages:
        original = originals.get(what, deploy)
        check(copy.deepcopy(original))  # the real object passes...
        broken = copy.deepcopy(original)
        breaks(broken)
        with pytest.raises(AssertionError):  # ...and the broken one does not
            check(broken)
            pytest.fail(f"check for {what} passed a broken object")  # pragma: no cover

    monitors = of_kind(rendered(helm, CHART / "ci" / "keda-values.yaml"), "ServiceMonitor")
    services = of_kind(rendered(helm, CHART / "ci" / "keda-values.yaml"), "Service")
    check_service_monitor(monitors[0], services)
    with pytest.raises(AssertionError):
        check_service_monitor(monitors[0], [])


def test_keda_oauthbearer_reads_each_oidc_setting_from_the_secret_that_holds_it(helm: str) -> None:
    docs = rendered(helm, CHART / "ci" / "oauth-keda-values.yaml")
    [auth] = [d for d in docs if d["kind"] == "TriggerAuthentication"]
    refs = {r["parameter"]: r["name"] for r in auth["spec"]["secretTargetRef"]}
    [chart_secret] = [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"]
    assert refs["username"] == refs["oauthTokenEndpointUri"] == chart_secret  # set in kafka.config
    assert refs["password"] == "my-kafka-secret"  # the client secret: only in the existing Secret
