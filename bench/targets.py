"""Start and stop what the bench compares, all on 127.0.0.1.

backend   the canned OpenAI backend itself (the reference every other target sits in front of)
envoy     plain Envoy -> backend: the gateway's own rendered Envoy config without the ext_proc filter
noop      Envoy + bench/noop_extproc.py: the gateway's Envoy config pointed at a no-op processor
gateway   `python -m extproc up --config <file>` (Envoy + our ext_proc server), `gateway-wN` with
          `workers: N`
litellm   LiteLLM proxy (`/v1/messages`, `openai/<model>` routes) from bench/.venv-litellm,
          `litellm-wN` with `--num_workers N`
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml
from client import one_request
from payloads import API_KEY, MODEL_PACED, MODEL_TEXT, MODEL_TOOL, http_request, small_request

from extproc import launcher
from extproc.launcher import free_port

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HOST = "127.0.0.1"
LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_SPEC = os.environ.get("BENCH_LITELLM_SPEC", "litellm[proxy]")
READY_PROBE = http_request("/v1/messages", orjson.dumps(small_request(MODEL_TEXT, False)))


class Unavailable(Exception):
    """A target that cannot run here; the report shows the reason instead of numbers."""


@dataclass
class Target:
    name: str
    label: str
    port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    startup_s: float = 0.0
    note: str = ""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)  # its own session: it and its children
                except ProcessLookupError:
                    continue
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:
        return subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )


def _log_tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


async def wait_ready(target: Target, started: float, timeout_s: float, log: Path) -> None:
    """Ready = a small /v1/messages request through the target answers 200."""
    deadline = started + timeout_s
    last = "no answer"
    while time.perf_counter() < deadline:
        if not target.alive():
            raise Unavailable(f"{target.name} exited during start-up: {_log_tail(log)}")
        try:
            sample = await one_request(HOST, target.port, READY_PROBE, timeout_s=5)
            if sample.status == 200:
                target.startup_s = time.perf_counter() - started
                return
            last = f"HTTP {sample.status}: {sample.body[:200]!r}"
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            last = type(exc).__name__
        await asyncio.sleep(0.02)
    target.stop()
    raise Unavailable(f"{target.name} not ready after {timeout_s:.0f}s ({last}): {_log_tail(log)}")


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


async def start_backend(workdir: Path, echo_nonce: bool = False) -> Target:
    target = Target("backend", "(a) canned backend, direct", free_port())
    log = workdir / "backend.log"
    started = time.perf_counter()
    argv = [sys.executable, str(BENCH / "backend.py"), "--listen", f"{HOST}:{target.port}"]
    target.procs.append(_spawn(argv + (["--echo-nonce"] if echo_nonce else []), log))
    await wait_ready(target, started, 20, log)
    return target


def envoy_binary() -> str:
    try:
        return launcher.envoy_binary()
    except FileNotFoundError as exc:
        raise Unavailable(str(exc)) from None


# The name `extproc envoy-config --backend URL` gives that backend (its routes match on it).
_BACKEND_NAME = "default"


def _render_envoy(backend_port: int, listen: int, admin: int, extproc: int, plain: bool,
                  routing: str = "headers") -> str:
    """The gateway's Envoy config (`extproc envoy-config`), optionally without ext_proc."""
    argv = [sys.executable, "-m", "extproc", "envoy-config", "--fast",
            "--backend", f"http://{HOST}:{backend_port}/v1", "--listen", f"{HOST}:{listen}",
            "--admin-listen", f"{HOST}:{admin}", "--extproc-listen", f"{HOST}:{extproc}",
            "--log-level", "warning"]
    # The classic routing by default: the processor sees the request headers (4 messages per
    # request, the floor the issue defines), and without ext_proc every path goes to the
    # backend. "metadata" is the gateway's own flow (3 messages).
    env = {**_python_env(), "EXTPROC_MESSAGES_ROUTING": routing}
    done = subprocess.run(argv, capture_output=True, env=env, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise Unavailable(f"extproc envoy-config failed: {done.stderr.decode()[-300:]}")
    config = yaml.safe_load(done.stdout)
    if plain:
        for listener in config["static_resources"]["listeners"]:
            for chain in listener["filter_chains"]:
                for net_filter in chain["filters"]:
                    hcm = net_filter["typed_config"]
                    hcm["http_filters"] = [f for f in hcm["http_filters"]
                                           if f["name"] != "envoy.filters.http.ext_proc"]
    return yaml.safe_dump(config, sort_keys=False)


def _envoy_argv(config: Path) -> list[str]:
    # The flags `extproc up` uses with one ext_proc worker, so the Envoy-based targets run
    # Envoy alike (with the same number of worker threads).
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from extproc.config import Config, envoy_concurrency

    return [envoy_binary(), "-c", str(config), "--use-dynamic-base-id", "--log-level", "warning",
            "--concurrency", str(envoy_concurrency(Config()))]


ENVOY_TARGETS = {  # name: (label, routing); "envoy" runs without ext_proc
    "envoy": ("(b) plain Envoy", "headers"),
    "noop": ("(c) Envoy + no-op Python ext_proc", "headers"),
    "noop3": ("(c') Envoy + no-op ext_proc, the gateway's 3-message flow", "metadata"),
}


async def start_envoy(workdir: Path, backend: Target, name: str) -> Target:
    label, routing = ENVOY_TARGETS[name]
    target = Target(name, label, free_port())
    extproc_port = free_port()
    path = workdir / f"envoy-{name}.yaml"
    path.write_text(_render_envoy(backend.port, target.port, free_port(), extproc_port,
                                  plain=name == "envoy", routing=routing))
    log = workdir / f"{name}.log"
    started = time.perf_counter()
    if name != "envoy":
        argv = [sys.executable, str(BENCH / "noop_extproc.py"), "--listen",
                f"{HOST}:{extproc_port}"]
        if routing == "metadata":
            argv += ["--backend", _BACKEND_NAME]
        target.procs.append(_spawn(argv, log))
    target.procs.append(_spawn(_envoy_argv(path), log))
    await wait_ready(target, started, 30, log)
    return target


def gateway_workers_supported() -> bool:
    done = subprocess.run([sys.executable, "-m", "extproc", "up", "--help"], capture_output=True,
                          env=_python_env(), cwd=ROOT, check=False)
    return b"--workers" in done.stdout


async def start_gateway(workdir: Path, backend: Target, workers: int) -> Target:
    name = "gateway" if workers == 1 else f"gateway-w{workers}"
    label = "(d) our gateway" + ("" if workers == 1 else f", {workers} ext_proc workers")
    target = Target(name, label, free_port())
    config = {
        "listen": f"{HOST}:{target.port}",
        "admin_listen": f"{HOST}:{free_port()}",
        "extproc_listen": f"{HOST}:{free_port()}",
        "log_level": "warning",
        "backends": [{"name": "bench", "schema": "openai",
                      "base_url": f"http://{HOST}:{backend.port}/v1"}],
    }
    if workers > 1:
        config["workers"] = workers
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = workdir / f"{name}.log"
    started = time.perf_counter()
    target.procs.append(_spawn([sys.executable, "-m", "extproc", "up", "--config", str(path)],
                               log, env=_python_env(), cwd=ROOT))
    await wait_ready(target, started, 60, log)
    return target


# ---- LiteLLM ---------------------------------------------------------------------------------


def ensure_litellm(log: Path) -> str:
    """Create bench/.venv-litellm with LiteLLM's proxy extra once; returns its version."""
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        print(f"installing {LITELLM_SPEC} into {LITELLM_VENV} (once) ...", flush=True)
        LITELLM_VENV.mkdir(parents=True, exist_ok=True)
        steps = [[sys.executable, "-m", "venv", str(LITELLM_VENV)],
                 [str(python), "-m", "pip", "install", "-q", LITELLM_SPEC]]
        with open(log, "ab") as out:
            for step in steps:
                if subprocess.run(step, stdout=out, stderr=out, check=False).returncode != 0:
                    raise Unavailable(f"could not install {LITELLM_SPEC}: {_log_tail(log, 2)}")
    done = subprocess.run([str(python), "-c",
                           "import importlib.metadata as m; print(m.version('litellm'))"],
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise Unavailable(f"LiteLLM venv is broken: {done.stderr.decode()[-200:]}")
    return done.stdout.decode().strip()


def _litellm_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "OPENAI"))}
    env.update({
        # Stay on loopback and quiet: no telemetry, no remote cost map, no UI, errors only.
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
        "NO_REDOC": "True",
        "HF_HUB_OFFLINE": "1",
        "HOME": str(workdir),
        "NO_PROXY": "*",
        "LITELLM_MASTER_KEY": API_KEY,
    })
    return env


