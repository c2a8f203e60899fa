"""Beyond plain translation, through real Envoy: two backends (an OpenAI-schema vLLM mock and
an Anthropic-schema mock) routed by model name, count_tokens, /v1/models, server tools
(web search answered in one round trip, with and without a search hook), tool calls written
as text rescued into tool_use blocks, and byte-stable prefixes across turns."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message

from e2e.harness import Gateway, MockBackend, start_gateway, start_mock
from extproc.mock_backend.tokenizer import count_tokens, render_openai_prompt
from extproc.translators.token_estimate import estimate_tokens, prompt_bytes

VLLM_KEY, ANTHROPIC_KEY, CLIENT_KEY = "sk-vllm-e2e", "sk-ant-backend-e2e", "sk-client-e2e"
BASH = {"name": "Bash", "description": "Run a shell command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"},
                                     "timeout": {"type": "number"}},
    "required": ["command"]}}
WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}
SEARCH_RESULTS = [
    {"url": "https://www.envoyproxy.io/docs/ext_proc", "title": "External Processing",
     "page_age": "3 days ago", "content": "Envoy's ext_proc filter streams HTTP to a gRPC service."},
    {"url": "https://vllm.ai/blog/prefix", "title": "Prefix caching in vLLM"},
]


# ---- processes ------------------------------------------------------------------------------


class SearchHook:
    """The operator's search endpoint: answers SEARCH_RESULTS, records each query."""

    def __init__(self) -> None:
        self.queries: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's method name
                length = int(self.headers.get("content-length", "0"))
                hook.queries.append(json.loads(self.rfile.read(length)))
                body = json.dumps({"results": SEARCH_RESULTS}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/search"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def vllm(workdir: Path) -> Iterator[MockBackend]:
    mock = start_mock(workdir)
    yield mock
    mock.http.close()
    mock.process.stop()


@pytest.fixture(scope="module")
def claude(workdir: Path) -> Iterator[MockBackend]:
    """A second mock process, used through its Anthropic /v1/messages endpoint."""
    mock = start_mock(workdir)
    yield mock
    mock.http.close()
    mock.process.stop()


@pytest.fixture(scope="module")
def hook() -> Iterator[SearchHook]:
    server = SearchHook()
    yield server
    server.close()


@pytest.fixture(scope="module")
def multi(workdir: Path, vllm: MockBackend, claude: MockBackend, hook: SearchHook
          ) -> Iterator[Gateway]:
    config = {
        "backends": [
            {"name": "vllm", "schema": "openai", "base_url": vllm.url + "/v1",
             "api_key_env": "E2E_VLLM_KEY", "tool_call_rescue": True,
             "models": [
                 {"name": "qwen3-coder", "aliases": ["claude-sonnet-*", "sonnet"]},
                 {"name": "glm-4.6", "aliases": ["claude-haiku-*"],
                  "options": {"max_output_tokens": 2048}},
             ]},
            {"name": "vllm-estimate", "schema": "openai", "base_url": vllm.url + "/v1",
             "count_tokens": "estimate", "models": [{"name": "kimi-k2"}]},
            {"name": "claude", "schema": "anthropic", "base_url": claude.url,
             "api_key_env": "E2E_ANTHROPIC_KEY",
             "models": [{"name": "claude-opus-4-1", "aliases": ["claude-opus-*"]}]},
        ],
        "web_search": {"url": hook.url, "timeout_s": 2},
        "timeouts": {"extproc_message_s": 5, "request_s": 30, "drain_s": 2},
    }
    env = {"E2E_VLLM_KEY": VLLM_KEY, "E2E_ANTHROPIC_KEY": ANTHROPIC_KEY}
    gw = start_gateway(workdir, config, env=env)
    yield gw
    gw.process.stop()


@pytest.fixture
def client(multi: Gateway, vllm: MockBackend, claude: MockBackend, hook: SearchHook
           ) -> Iterator[anthropic.Anthropic]:
    vllm.reset()
    claude.reset()
    hook.queries.clear()
    sdk = anthropic.Anthropic(base_url=multi.url, api_key=CLIENT_KEY, max_retries=0, timeout=30)
    yield sdk
    sdk.close()


def only_request(mock: MockBackend) -> dict[str, Any]:
    seen = mock.requests()
    assert len(seen) == 1, seen
    return seen[0]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# ---- routing by model name ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_openai_schema_backend_by_glob_alias(client: anthropic.Anthropic, vllm: MockBackend,
                                             claude: MockBackend, stream: bool) -> None:
    vllm.script({"text": "from vllm"})
    params: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 64,
                              "messages": user("hi")}
    if stream:
        with client.messages.stream(**params) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**params)
    assert message.content[0].text == "from vllm"  # type: ignore[union-attr]
    assert message.model == "claude-sonnet-4-6"
    seen = only_request(vllm)
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == "qwen3-coder"
    assert seen["headers"]["authorization"] == f"Bearer {VLLM_KEY}"
    assert "x-api-key" not in seen["headers"]
    assert claude.requests() == []


