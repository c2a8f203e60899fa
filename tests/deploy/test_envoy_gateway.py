"""deploy/envoy-gateway: the ext_proc Deployment/Service and the Envoy Gateway resources that
attach it to an HTTPRoute.

Core kinds are schema-checked with kubernetes-validate. The Envoy Gateway and Gateway API
kinds are CRDs, which kubernetes-validate has no schemas for (and we vendor none), so their
structure is asserted here: field names against the API of Envoy Gateway v1.3 (the first
release with `allowModeOverride`), values against extproc-config.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from deploy_helpers import (
    ENVOY_GATEWAY_DIR,
    container,
    find,
    kubernetes_versions,
    load_documents,
    load_one,
    parse_duration_s,
    pod_spec,
    validate_kubernetes,
)

from extproc.cli import build_parser
from extproc.config import Config, load_config, parse_hostport
from extproc.envoy_config import METADATA_NAMESPACE
from extproc.processors import MESSAGES_PATHS, default_registry
from extproc.processors.base import BACKEND_HEADER
from extproc.processors.count_tokens import COUNT_TOKENS_PATHS
from extproc.processors.models import MODELS_PATHS
from extproc.server import EXT_PROC_SERVICE

KUSTOMIZATION = load_one(ENVOY_GATEWAY_DIR / "kustomization.yaml")
DOCS = [
    doc for name in KUSTOMIZATION["resources"] for doc in load_documents(ENVOY_GATEWAY_DIR / name)
]
CORE_GROUPS = ("v1", "apps/v1", "policy/v1", "networking.k8s.io/v1")
EG = "gateway.envoyproxy.io/v1alpha1"
GATEWAY_API = "gateway.networking.k8s.io/v1"

# Field names of Envoy Gateway v1.3's ExtProc API (api/v1alpha1/ext_proc_types.go there).
EXTPROC_FIELDS = {
    "backendRefs",
    "backendSettings",
    "messageTimeout",
    "failOpen",
    "processingMode",
    "metadata",
}
PROCESSING_MODE_FIELDS = {"request", "response", "allowModeOverride"}
PHASE_FIELDS = {"body", "attributes"}
BODY_MODES = {"Streamed", "Buffered", "BufferedPartial"}
METADATA_FIELDS = {"accessibleNamespaces", "writableNamespaces"}

DEPLOYMENT = find(DOCS, "Deployment", "extproc")
POD = pod_spec(DEPLOYMENT)
EXTPROC = container(POD, "extproc")
POLICY = find(DOCS, "EnvoyExtensionPolicy")
(EXTPROC_POLICY,) = POLICY["spec"]["extProc"]
ROUTE = find(DOCS, "HTTPRoute")
CLIENT_POLICY = find(DOCS, "ClientTrafficPolicy")


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(str(ENVOY_GATEWAY_DIR / "extproc-config.yaml"), env={})


def core_resources() -> list[dict[str, Any]]:
    return [d for d in DOCS if d["apiVersion"] in CORE_GROUPS]


# ---- what the directory holds -----------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    manifests = {p.name for p in ENVOY_GATEWAY_DIR.glob("*.yaml")}
    assert set(KUSTOMIZATION["resources"]) == manifests - {
        "kustomization.yaml",
        "extproc-config.yaml",
    }


def test_resource_kinds() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in DOCS if d not in core_resources()}
    assert kinds == {
        (EG, "EnvoyExtensionPolicy"),
        (EG, "ClientTrafficPolicy"),
        (EG, "Backend"),
        (GATEWAY_API, "HTTPRoute"),
    }


@pytest.mark.parametrize("version", kubernetes_versions())
@pytest.mark.parametrize(
    "resource", core_resources(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}"
)
def test_core_resources_pass_the_kubernetes_schema(resource: dict[str, Any], version: str) -> None:
    validate_kubernetes(resource, version)


# ---- the ext_proc Deployment and Service ------------------------------------------------------


def test_extproc_serves_the_generated_config() -> None:
    args = build_parser().parse_args(EXTPROC["args"])
    assert args.command == "serve"
    (generated,) = KUSTOMIZATION["configMapGenerator"]
    key, _, source = generated["files"][0].partition("=")
    assert (ENVOY_GATEWAY_DIR / source).is_file()
    (mount,) = [m for m in EXTPROC["volumeMounts"] if args.config.startswith(m["mountPath"])]
    assert Path(args.config) == Path(mount["mountPath"]) / key
    volume = next(v for v in POD["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == generated["name"]


def test_service_reaches_the_grpc_port(config: Config) -> None:
    service = find(DOCS, "Service", "extproc")
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    container_ports = {p["name"]: p["containerPort"] for p in EXTPROC["ports"]}
    host, listen_port = parse_hostport(config.extproc_listen)
    assert host == "0.0.0.0"
    assert container_ports[port["targetPort"]] == listen_port


def test_probes_use_grpc_health(config: Config) -> None:
    _, port = parse_hostport(config.extproc_listen)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert EXTPROC[probe]["grpc"]["port"] == port, probe
    assert EXTPROC["readinessProbe"]["grpc"]["service"] == EXT_PROC_SERVICE


def test_grace_period_covers_prestop_and_drain(config: Config) -> None:
    sleep = EXTPROC["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert POD["terminationGracePeriodSeconds"] > int(sleep[1]) + config.timeouts.drain_s


def test_only_gateway_proxies_reach_the_grpc_port(config: Config) -> None:
    _, port = parse_hostport(config.extproc_listen)
    policy = find(DOCS, "NetworkPolicy", "extproc")
    rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == port for p in r["ports"])]
    assert rules and all(r.get("from") for r in rules), "the gRPC port must not be open to all"


def test_backend_keys_come_from_a_secret(config: Config) -> None:
    env = {e["name"]: e for e in EXTPROC.get("env", [])}
    for backend in config.backends:
        if backend.api_key_env:
            assert env[backend.api_key_env]["valueFrom"]["secretKeyRef"]["name"]


# ---- EnvoyExtensionPolicy ---------------------------------------------------------------------


def test_policy_uses_only_envoy_gateway_fields() -> None:
    assert set(EXTPROC_POLICY) <= EXTPROC_FIELDS
    mode = EXTPROC_POLICY["processingMode"]
    assert set(mode) <= PROCESSING_MODE_FIELDS
    for phase in ("request", "response"):
        assert set(mode[phase]) <= PHASE_FIELDS
        assert mode[phase]["body"] in BODY_MODES
    assert set(EXTPROC_POLICY["metadata"]) <= METADATA_FIELDS


def test_policy_targets_the_route_and_calls_the_extproc_service() -> None:
    (target,) = POLICY["spec"]["targetRefs"]
    assert target == {
        "group": "gateway.networking.k8s.io",
        "kind": "HTTPRoute",
        "name": ROUTE["metadata"]["name"],
    }
    (ref,) = EXTPROC_POLICY["backendRefs"]
    service = find(DOCS, "Service", ref["name"])
    assert ref.get("kind", "Service") == "Service"
    assert ref["port"] in {p["port"] for p in service["spec"]["ports"]}


def test_processing_mode_matches_what_the_processor_expects() -> None:
    # As the sidecar's rendered filter: whole request bodies, buffered JSON answers, and
    # the processor's per-request switch to Streamed for SSE.
    mode = EXTPROC_POLICY["processingMode"]
    assert mode["request"]["body"] == "Buffered"
    assert mode["response"]["body"] == "Buffered"
    assert mode["allowModeOverride"] is True
    assert EXTPROC_POLICY["failOpen"] is False


def test_message_timeout_matches_the_config(config: Config) -> None:
    timeout = parse_duration_s(EXTPROC_POLICY["messageTimeout"])
    assert timeout == config.timeouts.extproc_message_s


def test_processor_may_write_its_metadata_namespace() -> None:
    assert METADATA_NAMESPACE in EXTPROC_POLICY["metadata"]["writableNamespaces"]


# ---- HTTPRoute and Backend --------------------------------------------------------------------


def rule_matches(rule: dict[str, Any]) -> list[dict[str, Any]]:
    matches: list[dict[str, Any]] = rule["matches"]
    return matches


def route_rule_for(path: str) -> dict[str, Any] | None:
    """The first rule whose path match takes `path` (no headers), as Gateway API matches:
    PathPrefix by whole segments, Exact as is."""
    for rule in ROUTE["spec"]["rules"]:
        for match in rule_matches(rule):
            if "path" not in match or match.get("headers"):
                continue
            kind, value = match["path"]["type"], match["path"]["value"].rstrip("/")
            if kind == "Exact" and path == value:
                return rule
            if kind == "PathPrefix" and (path == value or path.startswith(value + "/")):
                return rule
    return None


@pytest.mark.parametrize("path", [
    *MESSAGES_PATHS, *COUNT_TOKENS_PATHS, *MODELS_PATHS,
    "/v1/models/claude-sonnet-4-5", "/anthropic/v1/models/Qwen/Qwen3-8B",
])
def test_route_sends_every_anthropic_path_to_the_processor(path: str) -> None:
    assert default_registry().lookup(path) is not None  # a path the processor serves
    rule = route_rule_for(path)
    assert rule is not None, f"no HTTPRoute rule matches {path}"
    assert POLICY["spec"]["targetRefs"][0]["name"] == ROUTE["metadata"]["name"]


@pytest.mark.parametrize("path", ["/v1/messagesX", "/v1/modelsfoo", "/anthropicx/v1/messages"])
def test_route_prefixes_match_whole_segments(path: str) -> None:
    assert route_rule_for(path) is None


def test_route_catches_each_backend_the_processor_names(config: Config) -> None:
    backends = {d["metadata"]["name"]: d for d in DOCS if d["kind"] == "Backend"}
    for backend in config.backends:
        header = {"type": "Exact", "name": BACKEND_HEADER, "value": backend.name}
        rules = [
            r
            for r in ROUTE["spec"]["rules"]
            if any(m.get("headers") == [header] and "path" not in m for m in rule_matches(r))
        ]
        assert len(rules) == 1, f"no rule for {BACKEND_HEADER}: {backend.name}"
        (ref,) = rules[0]["backendRefs"]
        assert ref["kind"] == "Backend" and ref["group"] == "gateway.envoyproxy.io"
        (endpoint,) = backends[ref["name"]]["spec"]["endpoints"]
        url = urlsplit(backend.base_url)
        assert (endpoint["fqdn"]["hostname"], endpoint["fqdn"]["port"]) == (url.hostname, url.port)
        assert ref["port"] == url.port


def test_route_timeouts_allow_long_generations(config: Config) -> None:
    for rule in ROUTE["spec"]["rules"]:
        assert parse_duration_s(rule["timeouts"]["request"]) >= config.timeouts.request_s


# ---- ClientTrafficPolicy ----------------------------------------------------------------------


def test_client_policy_is_on_the_routes_gateway() -> None:
    (parent,) = ROUTE["spec"]["parentRefs"]
    (target,) = CLIENT_POLICY["spec"]["targetRefs"]
    assert target == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": parent["name"],
    }


def test_clients_cannot_send_the_routing_header() -> None:
    early = CLIENT_POLICY["spec"]["headers"]["earlyRequestHeaders"]
    assert BACKEND_HEADER in early["remove"]


def test_buffer_limit_fits_the_largest_request(config: Config) -> None:
    limit = CLIENT_POLICY["spec"]["connection"]["bufferLimit"]
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    number, unit = (limit[:-2], limit[-2:]) if limit[-2:] in units else (limit, "")
    assert int(number) * units.get(unit, 1) >= config.limits.max_request_bytes
