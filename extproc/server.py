"""The ext_proc gRPC server: servicer + health on one grpc.aio server, graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import os
import signal
from collections.abc import Callable
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc.config import Config, ExtProcTLS, parse_hostport
from extproc.gateway import Gateway
from extproc.metrics import MULTIPROC_ENV, MetricsServer
from extproc.service.servicer import EXT_PROC_SERVICE, ExtProcServicer, add_to_server

log = structlog.get_logger("extproc.server")

# Request bodies up to the configured limit arrive in one buffered message.
_MESSAGE_OVERHEAD = 1 << 20


class ExtProcServer:
    """Start, report the bound port, and stop with a bounded drain."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.gateway = Gateway(config)
        self.servicer = ExtProcServicer(self.gateway)
        self.health = health.aio.HealthServicer()
        max_message = config.limits.max_request_bytes + _MESSAGE_OVERHEAD
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_message),
                ("grpc.max_send_message_length", max_message),
                ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
            ]
        )
        add_to_server(self._server, self.servicer)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = 0
        self.metrics_server: MetricsServer | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self.port = self._bind()
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.extproc_listen}")
        if self.config.metrics_listen:
            # Before the gRPC server starts, so a busy port leaves nothing running.
            host, port = parse_hostport(self.config.metrics_listen)
            metrics_server = MetricsServer(self.gateway.telemetry.metrics, host, port)
            try:
                await metrics_server.start()
            except OSError as exc:
                await self._server.stop(0)
                raise OSError(f"cannot listen on metrics_listen {self.config.metrics_listen}: "
                              f"{exc.strerror or exc}") from None
            self.metrics_server = metrics_server
            log.info("metrics_listening", address=self.config.metrics_listen,
                     port=metrics_server.port)
        await self._server.start()
        if os.environ.get(MULTIPROC_ENV):  # workers: the scrape reads every worker's files
            self._flusher = asyncio.create_task(self.gateway.telemetry.metrics.flush_periodically())
        # What start-up built (config, schemas, caches, modules: ~60k objects) lives as long
        # as the process: keep it out of the collector, whose full passes over it stalled the
        # event loop ~10 ms each under load.
        gc.freeze()
        for service in ("", EXT_PROC_SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("extproc_listening", address=self.config.extproc_listen, port=self.port)
        return self.port

    def _bind(self) -> int:
        address, tls = self.config.extproc_listen, self.config.extproc_tls
        if tls is not None:
            return int(self._server.add_secure_port(address, server_credentials(tls)))
        host, _ = parse_hostport(address)
        if not is_loopback(host):
            # Prompts, answers and (with forward_client_api_key) client keys cross this port.
            log.warning("extproc_listening_without_tls", address=address,
                        hint="set extproc_tls, or listen on 127.0.0.1 (sidecar)")
        return int(self._server.add_insecure_port(address))

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new streams, let in-flight ones finish for `grace` seconds, then cut."""
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.config.timeouts.drain_s if grace is None else grace)
        if self._flusher is not None:
            self._flusher.cancel()
        self.gateway.telemetry.metrics.flush()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        await self.gateway.aclose()

    async def wait(self) -> None:
        await self._server.wait_for_termination()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def server_credentials(tls: ExtProcTLS) -> grpc.ServerCredentials:
    """The server's certificate; with mTLS, also the CA client certificates must chain to."""

    def read(path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise OSError(f"extproc_tls: cannot read {path}: {exc.strerror or exc}") from None

    return grpc.ssl_server_credentials(
        [(read(tls.key_file), read(tls.cert_file))],
        root_certificates=read(tls.ca_file) if tls.mutual else None,
        require_client_auth=tls.mutual,
    )


async def serve(config: Config, *, on_ready: Callable[[int], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM, then drain."""
    from extproc.workers import Workers

    workers = Workers(config)  # forked before this process starts gRPC threads
    server = ExtProcServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await server.start()
    if on_ready is not None:
        on_ready(port)
    await stop.wait()
    log.info("extproc_draining", grace_s=config.timeouts.drain_s)
    await asyncio.gather(
        server.stop(), asyncio.to_thread(workers.stop, config.timeouts.drain_s + 5)
    )
    log.info("extproc_stopped")


def run(config: Config, *, on_ready: Callable[[int], None] | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(config, on_ready=on_ready))
    else:
        uvloop.run(serve(config, on_ready=on_ready))
