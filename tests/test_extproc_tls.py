"""The ext_proc port's transport: a warning when it listens beyond loopback without TLS, the
`extproc_tls` config, and the Envoy cluster rendered to match. (Real handshakes, server and
through Envoy: e2e/test_tls.py.)"""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from extproc.config import Config, ConfigError, load_config
from extproc.envoy_config import bootstrap
from extproc.server import ExtProcServer, is_loopback

TLS = {"cert_file": "/certs/server.pem", "key_file": "/certs/server.key", "ca_file": "/certs/ca.pem"}
MTLS = {**TLS, "client_cert_file": "/certs/envoy.pem", "client_key_file": "/certs/envoy.key"}


async def warnings_when_listening_on(address: str, **extra: Any) -> list[Any]:
    server = ExtProcServer(Config.model_validate({"extproc_listen": address, **extra}))
    with structlog.testing.capture_logs() as logs:
        await server.start()
    await server.stop(grace=0)
    return [entry for entry in logs if entry["log_level"] == "warning"]


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0"])
async def test_listening_beyond_loopback_without_tls_warns(address: str) -> None:
    [warning] = await warnings_when_listening_on(address)
    assert warning["event"] == "extproc_listening_without_tls"
    assert warning["address"] == address


@pytest.mark.parametrize("address", ["127.0.0.1:0", "[::1]:0", "localhost:0"])
async def test_loopback_does_not_warn(address: str) -> None:
    assert await warnings_when_listening_on(address) == []


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("10.0.0.5", False), ("extproc.internal", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_unreadable_certificate_is_named(tmp_path: Any) -> None:
    tls = {**TLS, "cert_file": str(tmp_path / "missing.pem"), "key_file": str(tmp_path / "k"),
           "ca_file": str(tmp_path / "ca")}
    (tmp_path / "k").write_text("x")
    server = ExtProcServer(Config.model_validate({"extproc_listen": "127.0.0.1:0", "extproc_tls": tls}))
    with pytest.raises(OSError, match=r"extproc_tls: cannot read .*missing\.pem"):
        await server.start()
    await server.stop(grace=0)


def test_client_certificate_needs_its_key() -> None:
    with pytest.raises(ConfigError, match="extproc_tls: client_cert_file and client_key_file"):
        load_config(overrides={"extproc_tls": {**TLS, "client_cert_file": "/certs/envoy.pem"}}, env={})


def extproc_cluster(config: Config, profile: str = "local") -> dict[str, Any]:
    clusters = bootstrap(config, profile)["static_resources"]["clusters"]
    cluster: dict[str, Any] = next(c for c in clusters if c["name"] == "extproc")
    return cluster


def tls_context(cluster: dict[str, Any]) -> dict[str, Any]:
    socket = cluster["transport_socket"]
    assert socket["name"] == "envoy.transport_sockets.tls"
    context: dict[str, Any] = socket["typed_config"]
    return context


def test_no_tls_renders_a_plaintext_cluster() -> None:
    assert "transport_socket" not in extproc_cluster(Config())


def test_tls_renders_a_verifying_h2_cluster() -> None:
    context = tls_context(extproc_cluster(Config.model_validate({"extproc_tls": TLS})))
    common = context["common_tls_context"]
    assert common["alpn_protocols"] == ["h2"]
    validation = common["validation_context"]
    assert validation["trusted_ca"] == {"filename": "/certs/ca.pem"}
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}}]
    assert "sni" not in context  # never an IP
    assert "tls_certificates" not in common


def test_mtls_adds_envoys_certificate_and_names_follow_the_profile() -> None:
    context = tls_context(extproc_cluster(
        Config.model_validate({"extproc_tls": MTLS}), profile="compose"))
    common = context["common_tls_context"]
    assert common["tls_certificates"] == [{"certificate_chain": {"filename": "/certs/envoy.pem"},
                                           "private_key": {"filename": "/certs/envoy.key"}}]
    assert context["sni"] == "extproc"  # the compose service name
    assert common["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "extproc"}}]


def test_server_name_overrides_the_checked_name() -> None:
    config = Config.model_validate({"extproc_tls": {**TLS, "server_name": "extproc.svc"}})
    context = tls_context(extproc_cluster(config))
    assert context["sni"] == "extproc.svc"
