"""Requests parsed from the bytes gRPC received, so that a message that is not valid protobuf, or
has a string that is not UTF-8, or an id beyond its limit, gets its own INVALID_ARGUMENT answer
instead of ending the call (a deserializer's exception would be UNKNOWN and end a stream).
"""
from __future__ import annotations

from google.protobuf import empty_pb2, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from tsva.common.limits import MAX_ID_BYTES
from tsva.server.errors import InvalidRequest

_ID_FIELDS = ("tile_id", "slide_id")
_LENGTH_DELIMITED = 2


class RequestError(InvalidRequest):
    """A request that cannot be used as a whole; carries what could be recovered of its ids."""

    def __init__(self, message: str, tile_id: str = "", slide_id: str = ""):
        super().__init__(message)
        self.tile_id, self.slide_id = tile_id, slide_id


def cut_id(value: str, limit: int = MAX_ID_BYTES) -> str:
    """`value` cut to at most `limit` UTF-8 bytes (on a character boundary)."""
    encoded = value.encode("utf-8", errors="replace")
    if len(encoded) <= limit:
        return value
    return encoded[:limit].decode("utf-8", errors="ignore")


def parse(raw: bytes, message_type: type[Message]) -> Message:
    """`raw` as a `message_type`, its ids within MAX_ID_BYTES; RequestError otherwise."""
    try:
        request = message_type.FromString(raw)
    except DecodeError:
        ids = _recover_ids(raw, message_type.DESCRIPTOR)
        raise RequestError(_what_is_broken(raw, message_type.DESCRIPTOR), **ids) from None
    for name in _ID_FIELDS:
        value = getattr(request, name, None)
        if value is not None and len(value.encode("utf-8")) > MAX_ID_BYTES:
            # Echoed in full in a stream's error reply (the client matches replies by tile_id);
            # error messages quote them cut short (errors.quote_id).
            ids = {key: getattr(request, key) for key in _ID_FIELDS if hasattr(request, key)}
            raise RequestError(f"{name}: {len(value.encode('utf-8'))} bytes, the limit is {MAX_ID_BYTES}",
                               **ids)
    return request


def _top_level_fields(raw: bytes):
    """(field number, wire type, data) of `raw`'s top-level fields, read as unknown fields of an
    empty message (so no field is interpreted); empty when even the wire format is corrupt."""
    holder = empty_pb2.Empty()
    try:
        holder.ParseFromString(raw)
    except DecodeError:
        return []
    return [(f.field_number, f.wire_type, f.data) for f in UnknownFieldSet(holder)]


def _recover_ids(raw: bytes, descriptor) -> dict[str, str]:
    ids = {}
    for number, wire_type, data in _top_level_fields(raw):
        field = descriptor.fields_by_number.get(number)
        if field is not None and field.name in _ID_FIELDS and wire_type == _LENGTH_DELIMITED:
            ids[field.name] = cut_id(data.decode("utf-8", errors="replace"))
    return ids


def _what_is_broken(raw: bytes, descriptor, path: str = "") -> str:
    """The message naming the first field that does not parse, or the request as a whole."""
    fields = _top_level_fields(raw)
    if not fields and raw:
        return f"{path or 'request'}: not a valid {descriptor.full_name} message (corrupt protobuf wire format)"
    for number, wire_type, data in fields:
        field = descriptor.fields_by_number.get(number)
        if field is None or wire_type != _LENGTH_DELIMITED:
            continue
        name = f"{path}.{field.name}" if path else field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return f"{name}: not valid UTF-8"
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            try:
                message_factory.GetMessageClass(field.message_type).FromString(data)
            except DecodeError:
                return _what_is_broken(data, field.message_type, name)
    return f"{path or 'request'}: not a valid {descriptor.full_name} message"
