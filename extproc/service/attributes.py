"""Request attributes: what Envoy tells us about a request whose headers message it skipped.

Under `messages_routing: metadata` the first message of a `POST /v1/messages` stream is the
body; Envoy adds the attributes the rendered config asks for (CEL expressions, evaluated on
the request headers) to it. Processors read them as the headers they stand for.
"""

from __future__ import annotations

from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingRequest

# The ext_proc filter's name in the rendered config; Envoy files the attributes under it.
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
# Attribute -> the header it stands for.
AS_HEADERS = {"request.path": ":path", "request.method": ":method", "request.id": "x-request-id"}
# Read for tracing only: the incoming trace context.
TRACE_HEADERS = ("traceparent", "tracestate")


def request_attributes(tracing: bool) -> list[str]:
    """What the rendered ext_proc filter asks Envoy to send."""
    names = list(AS_HEADERS)
    if tracing:
        names += (f"request.headers['{name}']" for name in TRACE_HEADERS)
    return names


_HEADER_OF = {**AS_HEADERS, **{f"request.headers['{name}']": name for name in TRACE_HEADERS}}


def attribute_headers(request: ProcessingRequest) -> dict[str, str]:
    """The attributes of `request` as {header name: value}; unknown or non-text ones left out."""
    attributes = request.attributes
    if EXT_PROC_FILTER not in attributes:
        return {}
    fields = attributes[EXT_PROC_FILTER].fields
    headers = {}
    for name, header in _HEADER_OF.items():  # a few lookups rather than a walk over the map
        if name in fields:
            value = fields[name]
            if value.WhichOneof("kind") == "string_value":
                headers[header] = value.string_value
    return headers
