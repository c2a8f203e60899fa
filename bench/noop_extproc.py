"""The Python floor: a grpc.aio ext_proc (upb stubs, uvloop) that changes nothing.

Envoy runs it with the classic processing modes (request headers SEND, request body BUFFERED,
response headers SEND, response body BUFFERED: `messages_routing: headers`), so it answers the
four messages per request a processor that edits request headers needs; like the gateway it
switches SSE responses to STREAMED with `mode_override`, then answers each body chunk. Every
answer is a precomputed empty response.

With `--backend NAME` it is the floor of the gateway's own flow instead (`messages_routing:
metadata`, three messages per request): Envoy's messages routes skip the request headers, and
the answer to the request body names the backend in dynamic metadata and clears the route cache
(with the header removal Envoy needs before it clears it), as the gateway's answer does, minus
the translated body.

    python bench/noop_extproc.py --listen 127.0.0.1:50061 [--backend default]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ProcessingRequest,
    ProcessingResponse,
)
from google.protobuf.struct_pb2 import Struct

_ANSWERS = {
    "request_headers": ProcessingResponse(request_headers=HeadersResponse()),
    "request_body": ProcessingResponse(request_body=BodyResponse()),
    "response_headers": ProcessingResponse(response_headers=HeadersResponse()),
    "response_body": ProcessingResponse(response_body=BodyResponse()),
}
_STREAM_RESPONSE = ProcessingResponse(
    response_headers=HeadersResponse(),
    mode_override=ProcessingMode(response_body_mode=ProcessingMode.STREAMED),
)


def _routing_answer(backend: str) -> ProcessingResponse:
    """The request-body answer of the three-message flow (extproc/processors/messages.py)."""
    metadata = Struct()
    metadata.update({"extproc": {"backend": backend}})
    common = CommonResponse(header_mutation=HeaderMutation(remove_headers=["x-extproc-backend"]),
                            clear_route_cache=True)
    return ProcessingResponse(request_body=BodyResponse(response=common),
                              dynamic_metadata=metadata)


def _is_sse(request: ProcessingRequest) -> bool:
    for header in request.response_headers.headers.headers:
        if header.key == "content-type":
            value = header.raw_value or header.value.encode()
            return value.startswith(b"text/event-stream")
    return False


class NoopProcessor(ext_proc_grpc.ExternalProcessorServicer):
    # Reads and writes on the context, as the gateway's servicer does (cheaper than grpc.aio's
    # async-generator style), so the floor pays the same per-message protocol cost.
    def __init__(self, backend: str | None = None) -> None:
        self.answers = dict(_ANSWERS)
        if backend is not None:
            self.answers["request_body"] = _routing_answer(backend)

    async def Process(self, request_iterator: object, context: Any) -> None:
        answers = self.answers
        while (request := await context.read()) is not grpc.aio.EOF:
            phase = request.WhichOneof("request")
            if phase == "response_headers" and _is_sse(request):
                await context.write(_STREAM_RESPONSE)
            else:
                await context.write(answers.get(phase or "", answers["request_headers"]))


async def serve(address: str, backend: str | None = None) -> None:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20),
    ])
    ext_proc_grpc.add_ExternalProcessorServicer_to_server(NoopProcessor(backend), server)
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"noop_extproc: cannot listen on {address}")
    await server.start()
    print(f"noop ext_proc listening on {address}", flush=True)
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50061", metavar="HOST:PORT")
    parser.add_argument("--backend", metavar="NAME",
                        help="three-message flow: name this backend in the request-body answer")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.listen, args.backend))
    else:
        uvloop.run(serve(args.listen, args.backend))


if __name__ == "__main__":
    main()
