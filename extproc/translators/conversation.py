"""Anthropic `system` + `messages` -> OpenAI chat `messages`.

Works on the request dicts after schema validation, so shapes are known and only meaning is
checked here. Anything we cannot carry is named in `dropped`; nothing disappears silently.
The output depends only on the input (no ids, no clocks), so an unchanged conversation prefix
gives byte-identical messages and the backend's prefix cache keeps hitting.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from extproc.errors import InvalidRequest
from extproc.translators.options import RequestOptions
from extproc.translators.server_tools import history_text
from extproc.translators.think_tags import with_think_tags

Block = dict[str, Any]
ChatMessage = dict[str, Any]
ContentPart = dict[str, Any]

# Claude Code's first system block; it changes on every call and would defeat prefix caching.
BILLING_HEADER_PREFIX: Final = "x-anthropic-billing-header:"

# Text parts of one message are joined like vLLM joins them for string-content templates.
PART_SEPARATOR: Final = "\n"
# Between the system prompt and `role: "system"` entries hoisted into it.
SECTION_SEPARATOR: Final = "\n\n"

_ASSISTANT_ONLY: Final = frozenset({"tool_use", "thinking", "redacted_thinking", "server_tool_use"})
_USER_ONLY: Final = frozenset({"tool_result", "image", "document", "search_result"})
_MESSAGE_FIELDS: Final = ("role", "content")


def convert_conversation(
    request: dict[str, Any], options: RequestOptions, dropped: set[str]
) -> list[ChatMessage]:
    system = _system_prompt(request.get("system"), options.strip_billing_header, dropped)
    sections = [system] if system else []
    out: list[ChatMessage] = []
    for index, message in enumerate(request["messages"]):
        role, content = message["role"], message["content"]
        if len(message) > 2:  # nothing but role and content has a place in a chat message
            dropped.update(f"messages.{key}" for key in message if key not in _MESSAGE_FIELDS)
        if role == "user":
            _user(content, f"messages.{index}", out, dropped)
        elif role == "assistant":
            out.append(_assistant(content, f"messages.{index}", options, dropped))
        else:
            text = _system_message_text(
                content, f"messages.{index}", options.strip_billing_header, dropped
            )
            if not text:
                continue
            if options.system_merge == "hoist":
                sections.append(text)
            else:  # Claude Code's own convention for harness-injected context
                out.append(
                    {"role": "user", "content": f"<system-reminder>\n{text}\n</system-reminder>"}
                )
    if sections:
        out.insert(0, {"role": "system", "content": SECTION_SEPARATOR.join(sections)})
    return out


# ---- system ------------------------------------------------------------------------------


def _system_prompt(system: str | list[Block] | None, strip_billing: bool, dropped: set[str]) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return _without_billing_line(system) if strip_billing else system
    texts = []
    for block in system:
        _note_block_fields(block, dropped)
        text = _without_billing_line(block["text"]) if strip_billing else block["text"]
        if text:
            texts.append(text)
    return PART_SEPARATOR.join(texts)


def _system_message_text(
    content: str | list[Block], where: str, strip_billing: bool, dropped: set[str]
) -> str:
    if isinstance(content, str):
        return _without_billing_line(content) if strip_billing else content
    texts = []
    for number, block in enumerate(content):
        if block["type"] != "text":
            raise InvalidRequest(
                f"{where}.content.{number}: a system message may only hold text blocks,"
                f" got {block['type']!r}"
            )
        _note_block_fields(block, dropped)
        text = block["text"]
        if strip_billing and text.startswith(BILLING_HEADER_PREFIX):
            text = _without_billing_line(text)
            if not text:
                continue
        texts.append(text)
    return PART_SEPARATOR.join(texts)


def _without_billing_line(text: str) -> str:
    """The text without Claude Code's leading billing-header line (it changes every call)."""
    if text.startswith(BILLING_HEADER_PREFIX):
        return text.partition("\n")[2]
    return text


