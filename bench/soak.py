"""`python bench/run.py --soak`: many mixed requests through the gateway, every answer checked.

Each request carries a unique nonce that the backend echoes in the answer (first text token, or
the tool call's arguments), so a response delivered to the wrong client, a lost or duplicated
chunk, or a broken event order is counted as an error, not just a non-200 status.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import procs
import targets as tg
from client import Sample, run_load
from payloads import (
    MODEL_PACED,
    MODEL_TEXT,
    MODEL_TOOL,
    NONCE_LEN,
    TOKENS,
    TOOL_NAME,
    expected_text,
    http_request,
    large_request,
    large_request_template,
    small_request,
    with_nonce,
)

# (kind, model, stream)
KINDS = (
    ("text-json", MODEL_TEXT, False),
    ("text-sse", MODEL_TEXT, True),
    ("tool-json", MODEL_TOOL, False),
    ("tool-sse", MODEL_TOOL, True),
    ("paced-sse", MODEL_PACED, True),
)
PLACEHOLDER = "Q" * NONCE_LEN
LARGE_EVERY = 7  # one request in 7 is the ~80 KB Claude Code body


def nonce_for(index: int) -> bytes:
    return f"n{index:0{NONCE_LEN - 1}d}".encode()


def kind_of(index: int) -> tuple[str, bool, str]:
    name, _, stream = KINDS[index % len(KINDS)]
    return name, stream, "80k" if index % LARGE_EVERY == 0 else "1k"


def build_templates() -> dict[tuple[str, str], bytes]:
    large, _ = large_request_template()
    out = {}
    for name, model, stream in KINDS:
        for size in ("1k", "80k"):
            body = small_request(model, stream) if size == "1k" else large_request(model, stream, large)
            out[name, size] = http_request("/v1/messages", orjson.dumps(with_nonce(body, PLACEHOLDER)))
    return out


def parse_sse(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        name, data = "", b""
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data += line[5:].strip()
        events.append((name, orjson.loads(data) if data else {}))
    return events


def check_stream(body: bytes, tool: bool, nonce: bytes) -> str | None:
    events = parse_sse(body)
    names = [n for n, _ in events if n != "ping"]
    if any(n == "error" for n in names):
        return "stream_error_event"
    if not names or names[0] != "message_start" or names[-1] != "message_stop":
        return "stream_bad_framing"
    if any(data.get("type") != name for name, data in events):
        return "stream_event_type_mismatch"
    text, partial, tool_name, stop = "", "", None, None
    for name, data in events:
        if name == "content_block_start" and data["content_block"]["type"] == "tool_use":
            tool_name = data["content_block"]["name"]
        elif name == "content_block_delta":
            delta = data["delta"]
            text += delta.get("text", "")
            partial += delta.get("partial_json", "")
        elif name == "message_delta":
            stop = data["delta"].get("stop_reason")
    if tool:
        try:
            args = orjson.loads(partial)
        except orjson.JSONDecodeError:
            return "stream_tool_args_not_json"
        if tool_name != TOOL_NAME or args != {"command": f"echo {nonce.decode()}"}:
            return "stream_tool_mismatch"
        return None if stop == "tool_use" else "stream_stop_reason"
    if text != expected_text(nonce):
        return "stream_text_mismatch"
    return None if stop == "end_turn" else "stream_stop_reason"


def check_json(body: bytes, tool: bool, nonce: bytes) -> str | None:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "json_unparseable"
    if message.get("type") != "message" or message.get("role") != "assistant":
        return "json_not_a_message"
    if message.get("usage", {}).get("output_tokens") != TOKENS:
        return "json_usage"
    blocks = message.get("content", [])
    if tool:
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        if len(uses) != 1 or uses[0].get("name") != TOOL_NAME or \
                uses[0].get("input") != {"command": f"echo {nonce.decode()}"}:
            return "json_tool_mismatch"
        return None if message.get("stop_reason") == "tool_use" else "json_stop_reason"
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    if text != expected_text(nonce):
        return "json_text_mismatch"
    return None if message.get("stop_reason") == "end_turn" else "json_stop_reason"


def check(index: int, sample: Sample) -> str | None:
    name, stream, _ = kind_of(index)
    tool = name.startswith("tool")
    try:
        if stream:
            return check_stream(sample.body, tool, nonce_for(index))
        return check_json(sample.body, tool, nonce_for(index))
    except (KeyError, TypeError, ValueError, AttributeError):
        return "malformed_answer"


def _rss(target: tg.Target) -> dict[str, float]:
    return procs.rss_by_role(procs.tree(target.pids))


async def soak(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="extproc-soak-"))
    templates = build_templates()

    def request(index: int) -> bytes:
        name, _, size = kind_of(index)
        return templates[name, size].replace(PLACEHOLDER.encode(), nonce_for(index))

    backend = gateway = None
    try:
        backend = await tg.start_backend(workdir, echo_nonce=True)
        gateway = await tg.start_gateway(workdir, backend, args.workers)
        # A short warm-up so "before" is the resident set of a server that has served traffic.
        await run_load("127.0.0.1", gateway.port, request, 8, total=200, check=check)
        before = _rss(gateway)
        started = time.perf_counter()
        result = await run_load("127.0.0.1", gateway.port, lambda i: request(i + 200),
                                args.soak_concurrency, total=args.soak_requests,
                                check=lambda i, s: check(i + 200, s), timeout_s=60)
        elapsed = time.perf_counter() - started
        after = _rss(gateway)
        alive = gateway.alive()
    finally:
        for target in (gateway, backend):
            if target is not None:
                target.stop()
        if args.keep_workdir:
            print(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    errors = sum(result.errors.values())
    verified = result.verified
    lines = [
        "# extproc soak",
        "",
        f"- requests sent: {args.soak_requests} at concurrency {args.soak_concurrency} "
        f"(gateway workers: {args.workers}); mix: "
        + ", ".join(k for k, _, _ in KINDS) + f"; 1 in {LARGE_EVERY} is the 80 KB body",
        f"- responses verified: {verified}",
        f"- errors: {errors}" + (f" {dict(sorted(result.errors.items()))}" if errors else ""),
        f"- wall time: {elapsed:.1f} s ({len(result.samples) / elapsed:,.0f} responses/s)",
        f"- ext_proc RSS: {before['app']:.1f} MB before -> {after['app']:.1f} MB after; "
        f"Envoy RSS: {before['envoy']:.1f} -> {after['envoy']:.1f} MB",
        f"- gateway still running at the end: {'yes' if alive else 'NO'}",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak-latest.md").write_text(text + "\n")
    return 0 if errors == 0 and alive else 1
