"""The mock's settings and its mutable state (script queue, request log, prefix cache)."""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from extproc.mock_backend.dialects import DIALECTS
from extproc.mock_backend.families import FAMILIES
from extproc.mock_backend.scenarios import ScriptItem

PREFIX_BLOCK = 16  # vLLM's default KV block size: cache hits are whole blocks


@dataclass(frozen=True)
class MockConfig:
    """How the mock behaves; every field can also be changed at runtime via POST /__mock/config.

    - family / dialect: None picks from the model name / the family (see families.py).
    - models: served model names; None accepts any name (and lists `default_model`).
    - tool_parser / reasoning_parser: as if vLLM ran with (or without) `--tool-call-parser` /
      `--reasoning-parser`: without them calls and reasoning come back as text in content.
    - prompt_tokens_details: as `--enable-prompt-tokens-details` (report cached tokens).
    - prefix_caching: remember recent prompts and count their shared prefix as cached.
    - chunk_delay_s: pause between stream events (token pacing for benchmarks).
    - fast: answer every chat request with precomputed bytes (benchmarks; no log, no script).
    - api_key: as `--api-key`: /v1/* without `Authorization: Bearer <key>` gets vLLM's 401
      `{"error":"Unauthorized"}`.
    """

    family: str | None = None
    dialect: str | None = None
    models: tuple[str, ...] | None = None
    default_model: str = "mock-model"
    max_model_len: int = 131072
    tool_parser: bool = True
    reasoning_parser: bool = True
    prompt_tokens_details: bool = False
    prefix_caching: bool = True
    chunk_delay_s: float = 0.0
    fast: bool = False
    api_key: str | None = None
    request_log_limit: int = 10_000

    def __post_init__(self) -> None:
        if self.family is not None and self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; known: {', '.join(FAMILIES)}")
        if self.dialect is not None and self.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {self.dialect!r}; known: {', '.join(DIALECTS)}")

    def serves(self, model: str | None) -> bool:
        return self.models is None or model is None or model in self.models

    def served_names(self) -> tuple[str, ...]:
        return self.models if self.models else (self.default_model,)


class ConfigUpdate(BaseModel):
    """Body of POST /__mock/config: the fields to change."""

    model_config = ConfigDict(extra="forbid")

    family: str | None = None
    dialect: str | None = None
    models: list[str] | None = None
    default_model: str | None = None
    max_model_len: int | None = Field(default=None, gt=0)
    tool_parser: bool | None = None
    reasoning_parser: bool | None = None
    prompt_tokens_details: bool | None = None
    prefix_caching: bool | None = None
    chunk_delay_s: float | None = Field(default=None, ge=0)
    fast: bool | None = None
    api_key: str | None = None

    def apply(self, config: MockConfig) -> MockConfig:
        changes: dict[str, Any] = self.model_dump(exclude_unset=True)
        if "models" in changes and changes["models"] is not None:
            changes["models"] = tuple(changes["models"])
        return replace(config, **changes)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def as_json(self) -> dict[str, Any]:
        body: Any
        try:
            body = orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            try:
                body = self.body.decode("utf-8")
            except UnicodeDecodeError:
                body = {"base64": base64.b64encode(self.body).decode()}
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": {name.lower(): value for name, value in self.headers},
            "body": body,
            # The exact bytes, for checks parsing would hide (key order, prefix stability).
            "raw_body": base64.b64encode(self.body).decode(),
        }


class PrefixCache:
    """Recent prompts' token ids; a new prompt's longest shared prefix, in whole blocks, is
    what vLLM's automatic prefix caching would report as `cached_tokens`."""

    def __init__(self, capacity: int = 16) -> None:
        self._prompts: deque[list[int]] = deque(maxlen=capacity)

    def lookup_and_store(self, ids: list[int]) -> int:
        best = 0
        for old in self._prompts:
            limit = min(len(old), len(ids))
            n = 0
            while n < limit and old[n] == ids[n]:
                n += 1
            best = max(best, n)
        self._prompts.append(ids)
        # The last prompt token is always computed, so a full hit still leaves one block.
        best = min(best, len(ids) - 1)
        return max(best, 0) // PREFIX_BLOCK * PREFIX_BLOCK

    def clear(self) -> None:
        self._prompts.clear()


@dataclass
class MockState:
    config: MockConfig
    script: deque[ScriptItem] = field(default_factory=deque)
    requests: deque[RecordedRequest] = field(default_factory=deque)
    prefix_cache: PrefixCache = field(default_factory=PrefixCache)

    def record(self, request: RecordedRequest) -> None:
        if len(self.requests) >= self.config.request_log_limit:
            self.requests.popleft()
        self.requests.append(request)

    def next_script_item(self) -> ScriptItem | None:
        return self.script.popleft() if self.script else None

    def reset(self) -> None:
        self.script.clear()
        self.requests.clear()
        self.prefix_cache.clear()


STATE = web.AppKey("mock_state", MockState)
# (anthropic?, model, stream?) -> the precomputed response parts of fast mode
FAST_CACHE = web.AppKey("mock_fast_cache", dict[tuple[bool, str | None, bool], list[bytes]])
