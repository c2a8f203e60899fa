"""Render envoy.yaml from our Config, typed with envoy-data-plane (betterproto2 Envoy API).

`extproc envoy-config` prints `render_envoy_config(config, profile=...)`. The checked-in
envoy/*.yaml examples come from envoy/examples/*.config.yaml through `EXAMPLES`; regenerate
them with `python -m extproc.envoy_config --regenerate` (tests/test_envoy_config.py fails on
drift and runs `envoy --mode validate` on them).

Facts measured with Envoy 1.40 (the important ones are pinned by tests):
- Messages routing (`_messages_routes`): with the request-headers message skipped, Envoy sends
  the body with the configured request attributes (CEL, `request.headers['x']` works), routes
  the headers on at once unless a later filter (the buffer filter) holds them, applies no header
  edits from the body answer, and clears the route cache only for an answer that carries a
  header mutation; routes may match on dynamic metadata set by that answer, and the buffer
  filter writes the content-length of the body it releases.
- Routing: a request first matches the catch-all route; the processor sets
  `x-extproc-backend` with `clear_route_cache` while answering the buffered request body, and
  Envoy re-matches to that backend's route. The default mutation rules already allow
  `:path`, `content-length`, `authorization`, removing `x-api-key`, and our header;
  `allow_all_routing` is not needed since the route rewrites the host (`host_rewrite_literal`).
- Dynamic metadata from a ProcessingResponse lands in the namespace named by the struct's
  top-level key (`{"extproc": {"model": ...}}` -> `%DYNAMIC_METADATA(extproc:model)%`), from
  any phase, but only for namespaces listed in `metadata_options.receiving_namespaces`;
  others are dropped silently.
- `grpc_service.timeout` does not bound ext_proc streams; `message_timeout` bounds each answer.
- Local replies: see extproc/envoy_local_replies.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import betterproto2
import yaml
from envoy_data_plane.envoy.config.accesslog import v3 as accesslog
from envoy_data_plane.envoy.config.bootstrap import v3 as bootstrap_v3
from envoy_data_plane.envoy.config.common.mutation_rules import v3 as mutation_rules
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.listener import v3 as listener_v3
from envoy_data_plane.envoy.config.overload import v3 as overload
from envoy_data_plane.envoy.config.route import v3 as route_v3
from envoy_data_plane.envoy.extensions.access_loggers.file import v3 as file_log
from envoy_data_plane.envoy.extensions.access_loggers.stream import v3 as stream_log
from envoy_data_plane.envoy.extensions.filters.http.buffer import v3 as buffer_filter
from envoy_data_plane.envoy.extensions.filters.http.ext_proc import v3 as ext_proc
from envoy_data_plane.envoy.extensions.filters.http.router import v3 as router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.envoy.extensions.http.early_header_mutation.header_mutation import (
    v3 as early_mutation,
)
from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections import (
    v3 as downstream_connections,
)
from envoy_data_plane.envoy.type.matcher import v3 as matcher
from envoy_data_plane.google.protobuf import Any as AnyProto
from envoy_data_plane.google.protobuf import Struct

from extproc.config import Backend, Config, ConfigError, load_config, parse_hostport
from extproc.envoy_clusters import (
    EXTPROC_CLUSTER,
    backend_cluster,
    extproc_cluster,
    is_ip,
    socket_address,
)
from extproc.envoy_local_replies import empty_body_error, local_reply_config, no_backend_body
from extproc.processors import MESSAGES_PATHS
from extproc.processors.base import BACKEND_HEADER
from extproc.processors.routing import (
    CREDENTIALS_NAMESPACE,
    credential_header,
    dropped_headers,
    upstream_path,
)
from extproc.service.attributes import EXT_PROC_FILTER, request_attributes
from extproc.telemetry import METADATA_NAMESPACE

PROFILES = ("local", "compose", "kubernetes")
# Dynamic metadata the processor writes (fields: extproc/telemetry.py). Besides the access
# log, Envoy's rate limits can count tokens: a route `rate_limits` entry with
# `apply_on_stream_done: true` and `hits_addend: {format: "%DYNAMIC_METADATA(extproc:total_tokens)%"}`
# charges each finished request its token total against the descriptor's budget.
LOGGED_METADATA = (
    "model", "requested_model", "backend",
    "input_tokens", "cache_read_tokens", "output_tokens", "total_tokens",
)
# Compose runs the mock backend as its own service when no backend is configured.
MOCK_BACKEND = Backend(name="mock", base_url="http://mock-backend:8000/v1")
EXTPROC_PORT = 50051
# Claude Code sends ~2 KiB of headers; Envoy's default (60 KiB) would do, this leaves room
# for long `anthropic-beta` lists and proxies that add their own.
MAX_REQUEST_HEADERS_KB = 96
MAX_DOWNSTREAM_CONNECTIONS = 50_000

# Checked-in examples: envoy/<name>.yaml <- envoy/examples/<name>.config.yaml + profile.
EXAMPLES = {"local": "local", "compose": "compose", "kubernetes": "kubernetes"}
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Placement:
    """Where each part lives under one profile: the only thing profiles change."""

    listen: tuple[str, int]
    admin: tuple[str, int]
    extproc: tuple[str, int]
    backends: tuple[Backend, ...]


def placement(config: Config, profile: str) -> Placement:
    if profile == "local":
        host, port = parse_hostport(config.extproc_listen)
        # A wildcard bind address is not a destination: connect over loopback.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return Placement(
            parse_hostport(config.listen),
            parse_hostport(config.admin_listen),
            (host, port),
            config.backends,
        )
    if profile == "compose":
        # Containers: listen on all interfaces; services find each other by name.
        return Placement(
            ("0.0.0.0", 8080),
            ("0.0.0.0", 9901),
            ("extproc", EXTPROC_PORT),
            config.backends or (MOCK_BACKEND,),
        )
    if profile == "kubernetes":
        # Sidecar: ext_proc shares the pod's loopback; admin stays where configured.
        return Placement(
            ("0.0.0.0", 8080),
            parse_hostport(config.admin_listen),
            ("127.0.0.1", EXTPROC_PORT),
            config.backends,
        )
    raise ConfigError(f"--profile: expected one of {', '.join(PROFILES)}, got {profile!r}")


def _bind_address(host: str, port: int, what: str) -> core.Address:
    host = "127.0.0.1" if host == "localhost" else host
    if not is_ip(host):
        raise ConfigError(f"{what}: Envoy binds to an IP address, got {host!r}")
    return socket_address(host, port)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


# ---- routes --------------------------------------------------------------------------------


def _forward(
    config: Config, backend: Backend, rewrite: matcher.RegexMatchAndSubstitute | None = None
) -> route_v3.RouteAction:
    return route_v3.RouteAction(
        cluster=backend.cluster,
        # Bounds the whole backend response, streamed or not; idle_timeout bounds silence.
        timeout=_seconds(config.timeouts.request_s),
        idle_timeout=_seconds(config.timeouts.stream_idle_s),
        host_rewrite_literal=backend.authority,
        regex_rewrite=rewrite,
    )


def _routes(config: Config, backends: Sequence[Backend]) -> list[route_v3.Route]:
    """One route per backend keyed on the routing header, then a catch-all.

    Requests arrive without the header and match the catch-all; the processor adds the
    header and clears the route cache, and Envoy re-matches. Paths the processor leaves
    alone stay on the catch-all, which sends them to the first backend untouched.
    With `messages_routing: metadata`, `POST /v1/messages` has routes of its own first
    (`_messages_routes`).
    """
    everything = route_v3.RouteMatch(prefix="/")
    if not backends:
        return [
            route_v3.Route(
                name="no_backend",
                match=everything,
                direct_response=route_v3.DirectResponseAction(
                    status=404, body=core.DataSource(inline_string=no_backend_body())
                ),
                response_headers_to_add=[_set_header("content-type", "application/json")],
            )
        ]
    by_header = [
        route_v3.Route(
            name=backend.cluster,
            match=route_v3.RouteMatch(
                prefix="/",
                headers=[
                    route_v3.HeaderMatcher(
                        name=BACKEND_HEADER, string_match=matcher.StringMatcher(exact=backend.name)
                    )
                ],
            ),
            route=_forward(config, backend),
        )
        for backend in backends
    ]
    default = route_v3.Route(name="default", match=everything, route=_forward(config, backends[0]))
    if config.messages_routing == "headers":
        return [*by_header, default]
    # The buffer filter holds requests for the messages routes only (see _messages_routes).
    unbuffered = {BUFFER_FILTER: AnyProto.pack(buffer_filter.BufferPerRoute(disabled=True))}
    for route in (*by_header, default):
        route.typed_per_filter_config = unbuffered
    return [*_messages_routes(config, backends), *by_header, default]


# `POST /v1/messages` (either prefix; the query string takes no part in matching).
_MESSAGES_PATH = "|".join(path.removeprefix("/") for path in MESSAGES_PATHS)
_MESSAGES_REGEX = f"/({_MESSAGES_PATH})"


def _messages_routes(config: Config, backends: Sequence[Backend]) -> list[route_v3.Route]:
    """`messages_routing: metadata`: three ext_proc messages per request instead of four.

    Envoy skips the request-headers message on these routes (the processor learns path,
    method and request id from request attributes on the body message) and the buffer
    filter holds the headers until the processor has answered the body. That answer cannot
    edit headers (Envoy applies header edits only to headers it sent); it names the backend
    in dynamic metadata instead and clears the route cache, and the backend's route below
    does what the header edits would: path, credentials (from metadata, so a rotated key
    applies at once), the client's headers removed. A body-less POST reaches the entry
    route unprocessed and gets an Anthropic error.
    """
    post = route_v3.HeaderMatcher(name=":method", string_match=matcher.StringMatcher(exact="POST"))
    skip_headers = {EXT_PROC_FILTER: AnyProto.pack(ext_proc.ExtProcPerRoute(
        overrides=ext_proc.ExtProcOverrides(processing_mode=_processing_mode(send_headers=False))
    ))}
    routes = []
    for backend in backends:
        anthropic = backend.schema_ == "anthropic"
        credential = credential_header(anthropic_schema=anthropic)
        routes.append(route_v3.Route(
            name=f"messages_{backend.cluster}",
            match=route_v3.RouteMatch(
                safe_regex=matcher.RegexMatcher(regex=_MESSAGES_REGEX),
                headers=[post],
                dynamic_metadata=[matcher.MetadataMatcher(
                    filter=METADATA_NAMESPACE,
                    path=[matcher.MetadataMatcherPathSegment(key="backend")],
                    value=matcher.ValueMatcher(
                        string_match=matcher.StringMatcher(exact=backend.name)
                    ),
                )],
            ),
            route=_forward(config, backend, rewrite=matcher.RegexMatchAndSubstitute(
                pattern=matcher.RegexMatcher(regex=f"^{_MESSAGES_REGEX}$"),
                substitution=upstream_path(backend.base_path, anthropic_schema=anthropic),
            )),
            request_headers_to_remove=dropped_headers(
                anthropic_schema=anthropic, forward=config.forward_client_api_key
            ),
            request_headers_to_add=[
                _set_header("content-type", "application/json"),
                # Absent metadata renders empty, and an empty value adds no header.
                *(() if config.forward_client_api_key else (_set_header(
                    credential, f"%DYNAMIC_METADATA({CREDENTIALS_NAMESPACE}:{credential})%"
                ),)),
            ],
            typed_per_filter_config=skip_headers,
        ))
    routes.append(route_v3.Route(
        name="messages_unprocessed",
        match=route_v3.RouteMatch(safe_regex=matcher.RegexMatcher(regex=_MESSAGES_REGEX),
                                  headers=[post]),
        direct_response=route_v3.DirectResponseAction(
            status=400, body=core.DataSource(inline_string=empty_body_error())
        ),
        response_headers_to_add=[_set_header("content-type", "application/json")],
        typed_per_filter_config=skip_headers,
    ))
    return routes


def _set_header(key: str, value: str) -> core.HeaderValueOption:
    return core.HeaderValueOption(
        header=core.HeaderValue(key=key, value=value),
        append_action=core.HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def _route_config(config: Config, backends: Sequence[Backend]) -> route_v3.RouteConfiguration:
    return route_v3.RouteConfiguration(
        name="backends",
        virtual_hosts=[
            route_v3.VirtualHost(
                name="all",
                domains=["*"],
                routes=_routes(config, backends),
                # The routing header is ours: backends never see it.
                request_headers_to_remove=[BACKEND_HEADER],
                # Anthropic's API names every answer in `request-id`; ours is the id in our
                # logs and the access log. An Anthropic-schema backend's own is kept.
                response_headers_to_add=[
                    core.HeaderValueOption(
                        header=core.HeaderValue(key="request-id", value="%REQ(X-REQUEST-ID)%"),
                        append_action=core.HeaderValueOptionHeaderAppendAction.ADD_IF_ABSENT,
                    )
                ],
                # The processor buffers whole request bodies; past this Envoy answers 413.
                request_body_buffer_limit=config.limits.max_request_bytes,
            )
        ],
    )


# ---- HTTP filters ----------------------------------------------------------------------------


BUFFER_FILTER = "envoy.filters.http.buffer"


def _processing_mode(*, send_headers: bool) -> ext_proc.ProcessingMode:
    send = ext_proc.ProcessingModeHeaderSendMode.SEND
    skip = ext_proc.ProcessingModeHeaderSendMode.SKIP
    buffered = ext_proc.ProcessingModeBodySendMode.BUFFERED
    return ext_proc.ProcessingMode(
        request_header_mode=send if send_headers else skip,
        request_body_mode=buffered,
        request_trailer_mode=skip,
        response_header_mode=send,
        response_body_mode=buffered,
        response_trailer_mode=skip,
    )


def _ext_proc_filter(config: Config) -> hcm.HttpFilter:
    # Without the headers message, the processor learns path, method and request id (and
    # the trace context, when tracing) from attributes of the body message.
    attributes = (
        request_attributes(tracing=config.tracing is not None)
        if config.messages_routing == "metadata" else []
    )
    processor = ext_proc.ExternalProcessor(
        grpc_service=core.GrpcService(
            envoy_grpc=core.GrpcServiceEnvoyGrpc(cluster_name=EXTPROC_CLUSTER)
        ),
        # A broken processor fails the request (500) instead of leaking it untranslated.
        failure_mode_allow=False,
        message_timeout=_seconds(config.timeouts.extproc_message_s),
        # The processor narrows this per request with mode_override: STREAMED response
        # bodies for SSE, skipped phases for pass-through paths.
        processing_mode=_processing_mode(send_headers=True),
        allow_mode_override=True,
        request_attributes=attributes,
        # Defaults allow every header we edit; a refused edit (host, x-envoy-*) becomes a
        # 500 instead of a request that silently goes out unchanged.
        mutation_rules=mutation_rules.HeaderMutationRules(disallow_is_error=True),
        metadata_options=ext_proc.MetadataOptions(
            receiving_namespaces=ext_proc.MetadataOptionsMetadataNamespaces(
                untyped=[METADATA_NAMESPACE, CREDENTIALS_NAMESPACE]
            )
        ),
    )
    return hcm.HttpFilter(name=EXT_PROC_FILTER, typed_config=AnyProto.pack(processor))


def _buffer_filter(config: Config) -> hcm.HttpFilter:
    """Holds a request's headers until its whole body has passed ext_proc (messages routes
    only: the others disable it), and sets the body's content-length on the way out."""
    held = buffer_filter.Buffer(max_request_bytes=config.limits.max_request_bytes)
    return hcm.HttpFilter(name=BUFFER_FILTER, typed_config=AnyProto.pack(held))


