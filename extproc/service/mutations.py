"""Processor actions -> Envoy ProcessingResponse protobufs (upb). The only protobuf writer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyMutation,
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ImmediateResponse,
    ProcessingResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct

from extproc.processors.base import Action, Continue, Respond

_OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

# Modes sent with `mode_override`. Unset header modes mean "default" (send); unset body
# modes mean "none", so each override states the whole remaining plan.
STREAM_RESPONSE_BODY = ProcessingMode(response_body_mode=ProcessingMode.STREAMED)
SKIP_REST = ProcessingMode(
    response_header_mode=ProcessingMode.SKIP, response_trailer_mode=ProcessingMode.SKIP
)

# Precomputed empty answers for the common "no change" case, one per phase.
_EMPTY = {
    phase: ProcessingResponse(**{phase: cls()})
    for phase, cls in (
        ("request_headers", HeadersResponse),
        ("response_headers", HeadersResponse),
        ("request_body", BodyResponse),
        ("response_body", BodyResponse),
    )
}


def header_mutation(
    set_headers: Iterable[tuple[str, str]], remove: Iterable[str]
) -> HeaderMutation:
    return HeaderMutation(
        set_headers=[
            HeaderValueOption(
                header=HeaderValue(key=key, raw_value=value.encode()), append_action=_OVERWRITE
            )
            for key, value in set_headers
        ],
        remove_headers=list(remove),
    )


def _struct(fields: Mapping[str, Mapping[str, object]]) -> Struct:
    struct = Struct()
    struct.update({ns: dict(values) for ns, values in fields.items()})
    return struct


def render(phase: str, action: Action) -> ProcessingResponse:
    """The ProcessingResponse answering a message of `phase` with `action`."""
    if isinstance(action, Respond):
        return ProcessingResponse(
            immediate_response=ImmediateResponse(
                status=HttpStatus(code=action.status),
                headers=header_mutation(action.headers, ()),
                body=action.body,
            )
        )
    return _render_continue(phase, action)


def _render_continue(phase: str, action: Continue) -> ProcessingResponse:
    if action == _NOOP:
        return _EMPTY[phase]
    common = CommonResponse(clear_route_cache=action.clear_route_cache)
    if action.set_headers or action.remove_headers:
        common.header_mutation.CopyFrom(header_mutation(action.set_headers, action.remove_headers))
    if action.body is not None:
        if action.body:
            common.body_mutation.CopyFrom(BodyMutation(body=action.body))
        else:
            common.body_mutation.CopyFrom(BodyMutation(clear_body=True))
    if action.body is not None and phase.endswith("headers"):
        # A body set while answering headers is only legal with CONTINUE_AND_REPLACE.
        common.status = CommonResponse.CONTINUE_AND_REPLACE
    wrapper = HeadersResponse(response=common) if phase.endswith("headers") else BodyResponse(
        response=common
    )
    response = ProcessingResponse(**{phase: wrapper})
    if action.stream_response:
        response.mode_override.CopyFrom(STREAM_RESPONSE_BODY)
    elif action.skip_rest and phase.endswith("headers"):
        # The servicer ends the stream after this answer anyway; Envoy reads a mode_override
        # only in answers to header messages, so body answers leave it out.
        response.mode_override.CopyFrom(SKIP_REST)
    if action.metadata:
        response.dynamic_metadata.CopyFrom(_struct(action.metadata))
    return response


_NOOP = Continue()
