"""Reasoning inline as a leading `<think>...</think>`: split off whole and as it streams, the
two ways agreeing under any delta boundaries; and the echo back to the backend."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.config import Backend, Config, ModelOptions, ModelRoute
from extproc.translators.request import RequestOptions, translate_request
from extproc.translators.think_tags import (
    ThinkPiece,
    ThinkTagSplitter,
    split_think_tags,
    with_think_tags,
)


@pytest.mark.parametrize(("content", "thinking", "text"), [
    ("<think>\nplan\n</think>\n\nanswer", "plan", "answer"),
    ("  \n<think>plan</think>answer", "plan", "answer"),
    ("<think>\n\n</think>\n\nanswer", "", "answer"),
    ("<think>a <b> c</think> x </think> y", "a <b> c", "x </think> y"),
    ("<think>cut short ", "cut short", ""),
    ("answer <think>not reasoning</think>", "", "answer <think>not reasoning</think>"),
    ("\n\nanswer", "", "\n\nanswer"),
    ("<thinking>x</thinking>", "", "<thinking>x</thinking>"),
    ("", "", ""),
])
def test_split_whole(content: str, thinking: str, text: str) -> None:
    assert split_think_tags(content) == (thinking, text)


def streamed(deltas: list[str]) -> tuple[str, str, list[ThinkPiece]]:
    splitter = ThinkTagSplitter()
    pieces = [piece for delta in deltas for piece in splitter.feed(delta)]
    pieces += splitter.finish()
    assert splitter.finish() == []
    thinking = "".join(p.text for p in pieces if p.thinking)
    text = "".join(p.text for p in pieces if not p.thinking)
    return thinking, text, pieces


def test_streaming_holds_back_only_what_may_be_a_tag() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed("\n<th") == []  # may still open a think block
    assert splitter.feed("ink>Plan") == [ThinkPiece(True, "Plan")]
    assert splitter.feed(" more \n</th") == [ThinkPiece(True, " more")]
    assert splitter.feed("ink>\n\n") == []
    assert splitter.feed("Answer") == [ThinkPiece(False, "Answer")]
    assert splitter.feed(" </think>") == [ThinkPiece(False, " </think>")]


def test_text_that_cannot_open_a_tag_passes_at_once() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed("Hi") == [ThinkPiece(False, "Hi")]
    assert splitter.feed("<think>") == [ThinkPiece(False, "<think>")]


def test_thinking_comes_out_before_the_close_tag() -> None:
    _, _, pieces = streamed(["<think>", "one", " two", "</think>", "three"])
    assert pieces == [ThinkPiece(True, "one"), ThinkPiece(True, " two"), ThinkPiece(False, "three")]


PIECES = st.lists(
    st.sampled_from(["<think>", "</think>", "<", "</", "think", ">", "\n", " ", "a", "b c", "<b>"]),
    max_size=12,
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(parts=PIECES, cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8))
def test_streaming_agrees_with_whole(parts: list[str], cuts: list[int]) -> None:
    content = "".join(parts)
    points = sorted({min(cut, len(content)) for cut in cuts})
    deltas = [content[a:b] for a, b in zip([0, *points], [*points, len(content)], strict=True)]
    thinking, text, pieces = streamed(deltas)
    assert (thinking, text) == split_think_tags(content)
    assert all(piece.text for piece in pieces)  # never an empty piece


def test_echo_round_trips() -> None:
    assert split_think_tags(with_think_tags("plan", "answer")) == ("plan", "answer")


def test_options_reach_the_response_context() -> None:
    backend = Backend(name="b", base_url="http://127.0.0.1:8000/v1", models=(
        ModelRoute(name="minimax-m2",
                   options=ModelOptions(think_tags=True, reasoning_echo="think_tags")),))
    options = RequestOptions.from_config(backend, "minimax-m2", Config(backends=(backend,)))
    assert options.think_tags and options.reasoning_echo == "think_tags"
    request = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert translate_request(request, options).context.think_tags is True
    assert translate_request(request, RequestOptions(model="m")).context.think_tags is False
