"""Header edits that send a request to a backend: path, routing header, credentials."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from extproc.config import Backend, Config, resolve_model
from extproc.errors import InvalidRequest
from extproc.processors.base import BACKEND_HEADER
from extproc.telemetry import Metadata, routing_metadata
from extproc.translators.options import RequestOptions

# Client credentials and Anthropic-only headers never reach a backend (unless configured),
# and `accept-encoding` goes so the backend answers uncompressed bytes we can translate.
CLIENT_ONLY_HEADERS = (
    "x-api-key",
    "authorization",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "accept-encoding",
)
CLIENT_CREDENTIALS = ("x-api-key", "authorization")


HeaderEdits = tuple[tuple[tuple[str, str], ...], tuple[str, ...]]  # (set, remove)

# Under `messages_routing: metadata` the backend credential travels in this dynamic-metadata
# namespace, which Envoy's route turns into the header (extproc/envoy_config.py). Kept apart
# from METADATA_NAMESPACE, which the access log prints.
CREDENTIALS_NAMESPACE = "extproc_credentials"

# The edits depend on a few values only, the key among them (it may rotate): worked out once
# per combination, not per request. Bounded like every per-process cache of client input.
_EDITS_MAX = 1024
_edits: dict[tuple[bool, str, str, bool, str | None], HeaderEdits] = {}


def upstream_path(base_path: str, *, anthropic_schema: bool) -> str:
    """Where a Messages request goes on a backend whose API lives under `base_path`."""
    return base_path + ("/v1/messages" if anthropic_schema else "/chat/completions")


def dropped_headers(*, anthropic_schema: bool, forward: bool) -> list[str]:
    """The client's headers a backend must not see (credentials only when configured)."""
    dropped = CLIENT_CREDENTIALS if anthropic_schema else CLIENT_ONLY_HEADERS
    return [h for h in dropped if not (forward and h in CLIENT_CREDENTIALS)]


def credential_header(*, anthropic_schema: bool) -> str:
    return "x-api-key" if anthropic_schema else "authorization"


def credential(key: str | None, *, anthropic_schema: bool) -> tuple[str, str] | None:
    """The header carrying our key to a backend, if we send one."""
    if not key:
        return None
    value = key if anthropic_schema else f"Bearer {key}"
    return credential_header(anthropic_schema=anthropic_schema), value


def to_backend(
    config: Config, backend: Backend, path: str, *, anthropic_schema: bool = False
) -> HeaderEdits:
    """(headers to set, headers to remove) routing this request's JSON body to `backend` at
    `path`. A replaced body's content-length is the renderer's to set (service/mutations.py)."""
    forward = config.forward_client_api_key
    key = None if forward else backend.api_key()
    memo = (forward, backend.name, path, anthropic_schema, key)
    edits = _edits.get(memo)
    if edits is None:
        if len(_edits) >= _EDITS_MAX:
            _edits.clear()
        set_headers = [(":path", path), (BACKEND_HEADER, backend.name),
                       ("content-type", "application/json")]
        sent = credential(key, anthropic_schema=anthropic_schema)
        if sent is not None:
            set_headers.append(sent)
        keep = {name for name, _ in set_headers}
        remove = [h for h in dropped_headers(anthropic_schema=anthropic_schema, forward=forward)
                  if h not in keep]
        edits = _edits[memo] = (tuple(set_headers), tuple(remove))
    return edits


def with_credential(config: Config, plan: Plan, anthropic_schema: bool) -> Metadata:
    """The plan's routing metadata, plus our key for the backend's route to send."""
    if config.forward_client_api_key:
        return plan.metadata
    sent = credential(plan.backend.api_key(), anthropic_schema=anthropic_schema)
    if sent is None:
        return plan.metadata
    return {**plan.metadata, CREDENTIALS_NAMESPACE: {sent[0]: sent[1]}}


def renamed_body(request: dict[str, object], model: str) -> bytes | None:
    """The body to forward when only the model name may change; None keeps the client's bytes."""
    if request.get("model") == model:
        return None
    request["model"] = model
    try:
        return orjson.dumps(request)
    except orjson.JSONEncodeError:  # orjson writes at most 254 levels
        raise InvalidRequest("request nests too deeply to forward (over 254 levels)") from None


@dataclass(frozen=True, slots=True)
class Plan:
    """Where requests naming one model go, and what the config says about it."""

    backend: Backend
    model: str  # the name the backend serves
    base_path: str  # the backend's API path prefix, e.g. "/v1"
    options: RequestOptions  # the request translator's knobs for this model
    metadata: Metadata  # Envoy dynamic metadata naming the route


class Plans:
    """Model name -> Plan, worked out once per name: resolving walks every backend's routes
    (with glob aliases) and options merge pydantic models, too slow for every request."""

    MAX_NAMES = 4096  # client-chosen names: bounded, so odd names cannot grow it forever

    def __init__(self, config: Config) -> None:
        self.config = config
        self._plans: dict[str, Plan] = {}

    def get(self, requested: str) -> Plan | None:
        plan = self._plans.get(requested)
        if plan is not None:
            return plan
        route = resolve_model(self.config, requested)
        if route is None:
            return None
        backend = route.backend
        plan = Plan(
            backend=backend,
            model=route.model,
            base_path=backend.base_path,
            options=RequestOptions.from_config(backend, route.model, self.config),
            metadata=routing_metadata(requested, route.model, backend.name),
        )
        if len(self._plans) >= self.MAX_NAMES:
            self._plans.clear()
        self._plans[requested] = plan
        return plan
