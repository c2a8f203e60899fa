"""Envoy's own local replies as Anthropic JSON errors (`local_reply_config` mappers).

Measured with Envoy 1.40 (pinned by tests/test_envoy_config.py):
- `local_reply_config` applies to every local reply, including the processor's own
  `immediate_response` (a mapper on status 400 rewrote our Anthropic error body). Those
  replies carry no response flag and the `details` the processor set (empty by default).
  So no mapper matches on status alone: each one also needs an Envoy-only signal, a
  response flag or response code details that Envoy itself sets.
- Envoy's details: upstream failures `upstream_reset_before_response_started{...}` (UF,
  UC), `no_healthy_upstream` (UH), `response_timeout` (UT); body over the buffer limit
  `request_payload_too_large` (413, no flag); processor failures
  `ext_proc_error_gRPC_error_<code>{...}` (500), `ext_proc_error_per-message_timeout_exceeded`
  (504) and `header_mutation_set_headers_failed` (500, a mutation the rules refuse); none
  of these has a flag, and the processor is not asked about them.
- Router local replies (UF, UH, UC, UT, 413) then run through the ext_proc filter's
  response phases: the processor sees the rewritten status with this Anthropic JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy_data_plane.envoy.config.accesslog import v3 as accesslog
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.extensions.access_loggers.filters.cel import v3 as cel
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.google.protobuf import Any as AnyProto
from envoy_data_plane.google.protobuf import Struct

from extproc.config import Config
from extproc.errors import error_body, error_object
from extproc.mappings import STATUS_TO_ERROR_TYPE, error_type_for_status
from extproc.processors.base import EMPTY_BODY

# Processor replies keep their body: they have empty details (the default) or details the
# processor chose, starting with this prefix. Envoy never sets either.
PROCESSOR_DETAILS_PREFIX = "extproc"
# Our own direct_response (no backend configured) is already Anthropic JSON.
_ENVOY_ORIGIN = (
    "response.code_details != '' && response.code_details != 'direct_response'"
    f" && !response.code_details.startsWith('{PROCESSOR_DETAILS_PREFIX}')"
)
_PROCESSOR_FAILED = (
    "(response.code_details.startsWith('ext_proc_error')"
    " || response.code_details.startsWith('header_mutation'))"
)
# Statuses outside STATUS_TO_ERROR_TYPE, to ask `error_type_for_status` for a class default.
_UNLISTED_4XX, _UNLISTED_5XX = 499, 599


@dataclass(frozen=True)
class Reply:
    """One mapper: which local replies (flags OR a CEL condition), and what the client sees."""

    status: int
    message: str
    flags: tuple[str, ...] = ()
    when: str | None = None
    keep_status: bool = False  # fallbacks keep whatever status Envoy chose

    @property
    def error_type(self) -> str:
        return error_type_for_status(self.status)


def empty_body_error() -> str:
    """A `POST /v1/messages` without a body, which no processor saw (metadata routing)."""
    return error_body("invalid_request_error", EMPTY_BODY).decode()


def no_backend_body() -> str:
    return error_body("not_found_error", "No backend is configured for this gateway.").decode()


def replies(config: Config) -> list[Reply]:
    """Every rewrite, most specific first (Envoy applies the first mapper that matches)."""
    limit = config.limits.max_request_bytes
    specific = [
        Reply(504, f"The backend did not answer within {config.timeouts.request_s:g} s.", ("UT",)),
        Reply(503, "Too many concurrent requests to the backend.", ("UO",)),
        Reply(502, "The backend is unreachable: %LOCAL_REPLY_BODY%", ("UF", "URX", "UH", "DF")),
        Reply(502, "The backend failed before answering: %LOCAL_REPLY_BODY%", ("UC", "UR", "UPE")),
        Reply(404, "No route for this request.", ("NR",)),
        Reply(
            413,
            f"Request body exceeds the gateway limit of {limit} bytes.",
            when="response.code_details == 'request_payload_too_large'",
        ),
        Reply(
            502,
            f"The backend response exceeds the gateway buffer limit of {limit} bytes.",
            when="response.code_details == 'response_payload_too_large'",
        ),
        Reply(
            504,
            "The gateway's request processor did not answer within "
            f"{config.timeouts.extproc_message_s:g} s.",
            when=f"response.code == 504 && {_PROCESSOR_FAILED}",
        ),
        Reply(500, "The gateway's request processor failed.", when=_PROCESSOR_FAILED),
    ]
    # Anything else Envoy answers by itself keeps its status and gets the table's type.
    fallback = "Gateway error: %RESPONSE_CODE_DETAILS%"
    by_status = [
        Reply(
            status, fallback, when=f"{_ENVOY_ORIGIN} && response.code == {status}", keep_status=True
        )
        for status in sorted(STATUS_TO_ERROR_TYPE)
    ]
    by_class = [
        Reply(
            _UNLISTED_5XX,
            fallback,
            when=f"{_ENVOY_ORIGIN} && response.code >= 500",
            keep_status=True,
        ),
        Reply(
            _UNLISTED_4XX,
            fallback,
            when=f"{_ENVOY_ORIGIN} && response.code >= 400",
            keep_status=True,
        ),
    ]
    return specific + by_status + by_class


def _filter(reply: Reply) -> accesslog.AccessLogFilter:
    if reply.flags:
        return accesslog.AccessLogFilter(
            response_flag_filter=accesslog.ResponseFlagFilter(flags=list(reply.flags))
        )
    assert reply.when is not None
    return accesslog.AccessLogFilter(
        extension_filter=accesslog.ExtensionFilter(
            name="envoy.access_loggers.extension_filters.cel",
            typed_config=AnyProto.pack(cel.ExpressionFilter(expression=reply.when)),
        )
    )


def _mapper(reply: Reply) -> hcm.ResponseMapper:
    body = core.SubstitutionFormatString(
        json_format=Struct.from_dict(error_object(reply.error_type, reply.message)),
        content_type="application/json",
    )
    mapper = hcm.ResponseMapper(filter=_filter(reply), body_format_override=body)
    if not reply.keep_status:
        mapper.status_code = reply.status
    return mapper


def local_reply_config(config: Config) -> hcm.LocalReplyConfig:
    # No top-level body_format: it would apply to every local reply, processor replies too.
    return hcm.LocalReplyConfig(mappers=[_mapper(reply) for reply in replies(config)])
