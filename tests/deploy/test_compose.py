"""docker-compose.yaml: valid per the compose spec, consistent with the configs it mounts, and
healthchecks that work against the real processes. Offline: no Docker daemon is needed.

The schema is the compose-spec JSON schema that check-jsonschema ships
(`--builtin-schema vendor.compose-spec`; a test dependency in pyproject.toml).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_helpers import (
    COMPOSE_FILE,
    REPO,
    envoy_validate,
    parse_duration_s,
    python_snippet,
    run_snippet,
)

from extproc.cli import build_parser
from extproc.config import Config, load_config, parse_hostport
from extproc.envoy_config import placement, render_envoy_config
from extproc.launcher import free_port
from extproc.mock_backend.runner import build_parser as mock_backend_parser
from extproc.server import EXT_PROC_SERVICE

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
GATEWAY_SERVICES = ("mock-backend", "extproc", "envoy")
CONFIG_DIR = REPO / "deploy" / "compose"
# Every variable the file interpolates; the header comment documents each one.
DOCUMENTED_VARIABLES = {
    "EXTPROC_IMAGE",
    "EXTPROC_CONFIG",
    "VLLM_IMAGE",
    "VLLM_MODEL",
    "VLLM_MAX_MODEL_LEN",
    "VLLM_API_KEY",
    "HF_TOKEN",
}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def interpolate_defaults(value: str) -> str:
    """What compose substitutes when no variable is set."""
    return INTERPOLATION.sub(lambda m: m.group("default") or "", value)


def config_variants() -> dict[str, Path]:
    return {path.name: path for path in sorted(CONFIG_DIR.glob("config*.yaml"))}


def load_variant(name: str) -> Config:
    return load_config(str(config_variants()[name]), env={})


def healthcheck_code(service: str) -> str:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD", f"{service}: exec form, so no shell is involved"
    return python_snippet(test[1:])


# ---- the file as a whole --------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec_schema() -> None:
    pytest.importorskip("check_jsonschema", reason="pip install check-jsonschema (test extra)")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE_FILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    pytest.skip(
        "the Docker Compose v2 CLI plugin is not installed (Debian bookworm does not "
        "package it); the compose-spec schema test covers the file without it"
    )


def test_docker_compose_loads_the_file(tmp_path: Path) -> None:
    # `docker compose config` parses, interpolates and checks references; no daemon needed.
    command = _docker_compose()
    env = {k: v for k, v in os.environ.items() if k not in DOCUMENTED_VARIABLES}
    for profiles in ([], ["--profile", "vllm"]):
        result = subprocess.run(
            [*command, "-f", str(COMPOSE_FILE), *profiles, "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr


def test_only_documented_variables_are_interpolated() -> None:
    text = COMPOSE_FILE.read_text()
    names = {m.group("name") for m in INTERPOLATION.finditer(text)}
    assert names == DOCUMENTED_VARIABLES
    # Any other `$` would be interpolated by compose too (shell code must write `$$`).
    leftovers = INTERPOLATION.sub("", text).replace("$$", "")
    assert "$" not in leftovers
    header = text.split("\nname:", 1)[0]
    for name in DOCUMENTED_VARIABLES:
        assert name in header, f"{name} is not documented in the header comment"


# ---- services ---------------------------------------------------------------------------------


def test_services_and_profiles() -> None:
    assert set(SERVICES) == {*GATEWAY_SERVICES, "vllm"}
    assert SERVICES["vllm"]["profiles"] == ["vllm"]
    for name in GATEWAY_SERVICES:
        assert "profiles" not in SERVICES[name], f"{name} must run by default"


def test_gateway_services_share_one_image_built_here() -> None:
    images = {interpolate_defaults(SERVICES[name]["image"]) for name in GATEWAY_SERVICES}
    assert len(images) == 1
    for name in GATEWAY_SERVICES:
        build = SERVICES[name]["build"]
        assert (REPO / build["context"] / build["dockerfile"]).is_file()


def test_published_ports() -> None:
    assert SERVICES["envoy"]["ports"] == ["8080:8080"]
    # vLLM has no auth by default: only the local machine may reach it directly.
    assert all(p.startswith("127.0.0.1:") for p in SERVICES["vllm"]["ports"])
    for name in ("mock-backend", "extproc"):
        assert "ports" not in SERVICES[name], f"{name} is internal"


def test_every_service_has_a_healthcheck_and_envoy_waits_for_them() -> None:
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"], name
    depends = SERVICES["envoy"]["depends_on"]
    assert depends["extproc"]["condition"] == "service_healthy"
    assert depends["mock-backend"]["condition"] == "service_healthy"


def test_healthcheck_snippets_compile() -> None:
    for name in SERVICES:
        compile(healthcheck_code(name), name, "exec")


def test_extproc_healthcheck_asks_for_the_ext_proc_service() -> None:
    assert f'"{EXT_PROC_SERVICE}"' in healthcheck_code("extproc")


def test_vllm_reserves_a_gpu_and_enables_tool_and_reasoning_parsers() -> None:
    vllm = SERVICES["vllm"]
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"]
    args = [interpolate_defaults(str(a)) for a in vllm["command"]]
    assert args[0] == "Qwen/Qwen3-Coder-30B-A3B-Instruct"
    assert "--enable-auto-tool-choice" in args
    assert args[args.index("--tool-call-parser") + 1] == "qwen3_coder"
    assert args[args.index("--reasoning-parser") + 1] == "qwen3"
    assert args[args.index("--port") + 1] == "8000"


# ---- commands and mounted files ---------------------------------------------------------------


def mock_backend_listen() -> tuple[str, int]:
    command, *args = SERVICES["mock-backend"]["command"]
    assert command == "mock-backend"
    listen: tuple[str, int] = mock_backend_parser().parse_args(args).listen
    return listen


def test_extproc_commands_parse() -> None:
    serve = build_parser().parse_args(SERVICES["extproc"]["command"])
    assert serve.command == "serve"
    # The whole `extproc mock-backend ...` path runs in the healthcheck test below.
    assert mock_backend_listen() == ("0.0.0.0", 8000)


def test_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict) and volume["type"] == "bind":
                source = REPO / interpolate_defaults(volume["source"])
                assert source.is_file(), f"{name}: {source} missing"


def mounted_config_target(service: str) -> str:
    (mount,) = [v for v in SERVICES[service]["volumes"] if isinstance(v, dict)]
    assert interpolate_defaults(mount["source"]) == "./deploy/compose/config.yaml"
    target: str = mount["target"]
    return target


def test_extproc_and_envoy_read_the_same_config_file() -> None:
    target = mounted_config_target("extproc")
    assert mounted_config_target("envoy") == target
    assert build_parser().parse_args(SERVICES["extproc"]["command"]).config == target
    (script,) = SERVICES["envoy"]["command"]
    assert f"extproc envoy-config --profile compose --config {target} " in script


def test_envoy_runs_the_config_it_rendered() -> None:
    assert SERVICES["envoy"]["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = SERVICES["envoy"]["command"]
    rendered = re.search(r"> (\S+)", script)
    assert rendered and f"exec envoy -c {rendered.group(1)} " in script
    # A failed render must stop the container, not start Envoy on an empty file.
    assert "&& exec envoy" in script


def test_graceful_stop_outlasts_the_drain() -> None:
    grace = parse_duration_s(SERVICES["extproc"]["stop_grace_period"])
    for name in config_variants():
        assert grace > load_variant(name).timeouts.drain_s, name


# ---- the config variants ----------------------------------------------------------------------


def test_both_variants_exist() -> None:
    assert set(config_variants()) == {"config.yaml", "config.vllm.yaml"}


@pytest.mark.parametrize("name", ["config.yaml", "config.vllm.yaml"])
def test_envoy_finds_extproc_at_the_compose_service(name: str) -> None:
    config = load_variant(name)
    host, port = parse_hostport(config.extproc_listen)
    assert host == "0.0.0.0"
    assert placement(config, "compose").extproc == ("extproc", port)


def backend_address(config: Config) -> tuple[str, int]:
    (backend,) = config.backends
    parts = urlsplit(backend.base_url)
    return parts.hostname or "", parts.port or 80


def test_default_variant_uses_the_mock_backend_service() -> None:
    _, port = mock_backend_listen()
    assert backend_address(load_variant("config.yaml")) == ("mock-backend", port)


def test_vllm_variant_uses_the_vllm_service_and_its_served_name() -> None:
    config = load_variant("config.vllm.yaml")
    args = [interpolate_defaults(str(a)) for a in SERVICES["vllm"]["command"]]
    assert backend_address(config) == ("vllm", int(args[args.index("--port") + 1]))
    served = args[args.index("--served-model-name") + 1]
    assert [m.name for m in config.backends[0].models] == [served]
    options = config.backends[0].options_for(served)
    assert options.context_window == int(args[args.index("--max-model-len") + 1])


def test_backend_keys_reach_the_extproc_service() -> None:
    environment = SERVICES["extproc"].get("environment", {})
    for name in config_variants():
        for backend in load_variant(name).backends:
            if backend.api_key_env:
                assert backend.api_key_env in environment, (name, backend.name)


@pytest.mark.parametrize("name", ["config.yaml", "config.vllm.yaml"])
def test_envoy_accepts_the_rendered_config(name: str, tmp_path: Path) -> None:
    rendered = render_envoy_config(load_variant(name), profile="compose")
    result = envoy_validate(rendered, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_default_variant_renders_the_checked_in_example() -> None:
    # envoy/compose.yaml documents what the `envoy` service runs by default.
    example = REPO / "envoy" / "compose.yaml"
    rendered = render_envoy_config(load_variant("config.yaml"), profile="compose")
    assert yaml.safe_load(rendered) == yaml.safe_load(example.read_text()), (
        "deploy/compose/config.yaml and envoy/examples/compose.config.yaml now render "
        "different Envoy configs; bring them back in step"
    )


# ---- healthchecks against the real processes --------------------------------------------------


def _until_zero(code: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while (result := run_snippet(code)).returncode != 0:
        assert process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, result.stderr[-1000:]
        time.sleep(0.2)


@contextmanager
def _running(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m extproc ARGS` (what the image's `extproc` entry point runs)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "extproc", *args], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_extproc_healthcheck_follows_the_real_server(tmp_path: Path) -> None:
    port = free_port()
    code = healthcheck_code("extproc").replace("127.0.0.1:50051", f"127.0.0.1:{port}")
    assert run_snippet(code).returncode != 0, "healthy with no server listening"
    config = tmp_path / "config.yaml"
    config.write_text(
        (CONFIG_DIR / "config.yaml")
        .read_text()
        .replace("0.0.0.0:50051", f"127.0.0.1:{port}")
        .replace("0.0.0.0:9090", f"127.0.0.1:{free_port()}")
    )
    command = [*SERVICES["extproc"]["command"]]
    command[command.index("--config") + 1] = str(config)
    with _running(command, tmp_path / "extproc.log") as process:
        _until_zero(code, process)


def test_mock_backend_healthcheck_follows_the_real_server(tmp_path: Path) -> None:
    port = free_port()
    code = healthcheck_code("mock-backend").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    assert run_snippet(code).returncode != 0, "healthy with no server listening"
    command = [
        a.replace("0.0.0.0:8000", f"127.0.0.1:{port}") for a in SERVICES["mock-backend"]["command"]
    ]
    with _running(command, tmp_path / "mock.log") as process:
        _until_zero(code, process)
