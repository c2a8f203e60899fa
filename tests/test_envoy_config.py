"""envoy.yaml rendering: structure, checked-in examples, and `envoy --mode validate`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest
import yaml

from extproc.config import Config, ConfigError, load_config
from extproc.envoy_config import (
    EXAMPLES,
    MOCK_BACKEND,
    PROFILES,
    REPO_ROOT,
    bootstrap,
    bootstrap_v3,
    example_paths,
    regenerate,
    render_envoy_config,
    render_example,
)
from extproc.envoy_local_replies import replies
from extproc.envoy_render_fast import import_for_render
from extproc.mappings import STATUS_TO_ERROR_TYPE
from extproc.processors.base import BACKEND_HEADER

needs_envoy = pytest.mark.skipif(shutil.which("envoy") is None, reason="envoy binary not on PATH")

OPENAI = {"name": "vllm", "schema": "openai", "base_url": "http://127.0.0.1:8000/v1"}
ANTHROPIC = {"name": "glm", "schema": "anthropic", "base_url": "http://10.0.0.7:9000"}
HTTPS_DNS = {"name": "hosted", "base_url": "https://api.example.com/v1"}

CONFIGS: dict[str, dict[str, Any]] = {
    "no_backend": {},
    "one_backend": {"backends": [OPENAI]},
    "openai_and_anthropic": {"backends": [OPENAI, ANTHROPIC], "workers": 4},
    "https_dns": {"backends": [HTTPS_DNS], "access_log": "/tmp/extproc-access.log"},
}


def make(data: dict[str, Any]) -> Config:
    return Config.model_validate(data)


def listener(boot: dict[str, Any]) -> dict[str, Any]:
    (only,) = boot["static_resources"]["listeners"]
    return only  # type: ignore[no-any-return]


def manager(boot: dict[str, Any]) -> dict[str, Any]:
    (chain,) = listener(boot)["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]  # type: ignore[no-any-return]


def http_filter(boot: dict[str, Any], name: str) -> dict[str, Any]:
    for item in manager(boot)["http_filters"]:
        if item["name"] == name:
            return item["typed_config"]  # type: ignore[no-any-return]
    raise AssertionError(f"no http filter {name}")


def cluster(boot: dict[str, Any], name: str) -> dict[str, Any]:
    for item in boot["static_resources"]["clusters"]:
        if item["name"] == name:
            return item  # type: ignore[no-any-return]
    raise AssertionError(f"no cluster {name}")


def routes(boot: dict[str, Any]) -> list[dict[str, Any]]:
    (vhost,) = manager(boot)["route_config"]["virtual_hosts"]
    return vhost["routes"]  # type: ignore[no-any-return]


# ---- structure -----------------------------------------------------------------------------


def test_filters_are_ext_proc_then_router() -> None:
    names = [f["name"] for f in manager(bootstrap(make(CONFIGS["one_backend"])))["http_filters"]]
    # The buffer filter holds a metadata-routed request until ext_proc has answered its body.
    assert names == ["envoy.filters.http.ext_proc", "envoy.filters.http.buffer",
                     "envoy.filters.http.router"]
    classic = make(CONFIGS["one_backend"] | {"messages_routing": "headers"})
    names = [f["name"] for f in manager(bootstrap(classic))["http_filters"]]
    assert names == ["envoy.filters.http.ext_proc", "envoy.filters.http.router"]


def test_ext_proc_filter_lets_the_server_steer() -> None:
    config = make({"backends": [OPENAI], "timeouts": {"extproc_message_s": 2.5}})
    ext = http_filter(bootstrap(config), "envoy.filters.http.ext_proc")
    assert ext["allow_mode_override"] is True
    assert ext.get("failure_mode_allow", False) is False
    assert ext["grpc_service"]["envoy_grpc"]["cluster_name"] == "extproc"
    assert ext["message_timeout"] == "2.500s"
    mode = ext["processing_mode"]
    assert (mode["request_header_mode"], mode["request_body_mode"]) == ("SEND", "BUFFERED")
    assert (mode["response_header_mode"], mode["response_body_mode"]) == ("SEND", "BUFFERED")
    assert ext["metadata_options"]["receiving_namespaces"]["untyped"] == [
        "extproc", "extproc_credentials"]
    assert ext["mutation_rules"] == {"disallow_is_error": True}
    # What the processor learns when the messages routes skip the headers message.
    assert ext["request_attributes"] == ["request.path", "request.method", "request.id"]
    traced = make({"backends": [OPENAI], "tracing": {"otlp_endpoint": "http://127.0.0.1:4318/v1/traces"}})
    attributes = http_filter(bootstrap(traced), "envoy.filters.http.ext_proc")["request_attributes"]
    assert attributes[3:] == ["request.headers['traceparent']", "request.headers['tracestate']"]


def test_ext_proc_cluster_speaks_http2() -> None:
    boot = bootstrap(make(CONFIGS["one_backend"]))
    ext = cluster(boot, "extproc")
    options = ext["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}
    address = ext["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "127.0.0.1", "port_value": 50051}
    assert ext["type"] == "STATIC"


def test_several_ext_proc_workers_cap_streams_per_connection() -> None:
    boot = bootstrap(make(CONFIGS["openai_and_anthropic"]))
    options = cluster(boot, "extproc")["typed_extension_protocol_options"]
    http2 = next(iter(options.values()))["explicit_http_config"]["http2_protocol_options"]
    assert 0 < http2["max_concurrent_streams"] <= 64


def test_wildcard_extproc_listen_is_reached_over_loopback() -> None:
    boot = bootstrap(make({"extproc_listen": "0.0.0.0:6000"}))
    lb = cluster(boot, "extproc")["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert lb["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 6000,
    }


def test_one_route_per_backend_then_catch_all_to_the_first() -> None:
    config = make(CONFIGS["openai_and_anthropic"] | {"timeouts": {"request_s": 90}})
    table = routes(bootstrap(config))[-3:]  # after the messages routes (below)
    assert [r["name"] for r in table] == ["backend_vllm", "backend_glm", "default"]
    for route, backend in zip(table, config.backends, strict=False):
        assert route["match"]["prefix"] == "/"
        assert route["match"]["headers"] == [
            {"name": BACKEND_HEADER, "string_match": {"exact": backend.name}}
        ]
        assert route["route"]["cluster"] == backend.cluster
        assert route["route"]["host_rewrite_literal"] == backend.authority
        assert route["route"]["timeout"] == "90s"
    assert "headers" not in table[-1]["match"]
    assert table[-1]["route"]["cluster"] == "backend_vllm"
    for route in table:  # only the messages routes hold requests in the buffer filter
        assert route["typed_per_filter_config"]["envoy.filters.http.buffer"]["disabled"] is True
    classic = make(CONFIGS["openai_and_anthropic"] | {"messages_routing": "headers"})
    assert [r["name"] for r in routes(bootstrap(classic))] == [r["name"] for r in table]


def test_messages_routes_go_by_the_backend_named_in_metadata() -> None:
    config = make(CONFIGS["openai_and_anthropic"] | {"timeouts": {"request_s": 90}})
    vllm, glm, unprocessed = routes(bootstrap(config))[:3]
    assert [vllm["name"], glm["name"], unprocessed["name"]] == [
        "messages_backend_vllm", "messages_backend_glm", "messages_unprocessed"]
    for route, backend in ((vllm, "vllm"), (glm, "glm")):
        match = route["match"]
        assert match["safe_regex"]["regex"] == "/(v1/messages|anthropic/v1/messages)"
        assert match["headers"] == [{"name": ":method", "string_match": {"exact": "POST"}}]
        assert match["dynamic_metadata"] == [{
            "filter": "extproc", "path": [{"key": "backend"}],
            "value": {"string_match": {"exact": backend}},
        }]
        assert route["route"]["cluster"] == f"backend_{backend}"
        assert route["route"]["timeout"] == "90s"
        override = route["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["overrides"]
        assert override["processing_mode"]["request_header_mode"] == "SKIP"
    # What the processor's header edits do under `messages_routing: headers`, per backend.
    assert vllm["route"]["regex_rewrite"]["substitution"] == "/v1/chat/completions"
    assert glm["route"]["regex_rewrite"]["substitution"] == "/v1/messages"
    assert "anthropic-version" in vllm["request_headers_to_remove"]
    assert glm["request_headers_to_remove"] == ["x-api-key", "authorization"]
    added = {h["header"]["key"]: h["header"]["value"] for h in vllm["request_headers_to_add"]}
    assert added == {"content-type": "application/json",
                     "authorization": "%DYNAMIC_METADATA(extproc_credentials:authorization)%"}
    added = {h["header"]["key"]: h["header"]["value"] for h in glm["request_headers_to_add"]}
    assert added["x-api-key"] == "%DYNAMIC_METADATA(extproc_credentials:x-api-key)%"
    # A POST the processor never saw (no body) is answered by Envoy, in Anthropic JSON.
    assert unprocessed["direct_response"]["status"] == 400
    error = orjson.loads(unprocessed["direct_response"]["body"]["inline_string"])
    assert error["error"] == {"type": "invalid_request_error", "message": "request body is empty"}


def test_forwarded_client_keys_stay_on_the_messages_routes() -> None:
    config = make(CONFIGS["one_backend"] | {"forward_client_api_key": True})
    route = routes(bootstrap(config))[0]
    assert not {"x-api-key", "authorization"} & set(route["request_headers_to_remove"])
    assert [h["header"]["key"] for h in route["request_headers_to_add"]] == ["content-type"]


def test_no_backend_answers_404_in_anthropic_json() -> None:
    (route,) = routes(bootstrap(make(CONFIGS["no_backend"])))
    direct = route["direct_response"]
    assert direct["status"] == 404
    body = orjson.loads(direct["body"]["inline_string"])
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert route["response_headers_to_add"][0]["header"] == {
        "key": "content-type",
        "value": "application/json",
    }
    assert [c["name"] for c in bootstrap(make({}))["static_resources"]["clusters"]] == ["extproc"]


def test_routing_header_is_internal() -> None:
    hcm = manager(bootstrap(make(CONFIGS["one_backend"])))
    (early,) = hcm["early_header_mutation_extensions"]
    assert early["typed_config"]["mutations"] == [{"remove": BACKEND_HEADER}]
    assert hcm["route_config"]["virtual_hosts"][0]["request_headers_to_remove"] == [BACKEND_HEADER]


def test_every_answer_names_its_request_id_like_anthropic() -> None:
    # Anthropic's API answers with `request-id` (the SDKs' `_request_id`); ours is the
    # x-request-id that our logs and Envoy's access log carry, on every answer of the host.
    (host,) = manager(bootstrap(make(CONFIGS["one_backend"])))["route_config"]["virtual_hosts"]
    assert host["response_headers_to_add"] == [{
        "header": {"key": "request-id", "value": "%REQ(X-REQUEST-ID)%"},
        "append_action": "ADD_IF_ABSENT",  # an Anthropic-schema backend's own id is kept
    }]


def test_buffers_hold_a_whole_request() -> None:
    config = make({"backends": [OPENAI], "limits": {"max_request_bytes": 12345678}})
    boot = bootstrap(config)
    assert listener(boot)["per_connection_buffer_limit_bytes"] == 12345678
    vhost = manager(boot)["route_config"]["virtual_hosts"][0]
    assert int(vhost["request_body_buffer_limit"]) == 12345678
    assert cluster(boot, "backend_vllm")["per_connection_buffer_limit_bytes"] == 12345678


def test_connection_manager_timeouts_allow_long_streams() -> None:
    config = make({"backends": [OPENAI], "timeouts": {"stream_idle_s": 120, "connect_s": 2}})
    boot = bootstrap(config)
    hcm = manager(boot)
    assert hcm["stream_idle_timeout"] == "120s"
    assert hcm["request_timeout"] == "0s"
    assert hcm["generate_request_id"] is True
    assert hcm.get("codec_type", "AUTO") == "AUTO"  # proto default, omitted
    assert routes(boot)[0]["route"]["idle_timeout"] == "120s"
    assert cluster(boot, "backend_vllm")["connect_timeout"] == "2s"


def test_https_backend_with_dns_name() -> None:
    backend = cluster(bootstrap(make(CONFIGS["https_dns"])), "backend_hosted")
    assert "type" not in backend
    assert backend["cluster_type"]["name"] == "envoy.clusters.dns"
    assert backend["cluster_type"]["typed_config"]["dns_lookup_family"] == "V4_PREFERRED"
    address = backend["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "api.example.com", "port_value": 443}
    context = backend["transport_socket"]["typed_config"]
    assert context["sni"] == "api.example.com"
    validation = context["common_tls_context"]["validation_context"]
    assert validation["match_typed_subject_alt_names"][0]["matcher"] == {"exact": "api.example.com"}


def test_plain_http_backend_has_no_tls() -> None:
    backend = cluster(bootstrap(make(CONFIGS["one_backend"])), "backend_vllm")
    assert backend["type"] == "STATIC"
    assert "transport_socket" not in backend


def test_access_log_is_json_with_processor_metadata() -> None:
    (stdout,) = manager(bootstrap(make(CONFIGS["one_backend"])))["access_log"]
    assert stdout["name"] == "envoy.access_loggers.stdout"
    fields = stdout["typed_config"]["log_format"]["json_format"]
    assert fields["path"] == "%REQ(:PATH)%"
    assert fields["request_id"] == "%REQ(X-REQUEST-ID)%"
    assert fields["status"] == "%RESPONSE_CODE%"
    for key in ("model", "backend", "input_tokens", "output_tokens", "cache_read_tokens"):
        assert fields[key] == f"%DYNAMIC_METADATA(extproc:{key})%"
    (to_file,) = manager(bootstrap(make(CONFIGS["https_dns"])))["access_log"]
    assert to_file["typed_config"]["path"] == "/tmp/extproc-access.log"


# ---- local replies -------------------------------------------------------------------------


def test_local_replies_never_match_on_status_alone() -> None:
    """Processor immediate responses are local replies too (no flags, own details)."""
    config = make(CONFIGS["one_backend"])
    local = manager(bootstrap(config))["local_reply_config"]
    assert "body_format" not in local  # would rewrite every local reply
    for mapper in local["mappers"]:
        condition = mapper["filter"]
        assert set(condition) <= {"response_flag_filter", "extension_filter"}
        if "extension_filter" in condition:
            expression = condition["extension_filter"]["typed_config"]["expression"]
            assert "response.code_details" in expression


def test_local_reply_bodies_are_anthropic_errors() -> None:
    local = manager(bootstrap(make(CONFIGS["one_backend"])))["local_reply_config"]
    for mapper, reply in zip(local["mappers"], replies(make(CONFIGS["one_backend"])), strict=True):
        body = mapper["body_format_override"]
        assert body["content_type"] == "application/json"
        error = body["json_format"]
        assert error["type"] == "error"
        assert set(error["error"]) == {"type", "message"}
        if reply.status in STATUS_TO_ERROR_TYPE:
            assert error["error"]["type"] == STATUS_TO_ERROR_TYPE[reply.status]
        assert ("status_code" in mapper) is not reply.keep_status


def test_every_table_status_has_a_fallback() -> None:
    kept = {r.status for r in replies(make({})) if r.keep_status}
    assert set(STATUS_TO_ERROR_TYPE) <= kept


# ---- profiles ------------------------------------------------------------------------------


def test_compose_profile_uses_service_names() -> None:
    boot = bootstrap(make({}), "compose")
    assert listener(boot)["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    assert boot["admin"]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 9901}
    ext = cluster(boot, "extproc")
    assert ext["cluster_type"]["name"] == "envoy.clusters.dns"
    lb = ext["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert lb["endpoint"]["address"]["socket_address"] == {
        "address": "extproc",
        "port_value": 50051,
    }
    mock = cluster(boot, MOCK_BACKEND.cluster)
    lb = mock["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert lb["endpoint"]["address"]["socket_address"]["address"] == "mock-backend"
    # A configured backend replaces the mock.
    names = [
        c["name"]
        for c in bootstrap(make(CONFIGS["one_backend"]), "compose")["static_resources"]["clusters"]
    ]
    assert names == ["extproc", "backend_vllm"]


def test_kubernetes_profile_is_a_sidecar() -> None:
    boot = bootstrap(
        make(CONFIGS["one_backend"] | {"admin_listen": "127.0.0.1:9902"}), "kubernetes"
    )
    assert listener(boot)["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    assert boot["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9902,
    }
    lb = cluster(boot, "extproc")["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert lb["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 50051,
    }


def test_unknown_profile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--profile"):
        render_envoy_config(make({}), profile="swarm")


def test_listen_must_be_an_ip() -> None:
    with pytest.raises(ConfigError, match="listen"):
        bootstrap(make({"listen": "gateway.local:8080"}))
    boot = bootstrap(make({"listen": "localhost:8081"}))
    assert listener(boot)["address"]["socket_address"]["address"] == "127.0.0.1"


def test_render_is_yaml_of_the_bootstrap() -> None:
    config = make(CONFIGS["openai_and_anthropic"])
    text = render_envoy_config(config, profile="kubernetes")
    assert text.startswith("# Rendered by `extproc envoy-config --profile kubernetes`")
    assert yaml.safe_load(text) == bootstrap(config, "kubernetes")


# ---- the fast render `extproc up` runs (extproc/envoy_render_fast.py) ------------------------

TRACED = {"backends": [OPENAI], "tracing": {"otlp_endpoint": "http://127.0.0.1:4318/v1/traces"}}
FAST_RENDER = """
import sys, orjson, pydantic
from extproc.envoy_render_fast import import_for_render
assert import_for_render()
from extproc.config import Config
from extproc.envoy_config import bootstrap_v3, render_envoy_config
assert not pydantic.dataclasses.is_pydantic_dataclass(bootstrap_v3.Bootstrap)
cases = orjson.loads(sys.stdin.buffer.read())
renders = {f"{name} {profile}": render_envoy_config(Config.model_validate(data), profile=profile)
           for name, data in cases.items() for profile in sys.argv[1:]}
