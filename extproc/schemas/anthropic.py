"""Pydantic models of the Anthropic Messages API request (and the response we produce).

Names follow the anthropic SDK (`TextBlockParam`, `ToolUseBlockParam`, ...). Every model
accepts unknown fields (`extra="allow"`): Anthropic adds fields often and a gateway must
not break clients that send them; the translator reports what it could not carry.
Content blocks are unions discriminated on `type`; a block type we do not know validates
as `UnknownBlockParam` instead of failing, and the translator decides what to do with it.

Validation is strict (no "1" -> 1 coercion): the translator reads the original dicts after
validation, so what was validated must be exactly what it reads.

Union tags start with `~` so error locations can leave them out (see `describe_error`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

JSONObject = dict[str, Any]


class _Param(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Block(_Param):
    # Prompt-caching breakpoints may sit on any block; OpenAI backends have no equivalent.
    cache_control: JSONObject | None = None


def _tagged(known: dict[str, Any], unknown: Any, what: str) -> Any:
    """A union of block models chosen by their `type`, with a fallback for unknown types."""

    def pick(value: Any) -> str | None:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if not isinstance(kind, str):
            return None
        return "~" + kind if kind in known else "~?"

    members = [Annotated[model, Tag("~" + kind)] for kind, model in known.items()]
    if unknown is not None:
        members.append(Annotated[unknown, Tag("~?")])
    return Annotated[
        Union[tuple(members)],  # noqa: UP007 - built at runtime from Annotated members
        Discriminator(
            pick,
            custom_error_type="invalid_block",
            custom_error_message=f"each {what} must be an object with a string `type`",
        ),
    ]


def _string_or(blocks: Any) -> Any:
    """`str | list[block]`, chosen by shape so only the relevant branch reports errors."""

    def pick(value: Any) -> str:
        return "~str" if isinstance(value, str) else "~list"

    return Annotated[
        Union[Annotated[str, Tag("~str")], Annotated[list[blocks], Tag("~list")]],  # noqa: UP007
        Discriminator(pick),
    ]


# ---- sources -----------------------------------------------------------------------------


class Base64ImageSource(_Param):
    type: Literal["base64"]
    media_type: str
    data: str


class URLImageSource(_Param):
    type: Literal["url"]
    url: str


class FileSource(_Param):
    """Anthropic Files API reference; only Anthropic can resolve it."""

    type: Literal["file"]
    file_id: str


class Base64PDFSource(_Param):
    type: Literal["base64"]
    media_type: str
    data: str


class PlainTextSource(_Param):
    type: Literal["text"]
    media_type: str = "text/plain"
    data: str


class URLPDFSource(_Param):
    type: Literal["url"]
    url: str


ImageSource = Annotated[
    Base64ImageSource | URLImageSource | FileSource, Field(discriminator="type")
]


# ---- content blocks ----------------------------------------------------------------------


class TextBlockParam(_Block):
    type: Literal["text"]
    text: str
    citations: list[JSONObject] | None = None


class ImageBlockParam(_Block):
    type: Literal["image"]
    source: ImageSource


class ContentBlockSource(_Param):
    type: Literal["content"]
    content: _string_or(  # type: ignore[valid-type]
        _tagged({"text": TextBlockParam, "image": ImageBlockParam}, None, "document content block")
    )


DocumentSource = Annotated[
    Base64PDFSource | PlainTextSource | ContentBlockSource | URLPDFSource | FileSource,
    Field(discriminator="type"),
]


class DocumentBlockParam(_Block):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: JSONObject | None = None


class SearchResultBlockParam(_Block):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlockParam]
    citations: JSONObject | None = None


class ThinkingBlockParam(_Block):
    type: Literal["thinking"]
    thinking: str
    # Required by Anthropic; optional here because we never verify it.
    signature: str | None = None


class RedactedThinkingBlockParam(_Block):
    type: Literal["redacted_thinking"]
    data: str


class ToolUseBlockParam(_Block):
    type: Literal["tool_use"]
    id: str
    name: str
    input: JSONObject


class ToolReferenceBlockParam(_Block):
    type: Literal["tool_reference"]
    tool_name: str


class UnknownBlockParam(_Block):
    """A block type this gateway does not know yet (carried as-is, reported by the translator)."""

    type: str


ToolResultContentBlock = _tagged(
    {
        "text": TextBlockParam,
        "image": ImageBlockParam,
        "document": DocumentBlockParam,
        "search_result": SearchResultBlockParam,
        "tool_reference": ToolReferenceBlockParam,
    },
    UnknownBlockParam,
    "tool_result content block",
)


class ToolResultBlockParam(_Block):
    type: Literal["tool_result"]
    tool_use_id: str
    content: _string_or(ToolResultContentBlock) = ""  # type: ignore[valid-type]
    is_error: bool | None = None


class ServerToolUseBlockParam(_Block):
    type: Literal["server_tool_use"]
    id: str
    name: str
    input: JSONObject


# Results of Anthropic-run tools, echoed back in conversation history.
SERVER_TOOL_RESULT_TYPES = (
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
)


class ServerToolResultBlockParam(_Block):
    """`web_search_tool_result`, `web_fetch_tool_result`, `code_execution_tool_result`, ..."""

    type: str
    tool_use_id: str
    content: Any = None


class WebSearchToolResultBlockParam(ServerToolResultBlockParam):
    type: Literal["web_search_tool_result"]


class ContainerUploadBlockParam(_Block):
    type: Literal["container_upload"]
    file_id: str


ContentBlockParam = _tagged(
    {
        "text": TextBlockParam,
        "image": ImageBlockParam,
        "document": DocumentBlockParam,
        "search_result": SearchResultBlockParam,
        "thinking": ThinkingBlockParam,
        "redacted_thinking": RedactedThinkingBlockParam,
        "tool_use": ToolUseBlockParam,
        "tool_result": ToolResultBlockParam,
        "server_tool_use": ServerToolUseBlockParam,
        "web_search_tool_result": WebSearchToolResultBlockParam,
        **{kind: ServerToolResultBlockParam for kind in SERVER_TOOL_RESULT_TYPES[1:]},
        "container_upload": ContainerUploadBlockParam,
    },
    UnknownBlockParam,
    "content block",
)


class MessageParam(_Param):
    # "system" entries inside `messages` are sent by Claude Code (mid-conversation system).
    role: Literal["user", "assistant", "system"]
    content: _string_or(ContentBlockParam)  # type: ignore[valid-type]


# ---- tools -------------------------------------------------------------------------------


class ToolParam(_Block):
    """A client tool: the client runs it and sends back a `tool_result`."""

    type: Literal["custom"] | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: JSONObject
    strict: bool | None = None


class ServerToolParam(_Block):
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
    Discriminator(
        _tool_kind,
        custom_error_type="invalid_tool",
        custom_error_message="each tool must be an object; `type` must be a string if present",
    ),
]


class _ToolChoiceBase(_Param):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAutoParam(_ToolChoiceBase):
    type: Literal["auto"]


class ToolChoiceAnyParam(_ToolChoiceBase):
    type: Literal["any"]


class ToolChoiceToolParam(_ToolChoiceBase):
    type: Literal["tool"]
    name: str


class ToolChoiceNoneParam(_Param):
    type: Literal["none"]


ToolChoiceParam = Annotated[
    ToolChoiceAutoParam | ToolChoiceAnyParam | ToolChoiceToolParam | ToolChoiceNoneParam,
    Field(discriminator="type"),
]


# ---- request options ---------------------------------------------------------------------


class ThinkingConfigEnabledParam(_Param):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=0)
    display: str | None = None


class ThinkingConfigDisabledParam(_Param):
    type: Literal["disabled"]


class ThinkingConfigAdaptiveParam(_Param):
    type: Literal["adaptive"]
    display: str | None = None


class ThinkingConfigBetweenToolsParam(_Param):
    type: Literal["between_tools"]


ThinkingConfigParam = Annotated[
    ThinkingConfigEnabledParam
    | ThinkingConfigDisabledParam
    | ThinkingConfigAdaptiveParam
    | ThinkingConfigBetweenToolsParam,
    Field(discriminator="type"),
]


class MetadataParam(_Param):
    user_id: str | None = None


class JSONOutputFormatParam(_Param):
    type: Literal["json_schema"]
    schema_: JSONObject = Field(alias="schema")


class OutputConfigParam(_Param):
    effort: str | None = None
    format: JSONOutputFormatParam | None = None


class MessageCreateParams(_Param):
    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    max_tokens: int = Field(ge=0)
    system: _string_or(TextBlockParam) | None = None  # type: ignore[valid-type]
    metadata: MetadataParam | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[ToolUnionParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingConfigParam | None = None
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
