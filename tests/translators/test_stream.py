"""OpenAI SSE -> Anthropic SSE: golden cases byte for byte under any chunking, the Anthropic
event grammar, the anthropic SDK reading our output, and hypothesis properties."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.translators.common import THINKING_SIGNATURE
from extproc.translators.context import ResponseContext
from extproc.translators.stream import TRUNCATED_MESSAGE, StreamTranslator
from extproc.translators.stream_tools import is_json_object

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "stream"
CASES = sorted(path.name for path in GOLDEN.iterdir() if path.is_dir())
DEFAULT_MODEL = "claude-sonnet-4-5"
PROPERTY = settings(
    derandomize=True, max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"}
ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
}
DELTA_TYPES = {
    "text": {"text_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
}


# -- helpers -----------------------------------------------------------------------------------


def translate(chunks: Iterable[bytes], context: ResponseContext | None = None) -> bytes:
    translator = StreamTranslator(context or ResponseContext(model=DEFAULT_MODEL))
    out = [translator.feed(chunk) for chunk in chunks]
    out.append(translator.finish())
    assert translator.finish() == b""  # closing happens exactly once
    return b"".join(out)


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def load_case(name: str) -> tuple[bytes, bytes, ResponseContext]:
    folder = GOLDEN / name
    raw = (
        json.loads((folder / "context.json").read_text())
        if (folder / "context.json").exists()
        else {}
    )
    context = ResponseContext(
        model=raw.get("model", DEFAULT_MODEL),
        stop_sequences=tuple(raw.get("stop_sequences", ())),
        client_tools=frozenset(raw["client_tools"]) if "client_tools" in raw else None,
        tool_call_rescue=raw.get("tool_call_rescue", False),
        think_tags=raw.get("think_tags", False),
    )
    return (folder / "openai.sse").read_bytes(), (folder / "anthropic.sse").read_bytes(), context


@dataclass
class Message:
    """The Anthropic message an SSE body amounts to, or the error it ended with."""

    start: dict[str, Any] = field(default_factory=dict)
    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    def text(self, kind: str) -> str:
        key = "thinking" if kind == "thinking" else "text"
        return "".join(block[key] for block in self.content if block["type"] == kind)

    def tools(self) -> dict[str, tuple[str, Any]]:
        return {b["id"]: (b["name"], b["input"]) for b in self.content if b["type"] == "tool_use"}


def check_anthropic_sse(body: bytes, *, partial_tool_input: bool = False) -> Message:
    """Assert the Anthropic streaming grammar and return what the events add up to.
    `partial_tool_input`: max_tokens may leave a tool's JSON unfinished, as Anthropic does."""
    assert body.endswith(b"\n\n"), body[-40:]
    events = []
    for raw in body[:-2].split(b"\n\n"):
        lines = raw.split(b"\n")
        assert (
            len(lines) == 2 and lines[0].startswith(b"event: ") and lines[1].startswith(b"data: ")
        ), raw
        name = lines[0][len(b"event: ") :].decode()
        data = orjson.loads(lines[1][len(b"data: ") :])
        assert data["type"] == name, raw
        events.append(data)
    message = Message()
    if events[0]["type"] == "error":
        assert len(events) == 1
        return _check_error(events[0], message)
    assert events[0]["type"] == "message_start"
    start = message.start = events[0]["message"]
    assert start["type"] == "message" and start["role"] == "assistant" and start["content"] == []
    assert start["id"].startswith("msg_") and start["stop_reason"] is None
    open_block: dict[str, Any] | None = None
    json_buffer = ""
    for position, event in enumerate(events[1:], start=1):
        kind, last = event["type"], position == len(events) - 1
        assert message.stop_reason is None or kind == "message_stop", (
            "only message_stop follows message_delta"
        )
        if kind == "ping":
            continue
        if kind == "error":
            assert last, "an error ends the stream"
            return _check_error(event, message)
        if kind == "content_block_start":
            assert open_block is None and event["index"] == len(message.content)
            open_block = dict(event["content_block"])
            assert {"text": {"text": ""}, "thinking": {"thinking": "", "signature": ""}}.get(
                open_block["type"], {"input": {}}
            ).items() <= open_block.items()
            if open_block["type"] == "tool_use":
                assert open_block["id"] and open_block["name"]
            message.content.append(open_block)
            json_buffer = ""
        elif kind == "content_block_delta":
            assert open_block is not None and event["index"] == len(message.content) - 1
            delta = event["delta"]
            assert delta["type"] in DELTA_TYPES[open_block["type"]]
            if delta["type"] == "text_delta":
                open_block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                open_block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                open_block["signature"] = delta["signature"]
            else:
                json_buffer += delta["partial_json"]
        elif kind == "content_block_stop":
            assert open_block is not None and event["index"] == len(message.content) - 1
            if open_block["type"] == "tool_use":
                if partial_tool_input and not is_json_object(json_buffer or "{}"):
                    open_block["input"] = json_buffer
                else:
                    open_block["input"] = orjson.loads(json_buffer) if json_buffer else {}
                    assert isinstance(open_block["input"], dict)
            if open_block["type"] == "thinking":
                assert open_block["signature"] == THINKING_SIGNATURE
            if open_block["type"] == "text":
                assert open_block["text"].strip(), "no empty or blank text blocks"
            open_block = None
        elif kind == "message_delta":
            assert open_block is None
            assert event["delta"]["stop_reason"] in STOP_REASONS
            message.stop_reason = event["delta"]["stop_reason"]
            message.stop_sequence = event["delta"]["stop_sequence"]
            message.usage = event["usage"]
            assert isinstance(message.usage["output_tokens"], int)
        elif kind == "message_stop":
            assert last and message.stop_reason is not None
        else:
            raise AssertionError(f"unexpected event {kind}")
    assert events[-1]["type"] == "message_stop"
    return message


