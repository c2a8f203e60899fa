"""Answers are joined from cached wire pieces; upb must read back exactly the message the
action describes. The reference below builds that message from upb objects, field by field."""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyMutation,
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ProcessingResponse,
)
from google.protobuf.struct_pb2 import Struct
from hypothesis import given
from hypothesis import strategies as st

from extproc.processors.base import Continue, Respond
from extproc.service.mutations import render
from extproc.service.wire import varint

PHASES = ("request_headers", "request_body", "response_headers", "response_body")


def reference(phase: str, action: Continue) -> ProcessingResponse:
    """What an answer means, built the slow way."""
    headers_phase = phase.endswith("headers")
    if action == Continue():
        cls = HeadersResponse if headers_phase else BodyResponse
        return ProcessingResponse(**{phase: cls()})
    common = CommonResponse(clear_route_cache=action.clear_route_cache)
    set_headers = list(action.set_headers)
    if action.body is not None and phase == "request_body":
        set_headers.append(("content-length", str(len(action.body))))
    if set_headers or action.remove_headers:
        common.header_mutation.CopyFrom(HeaderMutation(
            set_headers=[
                HeaderValueOption(header=HeaderValue(key=k, raw_value=v.encode()),
                                  append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
                for k, v in set_headers
            ],
            remove_headers=action.remove_headers,
        ))
    if action.body is not None:
        common.body_mutation.CopyFrom(
            BodyMutation(body=action.body) if action.body else BodyMutation(clear_body=True))
        if headers_phase:
            common.status = CommonResponse.CONTINUE_AND_REPLACE
    wrapper = (HeadersResponse if headers_phase else BodyResponse)(response=common)
    answer = ProcessingResponse(**{phase: wrapper})
    if action.stream_response:
        answer.mode_override.response_body_mode = ProcessingMode.STREAMED
    elif action.skip_rest and headers_phase:
        answer.mode_override.response_header_mode = ProcessingMode.SKIP
        answer.mode_override.response_trailer_mode = ProcessingMode.SKIP
    if action.metadata:
        struct = Struct()
        struct.update({ns: dict(values) for ns, values in action.metadata.items()})
        answer.dynamic_metadata.CopyFrom(struct)
    return answer


def decoded(phase: str, action: Continue | Respond) -> ProcessingResponse:
    return ProcessingResponse.FromString(render(phase, action))


def test_varint_matches_the_protobuf_encoding() -> None:
    assert varint(0) == b"\x00"
    assert varint(127) == b"\x7f"
    assert varint(128) == b"\x80\x01"
    assert varint(76_169) == b"\x89\xd3\x04"


def test_a_translated_request_body_answer() -> None:
    body = b'{"model":"qwen3","messages":[]}' * 3000  # lengths past one varint byte
    action = Continue(
        set_headers=((":path", "/v1/chat/completions"),),
        remove_headers=("x-api-key", "anthropic-version"),
        body=body,
        clear_route_cache=True,
        metadata={"extproc": {"model": "qwen3", "requested_model": "claude", "backend": "vllm"}},
    )
    answer = decoded("request_body", action)
    assert answer == reference("request_body", action)
    assert answer.request_body.response.body_mutation.body == body
    # Envoy refuses a replaced buffered body whose content-length disagrees: it is set.
    [*_, length] = answer.request_body.response.header_mutation.set_headers
    assert (length.header.key, length.header.raw_value) == ("content-length", str(len(body)).encode())
    assert answer.dynamic_metadata.fields["extproc"].struct_value.fields["backend"].string_value == "vllm"


def test_no_change_is_the_empty_answer_of_its_phase() -> None:
    for phase in PHASES:
        answer = decoded(phase, Continue())
        assert answer.WhichOneof("response") == phase
        assert answer == reference(phase, Continue())


def test_an_sse_switch_and_a_skip_ride_beside_the_headers_answer() -> None:
    stream = Continue(set_headers=(("content-type", "text/event-stream"),), stream_response=True)
    assert decoded("response_headers", stream).mode_override.response_body_mode == (
        ProcessingMode.STREAMED)
    skip = Continue(skip_rest=True)
    assert decoded("response_headers", skip) == reference("response_headers", skip)
    assert not decoded("response_body", skip).HasField("mode_override")


def test_a_body_set_while_answering_headers_continues_and_replaces() -> None:
    action = Continue(set_headers=((":status", "502"),), body=b'{"type":"error"}')
    answer = decoded("response_headers", action)
    assert answer.response_headers.response.status == CommonResponse.CONTINUE_AND_REPLACE
    assert answer == reference("response_headers", action)


def test_an_immediate_response() -> None:
    answer = decoded("request_body", Respond(status=404, body=b'{"type":"error"}'))
    assert answer.immediate_response.status.code == 404
    assert answer.immediate_response.body == b'{"type":"error"}'
    [header] = answer.immediate_response.headers.set_headers
    assert (header.header.key, header.header.raw_value) == ("content-type", b"application/json")


def test_token_counts_change_from_answer_to_answer() -> None:
    # Names are encoded once and reused; counts are encoded for each answer.
    for count in (7, 7, 300, 0):
        usage = {"extproc": {"input_tokens": count, "output_tokens": 2, "backend": "vllm"}}
        action = Continue(body=b"{}", metadata=usage)
        answer = decoded("response_body", action)
        assert answer == reference("response_body", action)
        counts = answer.dynamic_metadata.fields["extproc"].struct_value.fields
        assert counts["input_tokens"].number_value == count


def test_each_answer_fills_its_own_numbers_into_a_shape_encoded_once() -> None:
    for numbers in ((1, 0.5, 9), (2**40, -0.0, -3), (0, float("inf"), 10**15), (1, 0.5, 9)):
        usage = {"extproc": {"model": "qwen3", "input_tokens": numbers[0], "ratio": numbers[1]},
                 "limits": {"remaining": numbers[2]}}
        action = Continue(body=b"{}", metadata=usage)
        answer = decoded("response_body", action)
        assert answer == reference("response_body", action)
        fields = answer.dynamic_metadata.fields
        assert fields["extproc"].struct_value.fields["ratio"].number_value == numbers[1]
        assert fields["limits"].struct_value.fields["remaining"].number_value == numbers[2]


def test_cached_pieces_do_not_leak_between_answers() -> None:
    first = Continue(set_headers=(("x-a", "1"),), remove_headers=("x-b",), body=b"0123456789")
    second = Continue(set_headers=(("x-a", "2"),), remove_headers=("x-b",), body=b"abc")
    for action in (first, second, first):
        assert decoded("request_body", action) == reference("request_body", action)


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-:", min_size=1, max_size=20)
values = st.text(max_size=40)
scalars = st.one_of(
    st.text(max_size=20), st.integers(-(10**12), 10**12), st.booleans(), st.none(),
    st.floats(allow_nan=False),  # NaN never equals itself, so no message holding it does
)
# What `Struct.update` takes: names map to strings, counts, switches, nothing, lists, maps.
struct_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)


@given(
    phase=st.sampled_from(PHASES),
    set_headers=st.lists(st.tuples(names, values), max_size=6).map(tuple),
    remove=st.lists(names, max_size=6).map(tuple),
    body=st.one_of(st.none(), st.binary(max_size=300)),
    clear_route_cache=st.booleans(),
    stream_response=st.booleans(),
    skip_rest=st.booleans(),
    metadata=st.one_of(
        st.none(),
        st.dictionaries(names, st.dictionaries(names, struct_values, max_size=4),
                        min_size=1, max_size=2),
    ),
)
def test_every_answer_reads_back_as_its_reference(
    phase: str, set_headers: tuple[tuple[str, str], ...], remove: tuple[str, ...],
    body: bytes | None, clear_route_cache: bool, stream_response: bool, skip_rest: bool,
    metadata: dict[str, dict[str, object]] | None,
) -> None:
    action = Continue(set_headers=set_headers, remove_headers=remove, body=body,
                      clear_route_cache=clear_route_cache, stream_response=stream_response,
                      skip_rest=skip_rest, metadata=metadata)
    assert decoded(phase, action) == reference(phase, action)
