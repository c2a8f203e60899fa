"""max_tokens, stop strings, tool_choice and context length behave as in vLLM."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mock_helpers import BASH_TOOL, script, stream_chat, user

from extproc.mock_backend.tokenizer import count_tokens, first_tokens, tokenize

LONG = "Write a long answer please"


async def choice_of(http: Any, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/chat/completions", json={"messages": user("x"), **body})
    assert response.status_code == 200, response.text
    return dict(response.json()["choices"][0])


async def test_max_tokens_cuts_a_long_answer_with_finish_length(http: Any) -> None:
    response = await http.post(
        "/v1/chat/completions", json={"messages": user(LONG), "max_tokens": 7}
    )
    body = response.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and choice["stop_reason"] is None
    assert count_tokens(choice["message"]["content"]) == 7
    assert body["usage"]["completion_tokens"] == 7


async def test_max_tokens_in_a_stream(http: Any) -> None:
    _, data = await stream_chat(
        http, messages=user(LONG), max_tokens=5, stream_options={"include_usage": True}
    )
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in data[:-1] if c["choices"])
    assert count_tokens(text) == 5
    assert data[-3]["choices"][0]["finish_reason"] == "length"
    assert data[-2]["usage"]["completion_tokens"] == 5


async def test_an_answer_that_fits_exactly_stops_normally(http: Any) -> None:
    await script(http, {"text": "one two three"})
    assert (await choice_of(http, max_tokens=3))["finish_reason"] == "stop"


async def test_max_tokens_inside_reasoning_leaves_no_content(http: Any) -> None:
    await script(http, {"reasoning": "a b c d e f", "text": "answer"})
    choice = await choice_of(http, max_completion_tokens=2)
    assert choice["message"]["reasoning"] == "a b"
    assert choice["message"]["content"] is None
    assert choice["finish_reason"] == "length"


async def test_max_tokens_can_leave_tool_arguments_partial(http: Any) -> None:
    await script(http, {"tool_calls": [{"name": "Bash", "arguments": {"command": "echo hello"}}]})
    choice = await choice_of(http, max_tokens=4, tools=[BASH_TOOL])
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["arguments"] == '{"command'
    assert choice["finish_reason"] == "length"


async def test_stop_string_cuts_content_and_is_reported(http: Any) -> None:
    await script(http, {"text": "Alpha. STOP here. More."})
    choice = await choice_of(http, stop=["More", "STOP"])
    assert choice["message"]["content"] == "Alpha. "
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", "STOP")


async def test_stop_string_in_a_stream(http: Any) -> None:
    await script(http, {"text": "one two END three"})
    _, data = await stream_chat(http, messages=user("x"), stop="END")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in data[:-1])
    assert text == "one two "
    assert data[-2]["choices"][0]["stop_reason"] == "END"


async def test_stop_strings_are_not_searched_in_reasoning(http: Any) -> None:
    await script(http, {"reasoning": "maybe END", "text": "fine"})
    choice = await choice_of(http, stop="END")
    assert choice["message"]["reasoning"] == "maybe END"
    assert choice["stop_reason"] is None


async def test_named_tool_choice_finishes_with_stop(http: Any) -> None:
    await script(http, {"tool_calls": [{"name": "Bash", "arguments": "{}"}]})
    named = {"type": "function", "function": {"name": "Bash"}}
    choice = await choice_of(http, tools=[BASH_TOOL], tool_choice=named)
    assert choice["finish_reason"] == "stop"


async def test_scripted_finish_reason_wins(http: Any) -> None:
    await script(http, {"text": "x", "finish_reason": "length", "stop_reason": 151645})
    choice = await choice_of(http)
    assert (choice["finish_reason"], choice["stop_reason"]) == ("length", 151645)


async def test_prompt_longer_than_the_context(http: Any) -> None:
    await http.post("/__mock/config", json={"max_model_len": 10})
    response = await http.post("/v1/chat/completions", json={"messages": user("word " * 50)})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "BadRequestError" and error["code"] == 400
    assert error["message"].startswith("This model's maximum context length is 10 tokens. ")
    assert error["message"].endswith("Please reduce the length of the input messages.")


@pytest.mark.parametrize(
    ("dialect", "fragment"),
    [
        ("current", "'max_tokens' or 'max_completion_tokens' is too large: 32000."),
        ("legacy", "in the messages, 32000 in the completion)."),
    ],
)
async def test_max_tokens_over_the_context(http: Any, dialect: str, fragment: str) -> None:
    await http.post("/__mock/config", json={"max_model_len": 1000, "dialect": dialect})
    response = await http.post(
        "/v1/chat/completions", json={"messages": user("hi"), "max_tokens": 32000}
    )
    assert response.status_code == 400
    assert fragment in response.text


async def test_stream_options_without_stream_is_rejected(http: Any) -> None:
    response = await http.post(
        "/v1/chat/completions",
        json={"messages": user("hi"), "stream_options": {"include_usage": True}},
    )
    assert response.status_code == 400
    assert "Stream options can only be defined when `stream=True`." in response.text


def test_tokenizer_round_trips_and_cuts_on_token_boundaries() -> None:
    text = "Hello, wonderful   world!\n\tinternationalization ünïcödé 42"
    assert "".join(tokenize(text)) == text
    assert tokenize("Hello world") == ["Hello", " world"]
    assert first_tokens(text, 2) == "Hello,"
    assert count_tokens("") == 0


@given(st.text(), st.integers(min_value=0, max_value=50))
def test_tokens_partition_any_text(text: str, limit: int) -> None:
    tokens = tokenize(text)
    assert "".join(tokens) == text
    assert all(tokens)
    prefix = first_tokens(text, limit)
    assert text.startswith(prefix)
    assert count_tokens(prefix) == min(limit, len(tokens))
