"""TLS and mTLS on the ext_proc gRPC port, with real certificates: the server refuses what it
should, and Envoy, rendered from the same config, talks to it over mTLS end to end."""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from e2e.harness import Gateway, MockBackend, backend_config, start_gateway
from extproc.config import Config
from extproc.server import ExtProcServer

Key = ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: Key, issuer: tuple[str, Key] | None, *, ca: bool = False,
                 sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, name: str, cert: x509.Certificate, key: Key) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, the ext_proc server's certificate (127.0.0.1, localhost), and Envoy's client one."""
    directory = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test ca", ca_key, None, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = _certificate("extproc", server_key, ("test ca", ca_key), sans=[
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    client = _certificate("envoy", client_key, ("test ca", ca_key))
    ca_path, _ = _write(directory, "ca", ca, ca_key)
    server_cert, server_key_path = _write(directory, "server", server, server_key)
    client_cert, client_key_path = _write(directory, "envoy", client, client_key)
    return {"ca_file": str(ca_path), "cert_file": str(server_cert), "key_file": str(server_key_path),
            "client_cert_file": str(client_cert), "client_key_file": str(client_key_path)}


def server_tls(certs: dict[str, str], mutual: bool) -> dict[str, str]:
    keys = ["ca_file", "cert_file", "key_file"] + (["client_cert_file", "client_key_file"] if mutual else [])
    return {key: certs[key] for key in keys}


async def health(port: int, credentials: grpc.ChannelCredentials | None) -> int:
    """The health status over the given channel; raises grpc.RpcError when the handshake fails."""
    target = f"127.0.0.1:{port}"
    channel = (grpc.aio.secure_channel(target, credentials) if credentials is not None
               else grpc.aio.insecure_channel(target))
    async with channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        return int(reply.status)


def credentials(certs: dict[str, str], with_client_cert: bool) -> grpc.ChannelCredentials:
    def read(name: str) -> bytes:
        return Path(certs[name]).read_bytes()

    if with_client_cert:
        return grpc.ssl_channel_credentials(read("ca_file"), read("client_key_file"), read("client_cert_file"))
    return grpc.ssl_channel_credentials(read("ca_file"))


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
async def test_server_accepts_only_what_its_tls_config_allows(certs: dict[str, str], mutual: bool) -> None:
    config = Config.model_validate({"extproc_listen": "127.0.0.1:0", "extproc_tls": server_tls(certs, mutual)})
    server = ExtProcServer(config)
    port = await server.start()
    try:
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await health(port, credentials(certs, with_client_cert=True)) == serving
        with pytest.raises(grpc.RpcError):
            await health(port, None)  # plaintext
        if mutual:
            with pytest.raises(grpc.RpcError):
                await health(port, credentials(certs, with_client_cert=False))
        else:
            assert await health(port, credentials(certs, with_client_cert=False)) == serving
    finally:
        await server.stop(grace=0)


@pytest.fixture(scope="module")
def mtls_gateway(workdir: Path, mock_backend: MockBackend, certs: dict[str, str]) -> Iterator[Gateway]:
    config = {"backends": [backend_config(mock_backend, models=[{"name": "qwen3-coder",
                                                                 "aliases": ["claude-*"]}])],
              "extproc_tls": server_tls(certs, mutual=True)}
    gw = start_gateway(workdir, config)
    yield gw
    gw.process.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_envoy_talks_mtls_to_extproc(mtls_gateway: Gateway, backend: MockBackend, stream: bool) -> None:
    backend.script({"text": "over mutual TLS"})
    reply = httpx.post(mtls_gateway.url + "/v1/messages", timeout=15, json={
        "model": "claude-sonnet-4-6", "max_tokens": 32, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text
    if stream:
        deltas = [json.loads(line[len("data: "):])["delta"] for line in reply.text.splitlines()
                  if line.startswith("data: ") and '"text_delta"' in line]
        assert "".join(delta["text"] for delta in deltas) == "over mutual TLS"
        assert reply.text.endswith("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    else:
        assert reply.json()["content"] == [{"type": "text", "text": "over mutual TLS"}]
    assert backend.requests()[0]["path"] == "/v1/chat/completions"  # translated by our server
    assert "extproc_listening_without_tls" not in mtls_gateway.logs()
