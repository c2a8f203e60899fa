"""Path -> processor factory. The query string never takes part in matching."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from extproc.processors.base import Processor, RequestInfo

if TYPE_CHECKING:
    from extproc.gateway import Gateway

ProcessorFactory = Callable[[RequestInfo, "Gateway"], Processor]


class Registry:
    """Exact paths first, then path prefixes (for `/v1/models/{id}`), longest prefix wins."""

    def __init__(self) -> None:
        self._exact: dict[str, ProcessorFactory] = {}
        self._prefixes: list[tuple[str, ProcessorFactory]] = []

    def add(self, path: str, factory: ProcessorFactory) -> None:
        self._exact[path] = factory

    def add_prefix(self, prefix: str, factory: ProcessorFactory) -> None:
        self._prefixes.append((prefix, factory))
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)

    def lookup(self, path: str) -> ProcessorFactory | None:
        factory = self._exact.get(path)
        if factory is not None:
            return factory
        if len(path) > 1 and path.endswith("/"):
            factory = self._exact.get(path.rstrip("/"))
            if factory is not None:
                return factory
        for prefix, candidate in self._prefixes:
            if path.startswith(prefix):
                return candidate
        return None

    def paths(self) -> list[str]:
        return sorted(self._exact) + [p + "*" for p, _ in self._prefixes]


def split_path(raw: str) -> tuple[str, str]:
    path, _, query = raw.partition("?")
    return path, query
