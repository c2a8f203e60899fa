"""Processors: one object per HTTP request, chosen by path from the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from extproc.service.registry import Registry

MESSAGES_PATHS = ("/v1/messages", "/anthropic/v1/messages")


def default_registry() -> Registry:
    from extproc.processors.count_tokens import COUNT_TOKENS_PATHS, CountTokensProcessor
    from extproc.processors.messages import MessagesProcessor
    from extproc.processors.models import MODELS_PATHS, ModelsProcessor
    from extproc.processors.passthrough import ChatCompletionsProcessor
    from extproc.service.registry import Registry

    registry = Registry()
    for path in MESSAGES_PATHS:
        registry.add(path, MessagesProcessor)
    registry.add("/v1/chat/completions", ChatCompletionsProcessor)
    for path in COUNT_TOKENS_PATHS:
        registry.add(path, CountTokensProcessor)
    for path in MODELS_PATHS:
        registry.add(path, ModelsProcessor)
        registry.add_prefix(path + "/", ModelsProcessor)  # /v1/models/{id}
    return registry
