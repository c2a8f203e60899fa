"""Configuration: pydantic models loaded from YAML, then overridden by env (EXTPROC_*) and flags."""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """A bad config file, env var or flag; the message is one line naming the culprit."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hostport(value: str) -> tuple[str, int]:
    """'127.0.0.1:8080' / '[::1]:8080' / ':8080' -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class HostPort(str):
    """A validated HOST:PORT string."""

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def check(value: str) -> str:
            parse_hostport(value)
            return value

        return core_schema.no_info_after_validator_function(check, core_schema.str_schema())


def http_url(value: str, example: str) -> str:
    """`value` if it is an http(s) URL with a host and a valid port, else a ValueError."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL like {example}, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"bad port in {value!r}") from exc
    return value


ReasoningEcho = Literal["none", "reasoning", "reasoning_content", "think_tags"]
SystemMerge = Literal["hoist", "user"]
ThinkingSwitch = Literal["none", "chat_template_kwargs"]


class ModelOptions(_Strict):
    """Per-model knobs; set on a backend as defaults and overridden per model."""

    # Largest `max_tokens` sent (Claude Code asks 32000+; more than the model can write is a 400).
    max_output_tokens: int | None = Field(default=None, gt=0)
    # The model's context length (vLLM `max_model_len`): `max_tokens` is also clamped to what
    # is left of it after a pessimistic estimate of the prompt (see translators/token_estimate).
    context_window: int | None = Field(default=None, gt=0)
    # Where prior assistant thinking goes back to the backend (Kimi-K2, MiniMax-M2, GLM want it):
    # a message field (`reasoning`, `reasoning_content`) or inline `<think>...</think>` before
    # the assistant text (`think_tags`, for MiniMax-M2 served without a reasoning parser).
    reasoning_echo: ReasoningEcho = "none"
    # The model writes its reasoning into `content` as a leading `<think>...</think>` (no
    # reasoning parser on the server, e.g. MiniMax-M2, or Qwen3 without --reasoning-parser):
    # turn it into a `thinking` block instead of answer text.
    think_tags: bool = False
    # `role: "system"` entries inside `messages`: hoist into the leading system message, or
    # send as user text (Qwen chat templates reject a system message mid-conversation).
    system_merge: SystemMerge = "hoist"
    # How Anthropic `thinking` maps to the backend's switch.
    thinking_switch: ThinkingSwitch = "chat_template_kwargs"
    # vLLM-only request fields (`top_k`, `stream_options.continuous_usage_stats`,
    # `continue_final_message`); turn off for servers that reject unknown fields.
    vllm_extensions: bool = True


class ModelRoute(_Strict):
    name: str = Field(min_length=1, description="model name the backend serves")
    aliases: tuple[str, ...] = Field(default=(), description="client names; globs like claude-*")
    options: ModelOptions | None = None


class Backend(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    schema_: Literal["openai", "anthropic"] = Field(default="openai", alias="schema")
    base_url: str
    api_key_env: str | None = None
    api_key_file: str | None = None
    models: tuple[ModelRoute, ...] = ()
    # Unknown model names go here when the backend is the catch-all; None keeps the name.
    default_model: str | None = None
    options: ModelOptions = ModelOptions()
    count_tokens: Literal["tokenize", "estimate"] = "tokenize"
    tool_call_rescue: bool = False

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value, "http://127.0.0.1:8000/v1").rstrip("/")

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def tls(self) -> bool:
        return urlsplit(self.base_url).scheme == "https"

    @property
    def base_path(self) -> str:
        """Path prefix of the API, e.g. '/v1' for http://host:8000/v1."""
        return urlsplit(self.base_url).path.rstrip("/")

    @property
    def authority(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def cluster(self) -> str:
        return f"backend_{self.name}"

    def api_key(self) -> str | None:
        """The backend credential, from env at call time or a secret file (re-read each second)."""
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key:
                return key
        if self.api_key_file:
            return _read_key_file(self.api_key_file)
        return None

    def options_for(self, model: str) -> ModelOptions:
        for route in self.models:
            if route.name == model and route.options is not None:
                merged = self.options.model_dump(exclude_unset=False)
                merged.update(route.options.model_dump(exclude_unset=True))
                return ModelOptions(**merged)
        return self.options


def envoy_concurrency(config: Config) -> int:
    """Envoy's worker threads for `extproc up` (see Config.envoy_concurrency)."""
    if config.envoy_concurrency is not None:
        return config.envoy_concurrency
    return max(1, len(os.sched_getaffinity(0)) - config.workers)


# A mounted secret is re-read at most once a second: rotation applies within a second, and a
# request does not pay a file read.
_KEY_FILE_TTL_S = 1.0
_key_files: dict[str, tuple[float, str | None]] = {}


def _read_key_file(path: str) -> str | None:
    now = time.monotonic()
    cached = _key_files.get(path)
    if cached is not None and now - cached[0] < _KEY_FILE_TTL_S:
        return cached[1]
    try:
        key = Path(path).read_text().strip() or None
    except OSError:
        key = None
    _key_files[path] = (now, key)
    return key


class Timeouts(_Strict):
    connect_s: float = Field(default=5.0, gt=0)
    # Whole backend request; long generations stream for minutes.
    request_s: float = Field(default=600.0, gt=0)
    # Envoy waits this long for each ext_proc answer before failing the request.
    extproc_message_s: float = Field(default=5.0, gt=0)
    stream_idle_s: float = Field(default=300.0, gt=0)
    drain_s: float = Field(default=20.0, ge=0)


class Limits(_Strict):
    max_request_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_messages: int = Field(default=100_000, gt=0)
    max_tools: int = Field(default=1024, gt=0)
    max_json_depth: int = Field(default=128, gt=0)


class Tracing(_Strict):
    """Optional OpenTelemetry span export (needs `pip install 'extproc[otel]'`)."""

    # OTLP over HTTP/protobuf, the full URL: http://otel-collector:4318/v1/traces
    otlp_endpoint: str = Field(min_length=1)
    service_name: str = "extproc"
    sample_ratio: float = Field(default=1.0, ge=0, le=1)


class WebSearchHook(_Strict):
    """An operator's search endpoint that runs Anthropic's `web_search` server tool.

    POST `url` with {"query", "max_results", "allowed_domains"?, "blocked_domains"?,
    "user_location"?}; it answers {"results": [{"url", "title", "page_age"?, "content"?}]}.
    """

    url: str
    # The search runs while Envoy waits for the ext_proc answer: keep it under
    # timeouts.extproc_message_s (checked below).
    timeout_s: float = Field(default=3.0, gt=0)
    max_results: int = Field(default=5, ge=1, le=50)
    api_key_env: str | None = None  # sent as `Authorization: Bearer <key>`

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value, "http://127.0.0.1:9000/search")

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None


