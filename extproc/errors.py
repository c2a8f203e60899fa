"""The error tree. Every error the gateway answers with is one of these, rendered in one place."""

from __future__ import annotations

import orjson

from extproc.mappings import ERROR_TYPE_TO_STATUS, error_type_for_status


class GatewayError(Exception):
    """An error the client should see as an Anthropic error object."""

    error_type = "api_error"

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None):
        super().__init__(message)
        self.message = message
        if error_type is not None:
            self.error_type = error_type
        self.status = status if status is not None else ERROR_TYPE_TO_STATUS.get(self.error_type, 500)

    def body(self) -> bytes:
        return error_body(self.error_type, self.message)


class InvalidRequest(GatewayError):
    error_type = "invalid_request_error"


class NotFound(GatewayError):
    error_type = "not_found_error"


class RequestTooLarge(GatewayError):
    error_type = "request_too_large"


class BackendError(GatewayError):
    """The backend answered with an error, or broke; `status` is what the client gets."""

    @classmethod
    def from_status(cls, status: int, message: str) -> BackendError:
        return cls(message, status=status, error_type=error_type_for_status(status))


def error_object(error_type: str, message: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def error_body(error_type: str, message: str) -> bytes:
    return orjson.dumps(error_object(error_type, message))
