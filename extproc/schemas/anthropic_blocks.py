"""Content blocks of the Anthropic Messages API request, as pydantic models.

Blocks are unions discriminated on `type`; a block type we do not know validates as
`UnknownBlockParam` instead of failing, and the translator decides what to do with it.
Union tags start with `~` so error locations can leave them out (see
`extproc.schemas.anthropic.describe_error`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag

JSONObject = dict[str, Any]


class ParamModel(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class BlockParamModel(ParamModel):
    # Prompt-caching breakpoints may sit on any block; OpenAI backends have no equivalent.
    cache_control: JSONObject | None = None


def tagged_union(known: dict[str, Any], unknown: Any = None) -> Any:
    """A union of models chosen by their `type`; unknown types go to `unknown` if given."""

    def pick(value: Any) -> str | None:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if not isinstance(kind, str):
            return None
        if kind in known or unknown is None:
            return "~" + kind  # without a fallback, pydantic reports the unknown tag
        return "~?"

    members = [Annotated[model, Tag("~" + kind)] for kind, model in known.items()]
    if unknown is not None:
        members.append(Annotated[unknown, Tag("~?")])
    return Annotated[
        Union[tuple(members)],  # noqa: UP007 - built at runtime from Annotated members
        Discriminator(pick),
    ]


def string_or_list(blocks: Any) -> Any:
    """`str | list[block]`, chosen by shape so only the relevant branch reports errors."""

    def pick(value: Any) -> str:
        return "~str" if isinstance(value, str) else "~list"

    return Annotated[
        Union[Annotated[str, Tag("~str")], Annotated[list[blocks], Tag("~list")]],  # noqa: UP007
        Discriminator(pick),
    ]


# ---- sources -----------------------------------------------------------------------------


class Base64ImageSource(ParamModel):
    type: Literal["base64"]
    media_type: str
    data: str


class URLImageSource(ParamModel):
    type: Literal["url"]
    url: str


class FileSource(ParamModel):
    """Anthropic Files API reference; only Anthropic can resolve it."""

    type: Literal["file"]
    file_id: str


class Base64PDFSource(ParamModel):
    type: Literal["base64"]
    media_type: str
    data: str


class PlainTextSource(ParamModel):
    type: Literal["text"]
    media_type: str = "text/plain"
    data: str


class URLPDFSource(ParamModel):
    type: Literal["url"]
    url: str


ImageSource = tagged_union({"base64": Base64ImageSource, "url": URLImageSource, "file": FileSource})


# ---- content blocks ----------------------------------------------------------------------


class TextBlockParam(BlockParamModel):
    type: Literal["text"]
    text: str
    citations: list[JSONObject] | None = None


class ImageBlockParam(BlockParamModel):
    type: Literal["image"]
    source: ImageSource  # type: ignore[valid-type]


class ContentBlockSource(ParamModel):
    type: Literal["content"]
    content: string_or_list(  # type: ignore[valid-type]
        tagged_union({"text": TextBlockParam, "image": ImageBlockParam})
    )


DocumentSource = tagged_union(
    {
        "base64": Base64PDFSource,
        "text": PlainTextSource,
        "content": ContentBlockSource,
        "url": URLPDFSource,
        "file": FileSource,
    }
)


class DocumentBlockParam(BlockParamModel):
    type: Literal["document"]
    source: DocumentSource  # type: ignore[valid-type]
    title: str | None = None
    context: str | None = None
    citations: JSONObject | None = None


class SearchResultBlockParam(BlockParamModel):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlockParam]
    citations: JSONObject | None = None


class ThinkingBlockParam(BlockParamModel):
    type: Literal["thinking"]
    thinking: str
    # Required by Anthropic; optional here because we never verify it.
    signature: str | None = None


class RedactedThinkingBlockParam(BlockParamModel):
    type: Literal["redacted_thinking"]
    data: str


class ToolUseBlockParam(BlockParamModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: JSONObject


class ToolReferenceBlockParam(BlockParamModel):
    type: Literal["tool_reference"]
    tool_name: str


class UnknownBlockParam(BlockParamModel):
    """A block type this gateway does not know yet (carried as-is, reported by the translator)."""

    type: str


ToolResultContentBlock = tagged_union(
    {
        "text": TextBlockParam,
        "image": ImageBlockParam,
        "document": DocumentBlockParam,
        "search_result": SearchResultBlockParam,
        "tool_reference": ToolReferenceBlockParam,
    },
    UnknownBlockParam,
)


class ToolResultBlockParam(BlockParamModel):
    type: Literal["tool_result"]
    tool_use_id: str
    content: string_or_list(ToolResultContentBlock) = ""  # type: ignore[valid-type]
    is_error: bool | None = None


class ServerToolUseBlockParam(BlockParamModel):
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


class ServerToolResultBlockParam(BlockParamModel):
    """`web_search_tool_result`, `web_fetch_tool_result`, `code_execution_tool_result`, ..."""

    type: str
    tool_use_id: str
    content: Any = None


class WebSearchToolResultBlockParam(ServerToolResultBlockParam):
    type: Literal["web_search_tool_result"]


class ContainerUploadBlockParam(BlockParamModel):
    type: Literal["container_upload"]
    file_id: str


ContentBlockParam = tagged_union(
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
)
