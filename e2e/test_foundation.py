"""The skeleton through real Envoy: routing, credentials, pass-through, and a dead ext_proc."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import yaml

from e2e.harness import (
    REPO,
    EnvoyOnly,
    Gateway,
    MockBackend,
    backend_config,
    free_port,
    spawn,
    start_envoy_only,
    stopping,
    wait_for_log,
)

BACKEND_AUTH = "Bearer sk-e2e-backend"
CLIENT_KEY = "sk-client-dummy"


def only_request(backend: MockBackend) -> dict[str, object]:
    seen = backend.requests()
    assert len(seen) == 1, seen
    return seen[0]


# ---- OpenAI clients share the gateway -------------------------------------------------------


def test_chat_completions_reaches_backend_and_comes_back(
    openai_client: openai.OpenAI, backend: MockBackend
) -> None:
    backend.script({"text": "pong from the backend"})
    completion = openai_client.chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "ping"}], max_tokens=50
    )
    assert completion.choices[0].message.content == "pong from the backend"
    assert completion.choices[0].finish_reason == "stop"
    seen = only_request(backend)
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == "qwen3-coder"  # alias claude-* resolved
    assert seen["body"]["messages"] == [{"role": "user", "content": "ping"}]
    headers = seen["headers"]
    assert headers["authorization"] == BACKEND_AUTH
    assert CLIENT_KEY not in str(headers)


def test_chat_completions_streams_openai_sse_unchanged(
    openai_client: openai.OpenAI, backend: MockBackend
) -> None:
    backend.script({"text": "streamed pong"})
    chunks = list(
        openai_client.chat.completions.create(
            model="glm-4.6", messages=[{"role": "user", "content": "ping"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed pong"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert only_request(backend)["body"]["model"] == "glm-4.6"


# ---- paths ------------------------------------------------------------------------------------


def test_unknown_path_passes_through_untouched(gateway: Gateway, backend: MockBackend) -> None:
    body = b'{"anything": [1, 2, 3], "not": "translated"}'
    reply = httpx.post(
        gateway.url + "/v1/some/unknown/endpoint?x=1&y=two",
        content=body,
        headers={"content-type": "application/json", "x-custom-header": "kept"},
        timeout=10,
    )
    assert reply.status_code == 404  # the mock has no such route: its answer comes back as is
    seen = only_request(backend)
    assert seen["method"] == "POST"
    assert seen["path"] == "/v1/some/unknown/endpoint"
    assert seen["query"] == "x=1&y=two"
    assert seen["body"] == {"anything": [1, 2, 3], "not": "translated"}
    assert seen["headers"]["x-custom-header"] == "kept"
    assert seen["headers"]["content-length"] == str(len(body))


@pytest.mark.parametrize(
    "path", ["/v1/messages", "/v1/messages?beta=true", "/anthropic/v1/messages"]
)
def test_messages_paths_are_translated(gateway: Gateway, backend: MockBackend, path: str) -> None:
    backend.script({"text": "translated"})
    reply = httpx.post(
        gateway.url + path,
        json={"model": "sonnet", "max_tokens": 64,
              "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01",
                 "anthropic-beta": "claude-code-20250219"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    message = reply.json()
    assert message["type"] == "message"
    assert message["content"] == [{"type": "text", "text": "translated"}]
    seen = only_request(backend)
    assert seen["path"] == "/v1/chat/completions"
    assert seen["query"] == path.partition("?")[2]  # Claude Code's `beta=true` goes along
    assert seen["body"]["model"] == "qwen3-coder"
    headers = seen["headers"]
    assert headers["authorization"] == BACKEND_AUTH
    for name in ("x-api-key", "anthropic-version", "anthropic-beta"):
        assert name not in headers
    assert CLIENT_KEY not in str(headers)


def test_sdk_beta_messages_sends_beta_query(
    anthropic_client: anthropic.Anthropic, backend: MockBackend
) -> None:
    """The SDK's beta namespace posts to /v1/messages?beta=true, as Claude Code does."""
    backend.script({"text": "beta ok"})
    message = anthropic_client.beta.messages.create(
        model="claude-opus-4-1", max_tokens=32, messages=[{"role": "user", "content": "hi"}],
        betas=["interleaved-thinking-2025-05-14"],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "beta ok"
    assert only_request(backend)["headers"].get("anthropic-beta") is None


# ---- ext_proc server down ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def envoy_without_extproc(workdir: Path, mock_backend: MockBackend) -> Iterator[EnvoyOnly]:
    config = {"backends": [backend_config(mock_backend)],
              "timeouts": {"extproc_message_s": 2, "connect_s": 1}}
    envoy = start_envoy_only(workdir, config)
    yield envoy
    envoy.process.stop()


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_extproc_down_gives_prompt_anthropic_error(
    envoy_without_extproc: EnvoyOnly, backend: MockBackend, path: str
) -> None:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]}
    # A hang would raise httpx.ReadTimeout here.
    reply = httpx.post(envoy_without_extproc.url + path, json=body, timeout=8)
    assert 500 <= reply.status_code < 600
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()
    assert error["type"] == "error"
    assert error["error"]["type"] in ("api_error", "overloaded_error", "timeout_error")
    assert error["error"]["message"]
    assert backend.requests() == []


