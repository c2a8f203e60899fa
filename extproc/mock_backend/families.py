"""Model families: how the models people serve on vLLM stream, call tools and think.

The family decides everything the *model and its vLLM parsers* decide (tool-call ids, how tool
arguments are cut into deltas, how many tokens ride in one delta, what a tool call looks like as
text when vLLM runs without a tool parser, where reasoning goes without a reasoning parser). The
*server generation* decides the JSON envelope: see `dialects.py`. A family names the dialect its
usual deployments speak; both can be overridden per app and per scripted response.

Chosen per request: the scripted item's `family`, else the app's `family`, else from the served
model name (`qwen3-coder`/`qwen3_coder` -> qwen3-coder, `qwen` -> qwen3, `glm`, `kimi`,
`minimax`), else `plain`.

plain (generic vLLM, hermes-style parser; e.g. Llama)
    ids `chatcmpl-tool-<hex>`; first tool delta has id/type/index and `function.name` only;
    arguments follow one token per delta; one token per content delta.
qwen3 (Qwen3 / Qwen3.5 with `--tool-call-parser hermes --reasoning-parser qwen3`)
    ids `chatcmpl-tool-<hex>`; name-only first delta, then arguments in many tiny pieces (one
    mock token each: `{`, `"`, `command`, `":`...); reasoning in the dialect's reasoning field;
    without a tool parser: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` in
    content; without a reasoning parser: `<think>\\n...\\n</think>\\n\\n` before the content.
qwen3-coder (`--tool-call-parser qwen3_coder`)
    ids `call_<24 hex>`; first delta carries the name and `"arguments": ""`, then `{`, then one
    delta per `"key": value` pair, then `}`; text form is the XML-ish
    `<tool_call>\\n<function=NAME>\\n<parameter=KEY>\\nVALUE\\n</parameter>\\n</function>\\n</tool_call>`.
glm (GLM-4.5/4.6/4.7, `--tool-call-parser glm45 --reasoning-parser glm45`)
    speaks the `transitional` dialect (reasoning_content alongside reasoning, null-padded
    deltas); ids `call_<hex>`; the whole arguments string arrives in the same delta as the
    name; two tokens per content delta; text form
    `<tool_call>NAME\\n<arg_key>K</arg_key>\\n<arg_value>V</arg_value>\\n</tool_call>`.
kimi (Kimi-K2 / K2.5, `--tool-call-parser kimi_k2 --reasoning-parser kimi_k2`)
    ids `functions.NAME:N` with N counting tool calls over the whole conversation; sends a
    short content sentence before its tool calls (content *and* tool_calls); arguments in
    pieces of three tokens; text form `<|tool_calls_section_begin|><|tool_call_begin|>
    functions.NAME:N<|tool_call_argument_begin|>{...}<|tool_call_end|><|tool_calls_section_end|>`.
minimax (MiniMax-M2, usually served with the `minimax_m2_append_think` reasoning parser)
    reasoning stays inside content as `<think>\\n...\\n</think>\\n\\n` unless a scripted item
    sets `reasoning_in_content: false`; ids `call_<hex>`; three tokens per delta; the last content
    piece rides in the chunk that carries finish_reason; usage also rides in that finish chunk;
    text form `<minimax:tool_call>\\n<invoke name="NAME">\\n<parameter name="K">V</parameter>
    \\n</invoke>\\n</minimax:tool_call>`.

`finish_delta` is what the chunk with finish_reason carries: `empty_content` (`{"content":""}`,
what vLLM sends after the EOS token), `empty` (`{}`) or `last_piece` (the final content or
argument piece itself).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from extproc.mock_backend.plan import ToolCallPlan
from extproc.mock_backend.tokenizer import tokenize

ArgsStyle = Literal["pieces", "whole", "per_key"]
FinishDelta = Literal["empty_content", "empty", "last_piece"]
IdStyle = Literal["chatcmpl-tool", "call", "kimi"]


@dataclass(frozen=True)
class Family:
    name: str
    dialect: str
    id_style: IdStyle
    args_style: ArgsStyle
    args_tokens_per_delta: int
    name_delta_has_arguments: bool
    tokens_per_delta: int
    finish_delta: FinishDelta
    reasoning_in_content: bool
    usage_in_finish_chunk: bool
    content_before_tool_calls: str
    text_tool_calls: Callable[[Sequence[ToolCallPlan], int], str]

    def tool_call_id(self, name: str, number: int, hex_len: int) -> str:
        """`number` counts tool calls over the conversation (Kimi puts it in the id)."""
        if self.id_style == "kimi":
            return f"functions.{name}:{number}"
        if self.id_style == "call":
            return "call_" + secrets.token_hex(12)
        return "chatcmpl-tool-" + secrets.token_hex(hex_len // 2)

    def argument_pieces(self, arguments: str) -> list[str]:
        """The argument deltas after the first (name) delta; joined they give `arguments`."""
        if not arguments:
            return []
        if self.args_style == "whole":
            return [arguments]
        if self.args_style == "per_key":
            pieces = _per_key_pieces(arguments)
            if pieces is not None:
                return pieces
        return group_tokens(arguments, self.args_tokens_per_delta)


def group_tokens(text: str, per_delta: int) -> list[str]:
    tokens = tokenize(text)
    step = max(per_delta, 1)
    return ["".join(tokens[i : i + step]) for i in range(0, len(tokens), step)]


def _per_key_pieces(arguments: str) -> list[str] | None:
    """`{`, then each `"key": value` (with its separator), then `}`, when that re-joins exactly."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not parsed:
        return None
    pairs = [
        json.dumps(key, ensure_ascii=False) + ": " + json.dumps(value, ensure_ascii=False)
        for key, value in parsed.items()
    ]
    pieces = ["{", *(p if i == 0 else ", " + p for i, p in enumerate(pairs)), "}"]
    return pieces if "".join(pieces) == arguments else None


