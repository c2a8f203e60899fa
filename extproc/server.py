"""The ext_proc gRPC server: servicer + health on one grpc.aio server, graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc.config import Config, parse_hostport
from extproc.gateway import Gateway
from extproc.metrics import MetricsServer
from extproc.service.servicer import ExtProcServicer, add_to_server

log = structlog.get_logger("extproc.server")

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
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

    async def start(self) -> int:
        self.port = self._server.add_insecure_port(self.config.extproc_listen)
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
        for service in ("", EXT_PROC_SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("extproc_listening", address=self.config.extproc_listen, port=self.port)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new streams, let in-flight ones finish for `grace` seconds, then cut."""
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.config.timeouts.drain_s if grace is None else grace)
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        await self.gateway.aclose()

    async def wait(self) -> None:
        await self._server.wait_for_termination()


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
