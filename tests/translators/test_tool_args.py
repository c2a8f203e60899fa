"""Tool-call arguments: parsed when valid, repaired when the intent is unambiguous, else refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.translators.tool_args import ToolArgumentsError, parse_tool_arguments

PROPERTY = settings(derandomize=True, max_examples=100, deadline=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"command": "ls"}', {"command": "ls"}),
        ('{"a": {"b": [1, 2, {"c": null}]}}', {"a": {"b": [1, 2, {"c": None}]}}),
        ("{}", {}),
        # called without arguments
        ("", {}),
        ("   \n", {}),
        ("null", {}),
        # wrapped in a Markdown fence
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```\n{"a": 1}\n```', {"a": 1}),
        ('```{"a": 1}```', {"a": 1}),
        # encoded twice
        ('"{\\"a\\": 1}"', {"a": 1}),
        ('" {\\"a\\": [1]} "', {"a": [1]}),
        # trailing garbage after a complete object
        ('{"a": 1}}', {"a": 1}),
        ('{"a": 1}</tool_call>', {"a": 1}),
        ('{"a": 1}\n\nDone.', {"a": 1}),
        ('{"a": 1}{"a": 1', {"a": 1}),
        # the same object repeated
        ('{"a": 1}{"a": 1}', {"a": 1}),
        ('{"a": 1} {"a": 1}\n{"a": 1}', {"a": 1}),
        # closers missing at the end, outside any string
        ('{"a": 1', {"a": 1}),
        ('{"a": {"b": "}"}', {"a": {"b": "}"}}),
        ('{"a": [1, 2', {"a": [1, 2]}),
        ('{"a": [1, {"b": 2', {"a": [1, {"b": 2}]}),
        ('{"a": 1,', {"a": 1}),
        ('{"a": "x\\"y"', {"a": 'x"y'}),
        ('  {"a": true  ', {"a": True}),
    ],
)
def test_accepted(text: str, expected: dict[str, Any]) -> None:
    assert parse_tool_arguments(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a": 1}{"b": 2}', "several different JSON objects"),
        ('{"a": "unfinished', "invalid JSON"),
        ('{"a":', "invalid JSON"),
        ('{"a"', "invalid JSON"),
        ('{"a": tru', "invalid JSON"),
        ('{"a": 1]', "mismatched brackets"),
        ('{"a": [1}', "mismatched brackets"),
        ('{"a": 1,}', "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got an array"),
        ("42", "expected a JSON object, got a number"),
        ("true", "expected a JSON object, got a boolean"),
        ('"ls -la"', "expected a JSON object, got a string"),
        ('"{not json"', "a JSON string, not an object"),
        ("command=ls", "not a JSON object"),
        ("{'a': 1}", "invalid JSON"),
    ],
)
def test_refused(text: str, reason: str) -> None:
    with pytest.raises(ToolArgumentsError) as caught:
        parse_tool_arguments(text)
    assert str(caught.value).startswith(reason)
    assert repr(text) in str(caught.value)  # the offending text is quoted


def test_error_quotes_long_text_clipped() -> None:
    with pytest.raises(ToolArgumentsError) as caught:
        parse_tool_arguments("[" + "1," * 200 + "1]")
    assert str(caught.value).endswith("...'")
    assert len(str(caught.value)) < 200


def test_without_repair_only_valid_json_passes() -> None:
    assert parse_tool_arguments('{"a": 1}', repair=False) == {"a": 1}
    assert parse_tool_arguments("", repair=False) == {}
    for cut in ('{"a": 1', '{"a": 1}}', '{"a": 1}{"a": 1}'):
        with pytest.raises(ToolArgumentsError):
            parse_tool_arguments(cut, repair=False)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
OBJECTS = st.dictionaries(st.text(), JSON_VALUES, max_size=5)


@PROPERTY
@given(OBJECTS)
def test_valid_objects_round_trip(value: dict[str, Any]) -> None:
    text = orjson.dumps(value).decode()
    assert parse_tool_arguments(text) == value
    assert parse_tool_arguments(text, repair=False) == value


@PROPERTY
@given(OBJECTS)
def test_repeated_objects_parse_as_one(value: dict[str, Any]) -> None:
    text = orjson.dumps(value).decode()
    assert parse_tool_arguments(text + text) == value
    assert parse_tool_arguments(text + "\n" + text + "</tool_call>") == value


@PROPERTY
@given(OBJECTS)
def test_a_missing_final_brace_is_restored(value: dict[str, Any]) -> None:
    text = orjson.dumps(value).decode()
    assert parse_tool_arguments(text[:-1]) == value


@PROPERTY
@given(st.text(max_size=40))
def test_any_text_gives_an_object_or_the_error(text: str) -> None:
    try:
        result = parse_tool_arguments(text)
    except ToolArgumentsError as exc:
        assert str(exc)  # a reason, never another exception type
    else:
        assert isinstance(result, dict)
