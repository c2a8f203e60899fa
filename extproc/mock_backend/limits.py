"""From a planned `Turn` to the `Output` a response reports: parser settings, stop, max_tokens.

- Without a reasoning parser (or for families that keep it there) reasoning goes into content
  as `<think>\\n...\\n</think>\\n\\n`.
- Without a tool parser tool calls become the family's text form in content, finish `stop`.
- `stop` strings are searched in content only (vLLM skips them in reasoning): content is cut
  before the earliest match, later tool calls are dropped, finish `stop` with `stop_reason` set
  to the matched string.
- `max_tokens` counts mock tokens over reasoning, then content, then each call's name and
  arguments; past the budget the output is cut at a token boundary (a call's arguments may be
  left partial) and finish is `length`. An output of exactly `max_tokens` tokens finishes `stop`.
- Tool calls finish `tool_calls`, or `stop` when the request named the tool (`tool_choice`
  object), as vLLM does. A scripted `finish_reason` always wins and disables both limits.
"""

from __future__ import annotations

from extproc.mock_backend.families import Family
from extproc.mock_backend.plan import Output, ResolvedCall, ToolCallPlan, Turn
from extproc.mock_backend.scenarios import Conversation
from extproc.mock_backend.tokenizer import count_tokens, first_tokens


def _earliest_stop(content: str, stops: list[str]) -> tuple[int, str] | None:
    hits = [(content.find(s), s) for s in stops if s and s in content]
    return min(hits) if hits else None


def _apply_budget(
    budget: int, reasoning: str, content: str, calls: list[ToolCallPlan]
) -> tuple[str, str, list[ToolCallPlan], bool]:
    remaining = budget
    cost = count_tokens(reasoning)
    if cost > remaining:
        return first_tokens(reasoning, remaining), "", [], True
    remaining -= cost
    cost = count_tokens(content)
    if cost > remaining:
        return reasoning, first_tokens(content, remaining), [], True
    remaining -= cost
    kept: list[ToolCallPlan] = []
    for call in calls:
        name_cost = count_tokens(call.name)
        cost = name_cost + count_tokens(call.arguments)
        if cost > remaining:
            if remaining > name_cost:
                partial = first_tokens(call.arguments, remaining - name_cost)
                kept.append(ToolCallPlan(call.name, partial, call.id))
            return reasoning, content, kept, True
        remaining -= cost
        kept.append(call)
    return reasoning, content, kept, False


def completion_tokens(reasoning: str, content: str, calls: tuple[ResolvedCall, ...]) -> int:
    return (
        count_tokens(reasoning)
        + count_tokens(content)
        + sum(count_tokens(c.name) + count_tokens(c.arguments) for c in calls)
    )


def finalize(
    turn: Turn,
    conv: Conversation,
    family: Family,
    *,
    tool_parser: bool,
    reasoning_parser: bool,
    id_hex_len: int,
) -> Output:
    reasoning, content, calls = turn.reasoning, turn.text, list(turn.tool_calls)
    in_content = (
        turn.reasoning_in_content
        if turn.reasoning_in_content is not None
        else (not reasoning_parser or family.reasoning_in_content)
    )
    if reasoning and in_content:
        content, reasoning = f"<think>\n{reasoning}\n</think>\n\n{content}", ""
    as_text = turn.text_tool_calls if turn.text_tool_calls is not None else not tool_parser
    if calls and as_text:
        text = family.text_tool_calls(calls, conv.prior_tool_calls)
        content, calls = (content + "\n\n" + text if content else text), []

    finish, stop_reason = turn.finish_reason, turn.stop_reason
    if finish is None:
        hit = _earliest_stop(content, conv.stop)
        if hit is not None:
            content, calls = content[: hit[0]], []
            finish, stop_reason = "stop", hit[1]
        if conv.max_tokens is not None:
            reasoning, content, calls, cut = _apply_budget(
                conv.max_tokens, reasoning, content, calls
            )
            if cut:
                finish, stop_reason = "length", None
    if finish is None:
        finish = "stop" if not calls or conv.named_tool_choice else "tool_calls"

    resolved = tuple(
        ResolvedCall(
            id=call.id or family.tool_call_id(call.name, conv.prior_tool_calls + i, id_hex_len),
            name=call.name,
            arguments=call.arguments,
        )
        for i, call in enumerate(calls)
    )
    return Output(
        reasoning=reasoning,
        content=content,
        tool_calls=resolved,
        finish_reason=finish,
        stop_reason=stop_reason,
        completion_tokens=completion_tokens(reasoning, content, resolved),
        interleave_tool_calls=turn.interleave_tool_calls,
    )