def _check_error(event: dict[str, Any], message: Message) -> Message:
    assert event["error"]["type"] in ERROR_TYPES and isinstance(event["error"]["message"], str)
    message.error = event["error"]
    return message


# -- golden cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_golden_whole(case: str) -> None:
    openai_sse, expected, context = load_case(case)
    assert translate([openai_sse], context) == expected
    check_anthropic_sse(expected)


@pytest.mark.parametrize("case", CASES)
def test_golden_byte_by_byte(case: str) -> None:
    openai_sse, expected, context = load_case(case)
    assert translate((openai_sse[i : i + 1] for i in range(len(openai_sse))), context) == expected


@pytest.mark.parametrize("case", CASES)
def test_golden_seeded_random_splits(case: str) -> None:
    openai_sse, expected, context = load_case(case)
    rng = random.Random(case)
    for _ in range(25):
        cuts = [rng.randrange(len(openai_sse) + 1) for _ in range(rng.randrange(1, 12))]
        assert translate(split_at(openai_sse, cuts), context) == expected


@pytest.mark.parametrize("case", CASES)
def test_golden_output_reads_with_the_anthropic_sdk(case: str) -> None:
    _, expected, _ = load_case(case)
    ours = check_anthropic_sse(expected)

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=expected)

    with httpx2.Client(transport=httpx2.MockTransport(respond)) as http:
        client = anthropic.Anthropic(
            api_key="test", base_url="http://sdk.test", http_client=http, max_retries=0
        )
        request = client.messages.stream(
            model="any-model", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        if case == "tool_arguments_invalid":
            # The broken JSON was already streamed; the SDK rejects it before our error arrives.
            with (
                pytest.raises(ValueError, match="Unable to parse tool parameter JSON"),
                request as stream,
            ):
                stream.get_final_message()
            return
        if ours.error is not None:
            with pytest.raises(anthropic.APIStatusError) as raised, request as stream:
                stream.get_final_message()
            assert ours.error["message"] in str(raised.value)
            return
        with request as stream:
            final = stream.get_final_message()
    assert final.stop_reason == ours.stop_reason
    assert final.usage.output_tokens == ours.usage["output_tokens"]
    assert final.usage.input_tokens == ours.usage["input_tokens"]
    assert [block.model_dump(exclude_none=True) for block in final.content] == ours.content


# -- behaviour ---------------------------------------------------------------------------------


def sse(*chunks: dict[str, Any] | str) -> bytes:
    return b"".join(
        b"data: " + (chunk.encode() if isinstance(chunk, str) else orjson.dumps(chunk)) + b"\n\n"
        for chunk in chunks
    )


def delta_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-t",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def test_empty_body_is_an_error_not_an_empty_answer() -> None:
    message = check_anthropic_sse(translate([b""]))
    assert message.error == {"type": "api_error", "message": TRUNCATED_MESSAGE}


def test_finish_reason_without_done_is_still_a_cut_off_stream() -> None:
    body = sse(delta_chunk({"content": "ok"}), delta_chunk({}, "stop"))
    message = check_anthropic_sse(translate([body]))
    assert message.stop_reason is None and message.text("text") == "ok"
    assert message.error == {"type": "api_error", "message": TRUNCATED_MESSAGE}


def test_nothing_after_done_or_error_is_written() -> None:
    translator = StreamTranslator(ResponseContext(model="m"))
    assert translator.feed(sse(delta_chunk({"content": "a"}, "stop"), "[DONE]")).endswith(
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert translator.feed(sse(delta_chunk({"content": "more"}))) == b""
    assert translator.fail("late") == b"" and translator.finish() == b""
    assert translator.error is None and translator.stop_reason == "end_turn"


def test_fail_writes_one_error_event() -> None:
    translator = StreamTranslator(ResponseContext(model="m"))
    translator.feed(sse(delta_chunk({"content": "partial"})))
    out = translator.fail("upstream reset", "overloaded_error")
    assert (
        out
        == b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"upstream reset"}}\n\n'
    )
    assert translator.error == "overloaded_error" and translator.finish() == b""


