"""Envoy clusters for envoy_config: the ext_proc server and one per backend."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from envoy_data_plane.envoy.config.cluster import v3 as cluster_v3
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as endpoint
from envoy_data_plane.envoy.extensions.clusters.common.dns import v3 as dns_common
from envoy_data_plane.envoy.extensions.clusters.dns import v3 as dns_cluster
from envoy_data_plane.envoy.extensions.transport_sockets.tls import v3 as tls
from envoy_data_plane.envoy.extensions.upstreams.http import v3 as upstream_http
from envoy_data_plane.envoy.type.matcher import v3 as matcher
from envoy_data_plane.google.protobuf import Any as AnyProto

from extproc.config import Backend, Config, ExtProcTLS

EXTPROC_CLUSTER = "extproc"
# Where Debian/Ubuntu/Alpine (and the envoyproxy/envoy image) keep the system CA bundle;
# Envoy checks nothing without a validation context, so https backends get this one.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Generations stream for minutes: Envoy's default circuit breaker (1024 concurrent requests
# per cluster) would turn request 1025 into a 503; vLLM queues by itself.
MAX_CONCURRENT_REQUESTS = 65536
# With several ext_proc processes on one SO_REUSEPORT port, capping streams per HTTP/2
# connection makes Envoy open more connections, which the kernel spreads over the processes
# (measured 41/59 -> 54/46). Capping on the gRPC server side instead makes it reset streams.
EXTPROC_STREAMS_PER_CONNECTION = 8


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def socket_address(host: str, port: int) -> core.Address:
    return core.Address(socket_address=core.SocketAddress(address=host, port_value=port))


def _cluster(name: str, host: str, port: int, config: Config) -> cluster_v3.Cluster:
    """STATIC for an IP; otherwise DNS, every resolved address an endpoint (so a headless
    Kubernetes service or a compose service with replicas is load balanced)."""
    cluster = cluster_v3.Cluster(
        name=name,
        connect_timeout=timedelta(seconds=config.timeouts.connect_s),
        # Whole request bodies pass through in one piece (BUFFERED processing).
        per_connection_buffer_limit_bytes=config.limits.max_request_bytes,
        lb_policy=cluster_v3.ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=endpoint.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint.LbEndpoint(
                            endpoint=endpoint.Endpoint(address=socket_address(host, port))
                        )
                    ]
                )
            ],
        ),
        circuit_breakers=cluster_v3.CircuitBreakers(
            thresholds=[
                cluster_v3.CircuitBreakersThresholds(
                    max_connections=MAX_CONCURRENT_REQUESTS,
                    max_pending_requests=MAX_CONCURRENT_REQUESTS,
                    max_requests=MAX_CONCURRENT_REQUESTS,
                )
            ]
        ),
    )
    if is_ip(host):
        cluster.type = cluster_v3.ClusterDiscoveryType.STATIC
    else:
        # The DnsCluster extension replaces the deprecated `type: STRICT_DNS` fields.
        # IPv4 first: container networks often have IPv6 disabled.
        dns = dns_cluster.DnsCluster(dns_lookup_family=dns_common.DnsLookupFamily.V4_PREFERRED)
        cluster.cluster_type = cluster_v3.ClusterCustomClusterType(
            name="envoy.clusters.dns", typed_config=AnyProto.pack(dns)
        )
    return cluster


def extproc_cluster(config: Config, host: str, port: int) -> cluster_v3.Cluster:
    cluster = _cluster(EXTPROC_CLUSTER, host, port, config)
    http2 = core.Http2ProtocolOptions()
    if config.workers > 1:
        http2.max_concurrent_streams = EXTPROC_STREAMS_PER_CONNECTION
    # gRPC needs HTTP/2; without explicit options Envoy speaks HTTP/1.1 and every call fails.
    options = upstream_http.HttpProtocolOptions(
        explicit_http_config=upstream_http.HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=http2
        )
    )
    cluster.typed_extension_protocol_options = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": AnyProto.pack(options)
    }
    if config.extproc_tls is not None:
        cluster.transport_socket = extproc_tls_socket(config.extproc_tls, host)
    return cluster


def extproc_tls_socket(settings: ExtProcTLS, host: str) -> core.TransportSocket:
    """TLS to the ext_proc server (ALPN h2, as gRPC requires), verified against `ca_file`;
    with a client certificate for mTLS."""
    certificates = []
    if settings.client_cert_file is not None and settings.client_key_file is not None:
        certificates.append(
            tls.TlsCertificate(
                certificate_chain=core.DataSource(filename=settings.client_cert_file),
                private_key=core.DataSource(filename=settings.client_key_file),
            )
        )
    context = _verified_tls(
        settings.server_name or host, settings.ca_file, alpn=["h2"], certificates=certificates
    )
    return core.TransportSocket(
        name="envoy.transport_sockets.tls", typed_config=AnyProto.pack(context)
    )


def _verified_tls(
    name: str,
    ca_file: str,
    *,
    alpn: list[str] | None = None,
    certificates: list[tls.TlsCertificate] | None = None,
) -> tls.UpstreamTlsContext:
    """An upstream TLS context checking that the peer's certificate names `name` and chains
    to `ca_file`; SNI carries `name` unless it is an IP."""
    san_type = (
        tls.SubjectAltNameMatcherSanType.IP_ADDRESS
        if is_ip(name)
        else tls.SubjectAltNameMatcherSanType.DNS
    )
    return tls.UpstreamTlsContext(
        sni="" if is_ip(name) else name,  # SNI never carries an IP
        common_tls_context=tls.CommonTlsContext(
            alpn_protocols=alpn or [],
            tls_certificates=certificates or [],
            validation_context=tls.CertificateValidationContext(
                trusted_ca=core.DataSource(filename=ca_file),
                match_typed_subject_alt_names=[
                    tls.SubjectAltNameMatcher(
                        san_type=san_type, matcher=matcher.StringMatcher(exact=name)
                    )
                ],
            )
        ),
    )


def backend_cluster(config: Config, backend: Backend) -> cluster_v3.Cluster:
    """HTTP/1.1 to the backend (what vLLM serves); TLS with SNI and a verified certificate
    for https base URLs."""
    cluster = _cluster(backend.cluster, backend.host, backend.port, config)
    if backend.tls:
        context = _verified_tls(backend.host, SYSTEM_CA_BUNDLE)
        cluster.transport_socket = core.TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=AnyProto.pack(context)
        )
    return cluster
