"""Real Claude Code (pinned version) through real Envoy + our ext_proc + the mock vLLM backend.

Everything runs inside a loopback-only network namespace (see `claude_code_runner.py`), so
Claude Code cannot reach the internet. All scenarios run in one namespace session on one stack
(start-up is the slow part); each test then asserts on its scenario's recorded outcome: Claude
Code's stream-json events and exit code, and the requests the backend received.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import REPO

pytestmark = [pytest.mark.claude_code, pytest.mark.timeout(600)]

# The version the shared request fixtures were captured with; override to try another one.
PINNED = "2.1.197"
CLAUDE_CODE_VERSION = os.environ.get("EXTPROC_E2E_CLAUDE_CODE_VERSION", PINNED)
CACHE = REPO / ".cache" / "claude-code"
CLIENT_KEY = "sk-ant-dummy-e2e"  # what the runner gives Claude Code as ANTHROPIC_API_KEY

# The runner sends every other model name (Claude Code's background requests) to a second,
# catch-all mock, so they cannot consume a scenario's scripted answers.
MODELS: list[dict[str, Any]] = [
    {"name": "qwen3-coder"},
    {"name": "qwen3-32b"},
    {"name": "glm-4.6", "options": {"reasoning_echo": "reasoning_content"}},
    {"name": "kimi-k2", "options": {"reasoning_echo": "reasoning_content"}},
    {"name": "minimax-m2"},
]

TOOL_PROMPT = "Run the shell command: echo acceptance-ok"
PARALLEL_PROMPT = "Run these shell commands: echo first-ok ; echo second-ok"
REASONING = "REASONING-MARKER: a greeting is wanted, keep it short."
MESSAGE_400 = "'temperature' must be between 0 and 2, got 7 (backend-400-marker)"
MESSAGE_503 = "The engine is overloaded (backend-503-marker)"

# Tool round trips with the mock's default rules, one per model family's stream style:
# scenario name -> (model, the tool-call id the family's vLLM parser sends).
ROUND_TRIPS = {
    # ids call_<24 hex>; arguments `{`, one delta per key, `}`
    "tool-qwen3-coder": ("qwen3-coder", r"call_[0-9a-f]{24}"),
    # ids chatcmpl-tool-<hex>; name-only first delta, arguments one token per delta
    "tool-qwen3": ("qwen3-32b", r"chatcmpl-tool-[0-9a-f]+"),
    # transitional dialect (reasoning_content too); whole arguments in the name delta
    "tool-glm": ("glm-4.6", r"call_[0-9a-f]+"),
    # ids functions.Bash:0; content before the tool call; arguments three tokens per delta
    "tool-kimi": ("kimi-k2", r"functions\.Bash:0"),
    # <think> inside content; last piece and usage in the finish chunk
    "tool-minimax": ("minimax-m2", r"call_[0-9a-f]+"),
}

SCENARIOS: list[dict[str, Any]] = [
    {"name": "plain", "prompt": "Say hello.", "model": "qwen3-coder",
     "script": [{"text": "Hello from the scripted backend."}]},
    *({"name": name, "prompt": TOOL_PROMPT, "model": model}
      for name, (model, _id) in ROUND_TRIPS.items()),
    {"name": "parallel-kimi", "prompt": PARALLEL_PROMPT, "model": "kimi-k2"},
    {"name": "parallel-interleaved", "prompt": PARALLEL_PROMPT, "model": "qwen3-coder",
     "script": [{
         "tool_calls": [
             {"name": "Bash", "arguments": {"command": "echo first-ok", "description": "one"}},
             {"name": "Bash", "arguments": {"command": "echo second-ok", "description": "two"}},
         ],
         "interleave_tool_calls": True,
     }]},
    # The model calls Claude Code's WebSearch tool; Claude Code's side request (only the
    # web_search_20250305 server tool) is answered by the gateway, never by a backend.
    {"name": "web-search", "prompt": "Search the web for envoy ext_proc.", "model": "qwen3-coder",
     "script": [
         {"tool_calls": [{"name": "WebSearch", "arguments": {"query": "envoy ext_proc"}}]},
         {"text": "Web search is not available here."},
     ]},
    {"name": "thinking", "prompt": "Say hello.", "model": "qwen3-32b",
     "script": [{"reasoning": REASONING, "text": "Hello after thinking."}]},
    # The error is queued more than once: the pinned version asks once, but 2.1.332 asks again
    # after a 400 (dropping optional request features each time) and 2.0.x retries a failed
    # stream without streaming.
    {"name": "error-400", "prompt": "Say hello.", "model": "qwen3-coder",
     "script": [{"error": {"status": 400, "message": MESSAGE_400, "param": "temperature"}}] * 8},
    # Claude Code retries 5xx with backoff; CLAUDE_CODE_MAX_RETRIES=0 makes one attempt.
    {"name": "error-503", "prompt": "Say hello.", "model": "qwen3-coder",
     "env": {"CLAUDE_CODE_MAX_RETRIES": "0"},
     "script": [{"error": {"status": 503, "message": MESSAGE_503}}] * 8},
    {"name": "error-mid-stream", "prompt": "Say hello.", "model": "qwen3-coder",
     "env": {"CLAUDE_CODE_MAX_RETRIES": "0"},
     "script": [
         {"text": "partial words that never finish",
          "stream_error": {"after_chunks": 3, "message": "backend failed mid-stream"}},
         {"text": "Recovered without streaming."},
     ]},
]


# ---- set-up: the pinned Claude Code, a network namespace, one runner session -----------------


def _version_of(binary: Path) -> str:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def install_claude_code(version: str) -> Path:
    """`npm i --prefix .cache/claude-code/<version> @anthropic-ai/claude-code@<version>` once."""
    prefix = CACHE / version
    binary = prefix / "node_modules" / ".bin" / "claude"
    if _version_of(binary).startswith(version + " "):
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot install Claude Code for the Claude Code e2e tests")
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
         f"@anthropic-ai/claude-code@{version}"],
        capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        pytest.skip(f"npm could not install @anthropic-ai/claude-code@{version}: "
                    f"{(done.stderr or done.stdout).strip()[-500:]}")
    found = _version_of(binary)
    assert found.startswith(version + " "), f"{binary} --version printed {found!r}"
    return binary


def namespace_command() -> list[str]:
    """How to enter a fresh network namespace: as root, or via a user namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux `unshare` is missing: cannot isolate Claude Code from the network")
    reasons = []
    for command in (["unshare", "-n"], ["unshare", "-r", "-n"]):
        done = subprocess.run([*command, "true"], capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            return command
        reasons.append(f"`{' '.join(command)}`: {done.stderr.strip()}")
    pytest.skip("cannot create a network namespace, so Claude Code would not be isolated from "
                "the internet; " + "; ".join(reasons))


@pytest.fixture(scope="session")
def claude_code() -> Path:
    return install_claude_code(CLAUDE_CODE_VERSION)


@pytest.fixture(scope="module")
def runs(claude_code: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    unshare = namespace_command()
    workdir = tmp_path_factory.mktemp("claude-code")
    spec: dict[str, Any] = {
        "claude": str(claude_code), "workdir": str(workdir / "run"),
        "output": str(workdir / "results.json"), "models": MODELS, "scenarios": SCENARIOS,
    }
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [*unshare, sys.executable, "-m", "e2e.claude_code_runner", str(spec_path)],
        cwd=REPO, capture_output=True, text=True, timeout=480,
    )
    assert done.returncode == 0, f"runner failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    results: dict[str, Any] = json.loads(Path(spec["output"]).read_text())
    return results


# ---- reading a scenario's outcome -----------------------------------------------------------


def scenario(runs: dict[str, Any], name: str) -> dict[str, Any]:
    run: dict[str, Any] = runs["scenarios"][name]
    assert not run["timed_out"], explain(run)
    return run


def explain(run: dict[str, Any]) -> str:
    """What to look at when an assertion fails."""
    seen = [f"{r['method']} {r['path']}" for r in run["requests"]]
    background = [r["body"].get("model") for r in run["background_requests"]
                  if isinstance(r["body"], dict)]
    return (f"\nexit={run['exit_code']} result={result_of(run, strict=False)}\n"
            f"backend saw: {seen}\nbackground models: {background}\n"
            f"stderr:\n{run['stderr_tail']}\n"
            f"gateway log:\n{run['gateway_log'][-4000:]}")


def result_of(run: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    results = [e for e in run["events"] if e.get("type") == "result"]
    if strict:
        assert len(results) == 1, explain(run)
    return results[0] if results else {}


def blocks(run: dict[str, Any], kind: str, role: str = "assistant") -> list[dict[str, Any]]:
    return [
        block
        for event in run["events"] if event.get("type") == role
        for block in event["message"]["content"]
        if isinstance(block, dict) and block.get("type") == kind
    ]


def chat_requests(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["body"] for r in run["requests"] if r["path"] == "/v1/chat/completions"]


def assert_clean(run: dict[str, Any]) -> None:
    assert "Traceback" not in run["gateway_log"], explain(run)
    assert "Traceback" not in run["stderr_tail"], explain(run)


def assert_success(run: dict[str, Any], text: str) -> None:
    result = result_of(run)
    assert run["exit_code"] == 0, explain(run)
    assert result["subtype"] == "success" and result["is_error"] is False, explain(run)
    assert result["result"] == text, explain(run)
    assert_clean(run)


# ---- the stack and its isolation ------------------------------------------------------------


def test_runs_isolated_with_the_pinned_version(runs: dict[str, Any]) -> None:
    assert runs["interfaces"] == ["lo"]  # no route off the machine
    assert runs["claude_version"].startswith(CLAUDE_CODE_VERSION + " ")


def test_only_translated_requests_reach_the_backends(runs: dict[str, Any]) -> None:
    """Claude Code's /v1/messages all arrive as chat completions, without the client's key;
    the only other request is its start-up HEAD / probe, passed through untouched."""
    requests = [
        request
        for run in runs["scenarios"].values()
        for request in run["requests"] + run["background_requests"]
    ]
    seen = {(r["method"], r["path"]) for r in requests}
    assert ("POST", "/v1/chat/completions") in seen
    assert seen <= {("HEAD", "/"), ("POST", "/v1/chat/completions")}
    for request in requests:
        assert CLIENT_KEY not in json.dumps(request["headers"])
    served = {m["name"] for m in MODELS}
    for run in runs["scenarios"].values():
        assert {body["model"] for body in chat_requests(run)} <= served


# ---- answers ----------------------------------------------------------------------------------


def test_plain_answer(runs: dict[str, Any]) -> None:
    run = scenario(runs, "plain")
    assert_success(run, "Hello from the scripted backend.")
    [body] = chat_requests(run)
    assert body["model"] == "qwen3-coder" and body["stream"] is True
    assert body["messages"][0]["role"] == "system"
    assert "Say hello." in json.dumps(body["messages"][-1]["content"])
    assert [b["text"] for b in blocks(run, "text")] == ["Hello from the scripted backend."]


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_tool_round_trip(runs: dict[str, Any], name: str) -> None:
    """The backend streams a Bash call, Claude Code runs it, the output goes back as a
    `role: "tool"` message with the backend's id, and the final answer quotes it."""
    model, id_pattern = ROUND_TRIPS[name]
    run = scenario(runs, name)
    [tool_use] = blocks(run, "tool_use")
    call_id = tool_use["id"]
    assert re.fullmatch(id_pattern, call_id), call_id  # the backend's id, passed through
    assert tool_use["name"] == "Bash"
    assert tool_use["input"]["command"] == "echo acceptance-ok"
    [tool_result] = blocks(run, "tool_result", role="user")
    assert tool_result["tool_use_id"] == call_id
    assert tool_result["is_error"] is False

    first, follow_up = chat_requests(run)
    assert "Bash" in [t["function"]["name"] for t in first["tools"]]
    assert follow_up["model"] == model
    assistant, tool = follow_up["messages"][-2:]
    assert assistant["role"] == "assistant"
    [call] = assistant["tool_calls"]
    assert call["id"] == call_id and call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"])["command"] == "echo acceptance-ok"
    assert tool["role"] == "tool" and tool["tool_call_id"] == call_id
    assert "acceptance-ok" in json.dumps(tool["content"])

    expected = "The command printed: acceptance-ok"
    if model.startswith("minimax") and "chat_template_kwargs" in first:
        # Asked to think, MiniMax-M2 under vLLM's minimax_m2_append_think parser keeps
        # `<think>...</think>` in content; it reaches Claude Code as text, so only the
        # answer's end is fixed.
        result = result_of(run)["result"]
        assert result.startswith("<think>") and result.endswith("\n\n" + expected), explain(run)
        assert assistant["content"].startswith("<think>")  # and goes back to the model
        expected = result
    assert_success(run, expected)


def test_web_search_ends_in_one_round_trip(runs: dict[str, Any]) -> None:
    """WebSearch through an OpenAI backend: the gateway answers the side request with an
    `unavailable` web_search_tool_result, Claude Code hands that to the model once, and the
    model answers. No retry loop, and no backend ever sees the server tool."""
    run = scenario(runs, "web-search")
    assert_success(run, "Web search is not available here.")
    [tool_use] = blocks(run, "tool_use")
    assert tool_use["name"] == "WebSearch"
    [tool_result] = blocks(run, "tool_result", role="user")
    assert tool_result["tool_use_id"] == tool_use["id"]
    _first, follow_up = chat_requests(run)  # exactly two model calls: no loop
    tool = follow_up["messages"][-1]
    assert tool["role"] == "tool" and tool["tool_call_id"] == tool_use["id"]
    assert "unavailable on this gateway" in json.dumps(tool["content"])
    everything = json.dumps(run["requests"] + run["background_requests"])
    assert "web_search_20250305" not in everything


@pytest.mark.parametrize("name", ["tool-kimi", "tool-glm"])
def test_thinking_goes_back_with_the_tool_call(runs: dict[str, Any], name: str) -> None:
    """Interleaved thinking: the reasoning Claude Code received returns on the assistant turn."""
    run = scenario(runs, name)
    thinking = blocks(run, "thinking")
    assert thinking and all(b["signature"] for b in thinking)
    _first, follow_up = chat_requests(run)
    assistant = follow_up["messages"][-2]
    assert assistant["reasoning_content"] == thinking[0]["thinking"]
    assert '"type": "thinking"' not in json.dumps(assistant)  # never a content part


def test_kimi_text_before_the_tool_call(runs: dict[str, Any]) -> None:
    run = scenario(runs, "tool-kimi")
    texts = [b["text"] for b in blocks(run, "text")]
    assert texts == ["I'll run that for you.", "The command printed: acceptance-ok"]
    _first, follow_up = chat_requests(run)
    assert follow_up["messages"][-2]["content"] == "I'll run that for you."


@pytest.mark.parametrize("name", ["parallel-kimi", "parallel-interleaved"])
def test_parallel_tool_calls(runs: dict[str, Any], name: str) -> None:
    run = scenario(runs, name)
    uses = blocks(run, "tool_use")
    assert [u["input"]["command"] for u in uses] == ["echo first-ok", "echo second-ok"]
    ids = [u["id"] for u in uses]
    assert len(set(ids)) == 2
    results = blocks(run, "tool_result", role="user")
    assert sorted(r["tool_use_id"] for r in results) == sorted(ids)

    _first, follow_up = chat_requests(run)
    assistant = follow_up["messages"][-3]
    assert [c["id"] for c in assistant["tool_calls"]] == ids
    # Claude Code runs both at once and may return them in the order they finished.
    tools = follow_up["messages"][-2:]
    assert [t["role"] for t in tools] == ["tool", "tool"]
    printed = {u["id"]: u["input"]["command"].removeprefix("echo ") for u in uses}
    assert {t["tool_call_id"]: t["content"] for t in tools} == printed
    answer = "\n".join(printed[t["tool_call_id"]] for t in tools)
    assert_success(run, "The command printed: " + answer)


def test_thinking_block_then_answer(runs: dict[str, Any]) -> None:
    run = scenario(runs, "thinking")
    [thinking] = blocks(run, "thinking")
    assert thinking["thinking"] == REASONING
    assert thinking["signature"]
    assert [b["text"] for b in blocks(run, "text")] == ["Hello after thinking."]
    assert_success(run, "Hello after thinking.")
    assert "REASONING-MARKER" not in result_of(run)["result"]
    [body] = chat_requests(run)
    assert body["chat_template_kwargs"]["enable_thinking"] is True  # Claude Code asked to think


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "status", "message"), [
    ("error-400", 400, MESSAGE_400),
    ("error-503", 503, MESSAGE_503),
])
def test_backend_error_reported_cleanly(
    runs: dict[str, Any], name: str, status: int, message: str
) -> None:
    run = scenario(runs, name)
    result = result_of(run)
    assert run["exit_code"] == 1, explain(run)
    assert result["is_error"] is True
    assert result.get("api_error_status", status) == status  # 2.0.x has no such field
    # 2.1.x prints the message; 2.0.x prints the whole Anthropic error body.
    assert result["result"].startswith(f"API Error: {status} "), explain(run)
    assert message in result["result"]
    if CLAUDE_CODE_VERSION == PINNED:
        assert len(chat_requests(run)) == 1, explain(run)  # asked once: no retry loop
    assert_clean(run)


def test_mid_stream_error_then_non_streaming_retry(runs: dict[str, Any]) -> None:
    """A stream that fails after it began: Claude Code drops the partial answer and retries
    without streaming; the gateway's JSON path then answers."""
    run = scenario(runs, "error-mid-stream")
    streamed, retried = chat_requests(run)
    assert streamed["stream"] is True
    assert retried["stream"] is False and "stream_options" not in retried
    assert_success(run, "Recovered without streaming.")
    assert "partial words" not in json.dumps(run["events"])
