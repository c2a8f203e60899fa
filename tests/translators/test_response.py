"""OpenAI chat.completion -> Anthropic message, and backend errors -> Anthropic errors.

Golden cases live in tests/golden/response/<case>/: `openai.json` (the backend's body),
optional `context.json` (ResponseContext fields), `anthropic.json` (the exact body the client
gets) and `report.json` (stop reason, held-back and truncated tool calls).
`UPDATE_GOLDEN=1 pytest` writes the expected files, which are then reviewed by hand.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from extproc.errors import BackendError
from extproc.schemas.anthropic import ErrorResponse, Message
from extproc.schemas.openai import ChatCompletion
from extproc.translators.common import THINKING_SIGNATURE
from extproc.translators.context import ResponseContext
from extproc.translators.response import (
    TranslatedResponse,
    convert_response,
    translate_error,
    translate_response,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "response"
CASES = sorted(path.name for path in GOLDEN.iterdir() if path.is_dir())
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CONTEXT = ResponseContext(model="claude-sonnet-4-5")


def pretty(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def load_context(folder: Path) -> ResponseContext:
    path = folder / "context.json"
    fields = orjson.loads(path.read_bytes()) if path.exists() else {}
    return ResponseContext(
        model=fields.get("model", "claude-sonnet-4-5"),
        stop_sequences=tuple(fields.get("stop_sequences", ())),
        client_tools=frozenset(fields["client_tools"]) if "client_tools" in fields else None,
        tool_call_rescue=fields.get("tool_call_rescue", False),
        think_tags=fields.get("think_tags", False),
    )


def report(translated: TranslatedResponse) -> dict[str, Any]:
    return {
        "stop_reason": translated.stop_reason,
        "unknown_tool_calls": [dataclasses.asdict(call) for call in translated.unknown_tool_calls],
        "truncated_tool_calls": list(translated.truncated_tool_calls),
    }


def assert_valid_message(body: bytes) -> dict[str, Any]:
    """Valid for our schema and for the anthropic SDK; thinking, then text, then tool_use."""
    Message.model_validate_json(body)
    anthropic.types.Message.model_validate_json(body)
    message: dict[str, Any] = orjson.loads(body)
    order = {"thinking": 0, "text": 1, "tool_use": 2}
    kinds = [order[block["type"]] for block in message["content"]]
    assert kinds == sorted(kinds)
    assert all(block["text"].strip() for block in message["content"] if block["type"] == "text")
    return message


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    folder = GOLDEN / case
    backend = (folder / "openai.json").read_bytes()
    translated = convert_response(backend, load_context(folder))
    if UPDATE:
        (folder / "anthropic.json").write_bytes(pretty(orjson.loads(translated.body)))
        (folder / "report.json").write_bytes(pretty(report(translated)))
    assert translated.body == orjson.dumps(orjson.loads((folder / "anthropic.json").read_bytes()))
    assert report(translated) == orjson.loads((folder / "report.json").read_bytes())
    assert translate_response(backend, load_context(folder)) == translated.body
    assert_valid_message(translated.body)


def test_golden_cases_exist() -> None:
    assert len(CASES) >= 15
    for case in CASES:
        ChatCompletion.model_validate_json((GOLDEN / case / "openai.json").read_bytes())


# ---- field by field ----------------------------------------------------------------------


def completion(message: dict[str, Any], **choice: Any) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "choices": [{"message": message, "finish_reason": "stop", **choice}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2},
        }
    )


def translated(
    message: dict[str, Any], context: ResponseContext = CONTEXT, **choice: Any
) -> dict[str, Any]:
    return assert_valid_message(translate_response(completion(message, **choice), context))


def test_envelope() -> None:
    message = translated({"content": "hi"})
    assert message == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 2,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    }


def test_message_id_is_made_up_when_the_backend_has_none() -> None:
    body = orjson.dumps({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]})
    first = orjson.loads(translate_response(body, CONTEXT))["id"]
    second = orjson.loads(translate_response(body, CONTEXT))["id"]
    assert first.startswith("msg_") and len(first) > 10
    assert first != second


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_reasoning_becomes_a_signed_thinking_block(field: str) -> None:
    content = translated({"content": "4", field: "2+2"})["content"]
    assert content[0] == {"type": "thinking", "thinking": "2+2", "signature": THINKING_SIGNATURE}


def test_reasoning_wins_over_reasoning_content() -> None:
    content = translated({"content": "x", "reasoning": "new", "reasoning_content": "old"})[
        "content"
    ]
    assert content[0]["thinking"] == "new"


@pytest.mark.parametrize("text", ["", "  \n\n", None])
def test_no_empty_text_blocks(text: str | None) -> None:
    assert translated({"content": text})["content"] == []


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "end_turn"),  # no tool call survived: nothing for the client to run
        ("content_filter", "refusal"),
        ("abort", "end_turn"),
        ("something_new", "end_turn"),
        (None, "end_turn"),
    ],
)
def test_finish_reasons(finish: str | None, stop_reason: str) -> None:
    assert translated({"content": "x"}, finish_reason=finish)["stop_reason"] == stop_reason


def test_tool_calls_make_stop_reason_tool_use_unless_cut_off() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}
    for finish in ("tool_calls", "stop", None):
        message = translated({"content": None, "tool_calls": [call]}, finish_reason=finish)
        assert message["stop_reason"] == "tool_use"
        assert message["stop_sequence"] is None
    message = translated({"content": None, "tool_calls": [call]}, finish_reason="length")
    assert message["stop_reason"] == "max_tokens"


def test_stop_sequence_needs_a_requested_string() -> None:
    context = ResponseContext(model="m", stop_sequences=("END",))
    matched = translated({"content": "x"}, context, stop_reason="END")
    assert (matched["stop_reason"], matched["stop_sequence"]) == ("stop_sequence", "END")
    assert translated({"content": "x"}, CONTEXT, stop_reason="END")["stop_reason"] == "end_turn"
    assert translated({"content": "x"}, context, stop_reason=2)["stop_reason"] == "end_turn"


def test_tool_use_input_is_an_object_and_ids_are_kept() -> None:
    call = {"id": "functions.bash:0", "function": {"name": "bash", "arguments": '{"a": [1, 2]}'}}
    block = translated({"tool_calls": [call]})["content"][0]
    assert block == {
        "type": "tool_use",
        "id": "functions.bash:0",
        "name": "bash",
        "input": {"a": [1, 2]},
    }


def test_tool_call_without_id_gets_one() -> None:
    call = {"function": {"name": "bash", "arguments": "{}"}}
    assert translated({"tool_calls": [call]})["content"][0]["id"].startswith("toolu_")


def test_tool_arguments_given_as_an_object() -> None:
    call = {"id": "c", "function": {"name": "bash", "arguments": {"cmd": "ls"}}}
    assert translated({"tool_calls": [call]})["content"][0]["input"] == {"cmd": "ls"}


def test_unrepairable_tool_arguments_are_a_502_naming_the_tool() -> None:
    call = {"id": "call_7", "function": {"name": "Bash", "arguments": '{"a": 1}{"b": 2}'}}
    with pytest.raises(BackendError) as caught:
        translate_response(completion({"tool_calls": [call]}), CONTEXT)
    assert caught.value.status == 502
    assert caught.value.error_type == "api_error"
    assert caught.value.message.startswith(
        "backend returned invalid arguments for tool 'Bash' (call call_7): several different"
    )


def test_held_back_tool_calls_are_reported() -> None:
    context = ResponseContext(model="m", client_tools=frozenset({"Bash"}))
    call = {"id": "c1", "function": {"name": "web_search", "arguments": '{"q": 1}'}}
    result = convert_response(completion({"content": "x", "tool_calls": [call]}), context)
    assert orjson.loads(result.body)["content"] == [{"type": "text", "text": "x"}]
    assert result.unknown_tool_calls[0].name == "web_search"
    assert result.unknown_tool_calls[0].arguments == '{"q": 1}'
    assert result.stop_reason == "end_turn"


# ---- broken backend answers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops</html>", "backend returned a body that is not JSON (17 bytes)"),
        (b"", "backend returned a body that is not JSON (0 bytes)"),
        (b"[1, 2]", "backend returned JSON that is not an object"),
        (b'{"id": "x"}', "backend response has no choices"),
        (b'{"choices": []}', "backend response has no choices"),
        (b'{"choices": [5]}', "backend response has no choices"),
        (b'{"choices": [{"finish_reason": "stop"}]}', "backend response has no choices[0].message"),
        (
            b'{"object": "error", "message": "engine died", "code": 500}',
            "backend returned an error: engine died",
        ),
        (b'{"error": {"message": "boom"}}', "backend returned an error: boom"),
        (
            b'{"choices": [{"message": {"tool_calls": ["x"]}}]}',
            "backend returned a tool call that is not an object",
        ),
        (
            b'{"choices": [{"message": {"tool_calls": [{"function": {}}]}}]}',
            "backend returned a tool call without a name",
        ),
    ],
)
def test_malformed_success_bodies_are_502(body: bytes, message: str) -> None:
    with pytest.raises(BackendError) as caught:
        translate_response(body, CONTEXT)
    assert (caught.value.status, caught.value.error_type) == (502, "api_error")
    assert caught.value.message == message
    ErrorResponse.model_validate_json(caught.value.body())


# ---- errors ------------------------------------------------------------------------------


def error(status: int, body: bytes) -> tuple[int, dict[str, Any]]:
    out_status, out = translate_error(status, body)
    ErrorResponse.model_validate_json(out)
    return out_status, orjson.loads(out)


def error_of(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
        (418, "invalid_request_error"),
        (599, "api_error"),
    ],
)
def test_error_types_follow_the_status(status: int, kind: str) -> None:
    body = b'{"error": {"message": "m", "type": "x", "param": null, "code": 1}}'
    assert error(status, body) == (status, error_of(kind, "m"))


def test_openai_error_shape_keeps_only_the_message() -> None:
    body = b'{"error": {"message": "Invalid API key", "type": "invalid_request_error", "code": "invalid_api_key"}}'
    status, out = translate_error(401, body)
    assert (
        out
        == b'{"type":"error","error":{"type":"authentication_error","message":"Invalid API key"}}'
    )
    assert status == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "param": null, "code": 404}',
            "The model `x` does not exist.",
        ),
        (b'{"error": "plain string error"}', "plain string error"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (
            b'{"detail": [{"loc": ["body", "messages"], "msg": "field required", "type": "missing"}]}',
            "body.messages: field required",
        ),
        (b'{"message": "flat message"}', "flat message"),
        (b'{"something": "else"}', "backend returned HTTP 400 (Bad Request)"),
        (b'{"error": {"message": "   "}}', "backend returned HTTP 400 (Bad Request)"),
        (b"[]", "backend returned HTTP 400 (Bad Request)"),
        (
            b"upstream connect error or disconnect/reset before headers",
            "backend returned HTTP 400: upstream connect error or disconnect/reset before headers",
        ),
        (b"  multi\nline\n text ", "backend returned HTTP 400: multi line text"),
        (
            b"<html><body><h1>400 Bad Request</h1></body></html>",
            "backend returned HTTP 400 (Bad Request)",
        ),
        (b"<!DOCTYPE html>\n<html>...", "backend returned HTTP 400 (Bad Request)"),
        (b"", "backend returned HTTP 400 (Bad Request)"),
        (b"\xff\xfe", "backend returned HTTP 400: \ufffd\ufffd"),
    ],
)
def test_error_messages(body: bytes, message: str) -> None:
    assert error(400, body) == (400, error_of("invalid_request_error", message))


def test_error_message_is_clipped() -> None:
    _, out = error(500, orjson.dumps({"error": {"message": "x" * 5000}}))
    assert len(out["error"]["message"]) == 2000
    _, out = error(500, b"y" * 5000)
    assert out["error"]["message"] == "backend returned HTTP 500: " + "y" * 500


def test_unknown_status_reason() -> None:
    assert error(599, b"<html/>")[1] == error_of("api_error", "backend returned HTTP 599 (error)")


def test_success_status_given_to_translate_error_becomes_502() -> None:
    assert error(200, b"nope") == (502, error_of("api_error", "backend returned HTTP 200: nope"))


def test_redirect_becomes_502_naming_the_redirect() -> None:
    assert error(302, b"") == (502, error_of("api_error", "backend returned HTTP 302 (Found)"))


@pytest.mark.parametrize(
    ("message", "expected_start"),
    [
        (
            "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens"
            " (35000 in the messages, 5000 in the completion). Please reduce the length.",
            "prompt is too long: 40000 tokens > 32768 maximum (This model's",
        ),
        (
            "This model's maximum context length is 8192 tokens. However, your request has 9000 input"
            " tokens. Please reduce the length of the input messages.",
            "prompt is too long: 9000 tokens > 8192 maximum (",
        ),
        ("max_tokens must be at least 1, got 0.", "max_tokens must be at least 1, got 0."),
    ],
)
def test_context_overflow_reads_like_anthropic(message: str, expected_start: str) -> None:
    _, out = error(400, orjson.dumps({"object": "error", "message": message, "code": 400}))
    assert out["error"]["message"].startswith(expected_start)