def test_progress_for_metrics() -> None:
    translator = StreamTranslator(ResponseContext(model="m"))
    assert not translator.first_token_seen
    translator.feed(
        sse(delta_chunk({"role": "assistant"}, usage={"prompt_tokens": 5, "completion_tokens": 0}))
    )
    assert not translator.first_token_seen and translator.usage["input_tokens"] == 5
    translator.feed(
        sse(
            delta_chunk({"content": "a"}),
            delta_chunk({"reasoning": "b"}),
            delta_chunk({}, "length"),
        )
    )
    translator.feed(
        sse({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}, "[DONE]")
    )
    assert translator.first_token_seen and translator.output_chunks == 2
    assert translator.stop_reason == "max_tokens" and translator.usage["output_tokens"] == 2
    assert translator.finished and translator.error is None


def test_reasoning_wins_over_reasoning_content_when_both_are_sent() -> None:
    body = sse(
        delta_chunk({"reasoning": "r", "reasoning_content": "r"}), delta_chunk({}, "stop"), "[DONE]"
    )
    assert check_anthropic_sse(translate([body])).text("thinking") == "r"


def test_whitespace_only_text_before_a_tool_call_is_not_a_block() -> None:
    tool = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}
    body = sse(
        delta_chunk({"content": "\n\n"}),
        delta_chunk({"tool_calls": [tool]}),
        delta_chunk({}, "tool_calls"),
    )
    message = check_anthropic_sse(translate([body]))
    assert [block["type"] for block in message.content] == ["tool_use"]


def test_tool_calls_present_make_tool_use_even_when_finish_says_stop() -> None:
    tool = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a":1}'}}
    message = check_anthropic_sse(
        translate([sse(delta_chunk({"tool_calls": [tool]}), delta_chunk({}, "stop"), "[DONE]")])
    )
    assert message.stop_reason == "tool_use" and message.tools() == {"call_1": ("f", {"a": 1})}


