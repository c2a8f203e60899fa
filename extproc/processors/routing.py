"""Header edits that send a request to a backend: path, routing header, credentials."""

from __future__ import annotations

import orjson

from extproc.config import Backend, Config
from extproc.errors import InvalidRequest
from extproc.processors.base import BACKEND_HEADER

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


def to_backend(
    config: Config,
    backend: Backend,
    path: str,
    *,
    content_length: int | None,
    anthropic_schema: bool = False,
) -> tuple[list[tuple[str, str]], list[str]]:
    """(headers to set, headers to remove) routing this request to `backend` at `path`."""
    set_headers = [(":path", path), (BACKEND_HEADER, backend.name)]
    if content_length is not None:
        set_headers.append(("content-length", str(content_length)))
    if not config.forward_client_api_key:
        key = backend.api_key()
        if key and anthropic_schema:
            set_headers.append(("x-api-key", key))
        elif key:
            set_headers.append(("authorization", f"Bearer {key}"))
    dropped = CLIENT_ONLY_HEADERS if not anthropic_schema else CLIENT_CREDENTIALS
    keep = {name for name, _ in set_headers}
    if config.forward_client_api_key:
        keep.update(CLIENT_CREDENTIALS)
    return set_headers, [h for h in dropped if h not in keep]


def renamed_body(request: dict[str, object], model: str) -> bytes | None:
    """The body to forward when only the model name may change; None keeps the client's bytes."""
    if request.get("model") == model:
        return None
    request["model"] = model
    try:
        return orjson.dumps(request)
    except orjson.JSONEncodeError:  # orjson writes at most 254 levels
        raise InvalidRequest("request nests too deeply to forward (over 254 levels)") from None

