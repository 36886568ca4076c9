"""deploy/k8s: every kustomization renders with `kubectl kustomize`, every object validates against the
Kubernetes 1.32 schemas (offline, strict: unknown fields fail), and the structure the design relies on
holds (probes, resources, security, autoscaling, disruption budgets, network paths, GPU, Qdrant cluster)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from deploy_support import (
    GRPC_SERVICES,
    INGEST_JOB,
    K8S,
    OVERLAYS,
    config_map,
    containers,
    kubectl,
    named,
    objects,
    render,
    workloads,
)

from artsearch.config import DEFAULT_PORTS

KUBERNETES_VERSION = "1.32.0"
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
RENDERED = {**OVERLAYS, "ingest-job": INGEST_JOB}

pytestmark = pytest.mark.skipif(
    kubectl() is None, reason="kubectl is not installed: the manifests cannot be rendered (kustomize)"
)

SERVICE_DEPLOYMENTS = (*GRPC_SERVICES, "gateway")
DEPLOYMENTS = (*SERVICE_DEPLOYMENTS, "triton")
PROMETHEUS = "monitoring/prometheus"
INGRESS_CONTROLLER = "ingress-nginx/ingress-nginx"
# Every network path the system uses, (from, to, port); nothing else may be allowed. Peers outside the
# namespace are "namespace/name"; "internet" is any public address (search by image URL).
ALLOWED_PATHS = {
    (INGRESS_CONTROLLER, "gateway", 8080),
    (PROMETHEUS, "gateway", 8080),
    ("gateway", "encoder", 50051),
    ("gateway", "search", 50052),
    ("gateway", "influence", 50053),
    ("gateway", "internet", 80),
    ("gateway", "internet", 443),
    ("ingest", "encoder", 50051),
    ("ingest", "search", 50052),
    ("ingest", "influence", 50053),
    ("encoder", "triton", 8001),
    ("search", "qdrant", 6333),
    ("qdrant", "qdrant", 6335),
    ("influence", "neo4j", 7687),
    (PROMETHEUS, "encoder", 9100),
    (PROMETHEUS, "search", 9100),
    (PROMETHEUS, "influence", 9100),
    (PROMETHEUS, "triton", 8002),
    (PROMETHEUS, "qdrant", 6333),
    ("*", "kube-system/kube-dns", 53),
}


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest) -> tuple[str, tuple[dict[str, Any], ...]]:
    return request.param, render(OVERLAYS[request.param])


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_kustomization_renders_and_validates_against_the_schemas(name: str):
    docs = render(RENDERED[name])
    assert docs, f"{name} rendered nothing"
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not errors, "\n".join(errors)


def test_the_tensorrt_component_renders_on_prod_and_selects_the_fp16_config(tmp_path: Path):
    # kustomize reads no file outside the kustomization's own folder tree: the combination lives inside.
    combined = K8S / "overlays" / f".test-prod-tensorrt-{tmp_path.name}"
    combined.mkdir()
    try:
        (combined / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "resources: [../prod]\ncomponents: [../../components/tensorrt-fp16]\n"
        )
        docs = render(combined)
    finally:
        shutil.rmtree(combined)
    triton = containers(named(docs, "Deployment", "triton"))[0]
    assert "--model-config-name=tensorrt-fp16" in triton["args"]
    assert "tensorrt-fp16.pbtxt" in config_map(docs, "triton-model-config")["data"]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def test_every_deployment_has_probes_resources_and_a_locked_down_security_context(overlay):
    _, docs = overlay
    assert {d["metadata"]["name"] for d in objects(docs, "Deployment")} == set(DEPLOYMENTS)
    for deployment in objects(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = _pod_spec(deployment)
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["serviceAccountName"] == name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in containers(deployment, init=True):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert security["seccompProfile"]["type"] == "RuntimeDefault", name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: {bound}"
        for container in containers(deployment):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{name} has no {probe}"


def test_grpc_services_use_native_grpc_probes_on_their_port(overlay):
    _, docs = overlay
    for service in GRPC_SERVICES:
        container = containers(named(docs, "Deployment", service))[0]
        port = DEFAULT_PORTS[service]
        assert {p["containerPort"] for p in container["ports"] if p["name"] == "grpc"} == {port}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, f"{service} {probe}"
        # Readiness asks for the service itself, e.g. artsearch.v1.SearchService.
        assert container["readinessProbe"]["grpc"]["service"] == f"artsearch.v1.{service.capitalize()}Service"


def test_grpc_services_are_headless_so_clients_round_robin_over_pods(overlay):
    _, docs = overlay
    for service in (*GRPC_SERVICES, "triton"):
        assert named(docs, "Service", service)["spec"]["clusterIP"] == "None", service
    assert named(docs, "Service", "gateway")["spec"].get("clusterIP") != "None"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def test_every_deployment_has_an_autoscaler_and_a_disruption_budget(overlay):
    _, docs = overlay
    autoscaled = {
        (h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
        for h in objects(docs, "HorizontalPodAutoscaler")
    }
    for deployment in objects(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        assert ("Deployment", name) in autoscaled, f"{name} has no HorizontalPodAutoscaler"
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        budgets = [p for p in objects(docs, "PodDisruptionBudget") if _selects(p["spec"]["selector"], labels)]
        assert len(budgets) == 1, f"{name}: {len(budgets)} PodDisruptionBudgets"


def test_triton_scales_on_the_queue_time_metric_of_the_adapter_rule(overlay):
    _, docs = overlay
    metrics = named(docs, "HorizontalPodAutoscaler", "triton")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods"]
    rule = (K8S / "prometheus-adapter" / "triton-rules.yaml").read_text()
    assert f'as: "{metrics[0]["pods"]["metric"]["name"]}"' in rule
    container = containers(named(docs, "Deployment", "triton"))[0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}


def _peers(rule: dict[str, Any], key: str) -> list[str]:
    names = []
    for peer in rule.get(key, []):
        if "ipBlock" in peer:
            names.append("internet" if peer["ipBlock"]["cidr"] == "0.0.0.0/0" else peer["ipBlock"]["cidr"])
            continue
        labels = peer.get("podSelector", {}).get("matchLabels", {})
        pod = labels.get("app.kubernetes.io/name") or labels.get("k8s-app") or "*"
        namespace = (
            peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
        )
        names.append(f"{namespace}/{pod}" if namespace else pod)
    return names


def allowed_paths(
    docs: tuple[dict[str, Any], ...],
) -> tuple[set[tuple[str, str, int]], set[tuple[str, str, int]]]:
    """(ingress paths, egress paths) the NetworkPolicies allow, as (from, to, port)."""
    ingress: set[tuple[str, str, int]] = set()
    egress: set[tuple[str, str, int]] = set()
    for policy in objects(docs, "NetworkPolicy"):
        spec = policy["spec"]
        subject = spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name", "*")
        for rule in spec.get("ingress", []):
            assert rule.get("from") and rule.get("ports"), f"{policy['metadata']['name']}: open ingress rule"
            ingress |= {(p, subject, port["port"]) for p in _peers(rule, "from") for port in rule["ports"]}
        for rule in spec.get("egress", []):
            assert rule.get("to") and rule.get("ports"), f"{policy['metadata']['name']}: open egress rule"
            egress |= {(subject, p, port["port"]) for p in _peers(rule, "to") for port in rule["ports"]}
    return ingress, egress


def test_network_policies_deny_by_default_and_allow_only_the_real_call_paths(overlay):
    _, docs = overlay
    deny = named(docs, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny.get("ingress") and not deny.get("egress")
    ingress, egress = allowed_paths(docs)
    assert ingress | egress == ALLOWED_PATHS
    # Inside the namespace both ends must allow a path: the sender's egress and the receiver's ingress.
    outside = {"internet", "*"}
    for path in ALLOWED_PATHS:
        sender, receiver, _ = path
        if "/" not in sender + receiver and not {sender, receiver} & outside:
            assert path in ingress and path in egress, path


def test_policies_select_pods_that_exist(overlay):
    _, docs = overlay
    pod_names = {
        w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] for w in workloads(docs)
    }
    pod_names.add("ingest")  # deploy/k8s/jobs/ingest
    for policy in objects(docs, "NetworkPolicy"):
        selected = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        assert selected is None or selected in pod_names, policy["metadata"]["name"]


def test_pods_meet_the_restricted_pod_security_standard(overlay):
    _, docs = overlay
    assert named(docs, "Namespace", "artsearch")["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"
    ] == ("restricted")
    for workload in [*workloads(docs), *workloads(render(INGEST_JOB))]:
        pod = _pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in containers(workload, init=True):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert "add" not in security["capabilities"]
        for volume in pod.get("volumes", []):
            assert not {"hostPath", "hostNetwork"} & set(volume), workload["metadata"]["name"]


def test_prod_triton_requests_a_gpu_and_dev_triton_runs_on_cpu():
    prod, dev = render(OVERLAYS["prod"]), render(OVERLAYS["dev"])
    prod_triton = containers(named(prod, "Deployment", "triton"))[0]["resources"]
    assert prod_triton["limits"]["nvidia.com/gpu"] == "1"
    assert "KIND_GPU" in config_map(prod, "triton-model-config")["data"]["config.pbtxt"]
    dev_triton = containers(named(dev, "Deployment", "triton"))[0]["resources"]
    assert "nvidia.com/gpu" not in dev_triton["limits"] | dev_triton["requests"]
    assert "KIND_CPU" in config_map(dev, "triton-model-config")["data"]["config.pbtxt"]


def test_dev_runs_single_replicas():
    dev = render(OVERLAYS["dev"])
    for workload in workloads(dev):
        assert workload["spec"]["replicas"] == 1, workload["metadata"]["name"]
    for autoscaler in objects(dev, "HorizontalPodAutoscaler"):
        assert autoscaler["spec"]["minReplicas"] == 1


def test_prod_runs_a_three_node_qdrant_cluster_matching_the_collection_layout():
    prod = render(OVERLAYS["prod"])
    qdrant = named(prod, "StatefulSet", "qdrant")
    nodes = qdrant["spec"]["replicas"]
    assert nodes == 3
    env = {e["name"]: e.get("value") for e in containers(qdrant)[0]["env"]}
    assert env["QDRANT__CLUSTER__ENABLED"] == "true"
    assert env["QDRANT__CLUSTER__P2P__PORT"] == "6335"
    script = containers(qdrant)[0]["args"][0]
    assert "--bootstrap" in script and "qdrant-0." in script
    headless = named(prod, "Service", "qdrant-headless")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert 6335 in {p["port"] for p in headless["ports"]}
    search = config_map(prod, "search-config")["data"]
    shards, replicas = int(search["QDRANT_SHARD_NUMBER"]), int(search["QDRANT_REPLICATION_FACTOR"])
    assert shards % nodes == 0, "shards spread evenly over the nodes"
    assert 2 <= replicas <= nodes, "every shard survives the loss of one node"
    assert 1 <= int(search["QDRANT_WRITE_CONSISTENCY"]) < replicas, "writes go on with a node down"


def test_prod_ships_no_placeholder_secret_and_dev_secret_has_every_referenced_key():
    assert not objects(render(OVERLAYS["prod"]), "Secret")
    dev = render(OVERLAYS["dev"])
    keys = set(named(dev, "Secret", "artsearch-secrets")["stringData"])
    referenced = {
        variable["valueFrom"]["secretKeyRef"]["key"]
        for workload in workloads(dev)
        for container in containers(workload, init=True)
        for variable in container.get("env", [])
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    assert referenced == keys


def test_variable_references_resolve_to_earlier_variables(overlay):
    """$(NAME) in env values and args expands only from variables defined before (else it stays literal)."""
    _, docs = overlay
    for rendered in (docs, render(INGEST_JOB)):
        for workload in workloads(rendered):
            for container in containers(workload, init=True):
                defined = {
                    name
                    for source in container.get("envFrom", [])
                    for name in config_map(rendered, source["configMapRef"]["name"].rsplit("-", 1)[0])["data"]
                }
                for variable in container.get("env", []):
                    for reference in REFERENCE.findall(variable.get("value") or ""):
                        assert reference in defined, (
                            f"{container['name']}: {variable['name']} uses $({reference})"
                        )
                    defined.add(variable["name"])
                for argument in container.get("args", []) + container.get("command", []):
                    for reference in REFERENCE.findall(argument):
                        assert reference in defined, f"{container['name']}: an argument uses $({reference})"


def test_ingest_job_is_indexed_and_shards_by_completion_index():
    job = named(render(INGEST_JOB), "Job", "ingest")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    args = containers(job)[0]["args"]
    assert args[0] == "ingest"
    assert args[args.index("--shard-index") + 1] == "$(JOB_COMPLETION_INDEX)"
    assert int(args[args.index("--shard-count") + 1]) == spec["completions"]
    mount = containers(job)[0]["volumeMounts"][0]
    assert mount == {"name": "catalogues", "mountPath": "/catalogues", "readOnly": True}


# ------------------------------------------------------------------------------------ transport security

# The gateway's routes that are for the public; everything else (/metrics, /healthz, /readyz) is for the
# cluster only (Prometheus and kubelet reach the pods directly).
PUBLIC_PATHS = (
    "/", "/static/app.js", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/v1/search",
    "/v1/artworks/some-id/similar", "/v1/artworks", "/v1/artists/path", "/v1/clusters",
)  # fmt: skip
CLUSTER_ONLY_PATHS = ("/metrics", "/metrics/", "/healthz", "/readyz", "/metrics/anything")


def _ingress_routes(path: str, rules: list[dict[str, Any]]) -> bool:
    """Whether an Ingress rule matches `path` (Kubernetes semantics: Exact is the whole path; Prefix matches
    whole path elements, so /v1 matches /v1 and /v1/search, not /v10)."""
    for rule in rules:
        for entry in rule["http"]["paths"]:
            wanted = entry["path"]
            if entry["pathType"] == "Exact" and path == wanted:
                return True
            if entry["pathType"] == "Prefix":
                elements = [e for e in wanted.split("/") if e]
                if [e for e in path.split("/") if e][: len(elements)] == elements:
                    return True
    return False


def test_the_ingress_serves_https_only_and_only_the_public_routes(overlay):
    _, docs = overlay
    ingress = named(docs, "Ingress", "gateway")
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    tls_hosts = {host for entry in ingress["spec"]["tls"] for host in entry["hosts"]}
    assert hosts <= tls_hosts and all(entry["secretName"] for entry in ingress["spec"]["tls"])
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    rules = ingress["spec"]["rules"]
    for path in PUBLIC_PATHS:
        assert _ingress_routes(path, rules), f"{path} is not routed"
    for path in CLUSTER_ONLY_PATHS:
        assert not _ingress_routes(path, rules), f"{path} is public"


def test_the_ingress_route_list_covers_every_public_route_of_the_gateway(overlay):
    from artsearch.config import Env
    from services.gateway.app import create_app
    from services.gateway.config import GatewayConfig

    settings = {"ENCODER_ADDR": "e:1", "SEARCH_ADDR": "s:1", "INFLUENCE_ADDR": "i:1"}
    app = create_app(GatewayConfig.from_env(Env(settings)))
    rules = named(overlay[1], "Ingress", "gateway")["spec"]["rules"]
    for route in app.routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        if path in ("/healthz", "/readyz", "/metrics"):
            assert not _ingress_routes(path, rules), path
        else:
            assert _ingress_routes(path, rules), f"the gateway's route {route.path} is not routed"


def _secret_key(container: dict[str, Any], variable: str) -> str | None:
    for entry in container.get("env", []):
        if entry["name"] == variable:
            return entry.get("valueFrom", {}).get("secretKeyRef", {}).get("key")
    return None


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_every_grpc_server_and_every_client_of_them_gets_the_service_token(name: str):
    docs = render(RENDERED[name])
    expected = {"encoder", "search", "influence", "gateway", "ingest"}
    found = set()
    for workload in workloads(docs) + objects(docs, "Job"):
        for container in containers(workload):
            if container["name"] in expected:
                assert _secret_key(container, "SERVICE_TOKEN") == "service-token", container["name"]
                found.add(container["name"])
    assert found == (expected & {"ingest"} if name == "ingest-job" else expected - {"ingest"})


def test_prod_turns_grpc_reflection_off_and_dev_keeps_it():
    for overlay, wanted in (("prod", "false"), ("dev", None)):
        docs = render(OVERLAYS[overlay])
        for service in GRPC_SERVICES:
            assert config_map(docs, f"{service}-config")["data"].get("GRPC_REFLECTION") == wanted, service


def test_prod_limits_each_client_on_the_image_routes_behind_the_ingress():
    data = config_map(render(OVERLAYS["prod"]), "gateway-config")["data"]
    assert int(data["PUBLIC_RATE_PER_MIN"]) > 0 and int(data["PUBLIC_MAX_CONCURRENT_PER_CLIENT"]) > 0
    # Behind the ingress every peer is the controller: without trusted proxies all clients would be one.
    assert data["TRUSTED_PROXIES"]
    dev = config_map(render(OVERLAYS["dev"]), "gateway-config")["data"]
    assert "PUBLIC_RATE_PER_MIN" not in dev