def test_only_unknown_tools_called_is_end_turn_and_reported() -> None:
    tool = {
        "index": 0,
        "id": "call_x",
        "function": {"name": "web_search", "arguments": '{"q":"a"}'},
    }
    translator = StreamTranslator(ResponseContext(model="m", client_tools=frozenset({"bash"})))
    out = (
        translator.feed(
            sse(delta_chunk({"tool_calls": [tool]}), delta_chunk({}, "tool_calls"), "[DONE]")
        )
        + translator.finish()
    )
    message = check_anthropic_sse(out)
    assert message.stop_reason == "end_turn" and message.content == []
    assert translator.unknown_tool_calls == [
        {"id": "call_x", "name": "web_search", "arguments": '{"q":"a"}'}
    ]


def test_tool_calls_without_index_are_told_apart_by_id() -> None:
    first = {"id": "call_1", "function": {"name": "f", "arguments": '{"a":'}}
    more = {"function": {"arguments": "1}"}}
    second = {"id": "call_2", "function": {"name": "g", "arguments": "{}"}}
    body = sse(
        *(delta_chunk({"tool_calls": [part]}) for part in (first, more, second)),
        delta_chunk({}, "tool_calls"),
    )
    assert check_anthropic_sse(translate([body])).tools() == {
        "call_1": ("f", {"a": 1}),
        "call_2": ("g", {}),
    }


def test_arguments_sent_as_an_object_are_accepted() -> None:
    tool = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": {"a": [1]}}}
    body = sse(delta_chunk({"tool_calls": [tool]}), delta_chunk({}, "tool_calls"))
    assert check_anthropic_sse(translate([body])).tools() == {"call_1": ("f", {"a": [1]})}


def test_cut_tool_arguments_at_max_tokens_are_not_an_error() -> None:
    tool = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"path": "/tm'}}
    translator = StreamTranslator(ResponseContext(model="m"))
    out = translator.feed(
        sse(delta_chunk({"tool_calls": [tool]}), delta_chunk({}, "length"), "[DONE]")
    )
    message = check_anthropic_sse(out, partial_tool_input=True)
    assert message.stop_reason == "max_tokens" and message.content[0]["input"] == '{"path": "/tm'
    assert translator.truncated_tool_calls == ["f"] and translator.invalid_tool_arguments == 0


