"""What Envoy 1.40 does with our rendered envoy.yaml: the facts envoy_config relies on.

A fake ext_proc server (behaviour chosen by the request path) and a fake backend run on
loopback; Envoy runs the config from `render_envoy_config`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.protobuf.struct_pb2 import Struct

from extproc.config import Config
from extproc.envoy_config import render_envoy_config
from extproc.errors import error_body
from extproc.launcher import free_port
from extproc.processors.base import BACKEND_HEADER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("envoy") is None, reason="envoy binary not on PATH"),
]

MAX_BODY = 65536
NEW_BODY = b'{"rewritten":true}'


def mutation(set_headers: dict[str, str], remove: tuple[str, ...] = ()) -> pb.HeaderMutation:
    return pb.HeaderMutation(
        set_headers=[
            HeaderValueOption(
                header=HeaderValue(key=key, raw_value=value.encode()),
                append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
            for key, value in set_headers.items()
        ],
        remove_headers=list(remove),
    )


def headers_of(message: Any) -> dict[str, str]:
    return {h.key: h.raw_value.decode() or h.value for h in message.headers.headers}


class FakeProcessor(pb_grpc.ExternalProcessorServicer):
    """/reply/<status>[/<details>]: immediate response; /route/<backend>: route there from the
    body phase; /crash, /hang, /forbidden: fail in three ways; anything else: continue."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.release = threading.Event()

    def Process(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        path = ""
        for request in request_iterator:
            kind = request.WhichOneof("request")
            if kind == "request_headers":
                headers = headers_of(request.request_headers)
                path = headers[":path"]
                self.seen.append((path, kind, headers))
                if path.startswith("/reply/"):
                    _, _, status, *details = path.split("/")
                    yield immediate(int(status), details[0] if details else "")
                    return
                if path == "/crash":
                    context.abort(grpc.StatusCode.INTERNAL, "processor bug")
                if path == "/hang":
                    self.release.wait(10)
                yield pb.ProcessingResponse(request_headers=pb.HeadersResponse())
            elif kind == "request_body":
                yield pb.ProcessingResponse(request_body=pb.BodyResponse(response=body_edit(path)))
            elif kind == "response_headers":
                self.seen.append((path, kind, headers_of(request.response_headers)))
                metadata = Struct()
                metadata.update(
                    {
                        "extproc": {"model": "m-test", "backend": "b-test", "input_tokens": 12},
                        "not_received": {"model": "wrong"},
                    }
                )
                yield pb.ProcessingResponse(
                    response_headers=pb.HeadersResponse(), dynamic_metadata=metadata
                )
            elif kind == "response_body":
                self.seen.append((path, kind, {"body": request.response_body.body.decode()}))
                yield pb.ProcessingResponse(response_body=pb.BodyResponse())


def immediate(status: int, details: str) -> pb.ProcessingResponse:
    body = error_body("invalid_request_error", f"processor says {status}")
    return pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=HttpStatus(code=status),
            headers=mutation({"content-type": "application/json"}),
            body=body,
            details=details,
        )
    )


def body_edit(path: str) -> pb.CommonResponse:
    if path.startswith("/route/"):
        return pb.CommonResponse(
            clear_route_cache=True,
            header_mutation=mutation(
                {
                    ":path": "/echo",
                    BACKEND_HEADER: path.removeprefix("/route/"),
                    "content-length": str(len(NEW_BODY)),
                    "authorization": "Bearer backend-key",
                },
                remove=("x-api-key",),
            ),
            body_mutation=pb.BodyMutation(body=NEW_BODY),
        )
    if path == "/forbidden":
        return pb.CommonResponse(header_mutation=mutation({"host": "elsewhere"}))
    return pb.CommonResponse()