def _litellm_config(backend: Target) -> dict[str, object]:
    base = f"http://{HOST}:{backend.port}/v1"
    return {
        "model_list": [
            {"model_name": model,
             "litellm_params": {"model": f"openai/{model}", "api_base": base,
                                "api_key": "sk-bench"}}
            for model in (MODEL_TEXT, MODEL_PACED, MODEL_TOOL)
        ],
        # LiteLLM sends /v1/messages for `openai/` models to the Responses API unless told to
        # use chat completions, which is what vLLM-style backends serve.
        "litellm_settings": {"use_chat_completions_url_for_anthropic_messages": True,
                             "drop_params": True, "turn_off_message_logging": True,
                             "set_verbose": False, "json_logs": False, "request_timeout": 600},
        "general_settings": {"disable_spend_logs": True, "disable_error_logs": True},
    }


async def start_litellm(workdir: Path, backend: Target, workers: int, version: str) -> Target:
    name = "litellm" if workers == 1 else f"litellm-w{workers}"
    label = f"(e) LiteLLM {version}" + ("" if workers == 1 else f", {workers} workers")
    target = Target(name, label, free_port())
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(_litellm_config(backend), sort_keys=False))
    log = workdir / f"{name}.log"
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(path), "--host", HOST,
            "--port", str(target.port), "--num_workers", str(workers)]
    if workers > 1:
        # uvicorn restarts a worker that does not answer its health check within 5 s; importing
        # LiteLLM takes longer than that on a busy 2-core machine, so workers would loop forever.
        argv += ["--timeout_worker_healthcheck", "120"]
    started = time.perf_counter()
    target.procs.append(_spawn(argv, log, env=_litellm_env(workdir), cwd=workdir))
    await wait_ready(target, started, 180, log)
    return target
