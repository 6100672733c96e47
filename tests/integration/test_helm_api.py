"""The chart's API Deployment (helm/kqueue/templates/api.yaml): what it renders, what it refuses to
render, and, through a real broker, that `kqueue api` started with the rendered container's own
arguments and environment answers the rendered probes' paths.

The schema checks of every example (ci/api-values.yaml included) are in test_helm_chart.py.
"""

from __future__ import annotations

import copy
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.api import ApiProcess
from tests.support.helm import CHART, FULLNAME, Doc, arg_after, documents, helm_binary, template
from tests.support.kafka import unique
from tests.support.worker import wait_for

API = f"{FULLNAME}-api"
CHART_TOKEN_SECRET = f"{API}-token"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# What the kubelet sends: the pod's own address as Host, and no Authorization.
KUBELET_HEADERS = {"Host": "10.244.1.7:8080", "User-Agent": "kube-probe/1.30", "Accept": "*/*"}


@pytest.fixture(scope="session")
def helm() -> str:
    return helm_binary()


def render(helm: str, tmp_path: Path, api: Doc, bootstrap: str = "kafka:9092") -> list[Doc]:
    return documents(template(helm, write_values(tmp_path, api, bootstrap)))


def write_values(tmp_path: Path, api: Doc, bootstrap: str = "kafka:9092") -> Path:
    values = {"image": {"repository": "kqueue"}, "kafka": {"bootstrapServers": bootstrap},
              "api": {"enabled": True, "app": "shop.tasks:app", **api}}
    path = tmp_path / f"values-{secrets.token_hex(4)}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def api_deployment(docs: list[Doc]) -> Doc:
    [deploy] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == API]
    return deploy


def container_of(deploy: Doc) -> Doc:
    [container] = deploy["spec"]["template"]["spec"]["containers"]
    return container


def probe_target(container: Doc, probe: str) -> tuple[int, str]:
    """(container port, path) a probe GETs; a named port resolved through the container's ports."""
    assert probe in container, f"no {probe}"
    get = container[probe]["httpGet"]
    assert get.get("scheme", "HTTP") == "HTTP" and not get.get("httpHeaders"), get
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = get["port"]
    return (ports[port] if isinstance(port, str) else int(port)), get["path"]


