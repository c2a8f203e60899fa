"""Which part of a streamed tool call's arguments may go to the client, piece by piece."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.translators.stream_tools import ToolCall

PROPERTY = settings(derandomize=True, max_examples=150, deadline=None)


def stream(*pieces: str) -> tuple[str, ToolCall]:
    call = ToolCall(0)
    return "".join(call.take(piece) for piece in pieces), call


def test_a_whole_object_streams_and_closes() -> None:
    sent, call = stream('{"a": ', '[1, {"b": "}"}]', "}")
    assert sent == '{"a": [1, {"b": "}"}]}' and call.closed


def test_text_after_the_object_is_held_back() -> None:
    sent, call = stream('{"a": 1}', "}", "</tool_call>")
    assert sent == '{"a": 1}' and call.gathered() == '{"a": 1}}</tool_call>'
    assert call.sent == len(sent)


def test_escapes_inside_strings_even_across_pieces() -> None:
    sent, call = stream('{"a": "x\\', '"}', '", "b": "\\\\', '"}', "trailing")
    assert sent == '{"a": "x\\"}", "b": "\\\\"}' and call.closed
    assert json.loads(sent) == {"a": 'x"}', "b": "\\"}


def test_leading_whitespace_waits_then_streams_with_the_object() -> None:
    call = ToolCall(0)
    assert call.take("") == "" and call.take("  ") == ""
    assert call.take('{"a":1}') == '  {"a":1}'


@pytest.mark.parametrize("start", ['"{\\"a\\": 1}"', "```json\n{}", "null", "[1]"])
def test_arguments_that_do_not_start_like_an_object_are_held(start: str) -> None:
    sent, call = stream(start, "more")
    assert sent == "" and call.held and not call.closed


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab{}[]"\\\n :,é', max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@PROPERTY
@given(
    value=st.dictionaries(st.text(alphabet='k{}"\\', max_size=3), JSON_VALUES, max_size=4),
    indent=st.sampled_from([None, 1]),
    trailing=st.sampled_from(["", "}", " </tool_call>", "{}"]),
    cuts=st.lists(st.integers(0, 200), max_size=8),
)
def test_exactly_the_object_streams_under_any_split(
    value: dict[str, object], indent: int | None, trailing: str, cuts: list[int]
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    whole = text + trailing
    points = sorted({min(cut, len(whole)) for cut in cuts})
    pieces = [whole[a:b] for a, b in zip([0, *points], [*points, len(whole)], strict=True)]
    sent, call = stream(*pieces)
    assert sent == text and call.closed and call.gathered() == whole