def test_per_model_knobs_apply_per_backend_model(client: anthropic.Anthropic,
                                                 vllm: MockBackend) -> None:
    client.messages.create(model="claude-haiku-4-5", max_tokens=32000, messages=user("hi"))
    body = only_request(vllm)["body"]
    assert body["model"] == "glm-4.6" and body["max_tokens"] == 2048


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_schema_backend_gets_the_anthropic_body(
    client: anthropic.Anthropic, vllm: MockBackend, claude: MockBackend, stream: bool
) -> None:
    claude.script({"text": "from the anthropic backend"})
    params: dict[str, Any] = {"model": "claude-opus-4-1-20250805", "max_tokens": 64,
                              "system": "Be brief.", "messages": user("hello"),
                              "metadata": {"user_id": "u-1"}}
    if stream:
        with client.messages.stream(**params) as events:
            message = events.get_final_message()
            request_id = events.response.headers.get("request-id")
    else:
        message = client.messages.create(**params)
        request_id = message._request_id
    assert message.content[0].text == "from the anthropic backend"  # type: ignore[union-attr]
    assert request_id is not None and request_id.startswith("req_mock_")  # the backend's, kept
    seen = only_request(claude)
    assert seen["path"] == "/v1/messages"
    expected = {**params, "model": "claude-opus-4-1"}
    if stream:
        expected["stream"] = True
    assert seen["body"] == expected  # the client's body, only the model renamed
    headers = seen["headers"]
    assert headers["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in headers
    assert CLIENT_KEY not in json.dumps(headers)
    assert headers["anthropic-version"]  # the client's, forwarded
    assert vllm.requests() == []


def test_unknown_model_is_an_anthropic_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(model="gpt-4o", max_tokens=5, messages=user("hi"))
    assert "gpt-4o" in str(raised.value)


# ---- count_tokens ---------------------------------------------------------------------------


def test_count_tokens_exact_from_tokenize(client: anthropic.Anthropic, vllm: MockBackend) -> None:
    counted = client.messages.count_tokens(
        model="claude-sonnet-4-6", system="You are terse.", tools=[BASH],  # type: ignore[list-item]
        messages=user("How many tokens is this?"))
    seen = only_request(vllm)
    assert seen["path"] == "/tokenize"
    assert seen["headers"]["authorization"] == f"Bearer {VLLM_KEY}"
    sent = seen["body"]
    assert sent["model"] == "qwen3-coder" and sent["tools"][0]["function"]["name"] == "Bash"
    expected = count_tokens(render_openai_prompt(sent["messages"], sent["tools"], True))
    assert counted.input_tokens == expected > 0


def test_count_tokens_estimate_without_tokenize(client: anthropic.Anthropic,
                                                vllm: MockBackend) -> None:
    text = "Estimate me " * 40
    counted = client.messages.count_tokens(model="kimi-k2", messages=user(text))
    assert vllm.requests() == []
    chat = {"messages": [{"role": "user", "content": text}]}
    assert counted.input_tokens == estimate_tokens(prompt_bytes(chat))


def test_count_tokens_passes_through_to_anthropic_backends(
    client: anthropic.Anthropic, claude: MockBackend
) -> None:
    counted = client.messages.count_tokens(model="claude-opus-4-1", messages=user("count"))
    seen = only_request(claude)
    assert seen["path"] == "/v1/messages/count_tokens"
    assert seen["body"]["model"] == "claude-opus-4-1"
    assert seen["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert counted.input_tokens > 0


# ---- /v1/models -----------------------------------------------------------------------------


def test_models_list_and_retrieve(client: anthropic.Anthropic) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids == ["qwen3-coder", "sonnet", "glm-4.6", "kimi-k2", "claude-opus-4-1"]
    page = client.models.list(limit=2)
    assert [m.id for m in page.data] == ["qwen3-coder", "sonnet"] and page.has_more
    assert client.models.retrieve("sonnet").display_name == "sonnet (alias of qwen3-coder)"
    assert client.models.retrieve("claude-opus-4-1-20250805").id == "claude-opus-4-1-20250805"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("gpt-4o")


# ---- server tools ---------------------------------------------------------------------------


def claude_code_web_search(query: str, **extra: Any) -> dict[str, Any]:
    """The side request Claude Code's WebSearch tool makes."""
    return {
        "model": "claude-sonnet-4-6", "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197;"},
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "You are an assistant for performing a web search tool use"},
        ],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": f"Perform a web search for the query: {query}"}]}],
        "tools": [WEB_SEARCH_TOOL],
        **extra,
    }


