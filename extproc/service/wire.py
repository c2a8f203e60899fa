"""Protobuf wire encoding for the answers on the per-request path, from cached byte pieces.

Profiled under load, building each answer out of upb message objects (a constructor, an
arena and a copy per nested field, `Struct.update` in Python for the metadata) cost more
than translating a small request. An answer here is a join of pieces made once (header
options, removed names, metadata, mode overrides) around the body, which is copied once.
Field numbers come from the generated descriptors; tests parse every shape back with upb.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import cast

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
# A metadata shape's encoding, and the filler that writes an answer's numbers into it.
Template = tuple[bytes, Callable[[list[float]], bytes]]
_metadata_templates: dict[object, Template] = {}


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

    The same names (a route's model and backend, the token counters) come back answer after
    answer; only the counts change. A number is always 8 bytes on the wire, so each shape of
    names is encoded once, with slots where its numbers go (~2 µs an answer; a upb Struct
    took 8.5). Anything else (lists, maps, switches) is encoded by hand each time."""
    shape = []
    numbers: list[float] = []
    for namespace, values in fields.items():
        entries = []
        for name, value in values.items():
            kind = type(value)
            if kind is str:
                entries.append((name, value))
            elif kind is int or kind is float:
                entries.append((name, _SLOT))
                numbers.append(cast(float, value))
            else:
                return field(METADATA, _struct(fields))
        shape.append((namespace, tuple(entries)))
    key = tuple(shape)
    template = _metadata_templates.get(key)
    if template is None:
        if len(_metadata_templates) >= _CACHE_MAX:
            _metadata_templates.clear()
        template = _metadata_templates[key] = _template(key)
    if not numbers:
        return template[0]
    return template[1](numbers)


def _template(shape: tuple[tuple[str, tuple[tuple[str, object], ...]], ...]) -> Template:
    """A metadata shape encoded once, and a filler that writes its numbers into their slots."""
    encoded = field(METADATA, _struct({namespace: dict(entries) for namespace, entries in shape}))
    offsets = []
    at = encoded.find(_SLOT_BYTES)
    while at >= 0:
        offsets.append(at + len(_NUMBER))
        at = encoded.find(_SLOT_BYTES, at + len(_SLOT_BYTES))

    def fill(numbers: list[float]) -> bytes:
        answer = bytearray(encoded)
        for offset, number in zip(offsets, numbers, strict=True):
            _DOUBLE.pack_into(answer, offset, number)
        return bytes(answer)

    return encoded, fill


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
_DOUBLE = struct.Struct("<d")
# Where a metadata template's numbers go: eight 0xFF bytes occur in no UTF-8 name and in no
# varint below 2**56, so each one found in an encoding is a slot.
_SLOT = object()
_SLOT_BYTES = _NUMBER + b"\xff" * 8


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
        return _NUMBER + _DOUBLE.pack(value)
    if value is None:
        return _NULL
    if value is _SLOT:
        return _SLOT_BYTES
    if isinstance(value, Mapping):
        return field(_NESTED_STRUCT, _struct(value))
    if isinstance(value, (list, tuple)):
        return field(_NESTED_LIST, b"".join([field(_LIST_ITEM, _value(item)) for item in value]))
    raise TypeError(f"no Struct value for {type(value).__name__}")
