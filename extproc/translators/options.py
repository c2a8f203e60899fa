"""The per-request knobs of the Anthropic -> OpenAI request translator, taken from config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from extproc.config import (
    Backend,
    Config,
    Limits,
    ModelOptions,
    ReasoningEcho,
    SystemMerge,
    ThinkingSwitch,
)

# Defaults come from the config models so they are written down once.
_MODEL: Final = ModelOptions()
_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class RequestOptions:
    model: str  # the model name the backend serves (sent as `model`)
    max_output_tokens: int | None = _MODEL.max_output_tokens
    context_window: int | None = _MODEL.context_window
    reasoning_echo: ReasoningEcho = _MODEL.reasoning_echo
    think_tags: bool = _MODEL.think_tags
    system_merge: SystemMerge = _MODEL.system_merge
    thinking_switch: ThinkingSwitch = _MODEL.thinking_switch
    strip_billing_header: bool = True
    vllm_extensions: bool = _MODEL.vllm_extensions
    tool_call_rescue: bool = False
    max_messages: int = _LIMITS.max_messages
    max_tools: int = _LIMITS.max_tools
    max_json_depth: int = _LIMITS.max_json_depth  # of tool schemas and tool_use inputs

    @classmethod
    def from_config(cls, backend: Backend, model: str, config: Config) -> RequestOptions:
        """Options for sending `model` (the backend's name for it) to `backend`."""
        knobs = backend.options_for(model)
        limits = config.limits
        return cls(
            model=model,
            max_output_tokens=knobs.max_output_tokens,
            context_window=knobs.context_window,
            reasoning_echo=knobs.reasoning_echo,
            think_tags=knobs.think_tags,
            system_merge=knobs.system_merge,
            thinking_switch=knobs.thinking_switch,
            strip_billing_header=config.strip_billing_header,
            vllm_extensions=knobs.vllm_extensions,
            tool_call_rescue=backend.tool_call_rescue,
            max_messages=limits.max_messages,
            max_tools=limits.max_tools,
            max_json_depth=limits.max_json_depth,
        )
