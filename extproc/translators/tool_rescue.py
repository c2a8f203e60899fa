"""Tool calls a model wrote as text, recognised incrementally (sans-IO).

A backend started without a tool-call parser returns the model's tool-call syntax inside
`content`. `ToolCallRescuer.feed(text)` takes content as it streams and returns what it
completes: plain text (`str`) and whole calls (`RescuedCall`); `finish()` ends the input.
Text is held back only while its tail could still be the start of a call marker (`<`,
`<tool_`, `<|tool_calls_sec`, ...); everything else comes out as soon as it arrives. A
call is returned once its closing marker has been read (or at `finish()`, for a model that
stopped without writing it). A region between markers that does not parse as a call is
returned as the text it was: nothing the model wrote is lost.

Formats (the ones vLLM's tool parsers read):
- Hermes / Qwen3: `<tool_call>{"name": N, "arguments": {...}}</tool_call>`
- Qwen3-Coder: `<tool_call><function=N><parameter=K>\\nV\\n</parameter></function></tool_call>`
- GLM-4.5/4.6/4.7: `<tool_call>N\\n<arg_key>K</arg_key>\\n<arg_value>V</arg_value></tool_call>`
- Kimi-K2: `<|tool_calls_section_begin|><|tool_call_begin|>functions.N:I
  <|tool_call_argument_begin|>{...}<|tool_call_end|><|tool_calls_section_end|>` (the
  section markers may be missing); the id `functions.N:I` is kept, Kimi wants it back.
- MiniMax-M2: `<minimax:tool_call><invoke name="N"><parameter name="K">V</parameter>
  </invoke></minimax:tool_call>`

XML-style values are bare text: a value becomes JSON (`5`, `true`, `[...]`) unless the
tool's schema declares that parameter a string; undeclared parameters are read as JSON
when they parse, else kept as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson


@dataclass(frozen=True, slots=True)
class RescuedCall:
    name: str
    arguments: str  # a JSON object, compact
    id: str | None = None  # only when the model wrote one (Kimi)


Piece = str | RescuedCall
ParameterTypes = Mapping[str, Mapping[str, str]]  # tool -> parameter -> JSON schema type

_NO_TYPES: Final[ParameterTypes] = {}

# Opening marker -> closing marker.
MARKERS: Final = {
    "<tool_call>": "</tool_call>",
    "<|tool_calls_section_begin|>": "<|tool_calls_section_end|>",
    "<|tool_call_begin|>": "<|tool_call_end|>",
    "<minimax:tool_call>": "</minimax:tool_call>",
}
_OPENERS: Final = tuple(MARKERS)
_OPENER_RE: Final = re.compile("|".join(re.escape(opener) for opener in _OPENERS))
# Every proper prefix of an opener: a text tail equal to one is held back.
_PREFIXES: Final = frozenset(opener[:n] for opener in _OPENERS for n in range(1, len(opener)))
_LONGEST_PREFIX: Final = max(len(opener) for opener in _OPENERS) - 1


class ToolCallRescuer:
    """Feed content text in any chunking; get back text and the calls written in it."""

    __slots__ = ("_body", "_closer", "_held", "_opener", "_types", "calls_found")

    def __init__(self, parameter_types: ParameterTypes = _NO_TYPES) -> None:
        self._types = parameter_types
        self._held = ""  # outside a call: a tail that may begin a marker
        self._opener: str | None = None  # inside a call: its opening marker
        self._closer = ""
        self._body = ""
        self.calls_found = 0

    def feed(self, text: str) -> list[Piece]:
        out: list[Piece] = []
        buffer = self._held + text
        self._held = ""
        while buffer:
            if self._opener is None:
                buffer = self._outside(buffer, out)
            else:
                buffer = self._inside(buffer, out)
        return out

    def finish(self) -> list[Piece]:
        """The end of the content: release held text, read an unclosed call if it parses."""
        out: list[Piece] = []
        if self._opener is not None:
            self._close(out, closed=False)
        elif self._held:
            out.append(self._held)
        self._held = ""
        return out

    def _outside(self, buffer: str, out: list[Piece]) -> str:
        match = _OPENER_RE.search(buffer)
        if match is not None:
            if match.start():
                out.append(buffer[: match.start()])
            self._opener = match.group()
            self._closer = MARKERS[self._opener]
            self._body = ""
            return buffer[match.end() :]
        keep = _marker_prefix_length(buffer)
        if keep < len(buffer):
            out.append(buffer[: len(buffer) - keep])
        self._held = buffer[len(buffer) - keep :]
        return ""

    def _inside(self, buffer: str, out: list[Piece]) -> str:
        # The closer may straddle chunks: search from just before the new text.
        start = max(len(self._body) - len(self._closer) + 1, 0)
        self._body += buffer
        end = self._body.find(self._closer, start)
        if end < 0:
            return ""
        rest = self._body[end + len(self._closer) :]
        self._body = self._body[:end]
        self._close(out, closed=True)
        return rest

    def _close(self, out: list[Piece], *, closed: bool) -> None:
        opener, body = self._opener, self._body
        assert opener is not None
        self._opener, self._body = None, ""
        calls = _parse(opener, body, self._types)
        if calls:
            self.calls_found += len(calls)
            out.extend(calls)
        else:
            out.append(opener + body + (self._closer if closed else ""))


def rescue_text(text: str, parameter_types: ParameterTypes = _NO_TYPES
                ) -> tuple[str, list[RescuedCall]]:
    """A whole content string -> (the text around the calls, the calls)."""
    rescuer = ToolCallRescuer(parameter_types)
    pieces = rescuer.feed(text) + rescuer.finish()
    if not rescuer.calls_found:
        return text, []
    texts = [piece for piece in pieces if isinstance(piece, str)]
    return "".join(texts), [piece for piece in pieces if isinstance(piece, RescuedCall)]


def _marker_prefix_length(text: str) -> int:
    """Length of the tail of `text` that is a proper prefix of a marker (0 if none).

    A marker's only `<` is its first character, so only the last `<` can start one."""
    start = text.rfind("<", max(len(text) - _LONGEST_PREFIX, 0))
    return len(text) - start if start >= 0 and text[start:] in _PREFIXES else 0


