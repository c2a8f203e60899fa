"""Requests the gateway itself makes to a backend (tokenize, model lists): credentials,
URLs, and a small expiring cache on the Gateway."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

from extproc.config import Backend, Config
from extproc.gateway import Gateway

ANTHROPIC_VERSION: Final = "2023-06-01"


def auth_headers(config: Config, backend: Backend, client: Mapping[str, str]) -> dict[str, str]:
    """The backend's credentials, as the main request would carry them."""
    headers: dict[str, str] = {}
    if backend.schema_ == "anthropic":
        headers["anthropic-version"] = client.get("anthropic-version", ANTHROPIC_VERSION)
    if config.forward_client_api_key:
        headers.update({k: client[k] for k in ("authorization", "x-api-key") if k in client})
    elif key := backend.api_key():
        if backend.schema_ == "anthropic":
            headers["x-api-key"] = key
        else:
            headers["authorization"] = f"Bearer {key}"
    return headers


def server_root(backend: Backend) -> str:
    """vLLM serves /tokenize (and /health) at its root, not under /v1."""
    return backend.base_url.removesuffix("/v1")


def side_timeout(config: Config) -> float:
    """Envoy waits extproc_message_s for our answer; a side request must end well before."""
    return config.timeouts.extproc_message_s / 2


def cached(gateway: Gateway, key: str) -> object | None:
    entry = gateway.cache.get(key)
    if entry is None:
        return None
    expires, value = entry
    if time.monotonic() >= expires:
        del gateway.cache[key]
        return None
    return value


def remember(gateway: Gateway, key: str, value: object, ttl_s: float) -> None:
    gateway.cache[key] = (time.monotonic() + ttl_s, value)
