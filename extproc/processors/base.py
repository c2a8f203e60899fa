"""What a processor says back to Envoy, without protobufs: the service layer renders these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from extproc.errors import GatewayError

# Header our processors set so Envoy's route table picks the backend cluster.
BACKEND_HEADER = "x-extproc-backend"

EMPTY_BODY = "request body is empty"

# Response headers of every Anthropic SSE answer we write or translate.
SSE_HEADERS = (("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"))


# Not frozen, like the other per-request results: a frozen dataclass sets every field through
# object.__setattr__, three times slower, and these are made several times per request.
@dataclass(slots=True)
class Continue:
    """Let the message through, optionally changed.

    `body` None keeps the body as it is; bytes (even empty) replace it.
    `stream_response` switches the response body to STREAMED (SSE); Envoy honours it only
    in an answer to `response_headers`. `skip_rest` says this processor needs no further
    messages for this request, in any phase: the service sends this answer, then ends the
    ext_proc stream, and Envoy lets everything after it through untouched.
    """

    set_headers: tuple[tuple[str, str], ...] = ()
    remove_headers: tuple[str, ...] = ()
    body: bytes | None = None
    clear_route_cache: bool = False
    stream_response: bool = False
    skip_rest: bool = False
    # Envoy dynamic metadata (namespace -> fields), for access logs and rate limits.
    metadata: Mapping[str, Mapping[str, object]] | None = None


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer the client directly (Envoy `immediate_response`); the backend sees nothing."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)

    @classmethod
    def error(cls, err: GatewayError) -> Respond:
        return cls(status=err.status, body=err.body())

    def naming(self, request_id: str) -> Respond:
        """This answer with Anthropic's `request-id` header (ours: Envoy's x-request-id)."""
        return Respond(self.status, self.body, (*self.headers, ("request-id", request_id)))


Action = Continue | Respond

CONTINUE = Continue()


def redact(data: bytes, key: str | None) -> bytes:
    """A backend's error text may quote the credential we sent it: never pass that on."""
    return data.replace(key.encode(), b"[redacted]") if key else data


def status_answer(status: int, end_of_stream: bool, key: str | None) -> Continue:
    """The answer to a passed-through response's headers: a success, a bodiless answer or
    one that cannot quote our key (none was sent) streams past us (the ext_proc stream
    ends); an error comes to us buffered, to be scrubbed with `redact`."""
    if 200 <= status < 300 or end_of_stream or not key:
        return Continue(skip_rest=True)
    return Continue(remove_headers=("content-length",))


def response_status(headers: Mapping[str, str]) -> int:
    """The backend's status; 502 when Envoy hands over something that is not a number."""
    try:
        return int(headers.get(":status", "0"))
    except ValueError:
        return 502


@dataclass(slots=True)
class RequestInfo:
    """What the service layer knows about the HTTP request when it picks a processor."""

    method: str
    path: str  # without the query string
    query: str
    headers: Mapping[str, str]  # lower-cased names
    request_id: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    # False when Envoy skipped the request-headers message (`messages_routing: metadata`):
    # answers cannot edit request headers then; routing goes by dynamic metadata, and the
    # headers are only the few Envoy sent as request attributes.
    headers_editable: bool = True


class Processor(Protocol):
    """One per HTTP request (one gRPC stream). Every call answers exactly one Envoy message."""

    info: RequestInfo

    async def request_headers(self, end_of_stream: bool) -> Action: ...

    async def request_body(self, body: bytes, end_of_stream: bool) -> Action: ...

    async def response_headers(self, headers: Mapping[str, str], end_of_stream: bool) -> Action: ...

    async def response_body(self, chunk: bytes, end_of_stream: bool) -> Action: ...

    def close(self) -> None:
        """The stream ended, normally or not (client gone). Release everything."""


def post_body_problem(info: RequestInfo, end_of_stream: bool) -> GatewayError | None:
    """Why a JSON-body endpoint refuses this request at its headers, if it does."""
    if info.method != "POST":
        return GatewayError(
            f"{info.method} is not allowed on {info.path}; use POST",
            status=405,
            error_type="invalid_request_error",
        )
    if end_of_stream:
        return GatewayError(EMPTY_BODY, status=400, error_type="invalid_request_error")
    return None

