"""The Python floor: a grpc.aio ext_proc (upb stubs, uvloop) that changes nothing.

Envoy runs it with the classic processing modes (request headers SEND, request body BUFFERED,
response headers SEND, response body BUFFERED: `messages_routing: headers`), so it answers the
four messages per request a processor that edits request headers needs; like the gateway it
switches SSE responses to STREAMED with `mode_override`, then answers each body chunk. Every
answer is a precomputed empty response.

    python bench/noop_extproc.py --listen 127.0.0.1:50061
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
    HeadersResponse,
    ProcessingRequest,
    ProcessingResponse,
)

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


def _is_sse(request: ProcessingRequest) -> bool:
    for header in request.response_headers.headers.headers:
        if header.key == "content-type":
            value = header.raw_value or header.value.encode()
            return value.startswith(b"text/event-stream")
    return False


class NoopProcessor(ext_proc_grpc.ExternalProcessorServicer):
    # Reads and writes on the context, as the gateway's servicer does (cheaper than grpc.aio's
    # async-generator style), so the floor pays the same per-message protocol cost.
    async def Process(self, request_iterator: object, context: Any) -> None:
        while (request := await context.read()) is not grpc.aio.EOF:
            phase = request.WhichOneof("request")
            if phase == "response_headers" and _is_sse(request):
                await context.write(_STREAM_RESPONSE)
            else:
                await context.write(_ANSWERS.get(phase or "", _ANSWERS["request_headers"]))


async def serve(address: str) -> None:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20),
    ])
    ext_proc_grpc.add_ExternalProcessorServicer_to_server(NoopProcessor(), server)
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"noop_extproc: cannot listen on {address}")
    await server.start()
    print(f"noop ext_proc listening on {address}", flush=True)
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50061", metavar="HOST:PORT")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.listen))
    else:
        uvloop.run(serve(args.listen))


if __name__ == "__main__":
    main()
