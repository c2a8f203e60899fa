"""The ExternalProcessor gRPC servicer: one processor per stream, one answer per message."""

from __future__ import annotations

import grpc
import structlog
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpHeaders,
    ProcessingRequest,
)

from extproc.errors import GatewayError
from extproc.gateway import Gateway
from extproc.processors.base import Action, Continue, Processor, RequestInfo, Respond
from extproc.processors.passthrough import UntouchedProcessor
from extproc.service.attributes import attribute_headers
from extproc.service.mutations import render
from extproc.service.registry import split_path

log = structlog.get_logger("extproc.service")

_INTERNAL = GatewayError("the gateway failed to process this request")


def header_dict(headers: HttpHeaders) -> dict[str, str]:
    """Envoy header map -> {lower-case name: value}; Envoy sends values in raw_value."""
    return {h.key: h.raw_value.decode("utf-8", "replace") or h.value for h in headers.headers.headers}


class ExtProcServicer(ext_proc_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.open_streams = 0

    def _open(self, headers: dict[str, str], *, editable: bool = True) -> Processor:
        raw_path = headers.get(":path", "/")
        path, query = split_path(raw_path)
        info = RequestInfo(
            method=headers.get(":method", ""),
            path=path,
            query=query,
            headers=headers,
            request_id=headers.get("x-request-id", ""),
            headers_editable=editable,
        )
        factory = self.gateway.registry.lookup(path) or UntouchedProcessor
        return factory(info, self.gateway)

    async def _without_headers(
        self, phase: str, request: ProcessingRequest
    ) -> tuple[Processor | None, Action]:
        """A stream whose request headers Envoy skipped (`messages_routing: metadata`)."""
        if phase == "request_body":
            # The processor's header step runs on the request attributes.
            processor = self._open(attribute_headers(request), editable=False)
            action = await processor.request_headers(False)
            if not isinstance(action, Respond):
                action = await _dispatch(processor, phase, request)
            return processor, action
        if phase == "response_headers":
            # Envoy answered by itself before a body reached us (a body-less POST, a body
            # over the limit): that answer is already Anthropic-shaped; let it through.
            return None, Continue(skip_rest=True)
        raise RuntimeError(f"{phase} before request_headers")

    async def Process(  # the gRPC method name
        self, request_iterator: object, context: grpc.aio.ServicerContext[ProcessingRequest, bytes]
    ) -> None:
        # Reads and writes on the context, not an async generator over `request_iterator`:
        # grpc.aio wraps both in a generator layer of its own (measured: ~5% less CPU per
        # request with a no-op processor at concurrency 32). Answers leave encoded.
        processor: Processor | None = None
        self.open_streams += 1
        try:
            while (request := await context.read()) is not grpc.aio.EOF:
                phase = request.WhichOneof("request") or "request_headers"
                try:
                    if phase == "request_headers":
                        msg = request.request_headers
                        processor = self._open(header_dict(msg))
                        action = await processor.request_headers(msg.end_of_stream)
                    elif processor is None:
                        processor, action = await self._without_headers(phase, request)
                    else:
                        action = await _dispatch(processor, phase, request)
                except Exception:
                    log.exception("processor_failed", phase=phase)
                    self.gateway.telemetry.metrics.processor_failed(phase)
                    action = Respond.error(_INTERNAL)
                if isinstance(action, Respond) and processor is not None and processor.info.request_id:
                    # Envoy's route names other answers; an immediate one may have no route
                    # entry to do it (a direct-response route under metadata routing).
                    action = action.naming(processor.info.request_id)
                await context.write(render(phase, action))
                if isinstance(action, Continue) and action.skip_rest:
                    # Ending the gRPC stream is the one "no more messages" Envoy honours in
                    # every phase (a mode_override counts only in answers to header messages):
                    # it applies this answer, then lets the rest of the request and response
                    # through untouched. Measured with Envoy 1.40: saves the response_headers
                    # message of pass-through routes and the empty end_of_stream chunk after
                    # a finished SSE translation.
                    return
        finally:
            self.open_streams -= 1
            if processor is not None:
                processor.close()


async def _dispatch(processor: Processor, phase: str, request: ProcessingRequest) -> Action:
    if phase == "request_body":
        body = request.request_body
        return await processor.request_body(body.body, body.end_of_stream)
    if phase == "response_headers":
        msg = request.response_headers
        return await processor.response_headers(header_dict(msg), msg.end_of_stream)
    if phase == "response_body":
        body = request.response_body
        return await processor.response_body(body.body, body.end_of_stream)
    raise RuntimeError(f"unexpected ext_proc message {phase}")


EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"


def add_to_server(server: grpc.aio.Server, servicer: ExtProcServicer) -> None:
    """Register like the generated `add_ExternalProcessorServicer_to_server`, except that
    answers leave already encoded (extproc/service/mutations.py), so no serializer."""
    handlers = {
        "Process": grpc.stream_stream_rpc_method_handler(
            servicer.Process,
            request_deserializer=ProcessingRequest.FromString,
            response_serializer=None,
        )
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(EXT_PROC_SERVICE, handlers),)
    )
    server.add_registered_method_handlers(EXT_PROC_SERVICE, handlers)
