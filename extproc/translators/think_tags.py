"""Reasoning written inline as `<think>...</think>` at the start of `content`.

Models served without a reasoning parser (MiniMax-M2 as usually served, Qwen3 without
`--reasoning-parser`) write their thinking into the answer text. With the model option
`think_tags`, a leading `<think>...</think>` becomes Anthropic `thinking`, the rest stays
text; and with `reasoning_echo: think_tags` prior thinking goes back the same way (MiniMax-M2
wants its thinking in the history).

Both directions trim the same way: thinking loses surrounding whitespace, the text after
`</think>` its leading whitespace. Only a tag at the very start (after whitespace) counts;
`<think>` later in the text is text. A stream cut before `</think>` leaves it all thinking.
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

OPEN: Final = "<think>"
CLOSE: Final = "</think>"


def split_think_tags(content: str) -> tuple[str, str]:
    """(thinking, text) of a whole answer; ("", content) when it does not open with <think>."""
    stripped = content.lstrip()
    if not stripped.startswith(OPEN):
        return "", content
    inner = stripped[len(OPEN) :]
    end = inner.find(CLOSE)
    if end < 0:  # cut short while thinking (max_tokens)
        return inner.strip(), ""
    return inner[:end].strip(), inner[end + len(CLOSE) :].lstrip()


def with_think_tags(thinking: str, text: str) -> str:
    """Prior thinking back in front of the assistant text, as the model wrote it."""
    return f"{OPEN}\n{thinking}\n{CLOSE}\n\n{text}"


class ThinkPiece(NamedTuple):
    thinking: bool  # True: goes to a thinking block; False: answer text
    text: str


class _State(enum.Enum):
    START = "start"  # nothing decided: whitespace or a prefix of <think> so far
    THINKING_LEAD = "thinking_lead"  # after <think>: dropping leading whitespace
    THINKING = "thinking"
    TEXT_LEAD = "text_lead"  # after </think>: dropping leading whitespace
    TEXT = "text"  # everything else passes as text


class ThinkTagSplitter:
    """Content deltas in, thinking and text pieces out, as early as can be known.

    Held back: at the start, only what may still become `<think>`; while thinking, only
    trailing whitespace and what may still become `</think>`.
    """

    def __init__(self) -> None:
        self._state = _State.START
        self._held = ""

    def feed(self, content: str) -> list[ThinkPiece]:
        if self._state is _State.TEXT:
            return [ThinkPiece(False, content)] if content else []
        text, self._held = self._held + content, ""
        out: list[ThinkPiece] = []
        while text:
            state = self._state
            if state is _State.START:
                stripped = text.lstrip()
                if stripped.startswith(OPEN):
                    text, self._state = stripped[len(OPEN) :], _State.THINKING_LEAD
                elif OPEN.startswith(stripped):  # whitespace, or "<thi": wait for more
                    self._held = text
                    break
                else:
                    self._state = _State.TEXT
            elif state is _State.THINKING_LEAD or state is _State.TEXT_LEAD:
                text = text.lstrip()
                if text:
                    self._state = _State.THINKING if state is _State.THINKING_LEAD else _State.TEXT
            elif state is _State.THINKING:
                end = text.find(CLOSE)
                if end >= 0:
                    thought = text[:end].rstrip()
                    if thought:
                        out.append(ThinkPiece(True, thought))
                    text, self._state = text[end + len(CLOSE) :], _State.TEXT_LEAD
                    continue
                keep = _held_back(text)
                if keep < len(text):
                    out.append(ThinkPiece(True, text[: len(text) - keep]))
                self._held = text[len(text) - keep :]
                break
            else:
                out.append(ThinkPiece(False, text))
                break
        return out

    def finish(self) -> list[ThinkPiece]:
        """The content ended: what was held back, as what it turned out to be."""
        held, self._held = self._held, ""
        if self._state is _State.START and held:
            self._state = _State.TEXT
            return [ThinkPiece(False, held)]
        if self._state is _State.THINKING and held.rstrip():
            return [ThinkPiece(True, held.rstrip())]
        return []


def _held_back(text: str) -> int:
    """How many trailing characters could still be whitespace before `</think>`, or its start."""
    partial = next(
        (k for k in range(min(len(CLOSE) - 1, len(text)), 0, -1) if text.endswith(CLOSE[:k])), 0
    )
    rest = text[: len(text) - partial]
    return partial + len(rest) - len(rest.rstrip())
