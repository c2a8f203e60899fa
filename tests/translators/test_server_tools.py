"""Server tools on OpenAI backends: which requests the gateway answers for, and the exact
Anthropic blocks and bodies it answers with (read back by the anthropic SDK)."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import Message

from extproc.sse import SSEDecoder
from extproc.translators.context import ResponseContext
from extproc.translators.request import RequestOptions, translate_request
from extproc.translators.response import convert_response
from extproc.translators.server_tools import (
    BASH_CODE_EXECUTION,
    CODE_EXECUTION,
    WEB_FETCH,
    WEB_SEARCH,
    SearchResult,
    error_blocks,
    history_text,
    message_body,
    plan_server_tool,
    search_blocks,
    server_usage,
    unavailable_text,
    with_search_results,
)
from extproc.translators.stream import StreamTranslator

WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}
BASH = {"name": "Bash", "input_schema": {"type": "object", "properties": {}}}


def claude_code_web_search(**extra: Any) -> dict[str, Any]:
    """The side request Claude Code's WebSearch tool sends (2.1.x)."""
    return {
        "model": "claude-haiku-4-5", "max_tokens": 32000, "stream": False,
        "system": [{"type": "text", "text": "You are an assistant for performing a web search tool use"}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Perform a web search for the query: vllm prefix caching"}]}],
        "tools": [WEB_SEARCH_TOOL],
        **extra,
    }


def client_tools(request: dict[str, Any]) -> frozenset[str] | None:
    return translate_request(request, RequestOptions(model="m")).context.client_tools


# ---- which requests -------------------------------------------------------------------------


@pytest.mark.parametrize("choice", [None, {"type": "auto"}, {"type": "any"},
                                    {"type": "tool", "name": "web_search"}])
def test_claude_code_web_search_is_answered_for(choice: dict[str, Any] | None) -> None:
    request = claude_code_web_search(**({"tool_choice": choice} if choice else {}))
    call = plan_server_tool(request, client_tools(request))
    assert call is not None and call.kind is WEB_SEARCH
    assert call.input == {"query": "vllm prefix caching"}
    assert call.id.startswith("srvtoolu_")
    assert call.tool["max_uses"] == 8


def test_with_client_tools_the_backend_answers_unless_a_server_tool_is_forced() -> None:
    request = {**claude_code_web_search(), "tools": [BASH, WEB_SEARCH_TOOL]}
    assert plan_server_tool(request, client_tools(request)) is None
    forced = {**request, "tool_choice": {"type": "tool", "name": "web_search"}}
    assert plan_server_tool(forced, client_tools(forced)) is not None
    other = {**request, "tool_choice": {"type": "tool", "name": "Bash"}}
    assert plan_server_tool(other, client_tools(other)) is None


def test_client_tools_with_a_type_are_not_server_tools() -> None:
    request = {**claude_code_web_search(),
               "tools": [{"type": "bash_20250124", "name": "bash"},
                         {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}]}
    assert plan_server_tool(request, frozenset()) is None


def test_no_tools_no_plan() -> None:
    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert plan_server_tool(request, frozenset()) is None


@pytest.mark.parametrize(("tool_type", "kind", "tool_input"), [
    ("web_fetch_20250910", WEB_FETCH, {"url": "https://example.com/a?b=1"}),
    ("code_execution_20250522", CODE_EXECUTION, {"code": ""}),
    ("code_execution_20250825", BASH_CODE_EXECUTION, {"command": ""}),
])
def test_other_server_tools(tool_type: str, kind: Any, tool_input: dict[str, str]) -> None:
    request = {"model": "m", "max_tokens": 5, "tools": [{"type": tool_type, "name": "x"}],
               "messages": [{"role": "user", "content": "Read https://example.com/a?b=1 please"}]}
    call = plan_server_tool(request, frozenset())
    assert call is not None and call.kind is kind and call.input == tool_input


# ---- what the client gets -------------------------------------------------------------------


def sdk_message(body: bytes) -> Message:
    return Message.model_validate(orjson.loads(body))


@pytest.mark.parametrize("tool_type", ["web_search_20250305", "web_fetch_20250910",
                                       "code_execution_20250522", "code_execution_20250825"])
def test_unavailable_answer_is_a_complete_message_the_sdk_reads(tool_type: str) -> None:
    request = {"model": "m", "max_tokens": 5, "tools": [{"type": tool_type, "name": "x"}],
               "messages": [{"role": "user", "content": "go"}]}
    call = plan_server_tool(request, frozenset())
    assert call is not None
    blocks = error_blocks(call, "unavailable", unavailable_text(call))
    message = sdk_message(message_body("claude-x", blocks, stream=False))
    use, result, text = message.content
    assert use.type == "server_tool_use" and use.name == call.kind.name
    assert result.type == call.kind.result_type and result.tool_use_id == use.id
    assert result.content.type == call.kind.error_type  # type: ignore[union-attr]
    assert result.content.error_code == "unavailable"  # type: ignore[union-attr]
    assert text.type == "text" and "unavailable on this gateway" in text.text
    assert message.stop_reason == "end_turn" and message.model == "claude-x"
    assert not [b for b in message.content if b.type == "tool_use"]


def test_unavailable_answer_streams_with_the_exact_event_grammar() -> None:
    request = claude_code_web_search(stream=True)
    call = plan_server_tool(request, frozenset())
    assert call is not None
    blocks = error_blocks(call, "unavailable", unavailable_text(call))
    body = message_body("claude-x", blocks, stream=True)
    names = [event.event for event in SSEDecoder().feed(body)]
    assert names == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_stop",  # server_tool_use
        "content_block_start", "content_block_stop",  # web_search_tool_result
        "content_block_start", "content_block_delta", "content_block_stop",  # text
        "message_delta", "message_stop",
    ]
    final = read_stream_with_sdk(body)
    assert [b.model_dump(exclude_none=True) for b in final.content] == blocks
    assert final.stop_reason == "end_turn"


