"""Pydantic models of the OpenAI chat completions API as vLLM speaks it.

Requests are what we produce: `extra="forbid"` so a field we did not mean to send fails a
test. Responses are what backends produce: `extra="allow"`, since servers add fields freely.
vLLM extras are included: `top_k`, `chat_template_kwargs`, `continue_final_message`,
`add_generation_prompt`, `stream_options.continuous_usage_stats` on requests; `reasoning`
(vLLM >= 0.17) / `reasoning_content` (older), `choices[].stop_reason` (the matched stop
string or token id) and `prompt_tokens_details.cached_tokens` on responses.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Sent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Received(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- request -----------------------------------------------------------------------------


class ChatCompletionContentPartTextParam(_Sent):
    type: Literal["text"]
    text: str


class ImageURL(_Sent):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ChatCompletionContentPartImageParam(_Sent):
    type: Literal["image_url"]
    image_url: ImageURL


ChatCompletionContentPartParam = Annotated[
    ChatCompletionContentPartTextParam | ChatCompletionContentPartImageParam,
    Field(discriminator="type"),
]


class ChatCompletionSystemMessageParam(_Sent):
    role: Literal["system"]
    content: str | list[ChatCompletionContentPartTextParam]


class ChatCompletionUserMessageParam(_Sent):
    role: Literal["user"]
    content: str | list[ChatCompletionContentPartParam]


class FunctionCall(_Sent):
    name: str
    arguments: str  # JSON text


class ChatCompletionMessageToolCallParam(_Sent):
    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatCompletionAssistantMessageParam(_Sent):
    role: Literal["assistant"]
    content: str | None
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ChatCompletionMessageToolCallParam] | None = Field(default=None, min_length=1)


class ChatCompletionToolMessageParam(_Sent):
    role: Literal["tool"]
    tool_call_id: str
    content: str


ChatCompletionMessageParam = Annotated[
    ChatCompletionSystemMessageParam
    | ChatCompletionUserMessageParam
    | ChatCompletionAssistantMessageParam
    | ChatCompletionToolMessageParam,
    Field(discriminator="role"),
]


class FunctionDefinition(_Sent):
    name: str
    description: str | None = None
    parameters: dict[str, Any]


class ChatCompletionToolParam(_Sent):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Sent):
    name: str


class ChatCompletionNamedToolChoiceParam(_Sent):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Sent):
    include_usage: bool
    continuous_usage_stats: bool | None = None


class JSONSchemaFormat(_Sent):
    name: str
    schema_: dict[str, Any] = Field(alias="schema")


class ResponseFormatJSONSchema(_Sent):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


class ChatCompletionRequest(_Sent):
    model: str
    messages: list[ChatCompletionMessageParam] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    user: str | None = None
    stream: bool
    stream_options: StreamOptions | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None  # vLLM's accepted values
    response_format: ResponseFormatJSONSchema | None = None
    tools: list[ChatCompletionToolParam] | None = None
    tool_choice: Literal["auto", "required", "none"] | ChatCompletionNamedToolChoiceParam | None = (
        None
    )
    parallel_tool_calls: bool | None = None
    continue_final_message: bool | None = None
    add_generation_prompt: bool | None = None


# ---- response ----------------------------------------------------------------------------


class ChatCompletionMessageToolCall(_Received):
    id: str | None = None
    type: str | None = "function"
    function: FunctionCall


class ChatCompletionMessage(_Received):
    role: str | None = "assistant"
    content: str | list[dict[str, Any]] | None = None  # parts: a few servers answer that way
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None


class Choice(_Received):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: str | None = None
    stop_reason: str | int | None = None  # vLLM: the stop string or token id that ended it


class PromptTokensDetails(_Received):
    cached_tokens: int | None = None


class CompletionUsage(_Received):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None


class ChatCompletion(_Received):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int | None = None
    model: str | None = None
    choices: list[Choice] = Field(min_length=1)
    usage: CompletionUsage | None = None


class ChoiceDeltaToolCallFunction(_Received):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(_Received):
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDelta(_Received):
    role: str | None = None
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


class ChunkChoice(_Received):
    index: int = 0
    delta: ChoiceDelta
    finish_reason: str | None = None
    stop_reason: str | int | None = None


class ChatCompletionChunk(_Received):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int | None = None
    model: str | None = None
    choices: list[ChunkChoice] = []
    usage: CompletionUsage | None = None


class ErrorInfo(_Received):
    message: str
    type: str | None = None
    code: int | str | None = None


class ErrorResponse(_Received):
    """OpenAI's `{"error": {...}}`; vLLM also sends the fields flat with `object: "error"`."""

    error: ErrorInfo
