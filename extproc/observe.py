"""Logging setup: structlog JSON lines on stderr, level configurable, no prompts or keys.

What a request logs is one summary line (`event: "request"`, see extproc/telemetry.py).
Prompts reach the log only with `log_prompts: true` / `--log-prompts` (the processor then
logs a `prompt` line); credentials never do: `redact` blanks them, and prompt-carrying
fields, in every line whatever code wrote it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import orjson
import structlog

REDACTED: Final = "[redacted]"
# Fields that may hold a credential: always blanked.
SECRET_FIELDS: Final = frozenset(
    {"authorization", "x-api-key", "api_key", "api-key", "proxy-authorization", "cookie"}
)
# Fields that may hold conversation content: blanked unless prompts may be logged.
PROMPT_FIELDS: Final = frozenset(
    {"prompt", "messages", "system", "body", "request_body", "response_body", "content"}
)


class Redactor:
    """structlog processor: blank credentials always, prompts unless allowed."""

    def __init__(self, *, log_prompts: bool = False) -> None:
        self.log_prompts = log_prompts

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            name = key.lower()
            if name in SECRET_FIELDS or (name in PROMPT_FIELDS and not self.log_prompts):
                event[key] = REDACTED
            elif name == "headers" and isinstance(value, dict):
                event[key] = {
                    k: REDACTED if k.lower() in SECRET_FIELDS else v for k, v in value.items()
                }
        return event


def configure_logging(level: str = "info", *, json: bool = True, log_prompts: bool = False) -> None:
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        Redactor(log_prompts=log_prompts),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.typing.Processor = (
        # orjson renders the per-request summary line ~3x faster than the stdlib encoder.
        structlog.processors.JSONRenderer(serializer=orjson.dumps)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=(
            structlog.BytesLoggerFactory(file=sys.stderr.buffer)
            if json
            else structlog.PrintLoggerFactory(file=sys.stderr)
        ),
        cache_logger_on_first_use=True,
    )