def read_stream_with_sdk(body: bytes) -> Message:
    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    with httpx2.Client(transport=httpx2.MockTransport(respond)) as http:
        client = anthropic.Anthropic(api_key="t", base_url="http://sdk.test", http_client=http,
                                     max_retries=0)
        with client.messages.stream(model="m", max_tokens=5,
                                    messages=[{"role": "user", "content": "x"}]) as stream:
            return stream.get_final_message()


RESULTS = [
    SearchResult("https://docs.vllm.ai/prefix", "Automatic Prefix Caching", "2 days ago",
                 "vLLM caches KV blocks of shared prefixes."),
    SearchResult("https://example.org/b", "Another page"),
]


def test_search_blocks_carry_results_and_content_round_trips() -> None:
    call = plan_server_tool(claude_code_web_search(), frozenset())
    assert call is not None
    use, result = search_blocks(call, RESULTS)
    assert use == {"type": "server_tool_use", "id": call.id, "name": "web_search",
                   "input": {"query": "vllm prefix caching"}}
    first = result["content"][0]
    assert first["type"] == "web_search_result" and first["page_age"] == "2 days ago"
    assert base64.urlsafe_b64decode(first["encrypted_content"]).decode() == RESULTS[0].content
    assert result["content"][1]["page_age"] is None


def test_with_search_results_feeds_the_backend_text_and_no_server_tools() -> None:
    request = claude_code_web_search(tool_choice={"type": "tool", "name": "web_search"})
    call = plan_server_tool(request, frozenset())
    assert call is not None
    updated = with_search_results(request, call, RESULTS)
    assert "tools" not in updated and "tool_choice" not in updated
    assert request["tools"] == [WEB_SEARCH_TOOL]  # the input is not changed
    last = updated["messages"][-1]["content"]
    assert last[0]["text"].startswith("Perform a web search")
    assert '[1] Automatic Prefix Caching\nURL: https://docs.vllm.ai/prefix' in last[1]["text"]
    body = orjson.loads(translate_request(updated, RequestOptions(model="m")).body)
    assert "tools" not in body and "vLLM caches KV blocks" in body["messages"][-1]["content"]