# ---- user --------------------------------------------------------------------------------


def _user(
    content: str | list[Block], where: str, out: list[ChatMessage], dropped: set[str]
) -> None:
    """Tool results become `tool` messages first, then one user message with the rest."""
    if isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    parts: list[ContentPart] = []
    tool_images: list[ContentPart] = []
    tool_results = 0
    for number, block in enumerate(content):
        kind = block["type"]
        at = f"{where}.content.{number}"
        _note_block_fields(block, dropped)
        if kind == "text":
            parts.append(_text_part(block["text"]))
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "document":
            parts.extend(_document_parts(block, at, dropped))
        elif kind == "search_result":
            parts.append(_text_part(_search_result_text(block, dropped)))
        elif kind == "tool_result":
            tool_results += 1
            message, images = _tool_result(block, at, dropped)
            out.append(message)
            if images:
                label = f"Image output of tool call {block['tool_use_id']}:"
                tool_images += [_text_part(label), *images]
        elif kind in _ASSISTANT_ONLY:
            raise InvalidRequest(f"{at}: a {kind} block belongs in an assistant message")
        else:
            dropped.add(f"block:{kind}")
    # Images from tool results go with the user's own parts: one user turn, not two in a row.
    parts = tool_images + parts
    if parts or not tool_results:
        out.append({"role": "user", "content": _content(parts)})


def _tool_result(
    block: Block, where: str, dropped: set[str]
) -> tuple[ChatMessage, list[ContentPart]]:
    content = block.get("content", "")
    texts: list[str] = []
    images: list[ContentPart] = []
    if isinstance(content, str):
        texts.append(content)
    else:
        for number, item in enumerate(content):
            kind = item["type"]
            at = f"{where}.content.{number}"
            _note_block_fields(item, dropped)
            if kind == "text":
                texts.append(item["text"])
            elif kind == "image":
                images.append(_image_part(item, at))
            elif kind == "document":
                for part in _document_parts(item, at, dropped):
                    if part["type"] == "text":
                        texts.append(part["text"])
                    else:
                        images.append(part)
            elif kind == "search_result":
                texts.append(_search_result_text(item, dropped))
            elif kind == "tool_reference":
                # A tool search's find (deferred tools): the backend has every tool already,
                # so the model only needs to know which one was meant.
                texts.append(f"Tool found: {item['tool_name']}")
            else:
                dropped.add(f"block:{kind}")
    text = PART_SEPARATOR.join(t for t in texts if t)
    if block.get("is_error"):
        # OpenAI tool messages have no error flag; the model must still see the failure.
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}, images


