"""GET /v1/models and /v1/models/{id}: Anthropic format for Anthropic clients, OpenAI format
for OpenAI clients; configured models and plain aliases, or a catch-all backend's own list."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extproc.config import Config
from extproc.gateway import Gateway
from extproc.mock_backend import running_mock
from extproc.processors.base import Action, Continue, RequestInfo, Respond
from extproc.processors.models import ModelsProcessor
from extproc.service.registry import split_path

ANTHROPIC = {"anthropic-version": "2023-06-01"}
CONFIG = {"backends": [
    {"name": "vllm", "base_url": "http://127.0.0.1:9/v1",
     "options": {"max_output_tokens": 8192},
     "models": [
         {"name": "qwen3-coder", "aliases": ["claude-*", "sonnet"],
          "options": {"context_window": 262144}},
         {"name": "glm-4.6"},
     ]},
    {"name": "claude", "schema": "anthropic", "base_url": "http://127.0.0.1:9",
     "models": [{"name": "claude-opus-4-1", "aliases": ["opus"]}]},
]}


async def get(gateway: Gateway, raw_path: str, headers: dict[str, str] | None = None,
              method: str = "GET") -> Action:
    path, query = split_path(raw_path)
    processor = ModelsProcessor(RequestInfo(method, path, query, headers or {}), gateway)
    return await processor.request_headers(end_of_stream=True)


def body_of(action: Action, status: int = 200) -> Any:
    assert isinstance(action, Respond), action
    assert action.status == status
    return orjson.loads(action.body)


@pytest.fixture
async def gateway() -> Any:
    gw = Gateway(Config.model_validate(CONFIG))
    yield gw
    await gw.aclose()


async def test_anthropic_list_of_configured_models_and_plain_aliases(gateway: Gateway) -> None:
    page = body_of(await get(gateway, "/v1/models", ANTHROPIC))
    assert [m["id"] for m in page["data"]] == [
        "qwen3-coder", "sonnet", "glm-4.6", "claude-opus-4-1", "opus"]
    assert page["has_more"] is False
    assert (page["first_id"], page["last_id"]) == ("qwen3-coder", "opus")
    assert page["data"][0] == {
        "type": "model", "id": "qwen3-coder", "display_name": "qwen3-coder",
        "created_at": "1970-01-01T00:00:00Z", "max_input_tokens": 262144, "max_tokens": 8192}
    assert page["data"][1]["display_name"] == "sonnet (alias of qwen3-coder)"
    assert "max_input_tokens" not in page["data"][2]


async def test_the_anthropic_path_needs_no_header(gateway: Gateway) -> None:
    page = body_of(await get(gateway, "/anthropic/v1/models?limit=1"))
    assert [m["id"] for m in page["data"]] == ["qwen3-coder"] and page["has_more"] is True


@pytest.mark.parametrize(("query", "ids", "has_more"), [
    ("limit=2", ["qwen3-coder", "sonnet"], True),
    ("limit=2&after_id=sonnet", ["glm-4.6", "claude-opus-4-1"], True),
    ("after_id=claude-opus-4-1", ["opus"], False),
    ("limit=2&before_id=claude-opus-4-1", ["sonnet", "glm-4.6"], True),
    ("before_id=sonnet", ["qwen3-coder"], False),
    ("limit=1000", ["qwen3-coder", "sonnet", "glm-4.6", "claude-opus-4-1", "opus"], False),
])
async def test_paging(gateway: Gateway, query: str, ids: list[str], has_more: bool) -> None:
    page = body_of(await get(gateway, "/v1/models?" + query, ANTHROPIC))
    assert [m["id"] for m in page["data"]] == ids and page["has_more"] is has_more


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "after_id=nope"])
async def test_bad_paging_is_an_invalid_request(gateway: Gateway, query: str) -> None:
    error = body_of(await get(gateway, "/v1/models?" + query, ANTHROPIC), 400)
    assert error["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("model_id", "display"), [
    ("qwen3-coder", "qwen3-coder"),
    ("opus", "opus (alias of claude-opus-4-1)"),
    ("claude-sonnet-4-5", "claude-sonnet-4-5 (alias of qwen3-coder)"),  # a glob alias routes it
])
async def test_retrieve(gateway: Gateway, model_id: str, display: str) -> None:
    model = body_of(await get(gateway, "/v1/models/" + model_id, ANTHROPIC))
    assert model["type"] == "model" and model["id"] == model_id
    assert model["display_name"] == display


async def test_unknown_model_is_not_found(gateway: Gateway) -> None:
    error = body_of(await get(gateway, "/v1/models/gpt-4o", ANTHROPIC), 404)
    assert error == {"type": "error", "error": {
        "type": "not_found_error", "message": "model: 'gpt-4o' is not served by this gateway"}}
    openai = body_of(await get(gateway, "/v1/models/gpt-4o"), 404)
    assert openai["error"]["type"] == "not_found_error" and "type" not in openai


async def test_openai_clients_get_the_openai_format(gateway: Gateway) -> None:
    listing = body_of(await get(gateway, "/v1/models", {"authorization": "Bearer x"}))
    assert listing["object"] == "list"
    assert listing["data"][0] == {"id": "qwen3-coder", "object": "model", "created": 0,
                                  "owned_by": "vllm"}
    assert body_of(await get(gateway, "/v1/models/opus"))["owned_by"] == "claude"


async def test_only_get(gateway: Gateway) -> None:
    error = body_of(await get(gateway, "/v1/models", ANTHROPIC, method="POST"), 405)
    assert error["error"]["type"] == "invalid_request_error"


async def test_a_catch_all_backend_lists_its_own_models_cached_briefly() -> None:
    async with running_mock(models=("Qwen/Qwen3-8B", "glm-4.6")) as mock:
        gateway = Gateway(Config.model_validate(
            {"backends": [{"name": "vllm", "base_url": mock.openai_base_url}]}))
        try:
            page = body_of(await get(gateway, "/v1/models", ANTHROPIC))
            again = body_of(await get(gateway, "/v1/models/Qwen/Qwen3-8B", ANTHROPIC))
            openai_client = await get(gateway, "/v1/models")
        finally:
            await gateway.aclose()
        fetched = [r["path"] for r in mock.requests()]
    assert [m["id"] for m in page["data"]] == ["Qwen/Qwen3-8B", "glm-4.6"]
    assert page["data"][0]["max_input_tokens"] == 131072  # vLLM's max_model_len
    assert page["data"][0]["created_at"].endswith("Z")
    assert again["id"] == "Qwen/Qwen3-8B"
    assert fetched == ["/v1/models"]  # the second lookup came from the cache
    # OpenAI clients of a lone catch-all backend reach the backend's own endpoint.
    assert isinstance(openai_client, Continue) and openai_client.skip_rest


async def test_an_unreachable_catch_all_backend_lists_nothing() -> None:
    gateway = Gateway(Config.model_validate(
        {"backends": [{"name": "vllm", "base_url": "http://127.0.0.1:9/v1"}]}))
    try:
        page = body_of(await get(gateway, "/v1/models", ANTHROPIC))
    finally:
        await gateway.aclose()
    assert page == {"data": [], "has_more": False, "first_id": None, "last_id": None}