def test_extproc_down_sdk_raises_server_error(envoy_without_extproc: EnvoyOnly) -> None:
    client = anthropic.Anthropic(base_url=envoy_without_extproc.url, api_key=CLIENT_KEY,
                                 max_retries=0, timeout=8)
    with client, pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=16,
                               messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code >= 500
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "error"


def test_envoy_leaves_a_core_to_the_ext_proc_worker(gateway: Gateway) -> None:
    # `extproc up` starts Envoy with one worker thread per CPU we may use, minus the ext_proc
    # workers (one here), and at least one.
    info = httpx.get(gateway.admin_url + "/server_info", timeout=5).json()
    expected = max(1, len(os.sched_getaffinity(0)) - 1)
    assert int(info["command_line_options"]["concurrency"]) == expected


# ---- `extproc up` itself: the README's first command, restarts -----------------------------------


def test_up_without_a_backend_serves_the_labelled_mock(workdir: Path) -> None:
    """`extproc up` with no backend: real Envoy + ext_proc in front of the built-in mock, which
    it announces as such; the Anthropic SDK gets answers, streamed and not."""
    listen = free_port()
    up = spawn(f"up-mock-{listen}", [
        sys.executable, "-m", "extproc", "up", "--listen", f"127.0.0.1:{listen}",
        "--admin-listen", f"127.0.0.1:{free_port()}", "--extproc-listen", f"127.0.0.1:{free_port()}",
    ], workdir)
    with stopping(up):
        wait_for_log(up, "extproc gateway ready", timeout=60)
        assert "BUILT-IN MOCK backend" in up.log.read_text()
        client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{listen}", api_key=CLIENT_KEY,
                                     max_retries=0, timeout=10)
        with client:
            request = {"model": "claude-sonnet-4-6", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "hi"}]}
            message = client.messages.create(**request)  # type: ignore[call-overload]
            assert message.type == "message"
            assert message.content and message.content[0].type == "text"
            assert message.content[0].text
            with client.messages.stream(**request) as stream:
                streamed = stream.get_final_message()
            assert streamed.content[0].type == "text" and streamed.content[0].text
            assert streamed.stop_reason == "end_turn"


def test_up_again_with_the_same_config_reuses_its_envoy_render(
    workdir: Path, mock_backend: MockBackend, render_cache: Path
) -> None:
    listen, admin = free_port(), free_port()
    path = workdir / f"restart-{listen}.yaml"
    path.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{listen}", "admin_listen": f"127.0.0.1:{admin}",
        "extproc_listen": f"127.0.0.1:{free_port()}", "backends": [backend_config(mock_backend)],
    }))
    up = [sys.executable, "-m", "extproc", "up", "--config", str(path)]
    before = set(render_cache.glob("extproc/envoy-*.yaml"))
    first = spawn(f"up-first-{listen}", up, workdir)
    with stopping(first):
        wait_for_log(first, "extproc gateway ready", timeout=60)
    (kept,) = set(render_cache.glob("extproc/envoy-*.yaml")) - before
    rendered = subprocess.run([sys.executable, "-m", "extproc", "envoy-config", "--config", str(path)],
                              capture_output=True, check=True, cwd=REPO).stdout.decode()
    assert kept.read_text() == rendered
    # The next start takes the kept file as it is, without rendering: a mark in it shows.
    kept.write_text(rendered.replace("name: ingress\n", "name: ingress-kept\n", 1))
    second = spawn(f"up-second-{listen}", up, workdir)
    with stopping(second):
        wait_for_log(second, "extproc gateway ready", timeout=60)
        listeners = httpx.get(f"http://127.0.0.1:{admin}/listeners", timeout=5).text
        assert "ingress-kept" in listeners
        reply = httpx.post(f"http://127.0.0.1:{listen}/v1/messages", timeout=10, json={
            "model": "qwen3-coder", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
