"""How many ext_proc messages a request costs: which answers end the ext_proc stream early.

`skip_rest` makes the servicer end the gRPC stream after the answer (Envoy then passes the
rest untouched); these tests pin where the processors ask for it.
"""

from __future__ import annotations

import orjson

from extproc.config import Config
from extproc.gateway import Gateway
from extproc.processors.base import Continue, RequestInfo
from extproc.processors.messages import MessagesProcessor
from extproc.processors.passthrough import ChatCompletionsProcessor

GATEWAY = Gateway(Config.model_validate({"backends": [
    {"name": "vllm", "base_url": "http://127.0.0.1:9/v1",
     "models": [{"name": "qwen3-coder", "aliases": ["claude-*"]}]},
    {"name": "native", "schema": "anthropic", "base_url": "http://127.0.0.1:9",
     "models": [{"name": "served-native", "aliases": ["native-*"]}]},
]}))
SSE = {":status": "200", "content-type": "text/event-stream"}


def processor(path: str = "/v1/messages") -> MessagesProcessor:
    return MessagesProcessor(RequestInfo("POST", path, "", {}, request_id="plan"), GATEWAY)


def request(model: str = "claude-x", stream: bool = True) -> bytes:
    return orjson.dumps({"model": model, "max_tokens": 64, "stream": stream,
                         "messages": [{"role": "user", "content": "hi"}]})


def sse(*events: object) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n\n"
                    for e in events)


TEXT = sse({"id": "c1", "choices": [{"index": 0, "delta": {"content": "hello"}}]})
FINISH = sse({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1}})


async def test_a_finished_stream_ends_the_ext_proc_stream_before_envoys_last_chunk() -> None:
    proc = processor()
    try:
        assert not (await proc.request_body(request(), True)).skip_rest  # type: ignore[union-attr]
        head = await proc.response_headers(SSE, False)
        assert isinstance(head, Continue) and head.stream_response and not head.skip_rest
        first = await proc.response_body(TEXT, False)
        assert isinstance(first, Continue) and not first.skip_rest
        last = await proc.response_body(FINISH + sse(b"[DONE]"), False)
        assert isinstance(last, Continue) and last.skip_rest
        assert last.body is not None and last.body.endswith(b"event: message_stop\ndata: "
                                                           b'{"type":"message_stop"}\n\n')
        # The usage for the access log rides on this answer: Envoy's end_of_stream chunk,
        # which would have carried it, never reaches the processor.
        assert last.metadata is not None and last.metadata["extproc"]["output_tokens"] == 1
        assert proc.record.stop_reason == "end_turn"
    finally:
        proc.close()


async def test_a_stream_ended_by_an_error_keeps_answering_until_the_end() -> None:
    """After `event: error` the backend may still send bytes; they must not reach the client
    raw, so the processor keeps answering (with nothing) instead of ending the stream."""
    proc = processor()
    try:
        await proc.request_body(request(), True)
        await proc.response_headers(SSE, False)
        failed = await proc.response_body(TEXT + b"data: not json\n\n", False)
        assert isinstance(failed, Continue) and not failed.skip_rest
        assert failed.body is not None and b"event: error" in failed.body
        after = await proc.response_body(TEXT + sse(b"[DONE]"), False)
        assert isinstance(after, Continue) and after.body == b"" and not after.skip_rest
    finally:
        proc.close()


COMPLETION = orjson.dumps({
    "id": "c1", "object": "chat.completion", "model": "qwen3-coder",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
})


async def test_a_json_answer_is_buffered_whole_and_its_answer_ends_the_stream() -> None:
    """Envoy would close its side after the buffered body anyway: ending the stream with the
    answer saves the processor a wake-up for that close."""
    proc = processor()
    try:
        await proc.request_body(request(stream=False), True)
        head = await proc.response_headers({":status": "200", "content-type": "application/json"},
                                           False)
        assert isinstance(head, Continue) and not head.stream_response and not head.skip_rest
        answer = await proc.response_body(COMPLETION, True)
        assert isinstance(answer, Continue) and answer.skip_rest
        assert answer.body is not None and orjson.loads(answer.body)["content"] == [
            {"type": "text", "text": "hello"}]
        assert answer.metadata is not None and answer.metadata["extproc"]["output_tokens"] == 1
    finally:
        proc.close()


async def test_a_backend_error_answer_ends_the_stream_with_its_translation() -> None:
    proc = processor()
    try:
        await proc.request_body(request(stream=False), True)
        head = await proc.response_headers({":status": "400", "content-type": "application/json"},
                                           False)
        assert isinstance(head, Continue) and not head.skip_rest
        error = orjson.dumps({"object": "error", "message": "bad", "type": "BadRequestError"})
        answer = await proc.response_body(error, True)
        assert isinstance(answer, Continue) and answer.skip_rest
        assert answer.body is not None and orjson.loads(answer.body)["type"] == "error"
        bodiless = processor()
        try:
            await bodiless.request_body(request(stream=False), True)
            empty = await bodiless.response_headers({":status": "503"}, True)
            assert isinstance(empty, Continue) and empty.skip_rest and empty.body
        finally:
            bodiless.close()
    finally:
        proc.close()


async def test_anthropic_schema_pass_through_reads_the_status_then_ends() -> None:
    """The response headers message stays (the status feeds the metrics); the body never
    comes to the processor."""
    proc = processor()
    try:
        routed = await proc.request_body(request("native-1"), True)
        assert isinstance(routed, Continue) and routed.clear_route_cache and not routed.skip_rest
        head = await proc.response_headers({":status": "529"}, False)
        assert isinstance(head, Continue) and head.skip_rest
        assert proc.status == 529 and proc.record.error_type == "overloaded_error"
    finally:
        proc.close()


async def test_openai_pass_through_ends_with_the_request_body() -> None:
    proc = ChatCompletionsProcessor(
        RequestInfo("POST", "/v1/chat/completions", "", {}, request_id="plan"), GATEWAY)
    try:
        await proc.request_headers(False)
        routed = await proc.request_body(request(stream=False), True)
        assert isinstance(routed, Continue) and routed.skip_rest and routed.clear_route_cache
    finally:
        proc.close()
