"""HPACK (RFC 7541): a decoder with the dynamic table, and a stateless encoder for forwarding.

The encoder never adds to the peer's dynamic table: a field is a static-table index, or a literal
without indexing (never-indexed for credentials), with raw (non-Huffman) strings. The output for
a (name, value) pair therefore never changes, and is cached.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack.huffman_table import decode_huffman

Field = tuple[bytes, bytes]

STATIC_TABLE: tuple[Field, ...] = (
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
)
_STATIC_LEN = len(STATIC_TABLE)
_ENTRY_OVERHEAD = 32  # RFC 7541 §4.1
_MAX_INT_SHIFT = 28  # integers beyond 2**35 are nonsense in a header block


class HpackError(ValueError):
    """A header block that cannot be decoded (a COMPRESSION_ERROR)."""


class HpackDecoder:
    """Decodes header blocks of one connection, keeping its dynamic table.

    ``generation`` changes whenever the table does, so a caller may cache the result of a block
    that left it unchanged: the same bytes decode the same way until the generation moves.
    """

    def __init__(self, max_table_size: int = 4096, max_list_size: int = 65536) -> None:
        self.allowed_size = max_table_size  # SETTINGS_HEADER_TABLE_SIZE we advertised
        self.max_size = max_table_size  # the encoder's current choice (size updates)
        self.max_list_size = max_list_size
        self.table: list[Field] = []  # newest first
        self.size = 0
        self.generation = 0

    def decode(self, block: bytes) -> list[Field]:
        """The header fields of ``block``, in order; raises :class:`HpackError`."""
        fields: list[Field] = []
        n = len(block)
        pos = 0
        total = 0
        while pos < n:
            byte = block[pos]
            if byte & 0x80:  # indexed field
                index = byte & 0x7F
                pos += 1
                if index == 0x7F:
                    index, pos = _integer(block, pos, index)
                field = self._entry(index)
            elif byte & 0x40:  # literal with incremental indexing
                field, pos = self._literal(block, pos, 0x3F)
                self._add(field)
            elif byte & 0x20:  # dynamic table size update
                if fields:
                    raise HpackError("table size update after a header field")
                size = byte & 0x1F
                pos += 1
                if size == 0x1F:
                    size, pos = _integer(block, pos, size)
                if size > self.allowed_size:
                    raise HpackError(f"table size {size} above the {self.allowed_size} allowed")
                self.max_size = size
                self._evict()
                self.generation += 1
                continue
            else:  # literal without indexing (0000) or never indexed (0001)
                field, pos = self._literal(block, pos, 0x0F)
            total += len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
            if total > self.max_list_size:
                raise HpackError("header list too large")
            fields.append(field)
        return fields

    def _entry(self, index: int) -> Field:
        if 0 < index <= _STATIC_LEN:
            return STATIC_TABLE[index - 1]
        dynamic = index - _STATIC_LEN - 1
        if 0 <= dynamic < len(self.table):
            return self.table[dynamic]
        raise HpackError(f"header index {index} out of range")

    def _literal(self, block: bytes, pos: int, mask: int) -> tuple[Field, int]:
        index = block[pos] & mask
        pos += 1
        if index == mask:
            index, pos = _integer(block, pos, index)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = _string(block, pos)
        value, pos = _string(block, pos)
        return (name, value), pos

    def _add(self, field: Field) -> None:
        self.generation += 1
        size = len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
        if size > self.max_size:
            self.table.clear()
            self.size = 0
            return
        self.table.insert(0, field)
        self.size += size
        self._evict()

    def _evict(self) -> None:
        table = self.table
        while self.size > self.max_size:
            name, value = table.pop()
            self.size -= len(name) + len(value) + _ENTRY_OVERHEAD


def _integer(block: bytes, pos: int, value: int) -> tuple[int, int]:
    """The continuation bytes of an integer whose prefix was all ones (RFC 7541 §5.1)."""
    shift = 0
    n = len(block)
    while True:
        if pos >= n:
            raise HpackError("truncated integer")
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > _MAX_INT_SHIFT:
            raise HpackError("integer too large")


_huffman_cache: dict[bytes, bytes] = {}


def _string(block: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(block):
        raise HpackError("truncated string")
    byte = block[pos]
    length = byte & 0x7F
    pos += 1
    if length == 0x7F:
        length, pos = _integer(block, pos, length)
    end = pos + length
    if end > len(block):
        raise HpackError("truncated string")
    raw = block[pos:end]
    if not byte & 0x80:
        return raw, end
    text = _huffman_cache.get(raw)
    if text is None:
        try:
            text = decode_huffman(raw)
        except Exception as exc:  # hpack raises its own HPACKDecodingError
            raise HpackError("invalid Huffman string") from exc
        if len(_huffman_cache) >= 4096:
            _huffman_cache.clear()
        _huffman_cache[raw] = text
    return text, end


def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """``value`` with an N-bit prefix; ``first`` holds the representation's high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _raw_string(data: bytes) -> bytes:
    return encode_integer(len(data), 7, 0) + data


_STATIC_FIELD: dict[Field, int] = {}
_STATIC_NAME: dict[bytes, int] = {}
for _i, (_name, _value) in enumerate(STATIC_TABLE, 1):
    _STATIC_FIELD.setdefault((_name, _value), _i)
    _STATIC_NAME.setdefault(_name, _i)

NEVER_INDEXED = frozenset((b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"))

_encoded: dict[Field, bytes] = {}


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field, statelessly encoded (cached)."""
    field = (name, value)
    out = _encoded.get(field)
    if out is not None:
        return out
    index = _STATIC_FIELD.get(field)
    if index is not None:
        out = encode_integer(index, 7, 0x80)
    else:
        first = 0x10 if name in NEVER_INDEXED else 0x00
        index = _STATIC_NAME.get(name, 0)
        head = encode_integer(index, 4, first) if index else bytes((first,)) + _raw_string(name)
        out = head + _raw_string(value)
    if len(out) <= 256:
        if len(_encoded) >= 8192:
            _encoded.clear()
        _encoded[field] = out
    return out


def encode_block(fields: Iterable[Field]) -> bytes:
    """A header block for ``fields``, decodable by any peer whatever its dynamic table."""
    return b"".join([encode_field(name, value) for name, value in fields])


TABLE_SIZE_ZERO = encode_integer(0, 5, 0x20)
"""A dynamic table size update to 0: tells the peer's decoder this encoder keeps no table."""
