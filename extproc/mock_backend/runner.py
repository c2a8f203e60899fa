"""Ways to run the mock: in a test's event loop, in a background thread, or as a command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web

from extproc.mock_backend.dialects import DIALECTS
from extproc.mock_backend.families import FAMILIES
from extproc.mock_backend.scenarios import ScriptItem
from extproc.mock_backend.server import create_app
from extproc.mock_backend.state import FAST_CACHE, STATE, ConfigUpdate, MockConfig, MockState

BANNER = (
    "*** MOCK BACKEND: this is NOT a model. A scripted vLLM-compatible test double is listening "
    "on {url}/v1 (family={family}, dialect={dialect}) ***"
)


@dataclass(frozen=True)
class MockServer:
    """A running mock: `url` is http://127.0.0.1:PORT, `openai_base_url` adds /v1."""

    url: str
    port: int
    app: web.Application

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def state(self) -> MockState:
        """Direct access to the script queue, request log and config (same thread only)."""
        return self.app[STATE]

    def script(self, *items: Mapping[str, Any]) -> None:
        """Queue scripted responses (same keys as POST /__mock/script)."""
        self.state.script.extend(ScriptItem.model_validate(item) for item in items)

    def requests(self) -> list[dict[str, Any]]:
        """What GET /__mock/requests answers."""
        return [request.as_json() for request in self.state.requests]

    def configure(self, **changes: Any) -> None:
        """Change settings (same keys as POST /__mock/config)."""
        self.state.config = ConfigUpdate.model_validate(changes).apply(self.state.config)
        self.app[FAST_CACHE].clear()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def running_mock(
    config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, **overrides: Any
) -> AsyncIterator[MockServer]:
    """`async with running_mock(family="qwen3") as mock:` then point clients at `mock.url`."""
    app = create_app(config, **overrides)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = _bind(host, port)
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        bound = sock.getsockname()[1]
        yield MockServer(_url(host, bound), bound, app)
    finally:
        await runner.cleanup()
        sock.close()


class MockThread:
    """The mock on its own event loop in a daemon thread, for synchronous harnesses."""

    def __init__(
        self,
        config: MockConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        **overrides: Any,
    ) -> None:
        self._args = (config, host, port, overrides)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: MockServer | None = None
        self._thread = threading.Thread(target=self._main, name="mock-backend", daemon=True)

    @property
    def url(self) -> str:
        assert self.server is not None, "not started"
        return self.server.url

    def start(self, timeout: float = 10) -> MockThread:
        if self._thread.is_alive() or self._ready.is_set():
            return self
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("mock backend did not start")
        if self._error is not None:
            raise RuntimeError("mock backend failed to start") from self._error
        return self

    def stop(self, timeout: float = 10) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> MockThread:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        config, host, port, overrides = self._args
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with running_mock(config, host=host, port=port, **overrides) as server:
                self.server = server
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()


def start_in_thread(config: MockConfig | None = None, **overrides: Any) -> MockThread:
    """Start the mock in a background thread; call `.stop()` (or use it as a context manager)."""
    return MockThread(config, **overrides).start()


# --- command line ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit status 2, never a traceback
        self.exit(2, f"extproc mock-backend: {message}\n")


def _hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="extproc mock-backend", description="Run the MOCK vLLM-compatible backend."
    )
    parser.add_argument(
        "--listen", type=_hostport, default=("127.0.0.1", 8000), metavar="HOST:PORT"
    )
    parser.add_argument("--family", choices=sorted(FAMILIES))
    parser.add_argument("--dialect", choices=sorted(DIALECTS))
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="served model name (repeatable); without it any name is accepted",
    )
    parser.add_argument("--max-model-len", type=int, default=MockConfig.max_model_len)
    parser.add_argument("--chunk-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--no-tool-parser", action="store_true")
    parser.add_argument("--no-reasoning-parser", action="store_true")
    parser.add_argument("--prompt-tokens-details", action="store_true")
    parser.add_argument("--fast", action="store_true", help="precomputed answers (benchmarks)")
    parser.add_argument("--api-key", help="require `Authorization: Bearer KEY` on /v1/*, as vLLM")
    return parser


def config_from_args(args: argparse.Namespace) -> MockConfig:
    return MockConfig(
        family=args.family,
        dialect=args.dialect,
        models=tuple(args.models) if args.models else None,
        max_model_len=args.max_model_len,
        chunk_delay_s=args.chunk_delay,
        tool_parser=not args.no_tool_parser,
        reasoning_parser=not args.no_reasoning_parser,
        prompt_tokens_details=args.prompt_tokens_details,
        fast=args.fast,
        api_key=args.api_key,
    )


async def serve(config: MockConfig, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, after printing the banner (with the real port)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_mock(config, host=host, port=port) as server:
        family = config.family or "by model name"
        dialect = config.dialect or "by family"
        print(BANNER.format(url=server.url, family=family, dialect=dialect), flush=True)
        await stop.wait()


def run(host: str = "127.0.0.1", port: int = 8000, config: MockConfig | None = None) -> None:
    """Blocking: serve the mock until interrupted."""
    asyncio.run(serve(config or MockConfig(), host, port))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        host, port = args.listen
        run(host, port, config)
    except (ValueError, OSError) as exc:
        print(f"extproc mock-backend: {exc}", file=sys.stderr)
        return 2
    return 0