class Backend(BaseHTTPRequestHandler):
    """Echoes what arrived; /slow outlives the route timeout; /reset hangs up."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/slow":
            time.sleep(3)  # Envoy gives up after 1 s; nobody is left to answer
        if self.path in ("/slow", "/reset"):
            self.close_connection = True
            return
        payload = orjson.dumps(
            {"path": self.path, "headers": dict(self.headers.items()), "body_len": len(body)}
        )
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class BackendServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a /slow handler may still sleep at teardown


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.processor = FakeProcessor()
        self.access_log = tmp / "access.log"
        ports = {name: free_port() for name in ("listen", "extproc", "admin", "dead")}
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        pb_grpc.add_ExternalProcessorServicer_to_server(self.processor, self.grpc)
        self.grpc.add_insecure_port(f"127.0.0.1:{ports['extproc']}")
        self.backends = [BackendServer(("127.0.0.1", 0), Backend) for _ in range(2)]
        self.backend_authorities = [f"127.0.0.1:{b.server_port}" for b in self.backends]
        config = Config.model_validate(
            {
                "listen": f"127.0.0.1:{ports['listen']}",
                "extproc_listen": f"127.0.0.1:{ports['extproc']}",
                "admin_listen": f"127.0.0.1:{ports['admin']}",
                "access_log": str(self.access_log),
                "backends": [
                    {
                        "name": "first",
                        "base_url": f"http://127.0.0.1:{self.backends[0].server_port}/v1",
                    },
                    # A DNS name: exercises the DnsCluster path too.
                    {
                        "name": "second",
                        "base_url": f"http://localhost:{self.backends[1].server_port}/v1",
                    },
                    {"name": "dead", "base_url": f"http://127.0.0.1:{ports['dead']}/v1"},
                ],
                "timeouts": {"request_s": 1, "extproc_message_s": 1, "connect_s": 1},
                "limits": {"max_request_bytes": MAX_BODY},
            }
        )
        self.config_path = tmp / "envoy.yaml"
        self.config_path.write_text(render_envoy_config(config))
        self.url = f"http://127.0.0.1:{ports['listen']}"
        self.admin = f"http://127.0.0.1:{ports['admin']}"
        self.envoy: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.grpc.start()
        for server in self.backends:
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        command = ["envoy", "-c", str(self.config_path), "--concurrency", "1", "-l", "error"]
        command += ["--disable-hot-restart", "--file-flush-interval-msec", "20"]
        self.envoy = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.envoy.poll() is None, "envoy exited at startup"
            try:
                if httpx.get(f"{self.admin}/ready", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("envoy did not become ready")

    def stop(self) -> None:
        self.processor.release.set()
        if self.envoy is not None:
            self.envoy.terminate()
            try:
                self.envoy.wait(5)
            except subprocess.TimeoutExpired:
                self.envoy.kill()
                self.envoy.wait()
        self.grpc.stop(0)
        for server in self.backends:
            server.shutdown()
            server.server_close()

    def log_line(self, request_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.access_log.exists():
                for line in self.access_log.read_text().splitlines():
                    entry: dict[str, Any] = json.loads(line)
                    if entry["request_id"] == request_id:
                        return entry
            time.sleep(0.02)
        raise AssertionError(f"no access log line for {request_id}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("envoy"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        yield http


def test_processor_routes_from_the_body_phase(stack: Stack, client: httpx.Client) -> None:
    """Default mutation rules allow :path, content-length, authorization, x-api-key removal."""
    response = client.post("/route/second", content=b'{"a":1}', headers={"x-api-key": "client"})
    assert response.status_code == 200
    echo = response.json()
    headers = {k.lower(): v for k, v in echo["headers"].items()}
    assert echo["path"] == "/echo"
    assert echo["body_len"] == len(NEW_BODY)
    assert headers["host"] == f"localhost:{stack.backends[1].server_port}"
    assert headers["authorization"] == "Bearer backend-key"
    assert "x-api-key" not in headers
    assert BACKEND_HEADER not in headers


def test_client_cannot_pick_the_backend(stack: Stack, client: httpx.Client) -> None:
    response = client.post("/untouched", content=b"{}", headers={BACKEND_HEADER: "second"})
    assert response.status_code == 200
    assert response.json()["path"] == "/untouched"
    headers = {k.lower(): v for k, v in response.json()["headers"].items()}
    assert headers["host"] == stack.backend_authorities[0]
    seen = [h for path, kind, h in stack.processor.seen if path == "/untouched"]
    assert BACKEND_HEADER not in seen[0]


def test_dynamic_metadata_lands_in_the_extproc_namespace(
    stack: Stack, client: httpx.Client
) -> None:
    request_id = "metadata-namespace-check"
    response = client.post("/route/first", content=b"{}", headers={"x-request-id": request_id})
    assert response.status_code == 200
    entry = stack.log_line(request_id)
    assert (entry["model"], entry["backend"], entry["input_tokens"]) == ("m-test", "b-test", 12)
    assert entry["path"] == "/echo"
    assert entry["upstream_cluster"] == "backend_first"


@pytest.mark.parametrize("status", [400, 404, 413, 429, 500, 503, 504])
@pytest.mark.parametrize("details", ["", "extproc_rejected"])
def test_processor_immediate_responses_pass_verbatim(
    client: httpx.Client, status: int, details: str
) -> None:
    """local_reply_config sees these too; no mapper may rewrite them."""
    path = f"/reply/{status}/{details}" if details else f"/reply/{status}"
    response = client.post(path, content=b"{}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.content == error_body("invalid_request_error", f"processor says {status}")


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type"),
    [
        ("/route/dead", b"{}", 502, "api_error"),  # UF
        ("/reset", b"{}", 502, "api_error"),  # UC
        ("/slow", b"{}", 504, "timeout_error"),  # UT
        ("/too-big", b"x" * (MAX_BODY + 1), 413, "request_too_large"),
        ("/crash", b"{}", 500, "api_error"),  # ext_proc_error_gRPC_error_13
        ("/hang", b"{}", 504, "timeout_error"),  # ext_proc_error_per-message_timeout_exceeded
        ("/forbidden", b"{}", 500, "api_error"),  # header_mutation_set_headers_failed
    ],
)
def test_envoy_local_replies_become_anthropic_errors(
    client: httpx.Client, path: str, body: bytes, status: int, error_type: str
) -> None:
    response = client.post(path, content=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == error_type
    assert error["error"]["message"]


def test_a_body_at_the_limit_is_buffered(client: httpx.Client) -> None:
    response = client.post("/at-limit", content=b"x" * MAX_BODY)
    assert response.status_code == 200
    assert response.json()["body_len"] == MAX_BODY


def test_processor_sees_envoy_local_replies_already_rewritten(
    stack: Stack, client: httpx.Client
) -> None:
    """Router local replies run through ext_proc's response phases after the rewrite."""
    assert client.post("/route/dead", content=b"{}").status_code == 502
    seen = {kind: h for path, kind, h in stack.processor.seen if path == "/route/dead"}
    assert seen["response_headers"][":status"] == "502"
    assert seen["response_headers"]["content-type"] == "application/json"
    assert json.loads(seen["response_body"]["body"])["error"]["type"] == "api_error"
