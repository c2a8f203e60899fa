"""A small keep-alive HTTP/1.1 load client on asyncio streams (uvloop when available).

It measures what wrk cannot: time to the first response byte and to the first token (the first
bytes of the answer's text, found by a marker), and it can keep each body for checking. It is
also the fallback load generator when wrk is missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Sample:
    status: int
    total_s: float
    ttfb_s: float
    ttft_s: float | None
    chunks: int  # HTTP chunks (SSE writes as the client saw them)
    body: bytes = b""


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    verified: int = 0  # 2xx answers that passed `check`

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if 200 <= s.status < 300]


class ResponseError(Exception):
    pass


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=1 << 22
            )
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes, marker: bytes | None, keep_body: bool) -> Sample:
        reader, writer = await self._open()
        start = time.perf_counter()
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        ttfb = time.perf_counter() - start
        status = int(head[9:12])
        lower = head.lower()
        body = bytearray()
        ttft: float | None = None
        chunks = 0

        def seen(data: bytes) -> None:
            nonlocal ttft
            if marker is not None and ttft is None:
                tail_from = max(0, len(body) - len(marker))
                body.extend(data)
                if body.find(marker, tail_from) >= 0:
                    ttft = time.perf_counter() - start
            elif keep_body:
                body.extend(data)

        if b"transfer-encoding: chunked" in lower:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                data = await reader.readexactly(size + 2)
                chunks += 1
                seen(data[:-2])
        else:
            at = lower.find(b"content-length:")
            if at < 0:
                raise ResponseError("response has neither content-length nor chunked encoding")
            length = int(lower[at + 15 : lower.find(b"\r\n", at)])
            data = await reader.readexactly(length)
            chunks = 1
            seen(data)
        total = time.perf_counter() - start
        if b"connection: close" in lower:
            self.close()
        return Sample(status, total, ttfb, ttft, chunks, bytes(body) if keep_body else b"")


async def run_load(
    host: str,
    port: int,
    requests: Callable[[int], bytes],
    concurrency: int,
    duration_s: float | None = None,
    total: int | None = None,
    marker: bytes | None = None,
    keep_body: bool = False,
    timeout_s: float = 60.0,
    check: Callable[[int, Sample], str | None] | None = None,
    spread_s: float = 0.0,
) -> LoadResult:
    """`concurrency` connections send `requests(i)` back to back, for `duration_s` or until
    `total` requests were sent. `check(i, sample)` returns an error kind or None.

    `spread_s` > 0 starts connection k of n after k/n of `spread_s`, and measures from
    `spread_s` on (requests begun earlier are warm-up, only their errors count). Requests that
    all take the same time (the bench's paced streams) would otherwise keep every connection
    in step for the whole run: bursts of n arrivals at once instead of n concurrent streams."""
    result = LoadResult()
    counter = iter(range(total if total is not None else 1 << 62))
    start = time.perf_counter()
    window = start + spread_s
    deadline = None if duration_s is None else window + duration_s

    async def worker(number: int) -> None:
        await asyncio.sleep(number * spread_s / concurrency)
        conn = Connection(host, port)
        try:
            for index in counter:
                begun = time.perf_counter()
                if deadline is not None and begun >= deadline:
                    return
                try:
                    sample = await asyncio.wait_for(
                        conn.request(requests(index), marker, keep_body or check is not None),
                        timeout_s,
                    )
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ValueError, ResponseError) as exc:
                    result.error(type(exc).__name__)
                    conn.close()
                    continue
                except TimeoutError:
                    result.error("timeout")
                    conn.close()
                    continue
                if begun >= window:
                    result.samples.append(sample)
                if not 200 <= sample.status < 300:
                    result.error(f"http_{sample.status}")
                elif check is not None:
                    problem = check(index, sample)
                    if problem is None:
                        result.verified += 1
                    else:
                        result.error(problem)
                if not keep_body:
                    sample.body = b""
        finally:
            conn.close()

    await asyncio.gather(*(worker(number) for number in range(concurrency)))
    result.elapsed_s = time.perf_counter() - window
    return result


async def one_request(host: str, port: int, raw: bytes, timeout_s: float = 5.0) -> Sample:
    conn = Connection(host, port)
    try:
        return await asyncio.wait_for(conn.request(raw, None, True), timeout_s)
    finally:
        conn.close()