def _strip_routing_header() -> core.TypedExtensionConfig:
    """Drop a client-sent routing header before route matching: only the processor picks."""
    mutation = early_mutation.HeaderMutation(
        mutations=[mutation_rules.HeaderMutation(remove=BACKEND_HEADER)]
    )
    return core.TypedExtensionConfig(
        name="envoy.http.early_header_mutation.header_mutation",
        typed_config=AnyProto.pack(mutation),
    )


# ---- access log ------------------------------------------------------------------------------


def _access_log(config: Config) -> accesslog.AccessLog:
    fields = {
        "start_time": "%START_TIME%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(:PATH)%",  # as sent upstream, after the processor's rewrite
        "status": "%RESPONSE_CODE%",
        "response_flags": "%RESPONSE_FLAGS%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "duration_ms": "%DURATION%",
        "upstream_cluster": "%UPSTREAM_CLUSTER%",
        "upstream_host": "%UPSTREAM_HOST%",
        "bytes_received": "%BYTES_RECEIVED%",
        "bytes_sent": "%BYTES_SENT%",
    }
    for key in LOGGED_METADATA:
        fields[key] = f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:{key})%"
    log_format = core.SubstitutionFormatString(json_format=Struct.from_dict(fields))
    if config.access_log:
        sink = AnyProto.pack(file_log.FileAccessLog(path=config.access_log, log_format=log_format))
        return accesslog.AccessLog(name="envoy.access_loggers.file", typed_config=sink)
    stdout = AnyProto.pack(stream_log.StdoutAccessLog(log_format=log_format))
    return accesslog.AccessLog(name="envoy.access_loggers.stdout", typed_config=stdout)


