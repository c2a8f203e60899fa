"""Load shapes and the two load generators: wrk (throughput) and the Python client (streams)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
from client import run_load
from payloads import (
    API_KEY,
    DEFAULT_NONCE,
    MODEL_PACED,
    MODEL_TEXT,
    PACE_S,
    TOKENS,
    http_request,
    large_request,
    small_request,
)

BENCH = Path(__file__).resolve().parent
PATH = "/v1/messages"
MODES = {
    # mode: (model, stream, what it is)
    "json": (MODEL_TEXT, False, "non-streaming"),
    "sse": (MODEL_TEXT, True, "streaming, whole answer in one write"),
    "paced": (MODEL_PACED, True, f"streaming, {TOKENS} chunks 10 ms apart"),
}


@dataclass(frozen=True)
class Shape:
    mode: str  # json | sse | paced
    size: str  # 1k | 80k
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.mode}-{self.size}-c{self.concurrency}"

    @property
    def streaming(self) -> bool:
        return MODES[self.mode][1]


@dataclass
class Run:
    """One target under one shape for one repeat."""

    target: str
    shape: str
    rep: int
    tool: str
    seconds: float
    ok: int
    errors: dict[str, int]
    cpu_envoy_s: float = 0.0
    cpu_app_s: float = 0.0
    p50_ms: float | None = None  # wrk's own percentiles
    p99_ms: float | None = None
    latency_ms: list[float] = field(default_factory=list)  # client samples (ok only)
    ttfb_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class Bodies:
    """Request bodies per (mode, size), as files for wrk and raw requests for the client."""

    def __init__(self, workdir: Path, large_template: dict[str, object]) -> None:
        self.files: dict[tuple[str, str], Path] = {}
        self.raw: dict[tuple[str, str], bytes] = {}
        self.sizes: dict[str, int] = {}
        for mode, (model, stream, _) in MODES.items():
            for size in ("1k", "80k"):
                body = (small_request(model, stream) if size == "1k"
                        else large_request(model, stream, large_template))
                data = orjson.dumps(body)
                path = workdir / f"body-{mode}-{size}.json"
                path.write_bytes(data)
                self.files[mode, size] = path
                self.raw[mode, size] = http_request(PATH, data)
                self.sizes[size] = len(data)


def ensure_wrk() -> tuple[str | None, str]:
    """(path to wrk or None, how we got it / why not). Installs Debian's wrk when possible."""
    found = shutil.which("wrk")
    if found:
        return found, "wrk on PATH"
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None, "wrk missing and apt-get unavailable (not root); using the Python client"
    print("installing wrk with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in ([apt, "install", "-y", "-q", "wrk"], [apt, "update", "-q"],
                 [apt, "install", "-y", "-q", "wrk"]):
        done = subprocess.run(argv, capture_output=True, env=env, check=False)
        if argv[1] == "install" and done.returncode == 0:
            break
    found = shutil.which("wrk")
    if found:
        return found, "installed with apt-get"
    return None, "apt-get could not install wrk; using the Python client"


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, check=False)
    match = re.search(rb"wrk (\S+)", done.stdout + done.stderr)
    return match.group(1).decode() if match else "?"


async def run_wrk(wrk: str, port: int, body: Path, concurrency: int, seconds: float) -> dict[str, float]:
    argv = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "30s",
            "-s", str(BENCH / "post.lua"), f"http://127.0.0.1:{port}{PATH}", "--", str(body), API_KEY]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    for line in out.decode().splitlines():
        if line.startswith("BENCH_JSON "):
            parsed: dict[str, float] = orjson.loads(line[len("BENCH_JSON "):])
            return parsed
    raise RuntimeError(f"wrk printed no summary: {out.decode()[-300:]} {err.decode()[-300:]}")


async def measure(target: str, shape: Shape, rep: int, port: int, bodies: Bodies,
                  seconds: float, wrk: str | None) -> Run:
    """Load one target with one shape; wrk for throughput, the client for paced streams."""
    if wrk is not None and shape.mode != "paced":
        stats = await run_wrk(wrk, port, bodies.files[shape.mode, shape.size],
                              shape.concurrency, seconds)
        errors = {k: int(stats[k]) for k in ("connect", "read", "write", "status", "timeout")
                  if stats[k]}
        # wrk counts non-2xx answers as requests too.
        return Run(target, shape.key, rep, "wrk", stats["duration_us"] / 1e6,
                   int(stats["requests"]) - int(stats["status"]), errors,
                   p50_ms=stats["p50_us"] / 1000, p99_ms=stats["p99_us"] / 1000)
    raw = bodies.raw[shape.mode, shape.size]
    # Paced streams all last TOKENS x PACE_S: their connections start spread over that time.
    spread = TOKENS * PACE_S if shape.mode == "paced" else 0.0
    result = await run_load("127.0.0.1", port, lambda _i: raw, shape.concurrency,
                            duration_s=seconds, marker=DEFAULT_NONCE if shape.streaming else None,
                            spread_s=spread)
    ok = result.ok
    return Run(
        target, shape.key, rep, "client", result.elapsed_s, len(ok), result.errors,
        latency_ms=[s.total_s * 1000 for s in ok],
        ttfb_ms=[s.ttfb_s * 1000 for s in ok],
        ttft_ms=[s.ttft_s * 1000 for s in ok if s.ttft_s is not None],
    )