def test_a_late_delta_for_a_closed_tool_call_is_counted() -> None:
    first = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}
    second = {"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}
    late = {"index": 0, "function": {"arguments": '"x"'}}
    translator = StreamTranslator(ResponseContext(model="m"))
    chunks = (delta_chunk({"tool_calls": [part]}) for part in (first, second, late))
    out = translator.feed(sse(*chunks, delta_chunk({}, "tool_calls"), "[DONE]"))
    assert check_anthropic_sse(out).tools() == {"call_1": ("f", {}), "call_2": ("g", {})}
    assert translator.dropped_tool_deltas == 1


def test_a_different_second_object_after_the_streamed_one_is_an_error() -> None:
    tool = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a":1}{"b":2}'}}
    message = check_anthropic_sse(
        translate([sse(delta_chunk({"tool_calls": [tool]}), delta_chunk({}, "tool_calls"))])
    )
    assert message.error is not None and "'f'" in message.error["message"]


def test_a_buffered_call_cut_by_max_tokens_is_left_out() -> None:
    first = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a":'}}
    second = {"index": 1, "id": "call_2", "function": {"name": "g", "arguments": '{"b":'}}
    translator = StreamTranslator(ResponseContext(model="m"))
    chunks = [delta_chunk({"tool_calls": [part]}) for part in (first, second)]
    out = translator.feed(sse(*chunks, delta_chunk({}, "length"), "[DONE]"))
    message = check_anthropic_sse(out, partial_tool_input=True)
    assert [block["id"] for block in message.content] == ["call_1"]
    assert message.stop_reason == "max_tokens"
    assert translator.truncated_tool_calls == ["f", "g"]


def test_a_call_without_a_name_is_never_written() -> None:
    nameless = {"index": 0, "id": "call_1", "function": {"arguments": "{}"}}
    translator = StreamTranslator(ResponseContext(model="m"))
    out = translator.feed(
        sse(delta_chunk({"tool_calls": [nameless]}), delta_chunk({}, "stop"), "[DONE]")
    )
    assert check_anthropic_sse(out + translator.finish()).content == []
    assert translator.unknown_tool_calls == [{"id": "call_1", "name": "", "arguments": "{}"}]


def test_text_between_interleaved_tool_calls_flushes_the_buffered_ones_first() -> None:
    first = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a":'}}
    second = {"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}
    rest = {"index": 0, "function": {"arguments": "1}"}}
    chunks = [delta_chunk({"tool_calls": [part]}) for part in (first, second, rest)]
    body = sse(*chunks, delta_chunk({"content": "done"}), delta_chunk({}, "stop"))
    message = check_anthropic_sse(translate([body]))
    assert [block["type"] for block in message.content] == ["tool_use", "tool_use", "text"]
    assert message.tools() == {"call_1": ("f", {"a": 1}), "call_2": ("g", {})}


@pytest.mark.parametrize(
    ("error", "expected_type"),
    [
        ({"error": {"message": "bad", "code": 400}}, "invalid_request_error"),
        ({"error": {"message": "slow down", "code": "429"}}, "rate_limit_error"),
        (
            {"object": "error", "message": "old vLLM", "type": "InternalServerError", "code": 500},
            "api_error",
        ),
        ({"error": "plain string"}, "api_error"),
    ],
)
def test_in_stream_errors_keep_their_message(error: dict[str, Any], expected_type: str) -> None:
    message = check_anthropic_sse(translate([sse(delta_chunk({"content": "a"}), error, "[DONE]")]))
    assert message.error is not None and message.error["type"] == expected_type
    assert message.error["message"] in {"bad", "slow down", "old vLLM", "plain string"}


@pytest.mark.parametrize("data", ["[1, 2]", '"text"', "{", "nul"])
def test_data_that_is_not_a_json_object_is_fatal(data: str) -> None:
    message = check_anthropic_sse(
        translate([sse(delta_chunk({"content": "a"}), data, delta_chunk({}, "stop"))])
    )
    assert message.error is not None and message.error["type"] == "api_error"


def test_other_choices_than_the_first_are_ignored() -> None:
    chunk = {
        "choices": [
            {"index": 1, "delta": {"content": "B"}},
            {"index": 0, "delta": {"content": "A"}},
        ]
    }
    message = check_anthropic_sse(translate([sse(chunk, delta_chunk({}, "stop"))]))
    assert message.text("text") == "A"


# -- properties --------------------------------------------------------------------------------

WORDS = st.text(st.characters(codec="utf-8", blacklist_categories=("Cs",)), max_size=8)
VISIBLE = st.tuples(WORDS, st.sampled_from('abcé😀{}"\\'), WORDS).map("".join)
TOOL_NAMES = st.sampled_from(["bash", "read_file", "edit", "get_weather"])
ARGUMENTS = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.integers(), st.text(max_size=10), st.lists(st.booleans(), max_size=2)),
    max_size=3,
)


@dataclass
class Plan:
    """A valid OpenAI stream and what its Anthropic translation must contain."""

    chunks: list[dict[str, Any] | str]
    thinking: str
    text: str
    tools: dict[str, tuple[str, Any]]
    finish: str


def pieces(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=4)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if b > a] or [
        text
    ]


