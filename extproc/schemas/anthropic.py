"""Pydantic models of the Anthropic Messages API request (and the response we produce).

Names follow the anthropic SDK (`TextBlockParam`, `ToolUseBlockParam`, ...). Every model
accepts unknown fields (`extra="allow"`): Anthropic adds fields often and a gateway must
not break clients that send them; the translator reports what it could not carry.
Content blocks live in `anthropic_blocks`; a block type we do not know validates as
`UnknownBlockParam` instead of failing, and the translator decides what to do with it.

Validation is strict (no "1" -> 1 coercion): the translator reads the original dicts after
validation, so what was validated must be exactly what it reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from extproc.schemas.anthropic_blocks import (
    BlockParamModel,
    ContentBlockParam,
    JSONObject,
    ParamModel,
    TextBlockParam,
    string_or_list,
    tagged_union,
)


class MessageParam(ParamModel):
    # "system" entries inside `messages` are sent by Claude Code (mid-conversation system).
    role: Literal["user", "assistant", "system"]
    content: string_or_list(ContentBlockParam)  # type: ignore[valid-type]


# ---- tools -------------------------------------------------------------------------------


class ToolParam(BlockParamModel):
    """A client tool: the client runs it and sends back a `tool_result`."""

    type: Literal["custom"] | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: JSONObject
    strict: bool | None = None


class ServerToolParam(BlockParamModel):
    """An Anthropic-defined tool (`web_search_20250305`, `bash_20250124`, ...)."""

    type: str
    name: str | None = None


def _tool_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind is None or kind == "custom":
        return "~client"
    return "~server" if isinstance(kind, str) else None


ToolUnionParam = Annotated[
    Annotated[ToolParam, Tag("~client")] | Annotated[ServerToolParam, Tag("~server")],
    Discriminator(_tool_kind),
]


class _ToolChoiceBase(ParamModel):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAutoParam(_ToolChoiceBase):
    type: Literal["auto"]


class ToolChoiceAnyParam(_ToolChoiceBase):
    type: Literal["any"]


class ToolChoiceToolParam(_ToolChoiceBase):
    type: Literal["tool"]
    name: str


class ToolChoiceNoneParam(ParamModel):
    type: Literal["none"]


ToolChoiceParam = tagged_union(
    {
        "auto": ToolChoiceAutoParam,
        "any": ToolChoiceAnyParam,
        "tool": ToolChoiceToolParam,
        "none": ToolChoiceNoneParam,
    }
)


# ---- request options ---------------------------------------------------------------------


class ThinkingConfigEnabledParam(ParamModel):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=0)
    display: str | None = None


class ThinkingConfigDisabledParam(ParamModel):
    type: Literal["disabled"]


class ThinkingConfigAdaptiveParam(ParamModel):
    type: Literal["adaptive"]
    display: str | None = None


class ThinkingConfigBetweenToolsParam(ParamModel):
    type: Literal["between_tools"]


ThinkingConfigParam = tagged_union(
    {
        "enabled": ThinkingConfigEnabledParam,
        "disabled": ThinkingConfigDisabledParam,
        "adaptive": ThinkingConfigAdaptiveParam,
        "between_tools": ThinkingConfigBetweenToolsParam,
    }
)


class MetadataParam(ParamModel):
    user_id: str | None = None


class JSONOutputFormatParam(ParamModel):
    type: Literal["json_schema"]
    schema_: JSONObject = Field(alias="schema")


class OutputConfigParam(ParamModel):
    effort: str | None = None
    format: JSONOutputFormatParam | None = None


class MessageCreateParams(ParamModel):
    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    max_tokens: int = Field(ge=0)
    system: string_or_list(TextBlockParam) | None = None  # type: ignore[valid-type]
    metadata: MetadataParam | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[ToolUnionParam] | None = None
    tool_choice: ToolChoiceParam | None = None  # type: ignore[valid-type]
    thinking: ThinkingConfigParam | None = None  # type: ignore[valid-type]
    output_config: OutputConfigParam | None = None
    # Pre-GA spelling of `output_config.format` (structured-outputs beta).
    output_format: JSONOutputFormatParam | None = None
    # Anthropic-only features, accepted and reported as not carried.
    service_tier: str | None = None
    container: Any = None
    mcp_servers: list[JSONObject] | None = None
    context_management: JSONObject | None = None
    cache_control: JSONObject | None = None
    inference_geo: str | None = None
    speed: str | None = None
    diagnostics: JSONObject | None = None


KNOWN_REQUEST_FIELDS = frozenset(
    field.alias or name for name, field in MessageCreateParams.model_fields.items()
)


def describe_error(exc: ValidationError) -> str:
    """The first validation error as `field.path: message`, union tags left out."""
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(
        str(part) for part in err["loc"] if not (isinstance(part, str) and part.startswith("~"))
    )
    kind, context = err["type"], err.get("ctx") or {}
    if kind == "union_tag_not_found":
        message = "must be an object with a string `type`"
    elif kind == "union_tag_invalid":
        expected = str(context.get("expected_tags", "")).replace("~", "")
        message = f"unknown type {str(context.get('tag', '')).lstrip('~')!r} (expected {expected})"
    else:
        message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


# ---- response (what we produce; used to check our output) --------------------------------


class TextBlock(BaseModel):
    type: Literal["text"]
    text: str


class ThinkingBlock(BaseModel):
    type: Literal["thinking"]
    thinking: str
    signature: str


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: JSONObject


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


ContentBlock = Annotated[TextBlock | ThinkingBlock | ToolUseBlock, Field(discriminator="type")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: (
        Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"]
        | None
    )
    stop_sequence: str | None
    usage: Usage


class ErrorObject(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["error"]
    error: ErrorObject
