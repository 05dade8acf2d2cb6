"""protobuf's wire format (no I/O): a message's fields as they arrive, typed accessors with
proto3's rules, and the few encoders the requests need.

Decoding follows what protobuf's own parsers do: a scalar field seen twice takes the last value,
an embedded message seen twice is the merge of both (parsing their concatenation), a ``oneof``
takes the member seen last, fields of unknown numbers or of an unexpected wire type are skipped,
``uint32`` values are truncated to 32 bits and strings must be UTF-8. Groups (wire types 3 and
4, absent from proto3) are skipped like any unknown field. Unlike protobuf's parsers, embedded
messages the proxy does not read are not parsed, so damage inside them goes unnoticed.
"""

from __future__ import annotations

import struct

VARINT = 0
FIXED64 = 1
LEN = 2
START_GROUP = 3
END_GROUP = 4
FIXED32 = 5

Value = int | bytes
Occurrence = tuple[int, Value]  # (wire type, value)

MAX_DEPTH = 100  # nesting protobuf's parsers allow (groups here; matches in destination)
_FLOAT = struct.Struct("<f")
_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """Bytes that are not a protobuf message of the expected shape."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = min(len(data), pos + _MAX_VARINT_BYTES)
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7
    raise WireError("truncated or over-long varint")


def scan(data: bytes) -> list[tuple[int, int, Value]]:
    """Every field of a message, in wire order: (number, wire type, value); values of
    length-delimited fields are bytes, the others ints (groups are left out)."""
    found: list[tuple[int, int, Value]] = []
    _scan(data, 0, found, 0, 0)
    return found


def _scan(
    data: bytes, pos: int, found: list[tuple[int, int, Value]], group: int, depth: int
) -> int:
    """Fields from ``pos`` to the end, or (inside group ``group``) to its END_GROUP; returns
    the position after what was read."""
    n = len(data)
    while pos < n:
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: Value
        if wire_type == START_GROUP:
            if depth >= MAX_DEPTH:
                raise WireError(f"groups nested deeper than {MAX_DEPTH}")
            pos = _scan(data, pos, [], number, depth + 1)
            continue
        if wire_type == END_GROUP:
            if number != group:
                raise WireError(f"END_GROUP {number} without its START_GROUP")
            return pos
        if wire_type == VARINT:
            value, pos = _varint(data, pos)
        elif wire_type == LEN:
            size, pos = _varint(data, pos)
            if pos + size > n:
                raise WireError(f"field {number} runs past the end of the message")
            value = data[pos : pos + size]
            pos += size
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if pos + size > n:
                raise WireError(f"field {number} runs past the end of the message")
            value = int.from_bytes(data[pos : pos + size], "little")
            pos += size
        else:
            raise WireError(f"field {number} has wire type {wire_type}, which does not exist")
        found.append((number, wire_type, value))
    if group:
        raise WireError(f"group {group} has no END_GROUP")
    return pos


class Fields:
    """One message's fields, for the accessors below."""

    __slots__ = ("_all",)

    def __init__(self, data: bytes) -> None:
        self._all = scan(data)

    def get(self, number: int) -> list[Occurrence]:
        """Every occurrence of field ``number``, in wire order."""
        return [(wire_type, value) for n, wire_type, value in self._all if n == number]

    def oneof(self, members: dict[int, int]) -> tuple[int, list[Occurrence]] | None:
        """The ``oneof`` member that is set (the last one seen, of those ``members`` maps to
        the wire type they are sent with) and its occurrences since another member was last
        seen; None when none is."""
        chosen = 0
        found: list[Occurrence] = []
        for number, wire_type, value in self._all:
            if members.get(number) == wire_type:
                if number != chosen:
                    chosen, found = number, []
                found.append((wire_type, value))
        return (chosen, found) if chosen else None


def _last(found: list[Occurrence], wire_type: int) -> Value | None:
    for kind, value in reversed(found):
        if kind == wire_type:
            return value
    return None


def varint(found: list[Occurrence]) -> int:
    """A varint field (``uint64``, ``bool``, enums); 0 when absent."""
    value = _last(found, VARINT)
    return value if isinstance(value, int) else 0


def uint32(found: list[Occurrence]) -> int:
    """A ``uint32`` field."""
    return varint(found) & 0xFFFF_FFFF


def int64(found: list[Occurrence]) -> int:
    """An ``int64`` field (two's complement)."""
    value = varint(found)
    return value - (1 << 64) if value >> 63 else value


def int32(found: list[Occurrence]) -> int:
    """An ``int32`` field (two's complement, truncated to 32 bits)."""
    value = varint(found) & 0xFFFF_FFFF
    return value - (1 << 32) if value >> 31 else value


def boolean(found: list[Occurrence]) -> bool:
    """A ``bool`` field."""
    return varint(found) != 0


def fixed32(found: list[Occurrence]) -> int:
    """A ``fixed32`` field."""
    value = _last(found, FIXED32)
    return value if isinstance(value, int) else 0


def fixed64(found: list[Occurrence]) -> int:
    """A ``fixed64`` field."""
    value = _last(found, FIXED64)
    return value if isinstance(value, int) else 0


def float32(found: list[Occurrence]) -> float:
    """A ``float`` field."""
    return float(_FLOAT.unpack(fixed32(found).to_bytes(4, "little"))[0])


def raw(found: list[Occurrence]) -> bytes:
    """A ``bytes`` field."""
    value = _last(found, LEN)
    return value if isinstance(value, bytes) else b""


def string(found: list[Occurrence]) -> str:
    """A ``string`` field; :class:`WireError` when it is not UTF-8."""
    return _text(raw(found))


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"a string field is not UTF-8: {exc.reason}") from None


def repeated(found: list[Occurrence]) -> list[bytes]:
    """A repeated ``bytes``, ``string`` or message field: each element's bytes."""
    return [value for kind, value in found if kind == LEN and isinstance(value, bytes)]


def strings(found: list[Occurrence]) -> list[str]:
    """A repeated ``string`` field."""
    return [_text(value) for value in repeated(found)]


def message(found: list[Occurrence]) -> Fields | None:
    """An embedded message field (every occurrence merged); None when absent."""
    parts = repeated(found)
    return Fields(b"".join(parts)) if parts else None


def string_map(found: list[Occurrence]) -> dict[str, str]:
    """A ``map<string, string>`` field (a later entry for a key wins)."""
    entries = {}
    for entry in repeated(found):
        fields = Fields(entry)
        entries[string(fields.get(1))] = string(fields.get(2))
    return entries


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field; nothing for empty ``data`` (proto3 leaves defaults out)."""
    if not data:
        return b""
    return _encode_varint(number << 3 | LEN) + _encode_varint(len(data)) + data


def encode_string(number: int, text: str) -> bytes:
    """A ``string`` field; nothing for an empty one."""
    return encode_bytes(number, text.encode())
