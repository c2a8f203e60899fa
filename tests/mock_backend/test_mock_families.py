"""Each model family streams tool calls, reasoning and text the way its vLLM parsers do."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from mock_helpers import BASH_TOOL, script, stream_chat, user

from extproc.mock_backend.families import FAMILIES, family_for_model

ARGS = {"command": "echo hi", "description": "Say hi"}
TWO_CALLS = [
    {"name": "Bash", "arguments": ARGS},
    {"name": "Bash", "arguments": {"command": "pwd"}},
]


def tool_deltas(data: list[Any]) -> list[dict[str, Any]]:
    return [
        call
        for chunk in data[:-1]
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", ())
    ]


def joined_arguments(deltas: list[dict[str, Any]]) -> dict[int, str]:
    out: dict[int, str] = {}
    for delta in deltas:
        piece = delta.get("function", {}).get("arguments")
        if piece is not None:
            out[delta["index"]] = out.get(delta["index"], "") + piece
    return out


async def stream_calls(http: Any, family: str, **item: Any) -> list[Any]:
    await script(http, {"tool_calls": TWO_CALLS, "family": family, **item})
    _, data = await stream_chat(http, model="m", messages=user("go"), tools=[BASH_TOOL])
    return data


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3-coder"),
        ("qwen3_coder", "qwen3-coder"),
        ("Qwen/Qwen3-8B", "qwen3"),
        ("zai-org/GLM-4.6", "glm"),
        ("moonshotai/Kimi-K2-Instruct", "kimi"),
        ("MiniMaxAI/MiniMax-M2", "minimax"),
        ("meta-llama/Llama-3.1-8B", None),
    ],
)
def test_family_from_served_model_name(model: str, family: str | None) -> None:
    assert family_for_model(model) == family


@pytest.mark.parametrize("family", sorted(FAMILIES))
async def test_every_family_streams_arguments_that_rejoin_exactly(http: Any, family: str) -> None:
    data = await stream_calls(http, family)
    deltas = tool_deltas(data)
    firsts = [d for d in deltas if "id" in d]
    assert [d["index"] for d in firsts] == [0, 1]
    for first in firsts:
        assert list(first) == ["id", "type", "index", "function"]
        assert first["type"] == "function" and first["function"]["name"] == "Bash"
    for later in (d for d in deltas if "id" not in d):
        assert list(later) == ["index", "function"] and list(later["function"]) == ["arguments"]
    joined = joined_arguments(deltas)
    assert json.loads(joined[0]) == ARGS and json.loads(joined[1]) == {"command": "pwd"}
    assert data[-1] == "[DONE]"
    finish = [c for c in data[:-1] if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finish] == ["tool_calls"]


async def test_qwen3_sends_name_only_then_many_small_argument_pieces(http: Any) -> None:
    deltas = tool_deltas(await stream_calls(http, "qwen3"))
    assert deltas[0]["function"] == {"name": "Bash"}
    assert re.fullmatch(r"chatcmpl-tool-[0-9a-f]{16}", deltas[0]["id"])
    pieces = [d["function"]["arguments"] for d in deltas if d["index"] == 0 and "id" not in d]
    assert len(pieces) > 10 and pieces[0] == "{"


async def test_qwen3_coder_sends_empty_arguments_then_one_pair_per_delta(http: Any) -> None:
    deltas = tool_deltas(await stream_calls(http, "qwen3-coder"))
    assert deltas[0]["function"] == {"name": "Bash", "arguments": ""}
    assert re.fullmatch(r"call_[0-9a-f]{24}", deltas[0]["id"])
    pieces = [d["function"]["arguments"] for d in deltas if d["index"] == 0 and "id" not in d]
    assert pieces == ["{", '"command": "echo hi"', ', "description": "Say hi"', "}"]


async def test_glm_sends_whole_arguments_with_the_name(http: Any) -> None:
    deltas = tool_deltas(await stream_calls(http, "glm"))
    assert len(deltas) == 2
    assert deltas[0]["function"] == {"name": "Bash", "arguments": json.dumps(ARGS)}
    assert re.fullmatch(r"call_[0-9a-f]{24}", deltas[0]["id"])


async def test_glm_speaks_the_transitional_dialect(http: Any) -> None:
    await script(http, {"text": "A", "reasoning": "R", "family": "glm"})
    _, data = await stream_chat(http, messages=user("x"))
    assert data[1]["choices"][0]["delta"] == {"reasoning": "R", "reasoning_content": "R"}


async def test_kimi_ids_count_tool_calls_across_the_conversation(http: Any) -> None:
    history = [
        {"role": "user", "content": "first"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "functions.Bash:0",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "functions.Bash:0", "content": "ok"},
        {"role": "user", "content": "Run these shell commands: ls ; pwd"},
    ]
    _, data = await stream_chat(http, model="kimi-k2", messages=history, tools=[BASH_TOOL])
    deltas = tool_deltas(data)
    assert [d["id"] for d in deltas if "id" in d] == ["functions.Bash:1", "functions.Bash:2"]
    # Kimi says something before calling tools: content and tool_calls in one answer.
    content = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in data[1:-1] if c["choices"]
    )
    assert content == "I'll run that for you."


async def test_minimax_keeps_reasoning_in_content_and_finishes_on_the_last_piece(http: Any) -> None:
    await script(http, {"text": "Done.", "reasoning": "Plan it.", "family": "minimax"})
    _, data = await stream_chat(http, messages=user("x"), stream_options={"include_usage": True})
    chunks = data[:-1]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == "<think>\nPlan it.\n</think>\n\nDone."
    assert all("reasoning" not in c["choices"][0]["delta"] for c in chunks if c["choices"])
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    last_piece = finish["choices"][0]["delta"]["content"]  # content and finish in one chunk
    assert last_piece and content.endswith(last_piece)
    assert finish["usage"] == chunks[-1]["usage"]  # usage rides in the finish chunk too


async def test_minimax_reasoning_field_when_asked(http: Any) -> None:
    item = {
        "text": "Done.",
        "reasoning": "Plan.",
        "family": "minimax",
        "reasoning_in_content": False,
    }
    await script(http, item)
    body = (await http.post("/v1/chat/completions", json={"messages": user("x")})).json()
    message = body["choices"][0]["message"]
    assert (message["content"], message["reasoning"]) == ("Done.", "Plan.")


TEXT_FORMS = {
    "qwen3": '<tool_call>\n{"name": "Bash", "arguments": {"command": "ls"}}\n</tool_call>',
    "qwen3-coder": (
        "<tool_call>\n<function=Bash>\n<parameter=command>\nls\n</parameter>\n</function>\n"
        "</tool_call>"
    ),
    "glm": "<tool_call>Bash\n<arg_key>command</arg_key>\n<arg_value>ls</arg_value>\n</tool_call>",
    "kimi": (
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.Bash:0"
        '<|tool_call_argument_begin|>{"command": "ls"}<|tool_call_end|>'
        "<|tool_calls_section_end|>"
    ),
    "minimax": (
        '<minimax:tool_call>\n<invoke name="Bash">\n<parameter name="command">ls</parameter>\n'
        "</invoke>\n</minimax:tool_call>"
    ),
}


@pytest.mark.parametrize("family", sorted(TEXT_FORMS))
async def test_without_a_tool_parser_calls_come_back_as_text(http: Any, family: str) -> None:
    await http.post("/__mock/config", json={"tool_parser": False})
    item = {"tool_calls": [{"name": "Bash", "arguments": {"command": "ls"}}], "family": family}
    await script(http, item)
    body = (await http.post("/v1/chat/completions", json={"messages": user("x")})).json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == TEXT_FORMS[family]
    assert choice["message"]["tool_calls"] == []
    assert choice["finish_reason"] == "stop"


async def test_without_a_reasoning_parser_qwen_thinks_in_content(http: Any) -> None:
    await http.post("/__mock/config", json={"reasoning_parser": False})
    await script(http, {"text": "Answer.", "reasoning": "Hmm.", "family": "qwen3"})
    body = (await http.post("/v1/chat/completions", json={"messages": user("x")})).json()
    message = body["choices"][0]["message"]
    assert message["content"] == "<think>\nHmm.\n</think>\n\nAnswer."
    assert message["reasoning"] is None


async def test_interleaved_parallel_tool_calls(http: Any) -> None:
    deltas = tool_deltas(await stream_calls(http, "qwen3", interleave_tool_calls=True))
    indexes = [d["index"] for d in deltas]
    assert indexes[:4] == [0, 1, 0, 1]  # both headers, then alternating argument pieces
    assert json.loads(joined_arguments(deltas)[0]) == ARGS