sys.stdout.buffer.write(orjson.dumps(renders))
"""


def test_fast_render_writes_the_validated_render() -> None:
    cases = {**CONFIGS, "traced": TRACED}
    result = subprocess.run(
        [sys.executable, "-c", FAST_RENDER, *PROFILES], input=orjson.dumps(cases),
        capture_output=True, timeout=60, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr.decode()
    fast = orjson.loads(result.stdout)
    validated = {f"{name} {profile}": render_envoy_config(make(data), profile=profile)
                 for name, data in cases.items() for profile in PROFILES}
    assert fast.keys() == validated.keys()
    for key, text in validated.items():
        assert fast[key] == text, key


def test_fast_flag_of_the_cli_renders_the_same(tmp_path: Path) -> None:
    source, _ = example_paths("local")
    result = subprocess.run(
        [sys.executable, "-m", "extproc", "envoy-config", "--fast", "--config", str(source)],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        env={key: value for key, value in os.environ.items() if not key.startswith("EXTPROC_")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_envoy_config(load_config(str(source), env={}))


def test_fast_import_leaves_an_imported_api_validated() -> None:
    assert import_for_render() is False
    assert pydantic.dataclasses.is_pydantic_dataclass(bootstrap_v3.Bootstrap)


# ---- checked-in examples -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_checked_in_example_matches_a_fresh_render(name: str) -> None:
    _, target = example_paths(name)
    assert target.read_text() == render_example(name), (
        f"{target} is stale: run `python -m extproc.envoy_config --regenerate`"
    )


def test_regenerate_writes_every_example(tmp_path: Path) -> None:
    for name in EXAMPLES:
        source, _ = example_paths(name)
        (tmp_path / "envoy" / "examples").mkdir(parents=True, exist_ok=True)
        shutil.copy(source, tmp_path / "envoy" / "examples" / source.name)
    written = regenerate(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{n}.yaml" for n in EXAMPLES)
    for name in EXAMPLES:
        assert (tmp_path / "envoy" / f"{name}.yaml").read_text() == example_paths(name)[
            1
        ].read_text()


# ---- envoy --mode validate -----------------------------------------------------------------


def validate(path: Path) -> None:
    result = subprocess.run(
        ["envoy", "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{path}:\n{result.stdout}\n{result.stderr}"


@needs_envoy
@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_envoy_accepts_every_profile(case: str, tmp_path: Path) -> None:
    for profile in PROFILES:
        path = tmp_path / f"{case}-{profile}.yaml"
        path.write_text(render_envoy_config(make(CONFIGS[case]), profile=profile))
        validate(path)


@needs_envoy
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_envoy_accepts_checked_in_example(name: str) -> None:
    validate(example_paths(name)[1])
