"""The gateway's shared state: config, the processor registry, and lazily made clients."""

from __future__ import annotations

from typing import TYPE_CHECKING

from extproc.config import Config
from extproc.telemetry import Telemetry

if TYPE_CHECKING:
    import aiohttp

    from extproc.service.registry import Registry


class Gateway:
    """Everything a processor may need beyond its own request. One per server process."""

    def __init__(self, config: Config, registry: Registry | None = None) -> None:
        from extproc.processors import default_registry
        from extproc.processors.routing import Plans

        self.config = config
        self.registry = registry if registry is not None else default_registry()
        self.plans = Plans(config)
        self.telemetry = Telemetry(config)
        self._http: aiohttp.ClientSession | None = None
        # Short-lived side-request results, keyed by their owner (model lists, whether a
        # backend offers /tokenize): a value and its monotonic expiry time.
        self.cache: dict[str, tuple[float, object]] = {}

    def http(self) -> aiohttp.ClientSession:
        """A shared HTTP client for side requests (tokenize, model lists, search hooks)."""
        import aiohttp

        if self._http is None or self._http.closed:
            timeout = aiohttp.ClientTimeout(
                total=self.config.timeouts.request_s, connect=self.config.timeouts.connect_s
            )
            self._http = aiohttp.ClientSession(timeout=timeout)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        self.telemetry.close()
