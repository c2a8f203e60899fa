"""Processor actions -> encoded Envoy ProcessingResponses. The only protobuf writer.

The answers of the per-request path are joined from cached wire pieces (extproc/service/wire.py);
an immediate response, rare and never large, is built with upb objects.
"""

from __future__ import annotations

from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ImmediateResponse,
    ProcessingResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus

from extproc.processors.base import Action, Continue, Respond
from extproc.service import wire

# Modes sent with `mode_override`. Unset header modes mean "default" (send); unset body
# modes mean "none", so each override states the whole remaining plan.
STREAM_RESPONSE_BODY = ProcessingMode(response_body_mode=ProcessingMode.STREAMED)
SKIP_REST = ProcessingMode(
    response_header_mode=ProcessingMode.SKIP, response_trailer_mode=ProcessingMode.SKIP
)
_STREAM_OVERRIDE = wire.field(wire.MODE_OVERRIDE, STREAM_RESPONSE_BODY.SerializeToString())
_SKIP_REST_OVERRIDE = wire.field(wire.MODE_OVERRIDE, SKIP_REST.SerializeToString())
_CONTINUE_AND_REPLACE = wire.flag(wire.STATUS, CommonResponse.CONTINUE_AND_REPLACE)
_CLEAR_BODY = wire.field(wire.BODY_MUTATION, wire.CLEAR_BODY)
_CLEAR_ROUTE_CACHE = wire.flag(wire.CLEAR_ROUTE_CACHE, 1)

# The answers for the common "no change" case, one per phase.
_EMPTY: dict[str, bytes] = {
    phase: ProcessingResponse(**{phase: cls()}).SerializeToString()
    for phase, cls in (
        ("request_headers", HeadersResponse),
        ("response_headers", HeadersResponse),
        ("request_body", BodyResponse),
        ("response_body", BodyResponse),
    )
}


def render(phase: str, action: Action) -> bytes:
    """The encoded ProcessingResponse answering a message of `phase` with `action`."""
    if isinstance(action, Respond):
        answer = ProcessingResponse(
            immediate_response=ImmediateResponse(
                status=HttpStatus(code=action.status),
                # Its headers name the request, so the encoding is not worth caching.
                headers=HeaderMutation.FromString(wire.varying_sets(action.headers)),
                body=action.body,
            )
        )
        return bytes(answer.SerializeToString())
    if action.body is not None or action.metadata:
        return _render_continue(phase, action)
    # Without a body or metadata an answer is one of a few (a content type set, a header
    # removed, a mode switched), repeated request after request: each is encoded once.
    key = (phase, action.set_headers, action.remove_headers, action.clear_route_cache,
           action.stream_response, action.skip_rest)
    answer_bytes = _bodiless.get(key)
    if answer_bytes is None:
        if len(_bodiless) >= _BODILESS_MAX:
            _bodiless.clear()
        answer_bytes = _bodiless[key] = _render_continue(phase, action)
    return answer_bytes


_BODILESS_MAX = 1024
_bodiless: dict[tuple[object, ...], bytes] = {}


def _render_continue(phase: str, action: Continue) -> bytes:
    headers_phase = phase.endswith("headers")
    body = action.body
    common: list[bytes] = []  # the CommonResponse's fields
    if body is not None and headers_phase:
        # A body set while answering headers is only legal with CONTINUE_AND_REPLACE.
        common.append(_CONTINUE_AND_REPLACE)
    mutation = (
        wire.header_mutation(action.set_headers, action.remove_headers)
        if action.set_headers or action.remove_headers else b""
    )
    if body is not None and phase == "request_body":
        # Envoy refuses a buffered body whose content-length disagrees with it: every
        # request body we replace carries its own.
        mutation += wire.content_length(len(body))
    if mutation:
        common.append(wire.field(wire.HEADER_MUTATION, mutation))
    if body:
        body_key = wire.prefix(wire.BODY, len(body))
        common += (wire.prefix(wire.BODY_MUTATION, len(body_key) + len(body)), body_key, body)
    elif body is not None:
        common.append(_CLEAR_BODY)
    if action.clear_route_cache:
        common.append(_CLEAR_ROUTE_CACHE)
    beside: list[bytes] = []  # ProcessingResponse fields next to the phase answer
    if action.stream_response:
        beside.append(_STREAM_OVERRIDE)
    elif action.skip_rest and headers_phase:
        # The servicer ends the stream after this answer anyway; Envoy reads a mode_override
        # only in answers to header messages, so body answers leave it out.
        beside.append(_SKIP_REST_OVERRIDE)
    if action.metadata:
        beside.append(wire.metadata(action.metadata))
    if not (common or beside or action.skip_rest):
        return _EMPTY[phase]
    size = sum(map(len, common))
    response_key = wire.prefix(wire.RESPONSE, size)
    phase_key = wire.prefix(wire.PHASE[phase], len(response_key) + size)
    return b"".join([phase_key, response_key, *common, *beside])