def _image_part(block: Block, where: str) -> ContentPart:
    source = block["source"]
    kind = source["type"]
    if kind == "base64":
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif kind == "url":
        url = source["url"]
    else:
        raise InvalidRequest(
            f"{where}.source: images by file_id need Anthropic's Files API;"
            " send the image as base64 or a URL"
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document_parts(block: Block, where: str, dropped: set[str]) -> list[ContentPart]:
    source = block["source"]
    kind = source["type"]
    header = PART_SEPARATOR.join(x for x in (block.get("title"), block.get("context")) if x)
    if kind == "text":
        return [_text_part(_titled(header, source["data"]))]
    if kind == "content":
        inner = source["content"]
        if isinstance(inner, str):
            return [_text_part(_titled(header, inner))]
        parts = [_text_part(header)] if header else []
        for number, item in enumerate(inner):
            _note_block_fields(item, dropped)
            if item["type"] == "text":
                parts.append(_text_part(item["text"]))
            else:
                parts.append(_image_part(item, f"{where}.source.content.{number}"))
        return parts
    if kind == "file":
        raise InvalidRequest(
            f"{where}.source: documents by file_id need Anthropic's Files API;"
            " send the document's text as a text document"
        )
    media = source.get("media_type", "application/pdf")
    raise InvalidRequest(
        f"{where}: {media} documents ({kind} source) are not supported by this backend"
        " (OpenAI-compatible chat takes no PDF input); send the text as a text document"
    )


def _titled(header: str, text: str) -> str:
    return f"{header}{PART_SEPARATOR}{text}" if header else text


def _search_result_text(block: Block, dropped: set[str]) -> str:
    texts = []
    for item in block["content"]:
        _note_block_fields(item, dropped)
        texts.append(item["text"])
    return PART_SEPARATOR.join([f"{block['title']} ({block['source']})", *texts])


def _text_part(text: str) -> ContentPart:
    return {"type": "text", "text": text}


def _content(parts: list[ContentPart]) -> str | list[ContentPart]:
    """Text-only content as one string: chat templates expecting strings stay happy."""
    if all(part["type"] == "text" for part in parts):
        if len(parts) == 1:
            return str(parts[0]["text"])
        return PART_SEPARATOR.join(part["text"] for part in parts)
    return parts


# ---- assistant ---------------------------------------------------------------------------


def _assistant(
    content: str | list[Block], where: str, options: RequestOptions, dropped: set[str]
) -> ChatMessage:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for number, block in enumerate(content):
        kind = block["type"]
        at = f"{where}.content.{number}"
        _note_block_fields(block, dropped)
        if kind == "text":
            if block["text"]:
                texts.append(block["text"])
        elif kind == "tool_use":
            calls.append(_tool_call(block, at, options.max_json_depth))
        elif kind == "thinking":
            # Never a content part (vLLM rejects them); the reasoning field, or nothing.
            if options.reasoning_echo == "none":
                dropped.add("block:thinking")
            elif block["thinking"]:
                reasoning.append(block["thinking"])
        elif kind in _USER_ONLY:
            raise InvalidRequest(f"{at}: a {kind} block belongs in a user message")
        elif (text := history_text(block)) is not None:  # an earlier server tool turn
            texts.append(text)
        else:  # redacted_thinking, other server tool results, unknown types
            dropped.add(f"block:{kind}")
    message: ChatMessage = {"role": "assistant"}
    if texts:
        message["content"] = PART_SEPARATOR.join(texts)
    else:
        message["content"] = None if calls else ""
    if reasoning and options.reasoning_echo == "think_tags":
        thought = PART_SEPARATOR.join(reasoning)
        message["content"] = with_think_tags(thought, message["content"] or "")
    elif reasoning:
        message[options.reasoning_echo] = PART_SEPARATOR.join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: Block, where: str, max_depth: int) -> dict[str, Any]:
    tool_input = block["input"]
    if json_deeper_than(tool_input, max_depth):
        raise InvalidRequest(f"{where}.input: nested deeper than {max_depth} levels")
    try:
        arguments = orjson.dumps(tool_input).decode()
    except orjson.JSONEncodeError as exc:
        raise InvalidRequest(f"{where}.input: {exc}") from None
    # id and name exactly as given: the backend's template and the next turn rely on them.
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": arguments},
    }


# ---- shared ------------------------------------------------------------------------------


def _note_block_fields(block: Block, dropped: set[str]) -> None:
    """Block fields an OpenAI backend has no counterpart for, when they ask for something."""
    if block.get("cache_control") is not None:
        dropped.add("cache_control")
    citations = block.get("citations")
    # Text blocks carry a list of citations; documents and search results a switch.
    if citations and not (isinstance(citations, dict) and citations.get("enabled") is False):
        dropped.add("citations")


def json_deeper_than(value: object, limit: int) -> bool:
    """Whether a JSON value nests more than `limit` containers deep (`{}` is depth 1).

    Level by level, without recursion: cheap on wide schemas, safe on deep ones.
    """
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > limit:
            return True
        below = []
        for node in level:
            for child in node.values() if node.__class__ is dict else node:
                if child.__class__ is dict or child.__class__ is list:
                    below.append(child)
        level = below
        depth += 1
    return False