# ---- listener, bootstrap ---------------------------------------------------------------------


def _connection_manager(config: Config, where: Placement) -> hcm.HttpConnectionManager:
    router_filter = hcm.HttpFilter(
        name="envoy.filters.http.router", typed_config=AnyProto.pack(router.Router())
    )
    return hcm.HttpConnectionManager(
        stat_prefix="ingress",
        codec_type=hcm.HttpConnectionManagerCodecType.AUTO,
        route_config=_route_config(config, where.backends),
        http_filters=[
            _ext_proc_filter(config),
            *([_buffer_filter(config)] if config.messages_routing == "metadata" else []),
            router_filter,
        ],
        early_header_mutation_extensions=[_strip_routing_header()],
        generate_request_id=True,
        # A model may think quietly for a while and a generation may last many minutes:
        # bound idleness only; the route timeout bounds the backend request.
        stream_idle_timeout=_seconds(config.timeouts.stream_idle_s),
        request_timeout=timedelta(0),
        max_request_headers_kb=MAX_REQUEST_HEADERS_KB,
        access_log=[_access_log(config)],
        local_reply_config=local_reply_config(config),
    )


def _listener(config: Config, where: Placement) -> listener_v3.Listener:
    manager = AnyProto.pack(_connection_manager(config, where))
    return listener_v3.Listener(
        name="ingress",
        address=_bind_address(*where.listen, "listen"),
        # Also caps BUFFERED (non-streaming) responses: past it Envoy answers 500
        # `response_payload_too_large` (rewritten to a 502 Anthropic error).
        per_connection_buffer_limit_bytes=config.limits.max_request_bytes,
        filter_chains=[
            listener_v3.FilterChain(
                filters=[
                    listener_v3.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=manager,
                    )
                ]
            )
        ],
    )


