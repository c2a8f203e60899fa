"""MiniMax-M2 served without a reasoning parser writes `<think>...</think>` into content; with
the model options `think_tags` and `reasoning_echo: think_tags` (set for `minimax-m2` in
conftest) clients get a thinking block, streamed or not, and the thinking goes back inline."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from e2e.harness import MockBackend

MODEL = "minimax-m2"
ITEM = {"family": "minimax", "reasoning_in_content": True,
        "reasoning": "The user greets me; answer in kind.", "text": "Hello there, friend."}


def ask(client: anthropic.Anthropic, stream: bool, **extra: Any) -> Message:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 512,
                              "messages": [{"role": "user", "content": "hello"}], **extra}
    if not stream:
        return client.messages.create(**params)
    with client.messages.stream(**params) as events:
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True])
def test_inline_thinking_becomes_a_thinking_block(
    anthropic_client: anthropic.Anthropic, backend: MockBackend, stream: bool
) -> None:
    backend.script(ITEM)
    message = ask(anthropic_client, stream)
    [seen] = backend.requests()
    assert seen["body"]["model"] == MODEL and seen["body"]["stream"] is stream
    assert [block.type for block in message.content] == ["thinking", "text"]
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == ITEM["reasoning"]
    assert thinking.signature
    assert text.type == "text" and text.text == ITEM["text"]
    assert message.stop_reason == "end_turn"


def test_prior_thinking_goes_back_inline(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    backend.script({"family": "minimax", "text": "Fine."})
    ask(anthropic_client, False, messages=[
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Greet back.", "signature": "x"},
            {"type": "text", "text": "Hello!"}]},
        {"role": "user", "content": "how are you?"},
    ])
    [seen] = backend.requests()
    assistant = seen["body"]["messages"][1]
    assert assistant == {"role": "assistant", "content": "<think>\nGreet back.\n</think>\n\nHello!"}
