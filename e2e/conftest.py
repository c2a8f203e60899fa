"""Session-wide real stack: mock backend + `extproc up` (real Envoy + our ext_proc) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from e2e.harness import Gateway, MockBackend, start_gateway, start_mock

MODELS = [
    {"name": "qwen3-coder", "aliases": ["claude-*", "sonnet"], "options": {"max_output_tokens": 4096}},
    {"name": "glm-4.6"},
    {"name": "kimi-k2", "options": {"reasoning_echo": "reasoning_content"}},
    # Served without a reasoning parser: its thinking comes inline as <think>...</think>.
    {"name": "minimax-m2", "options": {"think_tags": True, "reasoning_echo": "think_tags"}},
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session", autouse=True)
def render_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`extproc up` keeps its Envoy renders under XDG_CACHE_HOME: the suite's stay in a folder
    of their own (every process the harness starts inherits this environment)."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("xdg-cache")
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture(scope="session")
def mock_backend(workdir: Path) -> Iterator[MockBackend]:
    mock = start_mock(workdir)
    yield mock
    mock.http.close()
    mock.process.stop()


@pytest.fixture(scope="session")
def gateway(workdir: Path, mock_backend: MockBackend) -> Iterator[Gateway]:
    config = {
        "backends": [
            {"name": "vllm", "schema": "openai", "base_url": mock_backend.url + "/v1",
             "api_key_env": "E2E_BACKEND_KEY", "models": MODELS},
        ],
        "timeouts": {"extproc_message_s": 5, "request_s": 30, "drain_s": 2},
    }
    gw = start_gateway(workdir, config, env={"E2E_BACKEND_KEY": "sk-e2e-backend"})
    yield gw
    gw.process.stop()


@pytest.fixture(scope="session")
def anthropic_client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    """The real anthropic SDK pointed at Envoy; no retries, so each error is seen once."""
    client = anthropic.Anthropic(base_url=gateway.url, api_key="sk-client-dummy", max_retries=0,
                                 timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="session")
def openai_client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-client-dummy", max_retries=0,
                           timeout=30)
    yield client
    client.close()


@pytest.fixture
def backend(mock_backend: MockBackend) -> MockBackend:
    """The session's mock backend, emptied of scripts and recorded requests."""
    mock_backend.reset()
    return mock_backend


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        gw = item.funcargs.get("gateway") if hasattr(item, "funcargs") else None
        if isinstance(gw, Gateway):
            report.sections.append(("gateway log (Envoy + ext_proc)", gw.logs()))