def run_like_an_agent(sdk: anthropic.Anthropic, params: dict[str, Any], stream: bool
                      ) -> tuple[Message, int]:
    """Call until the model stops asking for tools, as a client loop does; count the rounds."""
    messages = list(params["messages"])
    for rounds in range(1, 4):
        request = {**params, "messages": messages}
        if stream:
            with sdk.messages.stream(**request) as events:
                message = events.get_final_message()
        else:
            message = sdk.messages.create(**request)
        calls = [block for block in message.content if block.type == "tool_use"]
        if not calls:
            return message, rounds
        messages += [{"role": "assistant", "content": message.content},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id,
                                                   "content": "no such tool"} for c in calls]}]
    raise AssertionError("the client looped")


@pytest.mark.parametrize("stream", [False, True])
def test_web_search_without_a_hook_ends_in_one_round_trip(
    anthropic_client: anthropic.Anthropic, backend: MockBackend, stream: bool
) -> None:
    """The session gateway has no search hook: the gateway answers, the backend sees nothing."""
    params = claude_code_web_search("envoy ext_proc", tool_choice={"type": "tool",
                                                                    "name": "web_search"})
    message, rounds = run_like_an_agent(anthropic_client, params, stream)
    assert rounds == 1
    assert [b.type for b in message.content] == ["server_tool_use", "web_search_tool_result", "text"]
    use, result, text = message.content
    assert use.input == {"query": "envoy ext_proc"}  # type: ignore[union-attr]
    assert result.tool_use_id == use.id  # type: ignore[union-attr]
    assert result.content.error_code == "unavailable"  # type: ignore[union-attr]
    assert "unavailable on this gateway" in text.text  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert backend.requests() == []


