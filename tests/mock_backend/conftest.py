from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from extproc.mock_backend import MockServer, running_mock


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with running_mock() as server:
        yield server


@pytest.fixture
async def http(mock: MockServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mock.url, timeout=10) as client:
        yield client
