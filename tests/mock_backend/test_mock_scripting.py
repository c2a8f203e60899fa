"""The control API: scripted responses, faults, the request log, reset and config."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from mock_helpers import script, sse_data, stream_chat, user
from openai import AsyncOpenAI


async def chat_text(http: Any, **body: Any) -> str:
    response = await http.post("/v1/chat/completions", json={"messages": user("x"), **body})
    return str(response.json()["choices"][0]["message"]["content"])


async def test_script_items_are_used_in_order_then_defaults_resume(http: Any) -> None:
    await script(http, {"text": "first"}, {"text": "second"})
    assert (await http.get("/__mock/script")).json() == {"pending": 2}
    assert await chat_text(http) == "first"
    assert await chat_text(http) == "second"
    assert await chat_text(http) == "Hello! You said: x"


async def test_a_single_object_is_queued_too(http: Any) -> None:
    response = await http.post("/__mock/script", json={"text": "solo"})
    assert response.json() == {"queued": 1}
    assert await chat_text(http) == "solo"


async def test_invalid_script_is_rejected_with_the_reason(http: Any) -> None:
    response = await http.post("/__mock/script", json=[{"txt": "typo"}])
    assert response.status_code == 400
    assert "txt" in response.json()["error"]
    response = await http.post("/__mock/script", json=[{"family": "nope"}])
    assert response.status_code == 400 and "unknown family" in response.json()["error"]


async def test_requests_log_records_path_headers_and_body_in_order(http: Any) -> None:
    await http.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": user("one")},
        headers={"Authorization": "Bearer sk-1"},
    )
    await http.get("/v1/models?x=1")
    log = (await http.get("/__mock/requests")).json()
    assert [(r["method"], r["path"], r["query"]) for r in log] == [
        ("POST", "/v1/chat/completions", ""),
        ("GET", "/v1/models", "x=1"),
    ]
    assert log[0]["headers"]["authorization"] == "Bearer sk-1"
    assert log[0]["body"] == {"model": "m", "messages": user("one")}
    assert log[1]["body"] is None


async def test_reset_clears_script_and_log(http: Any) -> None:
    await script(http, {"text": "pending"})
    await http.get("/health")
    assert (await http.post("/__mock/reset")).status_code == 200
    assert (await http.get("/__mock/requests")).json() == []
    assert await chat_text(http) == "Hello! You said: x"


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (
            "current",
            {"error": {"message": "boom", "type": "TooManyRequests", "param": None, "code": 429}},
        ),
        (
            "legacy",
            {
                "object": "error",
                "message": "boom",
                "type": "TooManyRequests",
                "param": None,
                "code": 429,
            },
        ),
    ],
)
async def test_scripted_http_error_in_the_dialect_shape(
    http: Any, dialect: str, expected: dict[str, Any]
) -> None:
    await script(http, {"error": {"status": 429, "message": "boom"}, "dialect": dialect})
    response = await http.post("/v1/chat/completions", json={"messages": user("x")})
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected


async def test_raw_body_is_sent_as_is(http: Any) -> None:
    page = "<html><body>502 Bad Gateway</body></html>"
    await script(http, {"raw_body": page, "status": 502, "content_type": "text/html"})
    response = await http.post("/v1/chat/completions", json={"messages": user("x"), "stream": True})
    assert (response.status_code, response.text) == (502, page)
    assert response.headers["content-type"] == "text/html"


async def test_stream_error_event_then_done(http: Any) -> None:
    item = {"text": "a b c d", "stream_error": {"after_chunks": 2, "message": "engine died"}}
    await script(http, item)
    response, data = await stream_chat(http, messages=user("x"))
    assert len(data) == 4 and data[-1] == "[DONE]"
    assert data[1]["choices"][0]["delta"] == {"content": "a"}
    # vLLM writes this event with json.dumps defaults: spaces after separators.
    assert (
        'data: {"error": {"message": "engine died", "type": "InternalServerError", '
        '"param": null, "code": 500}}\n\n' in response.text
    )


async def test_legacy_stream_error_has_the_object_field(http: Any) -> None:
    item = {
        "dialect": "legacy",
        "stream_error": {
            "after_chunks": 1,
            "message": "bad",
            "type": "BadRequestError",
            "code": 400,
        },
    }
    await script(http, item)
    _, data = await stream_chat(http, messages=user("x"))
    assert data[1] == {
        "error": {
            "object": "error",
            "message": "bad",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    }


async def test_openai_sdk_raises_on_the_in_stream_error(mock: Any, http: Any) -> None:
    await script(
        http, {"text": "a b", "stream_error": {"after_chunks": 1, "message": "engine died"}}
    )
    client = AsyncOpenAI(base_url=mock.openai_base_url, api_key="sk-test", max_retries=0)
    async with client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        with pytest.raises(openai.APIError, match="engine died"):
            async for _ in stream:
                pass


async def test_disconnect_mid_stream(http: Any) -> None:
    await script(http, {"text": "a b c d e", "disconnect_after_chunks": 3})
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream(
            "POST", "/v1/chat/completions", json={"messages": user("x"), "stream": True}
        ) as response:
            async for chunk in response.aiter_bytes():
                received += chunk
    assert len(sse_data(received.decode())) == 3


async def test_truncate_ends_mid_event_without_done(http: Any) -> None:
    await script(http, {"text": "a b", "truncate": True})
    body = {"messages": user("x"), "stream": True, "stream_options": {"include_usage": True}}
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert "[DONE]" not in response.text
    assert not response.text.endswith("\n\n")
    last = response.text.rsplit("\n\n", 1)[-1]
    assert last.startswith('data: {"id"')


async def test_content_type_override_on_a_stream(http: Any) -> None:
    await script(http, {"text": "a", "content_type": "text/plain"})
    response, data = await stream_chat(http, messages=user("x"))
    assert response.headers["content-type"] == "text/plain"
    assert data[-1] == "[DONE]"


async def test_usage_override(http: Any) -> None:
    await script(http, {"text": "a", "usage": {"prompt_tokens": 100, "cached_tokens": 60}})
    body = (await http.post("/v1/chat/completions", json={"messages": user("x")})).json()
    assert body["usage"] == {
        "prompt_tokens": 100,
        "total_tokens": 101,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 60},
    }


async def test_default_item_keeps_rules_but_applies_faults(http: Any) -> None:
    await script(http, {"default": True, "stream_error": {"after_chunks": 1, "message": "x"}})
    _, data = await stream_chat(http, messages=user("hello"))
    assert "error" in data[1]


async def test_config_endpoint_changes_behaviour(http: Any) -> None:
    response = await http.post("/__mock/config", json={"family": "glm", "models": ["glm-4.6"]})
    assert response.json()["family"] == "glm"
    assert (await http.get("/__mock/config")).json()["models"] == ["glm-4.6"]
    missing = await http.post(
        "/v1/chat/completions", json={"model": "other", "messages": user("x")}
    )
    assert missing.status_code == 404
    bad = await http.post("/__mock/config", json={"family": "nope"})
    assert bad.status_code == 400


async def test_in_process_helpers_script_configure_and_read_the_log(mock: Any, http: Any) -> None:
    mock.script({"text": "direct"})
    mock.configure(family="kimi")
    assert await chat_text(http) == "direct"
    assert mock.requests()[0]["path"] == "/v1/chat/completions"
    assert (await http.get("/__mock/config")).json()["family"] == "kimi"
    with pytest.raises(ValueError, match="unknown family"):
        mock.script({"family": "nope"})
