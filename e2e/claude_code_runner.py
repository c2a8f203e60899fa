"""Run real Claude Code against the real stack inside a loopback-only network namespace.

Meant to be started as `unshare -n -- python -m e2e.claude_code_runner SPEC.json` (from the
repository root): a fresh network namespace has only a `lo` that is down and no route anywhere,
so Claude Code cannot reach the internet whatever it tries. This script brings `lo` up, starts
two mock backends and `extproc up` (real Envoy + our ext_proc) on free loopback ports, then runs
each scenario of the spec in turn on that one stack and writes one JSON document of results.

The spec's models route to the first mock, which holds the scenario's script. Every other model
name (Claude Code's own background requests: sub-agent warm-ups, Haiku helpers; some versions
send them) goes to the second, catch-all mock, so they can never eat a scripted answer.

SPEC.json:
    {"claude": "/path/to/claude", "workdir": "/tmp/x", "output": "/tmp/x/results.json",
     "models": [ModelRoute, ...],                       # the gateway's routes for the mock
     "scenarios": [{"name": "plain", "prompt": "Say hello.", "model": "qwen3-coder",
                    "script": [ScriptItem, ...],        # optional, queued on the mock first
                    "env": {...}, "max_turns": 4, "timeout_s": 60}, ...]}

Results (`output`):
    {"interfaces": ["lo"], "claude_version": "...",
     "scenarios": {name: {"exit_code", "timed_out", "duration_s", "events" (stream-json
                   objects), "stdout_other" (non-JSON lines), "stderr_tail", "requests" (what
                   the main backend received), "background_requests" (what the catch-all
                   backend received), "gateway_log" (written during the scenario)}}}
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from e2e.harness import MockBackend, start_gateway, start_mock, stopping

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

# What Claude Code needs to talk to the gateway and nothing else.
CLAUDE_ENV = {
    "ANTHROPIC_API_KEY": "sk-ant-dummy-e2e",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "IS_SANDBOX": "1",
    "NO_COLOR": "1",
}
# Kept from the caller's environment; everything else (keys, proxies, HOME) is dropped.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


def bring_loopback_up() -> None:
    """`ip link set lo up` without needing iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def interfaces() -> list[str]:
    """Interfaces of *this* network namespace (sysfs shows the namespace that mounted it)."""
    return sorted(name for _index, name in socket.if_nameindex())


def claude_command(claude: str, scenario: dict[str, Any]) -> list[str]:
    return [
        claude, "-p", scenario["prompt"],
        "--output-format", "stream-json", "--verbose",
        "--model", scenario["model"],
        "--allowedTools", "Bash",
        "--dangerously-skip-permissions",
        "--max-turns", str(scenario.get("max_turns", 4)),
    ]


def run_claude(
    claude: str, scenario: dict[str, Any], gateway_url: str, scratch: Path
) -> dict[str, Any]:
    home, cwd = scratch / "home", scratch / "cwd"
    home.mkdir(parents=True)
    cwd.mkdir()
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env |= CLAUDE_ENV | {"HOME": str(home), "ANTHROPIC_BASE_URL": gateway_url}
    env |= scenario.get("env", {})
    started = time.monotonic()
    proc = subprocess.Popen(
        claude_command(claude, scenario), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=scenario.get("timeout_s", 60))
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: Claude Code and its Bash tools
        stdout, stderr = proc.communicate()
    events, other = [], []
    for line in stdout.decode(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            other.append(line)
    return {
        "exit_code": proc.returncode,
        "timed_out": timed_out,
        "duration_s": round(time.monotonic() - started, 2),
        "events": events,
        "stdout_other": other,
        "stderr_tail": stderr.decode(errors="replace")[-4000:],
    }


def run_scenario(
    claude: str, scenario: dict[str, Any], mocks: tuple[MockBackend, MockBackend],
    gateway_url: str, log: Path, scratch: Path,
) -> dict[str, Any]:
    main, background = mocks
    main.reset()
    background.reset()
    if scenario.get("script"):
        main.script(*scenario["script"])
    log_start = log.stat().st_size
    result = run_claude(claude, scenario, gateway_url, scratch)
    result["requests"] = main.requests()
    result["background_requests"] = background.requests()
    with log.open("rb") as handle:
        handle.seek(log_start)
        result["gateway_log"] = handle.read().decode(errors="replace")[-20000:]
    return result


def run(spec: dict[str, Any]) -> dict[str, Any]:
    bring_loopback_up()
    workdir = Path(spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(
        [spec["claude"], "--version"], capture_output=True, text=True, timeout=60, check=False
    ).stdout.strip()
    mocks = start_mock(workdir), start_mock(workdir)
    with stopping(*(m.process for m in mocks)):
        config = {
            "backends": [
                {"name": "vllm", "schema": "openai", "base_url": mocks[0].url + "/v1",
                 "models": spec["models"]},
                {"name": "background", "schema": "openai", "base_url": mocks[1].url + "/v1"},
            ],
            "timeouts": {"extproc_message_s": 5, "request_s": 30, "drain_s": 1},
        }
        gateway = start_gateway(workdir, config)
        with stopping(gateway.process):
            results = {
                scenario["name"]: run_scenario(
                    spec["claude"], scenario, mocks, gateway.url, gateway.process.log,
                    workdir / f"scenario-{n}",
                )
                for n, scenario in enumerate(spec["scenarios"])
            }
    return {"interfaces": interfaces(), "claude_version": version, "scenarios": results}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m e2e.claude_code_runner SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    Path(spec["output"]).write_text(json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
