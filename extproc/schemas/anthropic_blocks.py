"""Content blocks of the Anthropic Messages API request, as TypedDicts pydantic validates.

TypedDicts, not models: the translator reads the request's own dicts, so validation only has
to check them, and pydantic-core checks a TypedDict about twice as fast as it builds model
instances (measured: 7.4 -> 3.7 µs for a small request). Each one is decorated with `param`
(config does not inherit between TypedDicts): unknown fields allowed, no coercion.

Blocks are unions discriminated on `type`; a block type we do not know validates as
`UnknownBlockParam` instead of failing, and the translator decides what to do with it.
Union tags start with `~` so error locations can leave them out (see
`extproc.schemas.anthropic.describe_error`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, Union

from pydantic import ConfigDict, Discriminator, Tag, with_config
from typing_extensions import TypedDict

JSONObject = dict[str, Any]

# Anthropic adds fields often and a gateway must not break clients that send them; the
# translator reports what it could not carry. Strict: what was validated is what it reads.
param = with_config(ConfigDict(extra="allow", strict=True))


@param
class BlockParam(TypedDict):
    # Prompt-caching breakpoints may sit on any block; OpenAI backends have no equivalent.
    cache_control: NotRequired[JSONObject | None]


def tagged_union(known: dict[str, Any], unknown: Any = None) -> Any:
    """A union of models chosen by their `type`; unknown types go to `unknown` if given."""

    def pick(value: Any) -> str | None:
        kind = value.get("type") if isinstance(value, dict) else None
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


@param
class Base64ImageSource(TypedDict):
    type: Literal["base64"]
    media_type: str
    data: str


@param
class URLImageSource(TypedDict):
    type: Literal["url"]
    url: str


@param
class FileSource(TypedDict):
    """Anthropic Files API reference; only Anthropic can resolve it."""

    type: Literal["file"]
    file_id: str


@param
class Base64PDFSource(TypedDict):
    type: Literal["base64"]
    media_type: str
    data: str


@param
class PlainTextSource(TypedDict):
    type: Literal["text"]
    media_type: NotRequired[str]  # "text/plain" when left out
    data: str


@param
class URLPDFSource(TypedDict):
    type: Literal["url"]
    url: str


ImageSource = tagged_union({"base64": Base64ImageSource, "url": URLImageSource, "file": FileSource})


# ---- content blocks ----------------------------------------------------------------------


@param
class TextBlockParam(BlockParam):
    type: Literal["text"]
    text: str
    citations: NotRequired[list[JSONObject] | None]


@param
class ImageBlockParam(BlockParam):
    type: Literal["image"]
    source: ImageSource  # type: ignore[valid-type]


@param
class ContentBlockSource(TypedDict):
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


@param
class DocumentBlockParam(BlockParam):
    type: Literal["document"]
    source: DocumentSource  # type: ignore[valid-type]
    title: NotRequired[str | None]
    context: NotRequired[str | None]
    citations: NotRequired[JSONObject | None]


@param
class SearchResultBlockParam(BlockParam):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlockParam]
    citations: NotRequired[JSONObject | None]


@param
class ThinkingBlockParam(BlockParam):
    type: Literal["thinking"]
    thinking: str
    # Required by Anthropic; optional here because we never verify it.
    signature: NotRequired[str | None]


@param
class RedactedThinkingBlockParam(BlockParam):
    type: Literal["redacted_thinking"]
    data: str


@param
class ToolUseBlockParam(BlockParam):
    type: Literal["tool_use"]
    id: str
    name: str
    input: JSONObject


@param
class ToolReferenceBlockParam(BlockParam):
    type: Literal["tool_reference"]
    tool_name: str


@param
class UnknownBlockParam(BlockParam):
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


@param
class ToolResultBlockParam(BlockParam):
    type: Literal["tool_result"]
    tool_use_id: str
    content: NotRequired[string_or_list(ToolResultContentBlock)]  # type: ignore[valid-type]
    is_error: NotRequired[bool | None]


@param
class ServerToolUseBlockParam(BlockParam):
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


@param
class _ServerToolResultFields(BlockParam):
    # The fields of every server tool result; `type` is declared by each kind (a TypedDict
    # may not narrow a key it inherits).
    tool_use_id: str
    content: NotRequired[Any]


@param
class ServerToolResultBlockParam(_ServerToolResultFields):
    """`web_search_tool_result`, `web_fetch_tool_result`, `code_execution_tool_result`, ..."""

    type: str


@param
class WebSearchToolResultBlockParam(_ServerToolResultFields):
    type: Literal["web_search_tool_result"]


@param
class ContainerUploadBlockParam(BlockParam):
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
