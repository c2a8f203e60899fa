"""deploy/kubernetes: schema-valid manifests that agree with the config, Envoy and each other.

Offline: kubernetes-validate ships the Kubernetes JSON schemas; kustomize itself is not run,
so the kustomization's references are checked here instead.
"""

from __future__ import annotations

import copy
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_helpers import (
    KUBERNETES_DIR,
    REPO,
    all_containers,
    container,
    envoy_binary,
    envoy_validate,
    find,
    kubernetes_versions,
    load_documents,
    load_one,
    pod_spec,
    python_snippet,
    run_snippet,
    snippet_constant,
    validate_kubernetes,
)

from extproc.cli import build_parser
from extproc.config import Config, load_config, parse_hostport
from extproc.envoy_config import render_envoy_config
from extproc.server import EXT_PROC_SERVICE

KUSTOMIZATION = load_one(KUBERNETES_DIR / "kustomization.yaml")
RESOURCES = {name: load_documents(KUBERNETES_DIR / name) for name in KUSTOMIZATION["resources"]}
DOCS = [doc for docs in RESOURCES.values() for doc in docs]
DEPLOYMENT = find(DOCS, "Deployment")
POD = pod_spec(DEPLOYMENT)
EXTPROC = container(POD, "extproc")
ENVOY = container(POD, "envoy")
CONFIG_FILE = KUBERNETES_DIR / "extproc-config.yaml"
ENVOY_FILE = KUBERNETES_DIR / "envoy.yaml"


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(str(CONFIG_FILE), env={})


@pytest.fixture(scope="module")
def envoy_bootstrap() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ENVOY_FILE.read_text())
    return loaded


def generator(name: str) -> dict[str, Any]:
    matches = [g for g in KUSTOMIZATION["configMapGenerator"] if g["name"] == name]
    assert len(matches) == 1, f"no configMapGenerator {name}"
    return matches[0]


def generator_files(name: str) -> dict[str, Path]:
    """ConfigMap key -> source file, as kustomize reads `key=path` or `path`."""
    files = {}
    for entry in generator(name)["files"]:
        key, _, source = entry.rpartition("=")
        files[key or Path(source).name] = KUBERNETES_DIR / source
    return files


