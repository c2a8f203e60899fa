"""The request log keeps the exact bytes a client sent (for prefix-stability checks)."""

from __future__ import annotations

import base64

import httpx

from extproc.mock_backend import MockServer


async def test_raw_body_is_the_exact_bytes(mock: MockServer, http: httpx.AsyncClient) -> None:
    sent = b'{"model":"m",  "messages":[{"role":"user","content":"hi"}],"max_tokens":5}'
    reply = await http.post("/v1/chat/completions", content=sent,
                            headers={"content-type": "application/json"})
    assert reply.status_code == 200
    [logged] = (await http.get("/__mock/requests")).json()
    assert base64.b64decode(logged["raw_body"]) == sent
    assert logged["body"]["messages"][0]["content"] == "hi"
