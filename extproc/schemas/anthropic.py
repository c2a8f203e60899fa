"""The Anthropic Messages API request as TypedDicts pydantic validates (and, as pydantic
models, the response we produce).

Names follow the anthropic SDK (`TextBlockParam`, `ToolUseBlockParam`, ...). Every request
part accepts unknown fields (`extra="allow"`): Anthropic adds fields often and a gateway must
not break clients that send them; the translator reports what it could not carry.
Content blocks live in `anthropic_blocks`; a block type we do not know validates as
`UnknownBlockParam` instead of failing, and the translator decides what to do with it.

Validation is strict (no "1" -> 1 coercion): the translator reads the original dicts after
validation, so what was validated must be exactly what it reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from extproc.schemas.anthropic_blocks import (
    BlockParam,
    ContentBlockParam,
    JSONObject,
    TextBlockParam,
    param,
    string_or_list,
    tagged_union,
)


@param
class MessageParam(TypedDict):
    # "system" entries inside `messages` are sent by Claude Code (mid-conversation system).
    role: Literal["user", "assistant", "system"]
    content: string_or_list(ContentBlockParam)  # type: ignore[valid-type]


# ---- tools -------------------------------------------------------------------------------


@param
class ToolParam(BlockParam):
    """A client tool: the client runs it and sends back a `tool_result`."""

    type: NotRequired[Literal["custom"] | None]
    name: Annotated[str, Field(min_length=1)]
    description: NotRequired[str | None]
    input_schema: JSONObject
    strict: NotRequired[bool | None]


@param
class ServerToolParam(BlockParam):
    """An Anthropic-defined tool (`web_search_20250305`, `bash_20250124`, ...)."""

    type: str
    name: NotRequired[str | None]


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


@param
class _ToolChoiceBase(TypedDict):
    disable_parallel_tool_use: NotRequired[bool | None]


@param
class ToolChoiceAutoParam(_ToolChoiceBase):
    type: Literal["auto"]


@param
class ToolChoiceAnyParam(_ToolChoiceBase):
    type: Literal["any"]


@param
class ToolChoiceToolParam(_ToolChoiceBase):
    type: Literal["tool"]
    name: str


@param
class ToolChoiceNoneParam(TypedDict):
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


@param
class ThinkingConfigEnabledParam(TypedDict):
    type: Literal["enabled"]
    budget_tokens: Annotated[int, Field(ge=0)]
    display: NotRequired[str | None]


@param
class ThinkingConfigDisabledParam(TypedDict):
    type: Literal["disabled"]


@param
class ThinkingConfigAdaptiveParam(TypedDict):
    type: Literal["adaptive"]
    display: NotRequired[str | None]


@param
class ThinkingConfigBetweenToolsParam(TypedDict):
    type: Literal["between_tools"]


ThinkingConfigParam = tagged_union(
    {
        "enabled": ThinkingConfigEnabledParam,
        "disabled": ThinkingConfigDisabledParam,
        "adaptive": ThinkingConfigAdaptiveParam,
        "between_tools": ThinkingConfigBetweenToolsParam,
    }
)


@param
class MetadataParam(TypedDict):
    user_id: NotRequired[str | None]


@param
class JSONOutputFormatParam(TypedDict):
    type: Literal["json_schema"]
    schema: JSONObject


@param
class OutputConfigParam(TypedDict):
    effort: NotRequired[str | None]
    format: NotRequired[JSONOutputFormatParam | None]


@param
class MessageCreateParams(TypedDict):
    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[MessageParam], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=0)]
    system: NotRequired[string_or_list(TextBlockParam) | None]  # type: ignore[valid-type]
    metadata: NotRequired[MetadataParam | None]
    stop_sequences: NotRequired[list[str] | None]
    stream: NotRequired[bool | None]
    temperature: NotRequired[Annotated[float, Field(ge=0.0, le=1.0)] | None]
    top_p: NotRequired[Annotated[float, Field(ge=0.0, le=1.0)] | None]
    top_k: NotRequired[Annotated[int, Field(ge=0)] | None]
    tools: NotRequired[list[ToolUnionParam] | None]
    tool_choice: NotRequired[ToolChoiceParam | None]  # type: ignore[valid-type]
    thinking: NotRequired[ThinkingConfigParam | None]  # type: ignore[valid-type]
    output_config: NotRequired[OutputConfigParam | None]
    # Pre-GA spelling of `output_config.format` (structured-outputs beta).
    output_format: NotRequired[JSONOutputFormatParam | None]
    # Anthropic-only features, accepted and reported as not carried.
    service_tier: NotRequired[str | None]
    container: NotRequired[Any]
    mcp_servers: NotRequired[list[JSONObject] | None]
    context_management: NotRequired[JSONObject | None]
    cache_control: NotRequired[JSONObject | None]
    inference_geo: NotRequired[str | None]
    speed: NotRequired[str | None]
    diagnostics: NotRequired[JSONObject | None]


KNOWN_REQUEST_FIELDS = MessageCreateParams.__required_keys__ | MessageCreateParams.__optional_keys__
# Checks a parsed request (raises ValidationError); what it returns is not used.
REQUEST_VALIDATOR = TypeAdapter(MessageCreateParams).validator


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
