"""Protobuf wire encoding for the answers on the per-request path, from cached byte pieces.

Profiled under load, building each answer out of upb message objects (a constructor, an
arena and a copy per nested field, `Struct.update` in Python for the metadata) cost more
than translating a small request. An answer here is a join of pieces made once (header
options, removed names, metadata, mode overrides) around the body, which is copied once.
Field numbers come from the generated descriptors; tests parse every shape back with upb.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyMutation,
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    ProcessingResponse,
)
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import ListValue, Struct, Value

_LENGTH_DELIMITED = 2
_VARINT = 0
_FIXED64 = 1
_DELIMITED_TYPES = frozenset(
    {FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES}
)


def varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:  # most lengths on the per-request path
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def key_of(message: type[Message], name: str) -> bytes:
    """The bytes that start field `name` of `message` on the wire (number and wire type)."""
    descriptor = message.DESCRIPTOR.fields_by_name[name]
    wire_type = (_LENGTH_DELIMITED if descriptor.type in _DELIMITED_TYPES
                 else _FIXED64 if descriptor.type == FieldDescriptor.TYPE_DOUBLE else _VARINT)
    return varint(descriptor.number << 3 | wire_type)


def prefix(field_key: bytes, size: int) -> bytes:
    """What precedes a length-delimited field of `size` bytes."""
    return field_key + varint(size)


def field(field_key: bytes, payload: bytes) -> bytes:
    return field_key + varint(len(payload)) + payload


def flag(field_key: bytes, value: int) -> bytes:
    return field_key + varint(value)


# ProcessingResponse: the phase answers by name, and what rides beside them.
PHASE = {
    name: key_of(ProcessingResponse, name)
    for name in ("request_headers", "response_headers", "request_body", "response_body")
}
METADATA = key_of(ProcessingResponse, "dynamic_metadata")
MODE_OVERRIDE = key_of(ProcessingResponse, "mode_override")
RESPONSE = key_of(HeadersResponse, "response")  # the CommonResponse
assert key_of(BodyResponse, "response") == RESPONSE
# CommonResponse
STATUS = key_of(CommonResponse, "status")
HEADER_MUTATION = key_of(CommonResponse, "header_mutation")
BODY_MUTATION = key_of(CommonResponse, "body_mutation")
CLEAR_ROUTE_CACHE = key_of(CommonResponse, "clear_route_cache")
_SET_HEADER = key_of(HeaderMutation, "set_headers")
_REMOVE_HEADER = key_of(HeaderMutation, "remove_headers")
BODY = key_of(BodyMutation, "body")
CLEAR_BODY = flag(key_of(BodyMutation, "clear_body"), 1)

_OVERWRITE = HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

# Caches of encoded pieces, bounded because some values (an error's status, token counts) vary.
_CACHE_MAX = 1024
_mutations: dict[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], bytes] = {}
_metadata_pieces: dict[object, bytes] = {}


_HEADER = key_of(HeaderValueOption, "header")
_APPEND_ACTION = flag(key_of(HeaderValueOption, "append_action"), _OVERWRITE)
_HEADER_KEY = key_of(HeaderValue, "key")
_RAW_VALUE = key_of(HeaderValue, "raw_value")


def _set_piece(key: str, value: str) -> bytes:
    """A header set (overwritten if present) by its raw bytes."""
    header = field(_HEADER_KEY, key.encode()) + field(_RAW_VALUE, value.encode())
    return field(_SET_HEADER, field(_HEADER, header) + _APPEND_ACTION)


def header_mutation(set_headers: tuple[tuple[str, str], ...], remove: tuple[str, ...]) -> bytes:
    """An encoded HeaderMutation (the message's content, without its own field key).

    The same edits repeat request after request (a route's path, backend and credentials;
    the content type of an answer): each combination is encoded once."""
    key = (set_headers, remove)
    piece = _mutations.get(key)
    if piece is None:
        piece = b"".join([
            *(_set_piece(name, value) for name, value in set_headers),
            *(field(_REMOVE_HEADER, name.encode()) for name in remove),
        ])
        if len(_mutations) >= _CACHE_MAX:
            _mutations.clear()
        _mutations[key] = piece
    return piece


def content_length(length: int) -> bytes:
    """The header-mutation entry that sets content-length (never cached: it varies)."""
    return _set_piece("content-length", str(length))


def varying_sets(set_headers: tuple[tuple[str, str], ...]) -> bytes:
    """An encoded HeaderMutation of headers set per answer (a request id): never cached."""
    return b"".join(_set_piece(name, value) for name, value in set_headers)


def metadata(fields: Mapping[str, Mapping[str, object]]) -> bytes:
    """The `dynamic_metadata` field of a ProcessingResponse, as a Struct of namespaces.

    Names (a route's model and backend) repeat request after request: encoded once. Counts
    (an answer's tokens) vary: encoded each time, by hand (~5 µs; a upb Struct took 8.5)."""
    if all(type(value) is str for values in fields.values() for value in values.values()):
        key = tuple((ns, tuple(values.items())) for ns, values in fields.items())
        piece = _metadata_pieces.get(key)
        if piece is None:
            if len(_metadata_pieces) >= _CACHE_MAX:
                _metadata_pieces.clear()
            piece = _metadata_pieces[key] = field(METADATA, _struct(fields))
        return piece
    return field(METADATA, _struct(fields))


# google.protobuf.Struct: a map of names to Values, each a null, number (a double), string,
# bool, Struct or ListValue.
_ENTRY = key_of(Struct, "fields")
_ENTRY_KEY = key_of(Struct.FieldsEntry, "key")
_ENTRY_VALUE = key_of(Struct.FieldsEntry, "value")
_NULL = flag(key_of(Value, "null_value"), 0)
_NUMBER = key_of(Value, "number_value")
_STRING = key_of(Value, "string_value")
_TRUE, _FALSE = (flag(key_of(Value, "bool_value"), value) for value in (1, 0))
_NESTED_STRUCT = key_of(Value, "struct_value")
_NESTED_LIST = key_of(Value, "list_value")
_LIST_ITEM = key_of(ListValue, "values")
_double = struct.Struct("<d").pack


def _struct(fields: Mapping[str, object]) -> bytes:
    entries = []
    for name, value in fields.items():
        entry = field(_ENTRY_KEY, name.encode()) + field(_ENTRY_VALUE, _value(value))
        entries.append(field(_ENTRY, entry))
    return b"".join(entries)


def _value(value: object) -> bytes:
    """A Struct Value, converted as `Struct.update` converts Python values."""
    if isinstance(value, str):
        return field(_STRING, value.encode())
    if value is True or value is False:
        return _TRUE if value else _FALSE
    if isinstance(value, (int, float)):
        return _NUMBER + _double(value)
    if value is None:
        return _NULL
    if isinstance(value, Mapping):
        return field(_NESTED_STRUCT, _struct(value))
    if isinstance(value, (list, tuple)):
        return field(_NESTED_LIST, b"".join([field(_LIST_ITEM, _value(item)) for item in value]))
    raise TypeError(f"no Struct value for {type(value).__name__}")
