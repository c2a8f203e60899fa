"""An `Output` as vLLM's `/v1/chat/completions` writes it: one JSON body, or SSE `data:` events.

Stream order (as vLLM's serving_chat): a role chunk `{"role":"assistant","content":""}`, then
reasoning deltas, content deltas, tool-call deltas (first delta of a call: id, type, index and
name; later ones: index and an arguments piece), a chunk with `finish_reason` and `stop_reason`,
with `stream_options.include_usage` a usage-only chunk (`"choices":[]`), then `data: [DONE]`
(added by the server). With `continuous_usage_stats` every chunk carries usage with a running
`completion_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from extproc.mock_backend.dialects import (
    Dialect,
    chunk_dict,
    completion_dict,
    delta_dict,
    message_dict,
    sse_data,
    tool_call_dict,
    usage_dict,
)
from extproc.mock_backend.families import Family, group_tokens
from extproc.mock_backend.plan import Output, ResolvedCall
from extproc.mock_backend.tokenizer import count_tokens


@dataclass(frozen=True)
class Meta:
    """Per-response facts that are not the model's output."""

    response_id: str
    created: int
    model: str
    prompt_tokens: int
    cached_tokens: int | None  # None: no prompt_tokens_details reported
    usage_override: dict[str, Any] | None = None


def final_usage(meta: Meta, out: Output, *, details: bool) -> dict[str, Any]:
    usage = usage_dict(
        meta.prompt_tokens, out.completion_tokens, meta.cached_tokens, details=details
    )
    override = dict(meta.usage_override or {})
    if not override:
        return usage
    if "cached_tokens" in override:
        usage["prompt_tokens_details"] = {"cached_tokens": override.pop("cached_tokens")}
    usage.update(override)
    if "total_tokens" not in override:
        usage["total_tokens"] = int(usage["prompt_tokens"]) + int(usage["completion_tokens"] or 0)
    return usage


def completion_body(d: Dialect, meta: Meta, out: Output) -> bytes:
    calls = [tool_call_dict(c.id, c.name, c.arguments) for c in out.tool_calls]
    # vLLM's parsers leave content null when nothing but reasoning or tool calls came out.
    content = out.content or (None if out.tool_calls or out.reasoning else "")
    message = message_dict(d, content, out.reasoning or None, calls)
    return orjson.dumps(
        completion_dict(
            d,
            response_id=meta.response_id,
            created=meta.created,
            model=meta.model,
            message=message,
            finish_reason=out.finish_reason,
            stop_reason=out.stop_reason,
            usage=final_usage(meta, out, details=True),
        )
    )


@dataclass(frozen=True)
class Piece:
    """One delta of the stream and how many completion tokens it adds."""

    kind: str  # "reasoning" | "content" | "tool"
    value: Any  # text, or one tool-call delta entry
    tokens: int


def _tool_pieces(fam: Family, calls: tuple[ResolvedCall, ...], interleave: bool) -> list[Piece]:
    heads: list[Piece] = []
    tails: list[list[Piece]] = []
    for index, call in enumerate(calls):
        function: dict[str, Any] = {"name": call.name}
        rest = fam.argument_pieces(call.arguments)
        if fam.args_style == "whole":
            function["arguments"], rest = call.arguments, []
        elif fam.name_delta_has_arguments:
            function["arguments"] = ""
        head = {"id": call.id, "type": "function", "index": index, "function": function}
        tokens = count_tokens(call.name) + count_tokens(function.get("arguments", ""))
        heads.append(Piece("tool", head, tokens))
        tails.append(
            [
                Piece("tool", {"index": index, "function": {"arguments": p}}, count_tokens(p))
                for p in rest
            ]
        )
    if not interleave:
        return [p for head, tail in zip(heads, tails, strict=True) for p in (head, *tail)]
    ordered = list(heads)
    for step in range(max((len(t) for t in tails), default=0)):
        ordered.extend(tail[step] for tail in tails if step < len(tail))
    return ordered


def stream_pieces(fam: Family, out: Output) -> list[Piece]:
    pieces = [
        Piece("reasoning", t, count_tokens(t))
        for t in group_tokens(out.reasoning, fam.tokens_per_delta)
    ]
    pieces += [
        Piece("content", t, count_tokens(t))
        for t in group_tokens(out.content, fam.tokens_per_delta)
    ]
    return pieces + _tool_pieces(fam, out.tool_calls, out.interleave_tool_calls)


def _delta(d: Dialect, piece: Piece | None) -> dict[str, Any]:
    if piece is None:
        return delta_dict(d)
    if piece.kind == "reasoning":
        return delta_dict(d, reasoning=piece.value)
    if piece.kind == "content":
        return delta_dict(d, content=piece.value)
    return delta_dict(d, tool_calls=[piece.value])


def stream_events(
    d: Dialect,
    fam: Family,
    meta: Meta,
    out: Output,
    *,
    include_usage: bool,
    continuous_usage: bool,
) -> list[bytes]:
    """Every `data:` event of the stream except the closing `[DONE]`."""
    total = out.completion_tokens

    def running(tokens: int) -> dict[str, Any] | None:
        if not continuous_usage:
            return None
        return usage_dict(meta.prompt_tokens, min(tokens, total))

    def chunk(delta: dict[str, Any] | None, **fields: Any) -> bytes:
        return sse_data(
            chunk_dict(
                d,
                response_id=meta.response_id,
                created=meta.created,
                model=meta.model,
                delta=delta,
                **fields,
            )
        )

    events = [chunk(delta_dict(d, role="assistant", content=""), first=True, usage=running(0))]
    pieces = stream_pieces(fam, out)
    last: Piece | None = None
    if fam.finish_delta == "last_piece" and pieces:
        last = pieces.pop()
    so_far = 0
    for piece in pieces:
        so_far += piece.tokens
        events.append(chunk(_delta(d, piece), usage=running(so_far)))

    if last is not None:
        finish_delta = _delta(d, last)
    elif fam.finish_delta == "empty":
        finish_delta = delta_dict(d)
    else:
        finish_delta = delta_dict(d, content="")
    finish_usage = running(total)
    if fam.usage_in_finish_chunk:
        finish_usage = final_usage(meta, out, details=False)
    events.append(
        chunk(
            finish_delta,
            finish_reason=out.finish_reason,
            stop_reason=out.stop_reason,
            usage=finish_usage,
        )
    )
    if include_usage:
        events.append(chunk(None, usage=final_usage(meta, out, details=False)))
    return events