# ---- parsing one call region -----------------------------------------------------------------

_QWEN_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|\Z)", re.DOTALL)
_QWEN_PARAMETER = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)",
                             re.DOTALL)
_GLM_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)(?:</arg_value>|\Z)",
                       re.DOTALL)
_KIMI_CALL = re.compile(
    r"<\|tool_call_begin\|>\s*(.*?)\s*<\|tool_call_argument_begin\|>(.*?)(?:<\|tool_call_end\|>|\Z)",
    re.DOTALL,
)
_KIMI_ID = re.compile(r"(?:functions\.)?(.+?)(?::\d+)?")
_MINIMAX_INVOKE = re.compile(r'<invoke name="([^"]+)">(.*?)(?:</invoke>|\Z)', re.DOTALL)
_MINIMAX_PARAMETER = re.compile(r'<parameter name="([^"]+)">(.*?)(?:</parameter>|\Z)', re.DOTALL)
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def _parse(opener: str, body: str, types: ParameterTypes) -> list[RescuedCall]:
    try:
        return _PARSERS[opener](body, types)
    except (ValueError, TypeError):
        return []


def _parse_tool_call_tag(body: str, types: ParameterTypes) -> list[RescuedCall]:
    """`<tool_call>` holds Hermes JSON, Qwen3-Coder's `<function=...>`, or GLM's pairs."""
    stripped = body.strip()
    if stripped.startswith("{"):
        return [_hermes(stripped)]
    if stripped.startswith("<function="):
        calls = []
        for name, inner in _QWEN_FUNCTION.findall(stripped):
            values = {key.strip(): _strip_newline(value)
                      for key, value in _QWEN_PARAMETER.findall(inner)}
            calls.append(_call(name.strip(), values, types))
        return calls
    name, _, rest = stripped.partition("<arg_key>")
    name = name.strip()
    if not _NAME.fullmatch(name):
        return []
    pairs = _GLM_PAIR.findall("<arg_key>" + rest) if rest else []
    return [_call(name, {key.strip(): value for key, value in pairs}, types)]


def _hermes(text: str) -> RescuedCall:
    value = orjson.loads(text)
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ValueError("not a Hermes tool call")
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        arguments = orjson.loads(arguments) if arguments.strip() else {}
    if not isinstance(arguments, dict):
        raise ValueError("arguments are not an object")
    return RescuedCall(value["name"], orjson.dumps(arguments).decode())


def _parse_kimi(body: str, _types: ParameterTypes) -> list[RescuedCall]:
    calls = []
    for call_id, arguments in _KIMI_CALL.findall(body):
        calls.append(_kimi(call_id, arguments))
    return calls


def _parse_kimi_single(body: str, _types: ParameterTypes) -> list[RescuedCall]:
    call_id, marker, arguments = body.partition("<|tool_call_argument_begin|>")
    return [_kimi(call_id.strip(), arguments)] if marker else []


def _kimi(call_id: str, arguments: str) -> RescuedCall:
    match = _KIMI_ID.fullmatch(call_id)
    if not call_id or match is None:
        raise ValueError("no Kimi call id")
    value = orjson.loads(arguments) if arguments.strip() else {}
    if not isinstance(value, dict):
        raise ValueError("arguments are not an object")
    return RescuedCall(match.group(1), orjson.dumps(value).decode(), id=call_id)


def _parse_minimax(body: str, types: ParameterTypes) -> list[RescuedCall]:
    calls = []
    for name, inner in _MINIMAX_INVOKE.findall(body):
        values = dict(_MINIMAX_PARAMETER.findall(inner))
        calls.append(_call(name, values, types))
    return calls


_PARSERS: Final[dict[str, Callable[[str, ParameterTypes], list[RescuedCall]]]] = {
    "<tool_call>": _parse_tool_call_tag,
    "<|tool_calls_section_begin|>": _parse_kimi,
    "<|tool_call_begin|>": _parse_kimi_single,
    "<minimax:tool_call>": _parse_minimax,
}


def _call(name: str, values: Mapping[str, str], types: ParameterTypes) -> RescuedCall:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a tool name: {name!r}")
    declared = types.get(name, {})
    arguments = {key: _typed(value, declared.get(key)) for key, value in values.items()}
    return RescuedCall(name, orjson.dumps(arguments).decode())


def _typed(value: str, declared: str | None) -> Any:
    if declared == "string":
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _strip_newline(value: str) -> str:
    """Qwen3-Coder writes each value on its own line(s) between the tags."""
    value = value[1:] if value.startswith("\n") else value
    return value[:-1] if value.endswith("\n") else value