def test_web_search_streams_exact_sse_through_envoy(gateway: Gateway) -> None:
    body = claude_code_web_search("sse grammar", stream=True)
    reply = httpx.post(gateway.url + "/v1/messages", json=body, timeout=10,
                       headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    names = [line[7:] for line in reply.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 3


@pytest.mark.parametrize("stream", [False, True])
def test_web_search_with_the_hook_returns_results_and_the_backend_answers(
    client: anthropic.Anthropic, vllm: MockBackend, hook: SearchHook, stream: bool
) -> None:
    vllm.script({"text": "ext_proc sends HTTP to a gRPC service [1]."})
    message, rounds = run_like_an_agent(client, claude_code_web_search("envoy ext_proc"), stream)
    assert rounds == 1
    assert [b.type for b in message.content] == ["server_tool_use", "web_search_tool_result", "text"]
    use, result, text = message.content
    assert hook.queries == [{"query": "envoy ext_proc", "max_results": 5}]
    assert [r.url for r in result.content] == [r["url"] for r in SEARCH_RESULTS]  # type: ignore[union-attr]
    assert result.tool_use_id == use.id  # type: ignore[union-attr]
    assert text.text == "ext_proc sends HTTP to a gRPC service [1]."  # type: ignore[union-attr]
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 1
    backend_body = only_request(vllm)["body"]
    assert "tools" not in backend_body
    assert "Envoy's ext_proc filter streams HTTP" in backend_body["messages"][-1]["content"]


def test_server_tools_beside_client_tools_never_reach_the_client_as_tool_use(
    client: anthropic.Anthropic, vllm: MockBackend
) -> None:
    """The model calls `web_search` as if it were a function: held back, not a tool_use."""
    vllm.script({"tool_calls": [{"name": "web_search", "arguments": {"query": "x"}}]})
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                                     tools=[BASH, WEB_SEARCH_TOOL],  # type: ignore[list-item]
                                     messages=user("search the web"))
    assert not [b for b in message.content if b.type == "tool_use"]
    assert message.stop_reason == "end_turn"
    assert [t["function"]["name"] for t in only_request(vllm)["body"]["tools"]] == ["Bash"]


# ---- tool calls written as text -------------------------------------------------------------


@pytest.mark.parametrize("family", ["qwen3", "glm", "kimi"])
@pytest.mark.parametrize("stream", [False, True])
def test_text_written_tool_calls_become_tool_use(client: anthropic.Anthropic, vllm: MockBackend,
                                                 family: str, stream: bool) -> None:
    vllm.script({"family": family, "text_tool_calls": True, "tool_calls": [
        {"name": "Bash", "arguments": {"command": "ls -la", "timeout": 30}}]})
    params: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 256, "tools": [BASH],
                              "messages": user("list files")}
    if stream:
        with client.messages.stream(**params) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**params)
    assert message.stop_reason == "tool_use"
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [(c.name, c.input) for c in calls] == [("Bash", {"command": "ls -la", "timeout": 30})]
    texts = "".join(b.text for b in message.content if b.type == "text")
    assert "tool_call" not in texts and "<|" not in texts
    if family == "kimi":
        assert calls[0].id.startswith("functions.Bash:")


# ---- prefix caching -------------------------------------------------------------------------


CLAUDE_CODE_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "claude-code"


def test_two_turns_of_claude_code_share_a_byte_identical_prefix(
    multi: Gateway, vllm: MockBackend
) -> None:
    if not CLAUDE_CODE_FIXTURES.is_dir():
        pytest.skip(f"Claude Code fixtures not found at {CLAUDE_CODE_FIXTURES}")
    vllm.reset()
    raw = []
    for name in ("01-first-request-tool-turn.json", "02-followup-with-tool-result.json"):
        fixture = json.loads((CLAUDE_CODE_FIXTURES / name).read_text())
        headers = {k: v for k, v in fixture["headers"].items()
                   if k.lower() not in ("host", "content-length", "accept-encoding")}
        with httpx.stream("POST", multi.url + fixture["path"], json=fixture["body"],
                          headers=headers, timeout=30) as reply:
            assert reply.status_code == 200
            reply.read()
        raw.append(base64.b64decode(vllm.requests()[-1]["raw_body"]))
    first, second = raw
    assert first.endswith(b"]}")
    assert second.startswith(first[:-2] + b",")  # turn 2 = turn 1 + more messages
    assert len(second) > len(first)


# ---- pass-through answers stream ------------------------------------------------------------


@pytest.mark.parametrize(("path", "model", "body_extra"), [
    ("/v1/chat/completions", "qwen3-coder", {}),  # OpenAI clients sharing the gateway
    ("/v1/messages", "claude-opus-4-1", {"max_tokens": 64}),  # an Anthropic-schema backend
])
def test_pass_through_answers_are_streamed_not_buffered(
    multi: Gateway, vllm: MockBackend, claude: MockBackend, path: str, model: str,
    body_extra: dict[str, Any],
) -> None:
    """The processors are done with these after the request body (OpenAI clients) or the
    response headers (Anthropic backends), and end the ext_proc stream: a mode_override in a
    body answer would be ignored, and the SSE answer buffered whole (one piece at the end)."""
    for mock in (vllm, claude):
        mock.reset()
        mock.script({"text": "one two three four five six", "chunk_delay_s": 0.2})
    body = {"model": model, "stream": True, "messages": user("count"), **body_extra}
    with httpx.stream("POST", multi.url + path, json=body, timeout=30,
                      headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
                      ) as reply:
        assert reply.status_code == 200
        pieces = [piece for piece in reply.iter_raw() if piece]
    assert len(pieces) > 3, pieces  # events arrive as written, 0.2 s apart
    assert b"three" in b"".join(pieces)