def _overload_manager() -> overload.OverloadManager:
    """A global connection cap (Envoy warns at startup without one)."""
    cap = downstream_connections.DownstreamConnectionsConfig(
        max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS
    )
    monitor = overload.ResourceMonitor(
        name="envoy.resource_monitors.global_downstream_max_connections",
        typed_config=AnyProto.pack(cap),
    )
    return overload.OverloadManager(resource_monitors=[monitor])


def bootstrap(config: Config, profile: str = "local") -> dict[str, Any]:
    """The Envoy bootstrap for `config` under `profile`, as proto JSON (snake_case keys)."""
    where = placement(config, profile)
    message = bootstrap_v3.Bootstrap(
        admin=bootstrap_v3.Admin(address=_bind_address(*where.admin, "admin_listen")),
        overload_manager=_overload_manager(),
        static_resources=bootstrap_v3.BootstrapStaticResources(
            listeners=[_listener(config, where)],
            clusters=[
                extproc_cluster(config, *where.extproc),
                *(backend_cluster(config, backend) for backend in where.backends),
            ],
        ),
    )
    result: dict[str, Any] = message.to_dict(casing=betterproto2.Casing.SNAKE)
    return result


def render_envoy_config(config: Config, *, profile: str = "local") -> str:
    """envoy.yaml for `config` under `profile` ("local", "compose" or "kubernetes")."""
    header = f"# Rendered by `extproc envoy-config --profile {profile}`; do not edit by hand.\n"
    # libyaml when PyYAML has it: the same text, 5x faster.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return header + yaml.dump(bootstrap(config, profile), Dumper=dumper, sort_keys=False)


# ---- checked-in examples ---------------------------------------------------------------------


def example_paths(name: str, root: Path = REPO_ROOT) -> tuple[Path, Path]:
    """(extproc config it is rendered from, envoy yaml) for one checked-in example."""
    return root / "envoy" / "examples" / f"{name}.config.yaml", root / "envoy" / f"{name}.yaml"


def render_example(name: str, root: Path = REPO_ROOT) -> str:
    source, _ = example_paths(name, root)
    # env={} keeps the caller's EXTPROC_* variables out of checked-in files.
    text = render_envoy_config(load_config(str(source), env={}), profile=EXAMPLES[name])
    origin = f"# From envoy/examples/{source.name}: python -m extproc.envoy_config --regenerate\n"
    return origin + text


def regenerate(root: Path = REPO_ROOT) -> list[Path]:
    written = []
    for name in EXAMPLES:
        _, target = example_paths(name, root)
        target.write_text(render_example(name, root))
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extproc.envoy_config")
    parser.add_argument("--regenerate", action="store_true", help="rewrite envoy/*.yaml")
    args = parser.parse_args(argv)
    if not args.regenerate:
        parser.print_usage(sys.stderr)
        return 2
    for path in regenerate():
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
