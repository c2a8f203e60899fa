"""One table per concept. Reverse tables are derived, never retyped."""

from __future__ import annotations

from typing import Final

# OpenAI finish_reason -> Anthropic stop_reason. "stop" becomes "stop_sequence" when a
# requested stop sequence matched; that decision needs the request, so it lives in
# `stop_reason_for`, not here.
FINISH_TO_STOP_REASON: Final[dict[str, str]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
    "abort": "end_turn",
}

# HTTP status -> Anthropic error type (https://docs.anthropic.com/en/api/errors).
STATUS_TO_ERROR_TYPE: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# The status we answer with for an error type we raise ourselves (derived: first status wins).
ERROR_TYPE_TO_STATUS: Final[dict[str, int]] = {}
for _status, _type in STATUS_TO_ERROR_TYPE.items():
    ERROR_TYPE_TO_STATUS.setdefault(_type, _status)

# Anthropic tool_choice.type -> OpenAI tool_choice ("tool" is a named function, built apart).
TOOL_CHOICE: Final[dict[str, str]] = {
    "auto": "auto",
    "any": "required",
    "none": "none",
}


def error_type_for_status(status: int) -> str:
    """Anthropic error type for an HTTP status, falling back by status class."""
    known = STATUS_TO_ERROR_TYPE.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def stop_reason_for(
    finish_reason: str | None, matched_stop: object, requested_stops: list[str] | None
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI finish.

    vLLM puts the matched stop string in `choices[].stop_reason` (an int there means a stop
    token id, which is not a stop sequence the client asked for).
    """
    stopped = finish_reason == "stop" and isinstance(matched_stop, str)
    if stopped and requested_stops and matched_stop in requested_stops:
        return "stop_sequence", str(matched_stop)
    if finish_reason is None:
        return "end_turn", None
    return FINISH_TO_STOP_REASON.get(finish_reason, "end_turn"), None
