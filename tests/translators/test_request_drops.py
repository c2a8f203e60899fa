"""Nothing disappears silently: what the backend will not see is named in `dropped`."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extproc.config import SystemMerge
from extproc.translators.request import RequestOptions, translate_request

OPTIONS = RequestOptions(model="backend-model")


def translate(
    messages: list[dict[str, Any]], options: RequestOptions = OPTIONS, **fields: Any
) -> tuple[dict[str, Any], set[str]]:
    request = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": messages, **fields}
    translated = translate_request(request, options)
    return orjson.loads(translated.body), set(translated.dropped)


def document(citations: Any) -> dict[str, Any]:
    return {"type": "document", "citations": citations,
            "source": {"type": "text", "media_type": "text/plain", "data": "Fact."}}


@pytest.mark.parametrize(("citations", "reported"), [
    ({"enabled": True}, True), ({"enabled": False}, False), (None, False),
])
def test_document_citations(citations: Any, reported: bool) -> None:
    _, dropped = translate([{"role": "user", "content": [document(citations)]}])
    assert ("citations" in dropped) is reported


@pytest.mark.parametrize("where", ["user", "assistant", "tool_result", "document_content"])
def test_citations_on_text_blocks(where: str) -> None:
    cited = {"type": "text", "text": "Blue.", "citations": [
        {"type": "char_location", "cited_text": "Blue", "document_index": 0,
         "start_char_index": 0, "end_char_index": 4}]}
    if where == "user":
        messages = [{"role": "user", "content": [cited]}]
    elif where == "assistant":
        messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": [cited]},
                    {"role": "user", "content": "ok"}]
    elif where == "tool_result":
        messages = [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [cited]}]},
        ]
    else:
        source = {"type": "content", "content": [cited]}
        messages = [{"role": "user", "content": [{"type": "document", "source": source}]}]
    _, dropped = translate(messages)
    assert "citations" in dropped


def test_empty_citations_lose_nothing() -> None:
    _, dropped = translate([{"role": "user", "content": [
        {"type": "text", "text": "hi", "citations": []}]}])
    assert dropped == set()


def test_output_format_loses_to_output_config_format() -> None:
    schema_a = {"type": "object", "properties": {"a": {"type": "string"}}}
    schema_b = {"type": "object", "properties": {"b": {"type": "string"}}}
    body, dropped = translate(
        [{"role": "user", "content": "q"}],
        output_config={"format": {"type": "json_schema", "schema": schema_a}},
        output_format={"type": "json_schema", "schema": schema_b},
    )
    assert body["response_format"]["json_schema"]["schema"] == schema_a
    assert dropped == {"output_format"}
    _, alone = translate([{"role": "user", "content": "q"}],
                         output_format={"type": "json_schema", "schema": schema_b})
    assert alone == set()


def test_unknown_message_fields_are_named() -> None:
    _, dropped = translate([{"role": "user", "content": "q", "name": "alice"}])
    assert dropped == {"messages.name"}


BILLING = "x-anthropic-billing-header: cc_version=2.1.197.fbe; cc_entrypoint=sdk-cli;"


@pytest.mark.parametrize("content", [
    f"{BILLING}\nReminder.",
    [{"type": "text", "text": BILLING}, {"type": "text", "text": "Reminder."}],
    [{"type": "text", "text": f"{BILLING}\nReminder."}],
])
@pytest.mark.parametrize("merge", ["hoist", "user"])
def test_billing_header_in_a_system_message(content: Any, merge: SystemMerge) -> None:
    messages = [{"role": "user", "content": "q"}, {"role": "system", "content": content}]
    stripped, _ = translate(messages, RequestOptions(model="m", system_merge=merge))
    assert "x-anthropic-billing-header" not in orjson.dumps(stripped).decode()
    assert "Reminder." in orjson.dumps(stripped).decode()
    kept, _ = translate(
        messages, RequestOptions(model="m", system_merge=merge, strip_billing_header=False)
    )
    assert "x-anthropic-billing-header" in orjson.dumps(kept).decode()