class ExtProcTLS(_Strict):
    """TLS on the ext_proc gRPC port; the rendered Envoy cluster speaks it with the same files.

    With `client_cert_file` and `client_key_file` it is mutual: Envoy presents that
    certificate, and the server accepts only clients whose certificate chains to `ca_file`.
    """

    cert_file: str  # the server's certificate chain (PEM)
    key_file: str  # its private key (PEM)
    ca_file: str  # the CA Envoy verifies the server with (and, for mTLS, the server Envoy)
    client_cert_file: str | None = None  # Envoy's certificate (mTLS)
    client_key_file: str | None = None
    # The name Envoy expects in the server certificate and sends as SNI; default: the host
    # Envoy connects to.
    server_name: str | None = None

    @model_validator(mode="after")
    def _client_pair(self) -> ExtProcTLS:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("client_cert_file and client_key_file go together (mTLS)")
        return self

    @property
    def mutual(self) -> bool:
        return self.client_cert_file is not None


class Config(_Strict):
    listen: HostPort = HostPort("127.0.0.1:8080")
    extproc_listen: HostPort = HostPort("127.0.0.1:50051")
    extproc_tls: ExtProcTLS | None = None
    metrics_listen: HostPort | None = None
    admin_listen: HostPort = HostPort("127.0.0.1:9901")
    backends: tuple[Backend, ...] = ()
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    workers: int = Field(default=1, ge=1, le=64)
    # Envoy worker threads under `extproc up`; None: the CPUs we may use minus the ext_proc
    # workers (at least one), so Envoy does not fight the Python processes for their cores.
    envoy_concurrency: int | None = Field(default=None, ge=1, le=256)
    strip_billing_header: bool = True
    # How the rendered Envoy config routes `POST /v1/messages`. "metadata": Envoy skips the
    # request-headers message; the processor answers the body with routing metadata, and the
    # backend's route rewrites path and headers (3 ext_proc messages per request instead
    # of 4). "headers": the processor sees the headers and edits them itself, as under a
    # control plane that renders its own routes (Envoy Gateway).
    messages_routing: Literal["metadata", "headers"] = "metadata"
    forward_client_api_key: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_prompts: bool = False
    access_log: str | None = None
    tracing: Tracing | None = None
    web_search: WebSearchHook | None = None

    @model_validator(mode="after")
    def _unique_backends(self) -> Config:
        names = [b.name for b in self.backends]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate backend name {dupes[0]!r}")
        return self

    @model_validator(mode="after")
    def _search_fits_the_message_timeout(self) -> Config:
        hook, limit = self.web_search, self.timeouts.extproc_message_s
        if hook is not None and hook.timeout_s >= limit:
            raise ValueError(
                f"web_search.timeout_s ({hook.timeout_s}) must be below"
                f" timeouts.extproc_message_s ({limit}), or Envoy gives up first"
            )
        return self

    def backend(self, name: str) -> Backend:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)


