"""Anthropic server tools (web search, web fetch, code execution) for OpenAI backends.

Anthropic runs these tools itself, inside one request; an OpenAI-compatible backend cannot.
The gateway never lets the model call them as functions, and never answers with a
`tool_use` block the client did not declare (the client would run a tool it does not
have, or loop retrying it). Instead, when a request is *about* a server tool, the gateway
answers for the tool:

- a request is about a server tool when its `tool_choice` names one, or when it declares
  known server tools and no client tool at all (Claude Code's WebSearch side request:
  only `web_search_20250305`, the user text "Perform a web search for the query: ...");
  the first known server tool in request order is the one answered for;
- by default the answer is immediate and complete: `server_tool_use` + the tool's result
  block carrying its `..._tool_result_error` with `error_code: "unavailable"` + a short
  text block saying so, `stop_reason: "end_turn"`. One round trip; nothing to retry;
- web search with an operator's search hook: the gateway runs the search, gives the
  results to the backend as context for its answer, and opens that answer with
  `server_tool_use` + `web_search_tool_result` (see `with_search_results`).

Requests that declare client tools too (and do not force a server tool) go to the backend
without the server tools; the tool guard holds back any call to them.

This module is pure: it plans, builds blocks and renders bodies; the processor does I/O.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from extproc.translators import stream_events as events
from extproc.translators.common import AnthropicUsage

# Claude Code's WebSearch side request phrases the query this way.
CLAUDE_CODE_QUERY_PREFIX: Final = "Perform a web search for the query:"
_URL: Final = re.compile(r"https?://[^\s<>\"')\]]+")


@dataclass(frozen=True, slots=True)
class ServerToolKind:
    name: str  # `server_tool_use.name`
    result_type: str  # the result block's `type`
    error_type: str  # the result error object's `type`
    usage_key: str | None  # Anthropic usage.server_tool_use counter
    label: str  # for the text block


WEB_SEARCH: Final = ServerToolKind(
    "web_search", "web_search_tool_result", "web_search_tool_result_error",
    "web_search_requests", "Web search",
)
WEB_FETCH: Final = ServerToolKind(
    "web_fetch", "web_fetch_tool_result", "web_fetch_tool_result_error",
    "web_fetch_requests", "Web fetch",
)
CODE_EXECUTION: Final = ServerToolKind(
    "code_execution", "code_execution_tool_result", "code_execution_tool_result_error",
    None, "Code execution",
)
BASH_CODE_EXECUTION: Final = ServerToolKind(
    "bash_code_execution", "bash_code_execution_tool_result",
    "bash_code_execution_tool_result_error", None, "Code execution",
)
# Met only in history (the gateway never answers for them): the code execution tool's file
# editor, and tool search (every deferred tool reaches the backend anyway).
TEXT_EDITOR_CODE_EXECUTION: Final = ServerToolKind(
    "text_editor_code_execution", "text_editor_code_execution_tool_result",
    "text_editor_code_execution_tool_result_error", None, "Code execution",
)
TOOL_SEARCH: Final = ServerToolKind(
    "tool_search", "tool_search_tool_result", "tool_search_tool_result_error", None,
    "Tool search",
)


def kind_of(tool_type: str) -> ServerToolKind | None:
    """The server tool a `tools[].type` names; None for others (client tools with a type,
    such as `bash_20250124`, and server tools we do not know)."""
    if tool_type.startswith("web_search_"):
        return WEB_SEARCH
    if tool_type.startswith("web_fetch_"):
        return WEB_FETCH
    if tool_type == "code_execution_20250522":
        return CODE_EXECUTION
    if tool_type.startswith("code_execution_"):  # 20250825 on: bash + text editor sub-tools
        return BASH_CODE_EXECUTION
    return None


@dataclass(frozen=True, slots=True)
class ServerToolCall:
    """The server tool the gateway answers for, and the call it stands in for."""

    kind: ServerToolKind
    tool: Mapping[str, Any]  # the request's tool definition (max_uses, allowed_domains, ...)
    id: str
    input: Mapping[str, Any]

    @property
    def query(self) -> str:
        return str(self.input.get("query", ""))


def plan_server_tool(
    request: Mapping[str, Any], client_tools: frozenset[str] | None
) -> ServerToolCall | None:
    """The server tool this request is about, or None when the backend should answer."""
    known = [
        (tool, kind)
        for tool in request.get("tools") or ()
        if isinstance(tool, Mapping) and isinstance(tool.get("type"), str)
        and (kind := kind_of(tool["type"])) is not None
    ]
    if not known:
        return None
    choice = request.get("tool_choice") or {}
    chosen = None
    if choice.get("type") == "tool":
        chosen = next((item for item in known if item[0].get("name") == choice.get("name")), None)
    elif not client_tools:
        chosen = known[0]
    if chosen is None:
        return None
    tool, kind = chosen
    return ServerToolCall(kind, tool, "srvtoolu_" + secrets.token_hex(12), _input(kind, request))


def _input(kind: ServerToolKind, request: Mapping[str, Any]) -> dict[str, str]:
    text = last_user_text(request)
    if kind is WEB_SEARCH:
        if text.startswith(CLAUDE_CODE_QUERY_PREFIX):
            text = text[len(CLAUDE_CODE_QUERY_PREFIX) :]
        return {"query": " ".join(text.split())}
    if kind is WEB_FETCH:
        url = _URL.search(text)
        return {"url": url.group() if url else ""}
    # No model wrote code: the call is a placeholder the error result answers.
    return {"code": ""} if kind is CODE_EXECUTION else {"command": ""}


def last_user_text(request: Mapping[str, Any]) -> str:
    for message in reversed(request.get("messages") or ()):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content.strip()
        texts = [b.get("text", "") for b in content or () if b.get("type") == "text"]
        return "\n".join(t for t in texts if t).strip()
    return ""


# ---- blocks --------------------------------------------------------------------------------


def tool_use_block(call: ServerToolCall) -> dict[str, Any]:
    return {"type": "server_tool_use", "id": call.id, "name": call.kind.name,
            "input": dict(call.input)}


def error_blocks(call: ServerToolCall, error_code: str, explanation: str) -> list[dict[str, Any]]:
    """The call, its error result, and a sentence for the reader."""
    error = {"type": call.kind.error_type, "error_code": error_code}
    result = {"type": call.kind.result_type, "tool_use_id": call.id, "content": error}
    return [tool_use_block(call), result, {"type": "text", "text": explanation}]


def unavailable_text(call: ServerToolCall) -> str:
    return (
        f"{call.kind.label} is unavailable on this gateway: the model runs on a backend that "
        f"cannot execute Anthropic's server tools, so no {call.kind.name} call was made. "
        "Answer without it; retrying will not help."
    )


@dataclass(frozen=True, slots=True)
class SearchResult:
    url: str
    title: str
    page_age: str | None = None
    content: str = ""


def search_blocks(call: ServerToolCall, results: Sequence[SearchResult]) -> list[dict[str, Any]]:
    """`server_tool_use` + `web_search_tool_result` with real results.

    `encrypted_content` is opaque to clients; ours is the page text, base64url-encoded (no
    secret: it only has to survive the round trip a client may make with it)."""
    content = []
    for result in results:
        encoded = base64.urlsafe_b64encode(result.content.encode()).decode()
        content.append({"type": "web_search_result", "url": result.url, "title": result.title,
                        "encrypted_content": encoded, "page_age": result.page_age})
    result_block = {"type": WEB_SEARCH.result_type, "tool_use_id": call.id, "content": content}
    return [tool_use_block(call), result_block]


def with_search_results(
    request: Mapping[str, Any], call: ServerToolCall, results: Sequence[SearchResult]
) -> dict[str, Any]:
    """The request the backend answers after a search: server tools gone, the results
    appended to the last user turn as text (a chat template renders text the same way
    everywhere; tool-result messages would need a function the model never called)."""
    updated = dict(request)
    tools = [t for t in request.get("tools") or () if kind_of(str(t.get("type") or "")) is None]
    if tools:
        updated["tools"] = tools
    else:
        updated.pop("tools", None)
    # It either named this tool or had only server tools to choose from.
    updated.pop("tool_choice", None)
    messages = list(request["messages"])
    for position in range(len(messages) - 1, -1, -1):
        if messages[position]["role"] == "user":
            message = dict(messages[position])
            content = message["content"]
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            message["content"] = [*blocks, {"type": "text", "text": results_text(call, results)}]
            messages[position] = message
            break
    updated["messages"] = messages
    return updated


def results_text(call: ServerToolCall, results: Sequence[SearchResult]) -> str:
    if not results:
        return f'A web search for "{call.query}" found nothing. Say so, and answer as you can.'
    lines = [f'Web search results for "{call.query}":', ""]
    for number, result in enumerate(results, 1):
        lines.append(f"[{number}] {result.title}")
        lines.append(f"URL: {result.url}")
        if result.page_age:
            lines.append(f"Age: {result.page_age}")
        if result.content:
            lines.append(result.content)
        lines.append("")
    lines.append("Answer from these results and cite the URLs you rely on.")
    return "\n".join(lines)


# ---- earlier server tool turns in history ------------------------------------------------------


def history_text(block: Mapping[str, Any]) -> str | None:
    """An earlier server tool block (`server_tool_use`, or the result of a web search, a web
    fetch, a code execution, a file edit in the code sandbox or a tool search) as text for
    the backend, so the model still knows what was done and found; None: nothing to carry.
    Search results carry titles and URLs only: `encrypted_content` is opaque in Anthropic's
    own results."""
    kind = block.get("type")
    if kind == "server_tool_use":
        return _call_text(block)
    found = _RESULT_TEXT.get(kind) if isinstance(kind, str) else None
    if found is None:
        return None
    tool, read = found
    content = block.get("content")
    if isinstance(content, dict) and isinstance(content.get("error_code"), str):
        message = content.get("error_message")
        detail = f": {message}" if isinstance(message, str) and message else ""
        return f"[{tool.label.lower()} failed: {content['error_code']}{detail}]"
    return read(content)


def _call_text(block: Mapping[str, Any]) -> str | None:
    name = block.get("name")
    arguments = block.get("input")
    query = arguments.get("query") if isinstance(arguments, dict) else None
    if not isinstance(name, str):
        return None
    if isinstance(query, str):
        return f'[{name}: "{query}"]'
    if isinstance(arguments, dict) and arguments:
        return f"[{name}: {orjson.dumps(arguments).decode()}]"
    return f"[{name}]"


def _search_text(content: Any) -> str | None:
    if not isinstance(content, list):
        return None
    lines = ["Web search results:"]
    for result in content:
        if isinstance(result, dict) and isinstance(result.get("url"), str):
            title = result.get("title")
            age = result.get("page_age")
            line = f"- {title} <{result['url']}>" if isinstance(title, str) else f"- <{result['url']}>"
            lines.append(f"{line} ({age})" if isinstance(age, str) and age else line)
    return "\n".join(lines) if len(lines) > 1 else "Web search results: none"


def _fetch_text(content: Any) -> str | None:
    if not isinstance(content, dict) or not isinstance(content.get("url"), str):
        return None
    head = f"Fetched <{content['url']}>"
    document = content.get("content")
    if not isinstance(document, dict):
        return head
    if isinstance(document.get("title"), str) and document["title"]:
        head = f"Fetched {document['title']} <{content['url']}>"
    source = document.get("source")
    if not isinstance(source, dict):
        return head
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return f"{head}:\n{source['data']}"
    media = source.get("media_type")
    return f"{head}: {media} document, not carried as text" if isinstance(media, str) else head


def _execution_text(content: Any) -> str | None:
    if not isinstance(content, dict) or not isinstance(content.get("return_code"), int):
        return None
    parts = [f"Code execution (exit code {content['return_code']})"]
    for stream in ("stdout", "stderr"):
        if isinstance(content.get(stream), str) and content[stream]:
            parts.append(f"{stream}:\n{content[stream]}")
    return "\n".join(parts)


def _editor_text(content: Any) -> str | None:
    kind = content.get("type") if isinstance(content, dict) else None
    if kind == "text_editor_code_execution_view_result" and isinstance(content.get("content"), str):
        if content.get("file_type", "text") != "text":  # an image or a PDF: bytes, not text
            return f"Viewed a file ({content['file_type']}), not carried as text"
        first, total = content.get("start_line"), content.get("total_lines")
        span = f" (from line {first} of {total})" if isinstance(first, int) and total else ""
        return f"Viewed file{span}:\n{content['content']}"
    if kind == "text_editor_code_execution_create_result":
        return "File updated" if content.get("is_file_update") else "File created"
    if kind == "text_editor_code_execution_str_replace_result":
        lines = content.get("lines")
        if isinstance(lines, list) and lines and all(isinstance(line, str) for line in lines):
            return "File edited:\n" + "\n".join(lines)
        return "File edited"
    return None


def _tool_search_text(content: Any) -> str | None:
    if not isinstance(content, dict) or not isinstance(content.get("tool_references"), list):
        return None
    names = [ref["tool_name"] for ref in content["tool_references"]
             if isinstance(ref, dict) and isinstance(ref.get("tool_name"), str)]
    return f"Tool search found: {', '.join(names)}" if names else "Tool search found no tools"


# Result block type -> (its tool, the reader of a successful result's `content`).
_RESULT_TEXT: Final[dict[str, tuple[ServerToolKind, Callable[[Any], str | None]]]] = {
    WEB_SEARCH.result_type: (WEB_SEARCH, _search_text),
    WEB_FETCH.result_type: (WEB_FETCH, _fetch_text),
    CODE_EXECUTION.result_type: (CODE_EXECUTION, _execution_text),
    BASH_CODE_EXECUTION.result_type: (BASH_CODE_EXECUTION, _execution_text),
    TEXT_EDITOR_CODE_EXECUTION.result_type: (TEXT_EDITOR_CODE_EXECUTION, _editor_text),
    TOOL_SEARCH.result_type: (TOOL_SEARCH, _tool_search_text),
}


# ---- a whole answer made by the gateway ----------------------------------------------------


def server_usage(call: ServerToolCall, requests: int) -> dict[str, int] | None:
    """Anthropic's usage.server_tool_use (both counters always present), None for tools
    it does not count."""
    if call.kind.usage_key is None:
        return None
    usage = {"web_search_requests": 0, "web_fetch_requests": 0}
    usage[call.kind.usage_key] = requests
    return usage


def message_body(model: str, blocks: Sequence[Mapping[str, Any]], *, stream: bool,
                 server_tool_use: Mapping[str, int] | None = None) -> bytes:
    """An Anthropic answer (JSON, or the full SSE event sequence) the gateway writes itself:
    no model ran, so every token count is 0."""
    usage: AnthropicUsage = {"input_tokens": 0, "output_tokens": 0,
                             "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    if server_tool_use:
        usage["server_tool_use"] = dict(server_tool_use)
    message_id = "msg_" + secrets.token_hex(12)
    if not stream:
        return orjson.dumps({
            "id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": list(blocks), "stop_reason": "end_turn", "stop_sequence": None,
            "usage": usage,
        })
    parts = [events.message_start(message_id, model, usage), events.PING]
    parts += [events.whole_block(index, block) for index, block in enumerate(blocks)]
    parts += [events.message_delta("end_turn", None, usage), events.MESSAGE_STOP]
    return b"".join(parts)
