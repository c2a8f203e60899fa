"""Request attributes stand in for the headers Envoy did not send (messages_routing: metadata)."""

from __future__ import annotations

from envoy.service.ext_proc.v3.external_processor_pb2 import HttpBody, ProcessingRequest

from extproc.service.attributes import attribute_headers, request_attributes


def with_attributes(values: dict[str, object]) -> ProcessingRequest:
    message = ProcessingRequest(request_body=HttpBody(body=b"{}", end_of_stream=True))
    message.attributes["envoy.filters.http.ext_proc"].update(values)
    return message


def test_attributes_read_as_the_headers_they_stand_for() -> None:
    names = request_attributes(tracing=True)
    values = dict(zip(names, ["/v1/messages?beta=true", "POST", "rid-1", "00-abc-def-01", "k=v"],
                      strict=True))
    assert attribute_headers(with_attributes(values)) == {
        ":path": "/v1/messages?beta=true", ":method": "POST", "x-request-id": "rid-1",
        "traceparent": "00-abc-def-01", "tracestate": "k=v",
    }


def test_only_known_text_attributes_count() -> None:
    # A header the request did not have comes back as no string (or not at all).
    message = with_attributes({"request.path": "/v1/messages", "request.method": 5,
                               "request.headers['traceparent']": None, "source.address": "x"})
    assert attribute_headers(message) == {":path": "/v1/messages"}
    assert attribute_headers(ProcessingRequest(request_body=HttpBody(body=b""))) == {}
    assert request_attributes(tracing=False) == ["request.path", "request.method", "request.id"]
