"""Writing responses the way the scripted faults ask: paced, broken, truncated or cut off."""

from __future__ import annotations

import asyncio

from aiohttp import web

from extproc.mock_backend.plan import Faults

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"  # what vLLM's StreamingResponse sends


def json_response(body: bytes, status: int = 200, content_type: str | None = None) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": content_type or JSON})


async def write_stream(
    request: web.Request,
    events: list[bytes],
    *,
    done: bytes | None,
    faults: Faults,
    error_event: bytes | None,
    chunk_delay_s: float,
) -> web.StreamResponse:
    """Write `events` (then `done`), honouring stream_error / disconnect / truncate / pacing.

    `error_event` is what a scripted stream_error writes after `after_chunks` events; for the
    OpenAI API `done` still follows it (vLLM always ends with [DONE]), for Anthropic it does not.
    """
    response = web.StreamResponse(headers={"Content-Type": faults.content_type or SSE})
    await response.prepare(request)
    error_at = faults.stream_error.after_chunks if faults.stream_error else None
    cut_at = faults.disconnect_after_chunks
    for index, data in enumerate(events):
        if error_at is not None and index >= error_at and error_event is not None:
            return await _finish_with_error(response, error_event, done)
        if cut_at is not None and index >= cut_at:
            return _drop_connection(request, response)
        if faults.truncate and index == len(events) - 1:
            await response.write(data[: max(len(data) // 2, 1)])
            await response.write_eof()
            return response
        await response.write(data)
        if chunk_delay_s > 0:
            await asyncio.sleep(chunk_delay_s)
    if error_at is not None and error_event is not None:
        return await _finish_with_error(response, error_event, done)
    if cut_at is not None:
        return _drop_connection(request, response)
    if done is not None:
        await response.write(done)
    await response.write_eof()
    return response


async def write_all_at_once(
    request: web.Request, payload: bytes, content_type: str = SSE
) -> web.StreamResponse:
    """A whole stream in one write: the cheapest way to answer (benchmarks)."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    await response.write(payload)
    await response.write_eof()
    return response


async def _finish_with_error(
    response: web.StreamResponse, error_event: bytes, done: bytes | None
) -> web.StreamResponse:
    await response.write(error_event)
    if done is not None:
        await response.write(done)
    await response.write_eof()
    return response


def _drop_connection(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Close the socket mid-body: the client sees a chunked body that never ends properly."""
    response.force_close()
    if request.transport is not None:
        request.transport.close()
    return response