def test_backend_answer_after_a_search_opens_with_the_search_blocks() -> None:
    call = plan_server_tool(claude_code_web_search(), frozenset())
    assert call is not None
    context = ResponseContext(model="claude-x", client_tools=frozenset(),
                              leading_blocks=tuple(search_blocks(call, RESULTS)),
                              server_tool_usage=server_usage(call, 1))
    completion = {"id": "chatcmpl-s", "choices": [{"index": 0, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": "Prefix caching reuses KV blocks."}}],
                  "usage": {"prompt_tokens": 10, "completion_tokens": 6}}
    message = sdk_message(convert_response(orjson.dumps(completion), context).body)
    assert [b.type for b in message.content] == ["server_tool_use", "web_search_tool_result", "text"]
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 1

    chunks = [
        {"id": "chatcmpl-s", "choices": [{"index": 0, "delta": {"content": "Prefix caching"}}]},
        {"id": "chatcmpl-s", "choices": [{"index": 0, "delta": {"content": " reuses blocks."},
                                          "finish_reason": "stop"}]},
        {"id": "chatcmpl-s", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 6}},
    ]
    sse = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    translator = StreamTranslator(context)
    streamed = read_stream_with_sdk(translator.feed(sse) + translator.finish())
    assert [b.type for b in streamed.content] == ["server_tool_use", "web_search_tool_result", "text"]
    assert streamed.content[0].model_dump(exclude_none=True) == context.leading_blocks[0]
    assert streamed.content[2].text == "Prefix caching reuses blocks."  # type: ignore[union-attr]


# ---- earlier server tool turns come back in history ---------------------------------------


@pytest.mark.parametrize(("block", "text"), [
    ({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
      "input": {"query": "vllm ext_proc"}}, '[web_search: "vllm ext_proc"]'),
    ({"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_fetch",
      "input": {"url": "https://vllm.ai"}}, '[web_fetch: {"url":"https://vllm.ai"}]'),
    ({"type": "server_tool_use", "id": "srvtoolu_3", "name": "web_search", "input": {}},
     "[web_search]"),
    ({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
        {"type": "web_search_result", "url": "https://vllm.ai", "title": "vLLM",
         "encrypted_content": "opaque", "page_age": "1 day ago"},
        {"type": "web_search_result", "url": "https://docs.vllm.ai", "encrypted_content": "x"},
    ]}, "Web search results:\n- vLLM <https://vllm.ai> (1 day ago)\n- <https://docs.vllm.ai>"),
    ({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
     "Web search results: none"),
    ({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
      "content": {"type": "web_search_tool_result_error", "error_code": "too_many_requests"}},
     "[web search failed: too_many_requests]"),
    ({"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_2", "content": {
        "type": "web_fetch_result", "url": "https://vllm.ai", "retrieved_at": "2026-11-01",
        "content": {"type": "document", "title": "vLLM",
                    "source": {"type": "text", "media_type": "text/plain", "data": "Fast LLM serving."}},
    }}, "Fetched vLLM <https://vllm.ai>:\nFast LLM serving."),
    ({"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_2", "content": {
        "type": "web_fetch_result", "url": "https://arxiv.org/pdf/1",
        "content": {"type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
    }}, "Fetched <https://arxiv.org/pdf/1>: application/pdf document, not carried as text"),
    ({"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_2",
      "content": {"type": "web_fetch_tool_result_error", "error_code": "url_not_accessible"}},
     "[web fetch failed: url_not_accessible]"),
    ({"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_4", "content": {
        "type": "code_execution_result", "stdout": "4\n", "stderr": "", "return_code": 0,
        "content": []}}, "Code execution (exit code 0)\nstdout:\n4\n"),
    ({"type": "bash_code_execution_tool_result", "tool_use_id": "srvtoolu_5", "content": {
        "type": "bash_code_execution_result", "stdout": "", "stderr": "ls: no such file",
        "return_code": 2, "content": []}}, "Code execution (exit code 2)\nstderr:\nls: no such file"),
    ({"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_4",
      "content": {"type": "code_execution_tool_result_error", "error_code": "unavailable"}},
     "[code execution failed: unavailable]"),
    ({"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_6", "content": {
        "type": "text_editor_code_execution_view_result", "file_type": "text",
        "content": "import os\nprint(os.getcwd())", "start_line": 1, "num_lines": 2,
        "total_lines": 2}}, "Viewed file (from line 1 of 2):\nimport os\nprint(os.getcwd())"),
    ({"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_6", "content": {
        "type": "text_editor_code_execution_view_result", "file_type": "image",
        "content": "iVBORw0KGgo="}}, "Viewed a file (image), not carried as text"),
    ({"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_7", "content": {
        "type": "text_editor_code_execution_create_result", "is_file_update": False}},
     "File created"),
    ({"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_7", "content": {
        "type": "text_editor_code_execution_create_result", "is_file_update": True}},
     "File updated"),
    ({"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_8", "content": {
        "type": "text_editor_code_execution_str_replace_result", "old_start": 3, "old_lines": 1,
        "new_start": 3, "new_lines": 1, "lines": ["-x = 1", "+x = 2"]}},
     "File edited:\n-x = 1\n+x = 2"),
    ({"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_8", "content": {
        "type": "text_editor_code_execution_tool_result_error", "error_code": "file_not_found",
        "error_message": "/tmp/a.py does not exist"}},
     "[code execution failed: file_not_found: /tmp/a.py does not exist]"),
    ({"type": "tool_search_tool_result", "tool_use_id": "srvtoolu_9", "content": {
        "type": "tool_search_tool_search_result", "tool_references": [
            {"type": "tool_reference", "tool_name": "get_weather"},
            {"type": "tool_reference", "tool_name": "get_forecast"}]}},
     "Tool search found: get_weather, get_forecast"),
    ({"type": "tool_search_tool_result", "tool_use_id": "srvtoolu_9", "content": {
        "type": "tool_search_tool_search_result", "tool_references": []}},
     "Tool search found no tools"),
    ({"type": "tool_search_tool_result", "tool_use_id": "srvtoolu_9", "content": {
        "type": "tool_search_tool_result_error", "error_code": "too_many_requests"}},
     "[tool search failed: too_many_requests]"),
])
def test_earlier_server_tool_blocks_become_text_the_model_can_read(
    block: dict[str, Any], text: str
) -> None:
    assert history_text(block) == text


@pytest.mark.parametrize("block", [
    {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_1", "content": {}},
    {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_1",
     "content": {"type": "code_execution_result", "stdout": "4"}},
    {"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_1",
     "content": {"type": "text_editor_code_execution_view_result", "content": 7}},
    {"type": "text_editor_code_execution_tool_result", "tool_use_id": "srvtoolu_1",
     "content": {"type": "text_editor_code_execution_later_result"}},
    {"type": "tool_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": "junk"},
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": 7, "input": {}},
])
def test_server_tool_blocks_we_cannot_read_are_left_out(block: dict[str, Any]) -> None:
    assert history_text(block) is None