# --- tool calls as text, for a vLLM started without --tool-call-parser -----------------------


def _args(call: ToolCallPlan) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments)
    except ValueError:
        return {"arguments": call.arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _hermes_text(calls: Sequence[ToolCallPlan], _first: int) -> str:
    return "\n".join(
        "<tool_call>\n"
        + json.dumps({"name": c.name, "arguments": _args(c)}, ensure_ascii=False)
        + "\n</tool_call>"
        for c in calls
    )


def _qwen3_coder_text(calls: Sequence[ToolCallPlan], _first: int) -> str:
    out = []
    for call in calls:
        params = "".join(
            f"<parameter={k}>\n{_plain(v)}\n</parameter>\n" for k, v in _args(call).items()
        )
        out.append(f"<tool_call>\n<function={call.name}>\n{params}</function>\n</tool_call>")
    return "\n".join(out)


def _glm_text(calls: Sequence[ToolCallPlan], _first: int) -> str:
    out = []
    for call in calls:
        params = "".join(
            f"<arg_key>{k}</arg_key>\n<arg_value>{_plain(v)}</arg_value>\n"
            for k, v in _args(call).items()
        )
        out.append(f"<tool_call>{call.name}\n{params}</tool_call>")
    return "\n".join(out)


def _kimi_text(calls: Sequence[ToolCallPlan], first: int) -> str:
    body = "".join(
        f"<|tool_call_begin|>functions.{c.name}:{first + i}<|tool_call_argument_begin|>"
        f"{c.arguments}<|tool_call_end|>"
        for i, c in enumerate(calls)
    )
    return f"<|tool_calls_section_begin|>{body}<|tool_calls_section_end|>"


def _minimax_text(calls: Sequence[ToolCallPlan], _first: int) -> str:
    invokes = []
    for call in calls:
        params = "".join(
            f'<parameter name="{k}">{_plain(v)}</parameter>\n' for k, v in _args(call).items()
        )
        invokes.append(f'<invoke name="{call.name}">\n{params}</invoke>\n')
    return "<minimax:tool_call>\n" + "".join(invokes) + "</minimax:tool_call>"


_COMMON: dict[str, Any] = {
    "dialect": "current",
    "id_style": "chatcmpl-tool",
    "args_style": "pieces",
    "args_tokens_per_delta": 1,
    "name_delta_has_arguments": False,
    "tokens_per_delta": 1,
    "finish_delta": "empty_content",
    "reasoning_in_content": False,
    "usage_in_finish_chunk": False,
    "content_before_tool_calls": "",
    "text_tool_calls": _hermes_text,
}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(**{**_COMMON, "name": "plain"}),
        Family(**{**_COMMON, "name": "qwen3"}),
        Family(
            **{
                **_COMMON,
                "name": "qwen3-coder",
                "id_style": "call",
                "args_style": "per_key",
                "name_delta_has_arguments": True,
                "text_tool_calls": _qwen3_coder_text,
            }
        ),
        Family(
            **{
                **_COMMON,
                "name": "glm",
                "dialect": "transitional",
                "id_style": "call",
                "args_style": "whole",
                "tokens_per_delta": 2,
                "text_tool_calls": _glm_text,
            }
        ),
        Family(
            **{
                **_COMMON,
                "name": "kimi",
                "id_style": "kimi",
                "args_tokens_per_delta": 3,
                "content_before_tool_calls": "I'll run that for you.",
                "text_tool_calls": _kimi_text,
            }
        ),
        Family(
            **{
                **_COMMON,
                "name": "minimax",
                "id_style": "call",
                "args_tokens_per_delta": 4,
                "tokens_per_delta": 3,
                "finish_delta": "last_piece",
                "reasoning_in_content": True,
                "usage_in_finish_chunk": True,
                "text_tool_calls": _minimax_text,
            }
        ),
    )
}
DEFAULT_FAMILY = "plain"


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None


def family_for_model(model: str | None) -> str | None:
    """The family a served-model name suggests, or None."""
    name = (model or "").lower()
    if any(tag in name for tag in ("qwen3-coder", "qwen3_coder", "qwen3coder")):
        return "qwen3-coder"
    for tag, family in (
        ("qwen", "qwen3"),
        ("glm", "glm"),
        ("kimi", "kimi"),
        ("minimax", "minimax"),
    ):
        if tag in name:
            return family
    return None