@st.composite
def openai_streams(draw: st.DrawFn) -> Plan:
    chunks: list[dict[str, Any] | str] = [delta_chunk({"role": "assistant", "content": ""})]
    thinking = text = ""
    tools: dict[str, tuple[str, Any]] = {}
    for segment in draw(st.lists(st.sampled_from(["reasoning", "content", "tools"]), max_size=4)):
        if segment == "tools":
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                call_id = (
                    f"functions.call:{len(tools)}" if draw(st.booleans()) else f"call_{len(tools)}"
                )
                name, arguments = draw(TOOL_NAMES), draw(ARGUMENTS)
                tools[call_id] = (name, arguments)
                args = (
                    pieces(draw, json.dumps(arguments))
                    if arguments or draw(st.booleans())
                    else [""]
                )
                head = {
                    "index": len(tools) - 1,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name},
                }
                calls.append(
                    [{**head, "function": {"name": name, "arguments": ""}}]
                    + [{"index": head["index"], "function": {"arguments": part}} for part in args]
                )
            interleaved = draw(st.booleans())
            while any(calls):
                pick = (
                    draw(st.sampled_from([c for c in calls if c]))
                    if interleaved
                    else next(c for c in calls if c)
                )
                chunks.append(delta_chunk({"tool_calls": [pick.pop(0)]}))
            continue
        body = draw(VISIBLE)
        key = (
            draw(st.sampled_from(["reasoning", "reasoning_content"]))
            if segment == "reasoning"
            else "content"
        )
        for part in pieces(draw, body):
            chunks.append(delta_chunk({key: part}))
        if segment == "content":
            text += body
        else:
            thinking += body
    finish = draw(st.sampled_from(["stop", "length", "tool_calls"]))
    if draw(st.booleans()) and len(chunks) > 1 and isinstance(chunks[-1], dict):
        chunks[-1]["choices"][0]["finish_reason"] = finish  # content and finish in one chunk
    else:
        chunks.append(delta_chunk({}, finish))
    chunks.append(
        {"id": "chatcmpl-t", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7}}
    )
    chunks.append("[DONE]")  # a valid stream always ends with it
    return Plan(chunks, thinking, text, tools, finish)


def encode_stream(plan: Plan, line_end: bytes, comments: bool) -> bytes:
    out = []
    for chunk in plan.chunks:
        if comments:
            out.append(b": keep-alive" + line_end)
        data = chunk.encode() if isinstance(chunk, str) else orjson.dumps(chunk)
        out.append(b"data: " + data + line_end + line_end)
    return b"".join(out)


STREAMS = st.tuples(openai_streams(), st.sampled_from([b"\n", b"\r\n", b"\r"]), st.booleans())


@PROPERTY
@given(stream=STREAMS, cuts=st.lists(st.integers(0, 3000), max_size=12))
def test_any_rechunking_gives_identical_bytes(
    stream: tuple[Plan, bytes, bool], cuts: list[int]
) -> None:
    body = encode_stream(*stream)
    whole = translate([body])
    assert translate(split_at(body, cuts)) == whole


@PROPERTY
@given(stream=STREAMS)
def test_valid_streams_translate_to_the_same_content(stream: tuple[Plan, bytes, bool]) -> None:
    plan = stream[0]
    message = check_anthropic_sse(translate([encode_stream(*stream)]))
    assert message.error is None
    assert message.text("thinking") == plan.thinking
    assert message.text("text") == plan.text
    assert message.tools() == plan.tools
    expected = (
        "tool_use"
        if plan.tools and plan.finish != "length"
        else {"stop": "end_turn", "length": "max_tokens"}.get(plan.finish, "end_turn")
    )
    assert message.stop_reason == expected
    assert message.usage["output_tokens"] == 7 and message.usage["input_tokens"] == 11


@PROPERTY
@given(
    stream=STREAMS,
    cut=st.integers(0, 3000),
    flips=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), max_size=3),
)
def test_damaged_streams_end_in_valid_output_or_an_error(
    stream: tuple[Plan, bytes, bool], cut: int, flips: list[tuple[int, int]]
) -> None:
    body = bytearray(encode_stream(*stream)[:cut])
    for position, value in flips:
        if body:
            body[position % len(body)] = value
    check_anthropic_sse(translate(split_at(bytes(body), [cut // 3])))


@PROPERTY
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=5))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    check_anthropic_sse(translate(split_at(data, cuts)))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "choices",
                    "delta",
                    "index",
                    "content",
                    "reasoning",
                    "tool_calls",
                    "function",
                    "arguments",
                    "name",
                    "id",
                    "finish_reason",
                    "usage",
                    "error",
                    "code",
                    "message",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@PROPERTY
@given(chunks=st.lists(JSONISH, max_size=6), done=st.booleans())
def test_arbitrary_json_chunks_never_raise(chunks: list[Any], done: bool) -> None:
    check_anthropic_sse(
        translate([sse(*(json.dumps(chunk) for chunk in chunks), *(["[DONE]"] if done else []))])
    )
