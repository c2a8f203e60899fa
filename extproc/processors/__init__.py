"""Processors: one object per HTTP request, chosen by path from the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extproc.service.registry import Registry

MESSAGES_PATHS = ("/v1/messages", "/anthropic/v1/messages")


def default_registry() -> Registry:
    from extproc.processors.messages import MessagesProcessor
    from extproc.processors.passthrough import ChatCompletionsProcessor
    from extproc.service.registry import Registry

    registry = Registry()
    for path in MESSAGES_PATHS:
        registry.add(path, MessagesProcessor)
    registry.add("/v1/chat/completions", ChatCompletionsProcessor)
    return registry