def arg_after(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def mounted_configmap(spec: dict[str, Any], box: dict[str, Any], path: str) -> tuple[str, str]:
    """(ConfigMap name, key) that provides file `path` inside container `box`."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in box["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix) and "configMap" in volumes[mount["name"]]:
            return volumes[mount["name"]]["configMap"]["name"], path.removeprefix(prefix)
    raise AssertionError(f"{path} is not on a ConfigMap mount of {box['name']}")


def admin_url(bootstrap: dict[str, Any]) -> str:
    address = bootstrap["admin"]["address"]["socket_address"]
    return f"http://{address['address']}:{address['port_value']}"


def prestop_code() -> str:
    return python_snippet(ENVOY["lifecycle"]["preStop"]["exec"]["command"])


def readiness_code() -> str:
    return python_snippet(ENVOY["readinessProbe"]["exec"]["command"])


# ---- schemas and kustomization ------------------------------------------------------------


@pytest.mark.parametrize("version", kubernetes_versions())
@pytest.mark.parametrize("resource", DOCS, ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_manifests_pass_the_kubernetes_schema(resource: dict[str, Any], version: str) -> None:
    validate_kubernetes(resource, version)


def test_kustomization_lists_every_manifest_in_the_base() -> None:
    manifests = {p.name for p in KUBERNETES_DIR.glob("*.yaml")}
    not_resources = {"kustomization.yaml", "extproc-config.yaml", "envoy.yaml"}
    assert set(KUSTOMIZATION["resources"]) == manifests - not_resources


def test_generated_configmaps_read_files_inside_the_base() -> None:
    # kustomize refuses files outside the kustomization's directory.
    for gen in KUSTOMIZATION["configMapGenerator"]:
        for key, source in generator_files(gen["name"]).items():
            assert source.resolve().parent == KUBERNETES_DIR.resolve(), source
            assert source.is_file(), f"{gen['name']}/{key}: {source} missing"


def test_images_transformer_names_the_image_the_containers_use() -> None:
    names = {image["name"] for image in KUSTOMIZATION["images"]}
    assert {c["image"] for c in all_containers(POD)} <= names


# ---- config files: mounted where the commands look --------------------------------------------


def test_extproc_reads_the_generated_config() -> None:
    args = build_parser().parse_args(EXTPROC["args"])
    assert args.command == "serve"
    name, key = mounted_configmap(POD, EXTPROC, args.config)
    assert generator_files(name)[key] == CONFIG_FILE


def test_envoy_reads_the_generated_bootstrap() -> None:
    assert ENVOY["command"] == ["envoy"]
    name, key = mounted_configmap(POD, ENVOY, arg_after(ENVOY["args"], "-c"))
    assert generator_files(name)[key] == ENVOY_FILE


def test_envoy_yaml_is_rendered_from_the_extproc_config(config: Config) -> None:
    expected = render_envoy_config(config, profile="kubernetes")
    assert ENVOY_FILE.read_text() == expected, (
        "deploy/kubernetes/envoy.yaml is stale; regenerate it with: extproc envoy-config "
        "--profile kubernetes --config deploy/kubernetes/extproc-config.yaml "
        "> deploy/kubernetes/envoy.yaml"
    )


def test_envoy_accepts_the_bootstrap(tmp_path: Path) -> None:
    result = envoy_validate(ENVOY_FILE.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


# ---- the ext_proc sidecar ---------------------------------------------------------------------


def test_extproc_is_a_native_sidecar_started_before_envoy() -> None:
    assert EXTPROC in POD["initContainers"]
    assert EXTPROC["restartPolicy"] == "Always"
    assert ENVOY in POD["containers"]


def test_probes_use_grpc_health_on_the_extproc_port(config: Config) -> None:
    _, port = parse_hostport(config.extproc_listen)
    ports = {p["name"]: p["containerPort"] for p in EXTPROC["ports"]}
    assert ports["grpc"] == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert EXTPROC[probe]["grpc"]["port"] == port, probe
    # Ready means "takes ext_proc streams"; alive only means the server answers.
    assert EXTPROC["startupProbe"]["grpc"]["service"] == EXT_PROC_SERVICE
    assert EXTPROC["readinessProbe"]["grpc"]["service"] == EXT_PROC_SERVICE
    assert EXTPROC["livenessProbe"]["grpc"]["service"] == ""


def test_extproc_listens_where_kubelet_and_envoy_can_reach_it(
    config: Config, envoy_bootstrap: dict[str, Any]
) -> None:
    host, port = parse_hostport(config.extproc_listen)
    assert host == "0.0.0.0", "kubelet's gRPC probes dial the pod IP"
    cluster = next(
        c for c in envoy_bootstrap["static_resources"]["clusters"] if c["name"] == "extproc"
    )
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": port}


def test_backend_keys_come_from_a_secret(config: Config) -> None:
    env = {e["name"]: e for e in EXTPROC.get("env", [])}
    for backend in config.backends:
        if backend.api_key_env:
            source = env[backend.api_key_env]["valueFrom"]["secretKeyRef"]
            assert source["name"] and source["key"], backend.name


# ---- Envoy: readiness, drain, shutdown budget --------------------------------------------------


def test_envoy_hooks_talk_to_the_admin_address_in_envoy_yaml(
    envoy_bootstrap: dict[str, Any],
) -> None:
    admin = admin_url(envoy_bootstrap)
    assert f'"{admin}/ready"' in readiness_code()
    assert snippet_constant(prestop_code(), "ADMIN") == f'"{admin}"'


def test_prestop_watches_the_listener_stat_envoy_yaml_defines(
    envoy_bootstrap: dict[str, Any],
) -> None:
    manager = envoy_bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    prefix = manager["typed_config"]["stat_prefix"]
    expected = f'"http.{prefix}.downstream_rq_active"'
    assert snippet_constant(prestop_code(), "STAT") == expected


def test_prestop_settles_for_envoys_drain_time() -> None:
    settle, _ = snippet_constant(prestop_code(), "SETTLE_S, DEADLINE_S").split(", ")
    assert int(settle) == int(arg_after(ENVOY["args"], "--drain-time-s"))


def test_grace_period_covers_prestop_then_extproc_drain(config: Config) -> None:
    # Native sidecars stop after the main containers, inside the same grace period.
    _, deadline = snippet_constant(prestop_code(), "SETTLE_S, DEADLINE_S").split(", ")
    grace = POD["terminationGracePeriodSeconds"]
    assert grace > config.timeouts.drain_s
    assert grace > int(deadline) + config.timeouts.drain_s


def test_python_snippets_compile() -> None:
    for name, code in (("readiness", readiness_code()), ("preStop", prestop_code())):
        compile(code, name, "exec")


def _loopback_only(bootstrap: dict[str, Any]) -> dict[str, Any]:
    """The same bootstrap on ephemeral loopback ports, every cluster a static 127.0.0.1."""
    bootstrap["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    for listener in bootstrap["static_resources"]["listeners"]:
        listener["address"]["socket_address"].update(address="127.0.0.1", port_value=0)
    for cluster in bootstrap["static_resources"]["clusters"]:
        cluster.pop("cluster_type", None)
        cluster.pop("transport_socket", None)
        cluster["type"] = "STATIC"
        for group in cluster["load_assignment"]["endpoints"]:
            for lb in group["lb_endpoints"]:
                lb["endpoint"]["address"]["socket_address"]["address"] = "127.0.0.1"
    return bootstrap


def _stat(admin: str, name: str) -> int:
    text = urllib.request.urlopen(f"{admin}/stats?filter={name}", timeout=2).read().decode()
    values = dict(line.split(": ", 1) for line in text.splitlines())
    return int(values[name])


@pytest.mark.e2e
def test_readiness_and_prestop_drive_a_real_envoy(
    envoy_bootstrap: dict[str, Any], tmp_path: Path
) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(yaml.safe_dump(_loopback_only(copy.deepcopy(envoy_bootstrap))))
    args = list(ENVOY["args"])
    args[args.index("-c") + 1] = str(config)
    args[args.index("--drain-time-s") + 1] = "1"
    address_file = tmp_path / "admin-address"
    command = [envoy_binary(), *args, "--admin-address-path", str(address_file)]
    log = (tmp_path / "envoy.log").open("w")
    envoy = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not (address_file.exists() and address_file.read_text().strip()):
            assert envoy.poll() is None and time.monotonic() < deadline, "Envoy did not start"
            time.sleep(0.05)
        admin = "http://" + address_file.read_text().strip()
        original_admin = admin_url(envoy_bootstrap)

        ready = readiness_code().replace(original_admin, admin)
        while (result := run_snippet(ready)).returncode != 0:
            assert time.monotonic() < deadline, f"never ready: {result.stderr[-500:]}"
            time.sleep(0.1)

        prestop = prestop_code().replace(original_admin, admin)
        prestop = re.sub(
            r"^SETTLE_S, DEADLINE_S = .*$",
            "SETTLE_S, DEADLINE_S = 0, 10",
            prestop,
            flags=re.MULTILINE,
        )
        result = run_snippet(prestop)
        # Exit 0 also proves the stat it waits on exists (a missing stat exits non-zero).
        assert result.returncode == 0, result.stderr[-2000:]

        # The drain took: after --drain-time-s the ingress listener stops accepting.
        while _stat(admin, "listener_manager.listener_stopped") == 0:
            assert time.monotonic() < deadline + 10, "listener never stopped draining"
            time.sleep(0.1)
        assert _stat(admin, "listener_manager.listener_stopped") == 1
    finally:
        envoy.terminate()
        envoy.wait(timeout=10)
        log.close()


# ---- Service, HPA, PDB, NetworkPolicy ----------------------------------------------------------


def pod_labels() -> dict[str, str]:
    labels: dict[str, str] = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    return labels


def selects_pods(selector: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= pod_labels().items()


def test_deployment_selector_matches_its_pods() -> None:
    assert selects_pods(DEPLOYMENT["spec"]["selector"]["matchLabels"])


def test_service_sends_port_8080_to_envoys_listener(envoy_bootstrap: dict[str, Any]) -> None:
    service = find(DOCS, "Service")
    assert selects_pods(service["spec"]["selector"])
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8080
    envoy_ports = {p["name"]: p["containerPort"] for p in ENVOY["ports"]}
    listener = envoy_bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert envoy_ports[port["targetPort"]] == listener["port_value"] == 8080


def test_hpa_scales_the_deployment_on_cpu() -> None:
    hpa = find(DOCS, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        DEPLOYMENT["apiVersion"],
        "Deployment",
        DEPLOYMENT["metadata"]["name"],
    )
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] >= 2
    # The HPA owns the replica count; a fixed one would be reset on every apply.
    assert "replicas" not in DEPLOYMENT["spec"]


def test_every_container_requests_cpu_for_the_hpa() -> None:
    for box in all_containers(POD):
        assert box["resources"]["requests"]["cpu"], box["name"]
        assert box["resources"]["limits"]["memory"], box["name"]


def test_disruption_budget_covers_the_pods() -> None:
    pdb = find(DOCS, "PodDisruptionBudget")
    assert selects_pods(pdb["spec"]["selector"]["matchLabels"])
    assert pdb["spec"]["maxUnavailable"] == 1


def test_network_policy_keeps_the_extproc_port_private(config: Config) -> None:
    policy = find(DOCS, "NetworkPolicy")
    assert selects_pods(policy["spec"]["podSelector"]["matchLabels"])
    open_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    _, extproc_port = parse_hostport(config.extproc_listen)
    assert 8080 in open_ports
    assert extproc_port not in open_ports


# ---- security ---------------------------------------------------------------------------------


def dockerfile_uid() -> int:
    match = re.search(r"^USER (\d+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "Dockerfile sets no numeric USER"
    return int(match.group(1))


def test_pod_runs_as_the_images_non_root_user() -> None:
    context = POD["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == dockerfile_uid() != 0
    assert POD["automountServiceAccountToken"] is False
    assert POD["enableServiceLinks"] is False


def test_containers_are_locked_down() -> None:
    for box in all_containers(POD):
        context = box["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, box["name"]
        assert context["allowPrivilegeEscalation"] is False, box["name"]
        assert context["capabilities"]["drop"] == ["ALL"], box["name"]


def test_backend_urls_use_cluster_dns_names(config: Config) -> None:
    # Envoy resolves these with its DNS cluster; an IP would pin a pod address.
    for backend in config.backends:
        assert not re.fullmatch(r"[\d.]+", urlsplit(backend.base_url).hostname or "")