# ---- model routing ---------------------------------------------------------------------


class Route(BaseModel):
    model_config = ConfigDict(frozen=True)
    backend: Backend
    model: str  # the name the backend serves


def resolve_model(config: Config, requested: str) -> Route | None:
    """Exact names first, then exact aliases, then glob aliases, then a lone catch-all backend."""
    for backend in config.backends:
        for route in backend.models:
            if route.name == requested:
                return Route(backend=backend, model=route.name)
    for backend in config.backends:
        for route in backend.models:
            if requested in route.aliases:
                return Route(backend=backend, model=route.name)
    for backend in config.backends:
        for route in backend.models:
            if any(fnmatch.fnmatchcase(requested, pat) for pat in route.aliases):
                return Route(backend=backend, model=route.name)
    catch_all = [b for b in config.backends if not b.models]
    if catch_all:
        backend = catch_all[0]
        return Route(backend=backend, model=backend.default_model or requested)
    return None


# ---- loading ---------------------------------------------------------------------------

_ENV_SCALARS = (
    "listen", "extproc_listen", "metrics_listen", "admin_listen", "log_level", "workers",
    "envoy_concurrency", "messages_routing",
)


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"


def backend_from_url(url: str, name: str = "default") -> dict[str, Any]:
    return {"name": name, "schema": "openai", "base_url": url, "api_key_env": "OPENAI_API_KEY"}


def load_config(
    path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """File < env (EXTPROC_*) < flags. Raises ConfigError with one line naming the field."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"--config {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"--config {path}:{where} not valid YAML") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {path}: top level must be a mapping")
        data.update(loaded)
    env = os.environ if env is None else env
    for key in _ENV_SCALARS:
        value = env.get(f"EXTPROC_{key.upper()}")
        if value:
            data[key] = value
    if env.get("EXTPROC_BACKEND"):
        data["backends"] = [backend_from_url(env["EXTPROC_BACKEND"])]
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "backend":
            data["backends"] = [backend_from_url(value)]
        else:
            data[key] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
