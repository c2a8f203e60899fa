"""Helpers shared by the mock backend tests."""

from __future__ import annotations

from typing import Any

import orjson

BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "Bash",
        "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
}


def sse_data(body: str) -> list[Any]:
    """The payload of every `data:` line: parsed JSON, or the raw string for `[DONE]`."""
    out: list[Any] = []
    for line in body.split("\n"):
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def script(http: Any, *items: dict[str, Any]) -> None:
    """Queue scripted responses through the control API."""
    response = await http.post("/__mock/script", json=list(items))
    assert response.status_code == 200, response.text


async def stream_chat(http: Any, **body: Any) -> tuple[Any, list[Any]]:
    """POST a streaming chat completion; returns the response and its `data:` payloads."""
    response = await http.post("/v1/chat/completions", json={"stream": True, **body})
    return response, sse_data(response.text)
