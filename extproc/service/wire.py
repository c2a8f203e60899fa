"""Protobuf wire encoding for the answers on the per-request path, from cached byte pieces.

Profiled under load, building each answer out of upb message objects (a constructor, an
arena and a copy per nested field, `Struct.update` in Python for the metadata) cost more
than translating a small request. An answer here is a join of pieces made once (header
options, removed names, metadata, mode overrides) around the body, which is copied once.
Field numbers come from the generated descriptors; tests parse every shape back with upb.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyMutation,
    CommonResponse,
    HeaderMutation,
    ProcessingResponse,
)
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct

_LENGTH_DELIMITED = 2
_VARINT = 0


def _number(message: type[Message], field: str) -> int:
    return int(message.DESCRIPTOR.fields_by_name[field].number)


def varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def prefix(number: int, size: int) -> bytes:
    """What precedes a length-delimited field of `size` bytes."""
    return _key(number, _LENGTH_DELIMITED) + varint(size)


def field(number: int, payload: bytes) -> bytes:
    return prefix(number, len(payload)) + payload


def flag(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + varint(value)


# ProcessingResponse: the phase answers by name, and what rides beside them.
PHASE = {
    name: _number(ProcessingResponse, name)
    for name in ("request_headers", "response_headers", "request_body", "response_body")
}
METADATA = _number(ProcessingResponse, "dynamic_metadata")
MODE_OVERRIDE = _number(ProcessingResponse, "mode_override")
RESPONSE = 1  # HeadersResponse.response and BodyResponse.response: the CommonResponse
# CommonResponse
STATUS = _number(CommonResponse, "status")
HEADER_MUTATION = _number(CommonResponse, "header_mutation")
BODY_MUTATION = _number(CommonResponse, "body_mutation")
CLEAR_ROUTE_CACHE = _number(CommonResponse, "clear_route_cache")
_SET_HEADER = _number(HeaderMutation, "set_headers")
_REMOVE_HEADER = _number(HeaderMutation, "remove_headers")
BODY = _number(BodyMutation, "body")
CLEAR_BODY = flag(_number(BodyMutation, "clear_body"), 1)

_OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

# Most headers we set repeat request after request (path, backend, content type); the
# caches are bounded because some values (lengths, an error's status) vary.
_CACHE_MAX = 1024
_set_pieces: dict[tuple[str, str], bytes] = {}
_remove_pieces: dict[str, bytes] = {}
_metadata_pieces: dict[object, bytes] = {}


def header_option(key: str, value: str) -> HeaderValueOption:
    """A header set (overwritten if present) by its raw bytes."""
    return HeaderValueOption(
        header=HeaderValue(key=key, raw_value=value.encode()), append_action=_OVERWRITE
    )


_HEADER = _number(HeaderValueOption, "header")
_APPEND_ACTION = flag(_number(HeaderValueOption, "append_action"), _OVERWRITE)
_HEADER_KEY = _number(HeaderValue, "key")
_RAW_VALUE = _number(HeaderValue, "raw_value")


def _set_piece(key: str, value: str) -> bytes:
    piece = _set_pieces.get((key, value))
    if piece is None:  # header_option(key, value), encoded by hand: lengths are never cached
        header = field(_HEADER_KEY, key.encode()) + field(_RAW_VALUE, value.encode())
        piece = field(_SET_HEADER, field(_HEADER, header) + _APPEND_ACTION)
        if key != "content-length" and len(_set_pieces) < _CACHE_MAX:
            _set_pieces[key, value] = piece
    return piece


def _remove_piece(name: str) -> bytes:
    piece = _remove_pieces.get(name)
    if piece is None:
        piece = field(_REMOVE_HEADER, name.encode())
        if len(_remove_pieces) < _CACHE_MAX:
            _remove_pieces[name] = piece
    return piece


def header_mutation(set_headers: Iterable[tuple[str, str]], remove: Iterable[str]) -> bytes:
    """An encoded HeaderMutation (the message's content, without its own field key)."""
    return b"".join(
        [*(_set_piece(key, value) for key, value in set_headers), *map(_remove_piece, remove)]
    )


def metadata(fields: Mapping[str, Mapping[str, object]]) -> bytes:
    """The `dynamic_metadata` field of a ProcessingResponse, as a Struct of namespaces."""
    try:
        key: object = tuple((ns, tuple(values.items())) for ns, values in fields.items())
        piece = _metadata_pieces.get(key)
    except TypeError:  # a list or dict value: not cacheable
        key, piece = None, None
    if piece is None:
        struct = Struct()
        struct.update({ns: dict(values) for ns, values in fields.items()})
        piece = field(METADATA, struct.SerializeToString())
        if key is not None:
            if len(_metadata_pieces) >= _CACHE_MAX:
                _metadata_pieces.clear()
            _metadata_pieces[key] = piece
    return piece
