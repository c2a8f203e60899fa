"""Tool calls written as text: every family, whole, byte by byte and in random splits."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.translators.tool_rescue import (
    Piece,
    RescuedCall,
    ToolCallRescuer,
    rescue_text,
)

TYPES = {"bash": {"command": "string", "timeout": "integer"}}

# (family, text the model wrote, expected calls as (name, arguments dict, id))
FAMILIES = {
    "hermes": (
        'Let me look.\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls -la"}}\n'
        "</tool_call>",
        [("bash", {"command": "ls -la"}, None)],
    ),
    "hermes_string_arguments": (
        '<tool_call>{"name": "bash", "arguments": "{\\"command\\": \\"pwd\\"}"}</tool_call>',
        [("bash", {"command": "pwd"}, None)],
    ),
    "qwen3_coder": (
        "<tool_call>\n<function=bash>\n<parameter=command>\nls -la\n</parameter>\n"
        "<parameter=timeout>\n30\n</parameter>\n</function>\n</tool_call>",
        [("bash", {"command": "ls -la", "timeout": 30}, None)],
    ),
    "glm": (
        "I'll check.<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>123</arg_value>\n"
        "<arg_key>timeout</arg_key>\n<arg_value>5</arg_value>\n</tool_call>",
        [("bash", {"command": "123", "timeout": 5}, None)],
    ),
    "kimi": (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.bash:0"
        '<|tool_call_argument_begin|>{"command": "ls"}<|tool_call_end|>'
        "<|tool_call_begin|>functions.Read:1<|tool_call_argument_begin|>"
        '{"file_path": "/a"}<|tool_call_end|><|tool_calls_section_end|>',
        [("bash", {"command": "ls"}, "functions.bash:0"),
         ("Read", {"file_path": "/a"}, "functions.Read:1")],
    ),
    "kimi_without_section": (
        '<|tool_call_begin|>functions.bash:7<|tool_call_argument_begin|>{"command": "ls"}'
        "<|tool_call_end|>",
        [("bash", {"command": "ls"}, "functions.bash:7")],
    ),
    "minimax": (
        '<minimax:tool_call>\n<invoke name="bash">\n<parameter name="command">git status'
        "</parameter>\n</invoke>\n</minimax:tool_call>",
        [("bash", {"command": "git status"}, None)],
    ),
    "two_hermes_calls": (
        '<tool_call>\n{"name": "bash", "arguments": {"command": "a"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "bash", "arguments": {"command": "b"}}\n</tool_call>',
        [("bash", {"command": "a"}, None), ("bash", {"command": "b"}, None)],
    ),
}


def run(chunks: list[str]) -> list[Piece]:
    rescuer = ToolCallRescuer(TYPES)
    out: list[Piece] = []
    for chunk in chunks:
        out += rescuer.feed(chunk)
    return out + rescuer.finish()


def splits(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 12))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def summary(pieces: list[Piece]) -> tuple[str, list[tuple[str, object, str | None]]]:
    text = "".join(p for p in pieces if isinstance(p, str))
    calls = [(p.name, orjson.loads(p.arguments), p.id) for p in pieces if isinstance(p, RescuedCall)]
    return text, calls


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_whole_byte_by_byte_and_split(family: str) -> None:
    text, expected = FAMILIES[family]
    whole = summary(run([text]))
    assert whole[1] == expected
    assert summary(run(list(text))) == whole
    for seed in range(20):
        assert summary(run(splits(text, seed))) == whole


def test_text_around_calls_is_kept_in_order() -> None:
    pieces = run(["Sure.\n<tool_call>\n", '{"name": "bash", "arguments": {}}', "\n</tool_call>\nDone"])
    assert pieces[0] == "Sure.\n"
    assert isinstance(pieces[1], RescuedCall)
    assert "".join(p for p in pieces[2:] if isinstance(p, str)) == "\nDone"


def test_ordinary_text_is_not_delayed() -> None:
    rescuer = ToolCallRescuer()
    assert rescuer.feed("Hello world") == ["Hello world"]
    assert rescuer.feed(" a < b") == [" a < b"]  # "< " cannot start a marker
    assert rescuer.feed("x <") == ["x "]  # "<" might: held
    assert rescuer.feed("tool_") == []  # "<tool_" still might
    assert rescuer.feed("s are fun") == ["<tool_s are fun"]  # it did not: released at once


def test_a_held_marker_prefix_comes_out_at_the_end() -> None:
    rescuer = ToolCallRescuer()
    assert rescuer.feed("see <|tool_calls_sec") == ["see "]
    assert rescuer.finish() == ["<|tool_calls_sec"]


def test_unparseable_region_is_returned_as_text() -> None:
    text = "Use <tool_call>like this, with words</tool_call> in prose."
    assert rescue_text(text) == (text, [])
    broken = '<tool_call>{"name": "bash", "arguments": {"command": </tool_call>'
    assert rescue_text(broken) == (broken, [])


def test_unclosed_call_is_read_at_the_end_if_it_parses() -> None:
    text, calls = rescue_text('<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n')
    assert text == "" and calls == [RescuedCall("bash", '{"command":"ls"}')]
    cut = "<tool_call>\n{\"name\": \"bash\", \"argu"
    assert rescue_text(cut) == (cut, [])


def test_declared_string_parameters_stay_strings() -> None:
    glm = "<tool_call>bash\n<arg_key>command</arg_key>\n<arg_value>true</arg_value>\n</tool_call>"
    assert rescue_text(glm, TYPES)[1][0].arguments == '{"command":"true"}'
    assert rescue_text(glm)[1][0].arguments == '{"command":true}'  # undeclared: read as JSON
    other = '<minimax:tool_call><invoke name="x"><parameter name="p">[1, 2]</parameter></invoke>'
    assert orjson.loads(rescue_text(other + "</minimax:tool_call>")[1][0].arguments) == {"p": [1, 2]}


def test_text_without_markers_is_untouched() -> None:
    assert rescue_text("plain <b>html</b> text") == ("plain <b>html</b> text", [])


@given(st.text(alphabet=st.sampled_from(list("ab <>|/_tolcsx{}\"\n")), max_size=80))
def test_nothing_is_lost_when_nothing_parses(text: str) -> None:
    pieces = run(list(text))
    if not any(isinstance(p, RescuedCall) for p in pieces):
        assert "".join(p for p in pieces if isinstance(p, str)) == text
