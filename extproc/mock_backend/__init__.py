"""A MOCK of vLLM's OpenAI-compatible server: the test double for a GPU we do not have.

It answers `/v1/chat/completions` (JSON and SSE), `/v1/messages` (vLLM's Anthropic endpoint),
`/v1/models`, `/tokenize` and `/health` byte for byte in vLLM's shapes (see `dialects.py`), for
the model families people serve (see `families.py`), from a script queued by tests or from
simple default rules that can drive Claude Code (see `scenarios.py`).
"""

from extproc.mock_backend.dialects import DIALECTS
from extproc.mock_backend.families import FAMILIES
from extproc.mock_backend.runner import (
    MockServer,
    MockThread,
    main,
    run,
    running_mock,
    serve,
    start_in_thread,
)
from extproc.mock_backend.server import create_app
from extproc.mock_backend.state import MockConfig

__all__ = [
    "DIALECTS",
    "FAMILIES",
    "MockConfig",
    "MockServer",
    "MockThread",
    "create_app",
    "main",
    "run",
    "running_mock",
    "serve",
    "start_in_thread",
]