def check_api(deploy: Doc, token: tuple[str, str] | None) -> None:
    """The API container listens where the kubelet and the Service reach it, is probed on routes
    `kqueue api` serves, writes only to mounted volumes, and gets its token (secret name, key) from a
    Secret; token None: rendered with allowNoToken."""
    pod = deploy["spec"]["template"]["spec"]
    container = container_of(deploy)
    assert "command" not in container, "the image's entrypoint (kqueue) must run"
    args = [str(a) for a in container["args"]]
    assert args[0] == "api", args
    host = arg_after(args, "--host")
    assert host in {"0.0.0.0", "::"} and host not in LOOPBACK, f"--host {host}: the kubelet cannot reach it"
    port = int(arg_after(args, "--port"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}, f"container ports {ports}, server on {port}"

    for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        assert probe_target(container, probe) == (port, path), f"{probe}: {container.get(probe)}"

    # The root filesystem is read-only: the status view's file must be on a mounted emptyDir.
    db = Path(arg_after(args, "--db"))
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    holder = [mounts[m] for m in mounts if db.parent == Path(m) or Path(m) in db.parents]
    assert holder and "emptyDir" in volumes[holder[0]], f"--db {db} is not on a writable volume ({mounts})"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    env = {e["name"]: e for e in container["env"]}
    if token is None:
        assert "--allow-no-token" in args, args
        assert "KQUEUE_API_TOKEN" not in env
    else:
        assert "--allow-no-token" not in args, args
        given = env.get("KQUEUE_API_TOKEN")
        assert given is not None, "no KQUEUE_API_TOKEN: every /api route would be open"
        assert "value" not in given, "the token given as a plain value"
        ref = given["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == token and not ref.get("optional", False), ref


def resolved_env(container: Doc, docs: list[Doc]) -> dict[str, str]:
    """The container's environment as Kubernetes would give it, secretKeyRefs read from the rendered Secrets."""
    secrets_by_name = {d["metadata"]["name"]: d.get("stringData", {}) for d in docs if d["kind"] == "Secret"}
    assert not container.get("envFrom"), "this test's values need no envFrom"
    env = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets_by_name[ref["name"]][ref["key"]]
    return env


def with_value(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def probe(port: int, path: str) -> int:
    """GET as the kubelet does (its Host is the pod's address; no token); the status code."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=KUBELET_HEADERS)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


# -- rendering -------------------------------------------------------------------------------------


def test_example_takes_the_token_from_an_existing_secret(helm: str) -> None:
    docs = documents(template(helm, CHART / "ci" / "api-values.yaml"))
    check_api(api_deployment(docs), ("shop-api-token", "token"))
    assert not [d for d in docs if d["kind"] == "Secret"], "an existing Secret needs no chart-made one"
    [service] = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == API]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_existing_secret_key_is_configurable(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"token": {"existingSecret": "vault-api", "secretKey": "bearer"}})
    check_api(api_deployment(docs), ("vault-api", "bearer"))


def test_token_value_goes_to_a_chart_secret_and_rolls_the_pods(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"token": {"value": "first-token"}})
    check_api(api_deployment(docs), (CHART_TOKEN_SECRET, "token"))
    [secret] = [d for d in docs if d["kind"] == "Secret"]
    assert secret["metadata"]["name"] == CHART_TOKEN_SECRET and secret["stringData"] == {"token": "first-token"}
    assert "first-token" not in yaml.safe_dump(api_deployment(docs))

    def checksum(token: str) -> str:
        deploy = api_deployment(render(helm, tmp_path, {"token": {"value": token}}))
        return str(deploy["spec"]["template"]["metadata"]["annotations"]["checksum/api-token"])

    assert checksum("first-token") == checksum("first-token") != checksum("second-token")


def test_no_token_refuses_to_render(helm: str, tmp_path: Path) -> None:
    done = template(helm, write_values(tmp_path, {}))
    assert done.returncode != 0, "rendered an API open to whoever reaches the Service"
    assert "api.enabled without a token" in done.stderr, done.stderr
    assert "api.token.existingSecret" in done.stderr and "api.allowNoToken=true" in done.stderr, done.stderr


def test_allow_no_token_passes_the_flag(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"allowNoToken": True})
    check_api(api_deployment(docs), None)
    assert not [d for d in docs if d["kind"] == "Secret"]


@pytest.mark.parametrize(("api", "message"), [
    ({"token": {"existingSecret": "a", "value": "b"}}, "set existingSecret (a Secret you made, preferred) or value"),
    ({"token": {"existingSecret": "a"}, "allowNoToken": True}, "api.allowNoToken is true but a token is set"),
    ({"token": {"existingSecret": "a", "secretKey": ""}}, "api.token.secretKey is empty"),
    ({"token": {"value": "t"}, "host": "127.0.0.1"}, "not loopback; use 0.0.0.0"),
    ({"token": {"value": "t"}, "env": [{"name": "KQUEUE_API_TOKEN", "value": "t"}]}, "api.env sets KQUEUE_API_TOKEN"),
])
def test_contradictory_api_settings_fail(helm: str, tmp_path: Path, api: Doc, message: str) -> None:
    done = template(helm, write_values(tmp_path, api))
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_check_api_catches_broken_deployments(helm: str) -> None:
    """check_api passes the rendered example and fails each way it could be broken."""
    deploy = api_deployment(documents(template(helm, CHART / "ci" / "api-values.yaml")))
    token = ("shop-api-token", "token")

    def args(d: Doc) -> list[Any]:
        return list(container_of(d)["args"])

    breakages: list[tuple[str, Callable[[Doc], Any]]] = [
        ("loopback", lambda d: container_of(d).update(args=with_value(args(d), "--host", "127.0.0.1"))),
        ("no host", lambda d: container_of(d).update(args=[a for a in args(d) if a not in ("--host", "0.0.0.0")])),
        ("port", lambda d: container_of(d).update(args=with_value(args(d), "--port", "9000"))),
        ("no liveness", lambda d: container_of(d).pop("livenessProbe")),
        ("readiness path", lambda d: container_of(d)["readinessProbe"]["httpGet"].update(path="/ready")),
        ("probe port", lambda d: container_of(d)["livenessProbe"]["httpGet"].update(port=9400)),
        ("db on root", lambda d: container_of(d).update(args=with_value(args(d), "--db", "/home/kqueue/s.db"))),
        ("token plain", lambda d: container_of(d)["env"][-1].update(value="t", valueFrom=None)),
        ("no token", lambda d: container_of(d).update(env=container_of(d)["env"][:-1])),
        ("open", lambda d: container_of(d)["args"].append("--allow-no-token")),
    ]
    check_api(copy.deepcopy(deploy), token)
    for what, breaks in breakages:
        broken = copy.deepcopy(deploy)
        breaks(broken)
        with pytest.raises(AssertionError):
            check_api(broken, token)
            pytest.fail(f"check_api passed a deployment broken by: {what}")  # pragma: no cover


# -- against the routes `kqueue api` really serves --------------------------------------------------


def test_rendered_probes_answer_on_a_real_kqueue_api(helm: str, bootstrap: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Render the chart for the test broker, start `kqueue api` with the container's args and env
    (only the port, to 0, and the status view's file, to tmp, replaced), and GET each probe's path
    as the kubelet would: all answer 200. The token from the rendered Secret guards /api."""
    queue = unique("helm-api")
    token = secrets.token_hex(16)
    docs = render(helm, tmp_path, {"app": "tests.apps.lifecycle:app", "token": {"value": token},
                                   "env": [{"name": "KQ_TEST_QUEUE", "value": queue}]}, bootstrap)
    deploy = api_deployment(docs)
    check_api(deploy, (CHART_TOKEN_SECRET, "token"))
    container = container_of(deploy)
    args = [str(a) for a in container["args"]]
    pod_port = int(arg_after(args, "--port"))
    env = resolved_env(container, docs)
    assert env["KQUEUE_API_TOKEN"] == token

    for name, value in env.items():
        if name != "KQUEUE_API_TOKEN":  # ApiProcess sets that one from token=
            monkeypatch.setenv(name, value)
    run_args = with_value(with_value(args[1:], "--port", "0"), "--db", str(tmp_path / "status.db"))
    # ApiProcess puts its own --app/--port/--db first; the rendered arguments after them win.
    with ApiProcess(env["KQUEUE_BOOTSTRAP_SERVERS"], env["KQ_TEST_QUEUE"], tmp_path / "status.db",
                    app=arg_after(args, "--app"), token=env["KQUEUE_API_TOKEN"], extra=tuple(run_args)) as api:
        assert api.url.startswith(f"http://{arg_after(args, '--host')}:"), api.url
        bound = int(api.url.rsplit(":", 1)[1])
        for name in ("startupProbe", "livenessProbe", "readinessProbe"):
            port, path = probe_target(container, name)
            assert port == pod_port, f"{name} probes port {port}, the server listens on {pod_port}"
            wait_for(lambda path=path: probe(bound, path) == 200, 60, f"{name} {path} to answer 200")
        assert probe(bound, "/livez") == 200 and probe(bound, "/readyz") == 200
        # The token the API got is the rendered Secret's (a route that reads only the status view).
        assert api.request("GET", f"/api/v1/tasks?queue={queue}", token="")[0] == 401
        assert api.request("GET", f"/api/v1/tasks?queue={queue}", token="wrong")[0] == 401
        assert api.request("GET", f"/api/v1/tasks?queue={queue}") == (200, [])
