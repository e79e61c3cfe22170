"""SPDY/3.1 framing: frames, header blocks and their zlib compression.

Kubernetes' streaming protocols (``kubectl exec/attach/port-forward``,
``crictl``) run over SPDY/3.1 after an HTTP ``Upgrade: SPDY/3.1``; this
module is the wire format only (see ``spdyconn`` for the session that
multiplexes streams over one connection). From draft-mbelshe-httpbis-spdy
(SPDY/3) and the SPDY/3.1 additions (session-level flow control):

    control frame   |1| version (15) | type (16) | flags (8) | length (24) | data
    data frame      |0| stream id (31)           | flags (8) | length (24) | data

Control frames used here: SYN_STREAM (1), SYN_REPLY (2), RST_STREAM (3),
SETTINGS (4), PING (6), GOAWAY (7), HEADERS (8), WINDOW_UPDATE (9). Unknown
control frame types must be ignored, so they decode to ``UnknownControl``.

Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are a 32-bit count, then
per header a 32-bit length + lower-case name and a 32-bit length + value
(several values joined by NUL). Each direction of a session compresses all
its header blocks with *one* zlib stream, primed with the fixed SPDY/3
dictionary and flushed with Z_SYNC_FLUSH after every block, so the
compressor and decompressor objects live as long as the session.

Everything here is pure (bytes in, bytes out) and raises
``ProtocolViolation`` for malformed input.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from skiff.cri.streaming.errors import ProtocolViolation

VERSION: Final = 3

SYN_STREAM: Final = 1
SYN_REPLY: Final = 2
RST_STREAM: Final = 3
SETTINGS: Final = 4
PING: Final = 6
GOAWAY: Final = 7
HEADERS: Final = 8
WINDOW_UPDATE: Final = 9

FLAG_FIN: Final = 0x01
FLAG_UNIDIRECTIONAL: Final = 0x02
FLAG_SETTINGS_CLEAR: Final = 0x01

# RST_STREAM status codes
PROTOCOL_ERROR: Final = 1
INVALID_STREAM: Final = 2
REFUSED_STREAM: Final = 3
UNSUPPORTED_VERSION: Final = 4
CANCEL: Final = 5
INTERNAL_ERROR: Final = 6
FLOW_CONTROL_ERROR: Final = 7
STREAM_IN_USE: Final = 8
STREAM_ALREADY_CLOSED: Final = 9
FRAME_TOO_LARGE: Final = 11

# GOAWAY status codes
GOAWAY_OK: Final = 0
GOAWAY_PROTOCOL_ERROR: Final = 1
GOAWAY_INTERNAL_ERROR: Final = 2

SETTINGS_INITIAL_WINDOW_SIZE: Final = 7
DEFAULT_WINDOW: Final = 65536
MAX_WINDOW: Final = 0x7FFFFFFF
MAX_STREAM_ID: Final = 0x7FFFFFFF
MAX_FRAME_LENGTH: Final = 0xFFFFFF
MAX_HEADER_BLOCK: Final = 1 << 20
"""Largest decompressed header block accepted (a zlib bomb stops here)."""

# --- the SPDY/3 header dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1) -------------
#
# The spec lists it as bytes: first a run of 32-bit-length-prefixed words,
# then plain text. It is built from that structure here and pinned by its
# length and Adler-32 checksum (the zlib dictionary ID peers compare).

_DICTIONARY_WORDS: Final = (
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
)

_DICTIONARY_TEXT: Final = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505"
    "203 Non-Authoritative Information"
    "204 No Content"
    "301 Moved Permanently"
    "400 Bad Request"
    "401 Unauthorized"
    "403 Forbidden"
    "404 Not Found"
    "500 Internal Server Error"
    "501 Not Implemented"
    "503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    "application/xhtml+xml,text/plain,text/javascript,public"
    "privatemax-age=gzip,deflate,sdch"
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)

DICTIONARY_LENGTH: Final = 1423
DICTIONARY_ADLER32: Final = 0xE3C6A7C2


def _build_dictionary() -> bytes:
    out = bytearray()
    for word in _DICTIONARY_WORDS:
        raw = word.encode("ascii")
        out += struct.pack(">I", len(raw)) + raw
    out += _DICTIONARY_TEXT.encode("ascii")
    data = bytes(out)
    if len(data) != DICTIONARY_LENGTH or zlib.adler32(data) != DICTIONARY_ADLER32:
        raise AssertionError("the SPDY/3 header dictionary is corrupt")  # a code bug, not input
    return data


HEADER_DICTIONARY: Final = _build_dictionary()

# --- frames -------------------------------------------------------------------------------

Headers = dict[str, str]
"""Header name (lower case) → value (several values NUL-separated, as on the wire)."""


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    flags: int = 0
    associated_id: int = 0
    priority: int = 0
    slot: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)

    @property
    def unidirectional(self) -> bool:
        return bool(self.flags & FLAG_UNIDIRECTIONAL)


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...]
    """(flags, id, value) per setting."""
    flags: int = 0

    def value(self, setting_id: int) -> int | None:
        for _, sid, value in self.entries:
            if sid == setting_id:
                return value
        return None


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class UnknownControl:
    """A control frame of a type SPDY/3.1 does not define (to be ignored)."""

    frame_type: int
    flags: int
    payload: bytes


Frame = (
    DataFrame
    | SynStream
    | SynReply
    | RstStream
    | Settings
    | Ping
    | GoAway
    | HeadersFrame
    | WindowUpdate
    | UnknownControl
)

# --- header blocks --------------------------------------------------------------------------


def encode_header_block(headers: Mapping[str, str]) -> bytes:
    """The uncompressed block. Names must be non-empty and lower case."""
    out = bytearray(struct.pack(">I", len(headers)))
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        if not raw_name or name != name.lower():
            raise ValueError(f"SPDY header names must be non-empty and lower case: {name!r}")
        raw_value = value.encode("utf-8")
        out += struct.pack(">I", len(raw_name)) + raw_name
        out += struct.pack(">I", len(raw_value)) + raw_value
    return bytes(out)


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed block (strict: the spec's rules are errors)."""
    view = memoryview(block)
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if n > len(view) - pos:
            raise ProtocolViolation(f"SPDY header block is truncated in {what}")
        chunk = bytes(view[pos : pos + n])
        pos += n
        return chunk

    (count,) = struct.unpack(">I", take(4, "the header count"))
    headers: Headers = {}
    for _ in range(count):
        (name_len,) = struct.unpack(">I", take(4, "a name length"))
        name_raw = take(name_len, "a header name")
        (value_len,) = struct.unpack(">I", take(4, "a value length"))
        value_raw = take(value_len, "a header value")
        try:
            name = name_raw.decode("utf-8")
            value = value_raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation("SPDY header is not UTF-8") from None
        if not name or name != name.lower():
            raise ProtocolViolation(f"SPDY header name {name!r} is empty or not lower case")
        if name in headers:
            raise ProtocolViolation(f"SPDY header {name!r} appears twice")
        headers[name] = value
    if pos != len(view):
        raise ProtocolViolation("SPDY header block has trailing bytes")
    return headers


class HeaderCompressor:
    """The sending side's zlib stream (one per session direction)."""

    def __init__(self, level: int = 6) -> None:
        self._z = zlib.compressobj(
            level, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY
        )

    def compress(self, headers: Mapping[str, str]) -> bytes:
        block = encode_header_block(headers)
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The receiving side's zlib stream (one per session direction)."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, HEADER_DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise ProtocolViolation(f"SPDY header block does not inflate: {exc}") from None
        if self._z.unconsumed_tail:
            raise ProtocolViolation(f"SPDY header block inflates beyond {MAX_HEADER_BLOCK} bytes")
        return decode_header_block(block)


# --- encoding -----------------------------------------------------------------------------


def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_LENGTH:
        raise ValueError(f"SPDY frame payload of {len(payload)} bytes is too large")
    head = struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload))
    return head + payload


def _stream_id(value: int) -> int:
    if not 0 <= value <= MAX_STREAM_ID:
        raise ValueError(f"SPDY stream id {value} out of range")
    return value


def encode_frame(frame: Frame, compressor: HeaderCompressor | None = None) -> bytes:
    """Bytes of ``frame``; frames with headers need the session's compressor."""
    if isinstance(frame, DataFrame):
        if len(frame.data) > MAX_FRAME_LENGTH:
            raise ValueError(f"SPDY data frame of {len(frame.data)} bytes is too large")
        return (
            struct.pack(">II", _stream_id(frame.stream_id), (frame.flags << 24) | len(frame.data))
            + frame.data
        )
    if isinstance(frame, SynStream | SynReply | HeadersFrame):
        if compressor is None:
            raise ValueError("frames with headers need the session's header compressor")
        block = compressor.compress(frame.headers)
        if isinstance(frame, SynStream):
            prefix = struct.pack(
                ">IIBB",
                _stream_id(frame.stream_id),
                _stream_id(frame.associated_id),
                (frame.priority & 0x7) << 5,
                frame.slot,
            )
            return _control(SYN_STREAM, frame.flags, prefix + block)
        kind = SYN_REPLY if isinstance(frame, SynReply) else HEADERS
        return _control(kind, frame.flags, struct.pack(">I", _stream_id(frame.stream_id)) + block)
    if isinstance(frame, RstStream):
        return _control(
            RST_STREAM, 0, struct.pack(">II", _stream_id(frame.stream_id), frame.status)
        )
    if isinstance(frame, Settings):
        body = struct.pack(">I", len(frame.entries))
        for flags, sid, value in frame.entries:
            body += struct.pack(">II", (flags << 24) | (sid & 0xFFFFFF), value)
        return _control(SETTINGS, frame.flags, body)
    if isinstance(frame, Ping):
        return _control(PING, 0, struct.pack(">I", frame.ping_id))
    if isinstance(frame, GoAway):
        body = struct.pack(">II", _stream_id(frame.last_good_stream_id), frame.status)
        return _control(GOAWAY, 0, body)
    if isinstance(frame, WindowUpdate):
        if not 1 <= frame.delta <= MAX_WINDOW:
            raise ValueError(f"SPDY window delta {frame.delta} out of range")
        return _control(
            WINDOW_UPDATE, 0, struct.pack(">II", _stream_id(frame.stream_id), frame.delta)
        )
    return _control(frame.frame_type, frame.flags, frame.payload)


# --- decoding -----------------------------------------------------------------------------


class FrameReader:
    """Reads frames from a byte source (``read_exact(n)`` → exactly n bytes,
    or fewer only at end of input).

    ``read()`` returns None at a clean end of input (between frames) and
    raises ``ProtocolViolation`` for a frame cut short or malformed.
    """

    def __init__(
        self, read_exact: Callable[[int], bytes], decompressor: HeaderDecompressor
    ) -> None:
        self._read = read_exact
        self._headers = decompressor

    def read(self) -> Frame | None:
        head = self._read(8)
        if not head:
            return None
        if len(head) < 8:
            raise ProtocolViolation("SPDY connection ended inside a frame header")
        first, second = struct.unpack(">II", head)
        flags, length = second >> 24, second & 0xFFFFFF
        payload = self._read(length) if length else b""
        if len(payload) < length:
            raise ProtocolViolation("SPDY connection ended inside a frame")
        if not first & 0x80000000:
            return DataFrame(first & MAX_STREAM_ID, payload, flags)
        version = (first >> 16) & 0x7FFF
        frame_type = first & 0xFFFF
        if version != VERSION:
            raise ProtocolViolation(f"SPDY version {version} is not supported (only 3)")
        return self._control(frame_type, flags, payload)

    def _control(self, frame_type: int, flags: int, payload: bytes) -> Frame:
        def need(n: int, name: str) -> None:
            if len(payload) < n:
                raise ProtocolViolation(f"SPDY {name} frame is too short ({len(payload)} bytes)")

        if frame_type == SYN_STREAM:
            need(10, "SYN_STREAM")
            sid, assoc, prio, slot = struct.unpack(">IIBB", payload[:10])
            headers = self._headers.decompress(payload[10:])
            return SynStream(
                sid & MAX_STREAM_ID, headers, flags, assoc & MAX_STREAM_ID, prio >> 5, slot
            )
        if frame_type in (SYN_REPLY, HEADERS):
            need(4, "SYN_REPLY" if frame_type == SYN_REPLY else "HEADERS")
            (sid,) = struct.unpack(">I", payload[:4])
            headers = self._headers.decompress(payload[4:])
            if frame_type == SYN_REPLY:
                return SynReply(sid & MAX_STREAM_ID, headers, flags)
            return HeadersFrame(sid & MAX_STREAM_ID, headers, flags)
        if frame_type == RST_STREAM:
            need(8, "RST_STREAM")
            sid, status = struct.unpack(">II", payload[:8])
            return RstStream(sid & MAX_STREAM_ID, status)
        if frame_type == SETTINGS:
            need(4, "SETTINGS")
            (count,) = struct.unpack(">I", payload[:4])
            if len(payload) != 4 + 8 * count:
                raise ProtocolViolation(f"SPDY SETTINGS frame length does not fit {count} entries")
            entries = []
            for i in range(count):
                word, value = struct.unpack(">II", payload[4 + 8 * i : 12 + 8 * i])
                entries.append((word >> 24, word & 0xFFFFFF, value))
            return Settings(tuple(entries), flags)
        if frame_type == PING:
            need(4, "PING")
            return Ping(struct.unpack(">I", payload[:4])[0])
        if frame_type == GOAWAY:
            need(4, "GOAWAY")
            (last,) = struct.unpack(">I", payload[:4])
            status = struct.unpack(">I", payload[4:8])[0] if len(payload) >= 8 else GOAWAY_OK
            return GoAway(last & MAX_STREAM_ID, status)
        if frame_type == WINDOW_UPDATE:
            need(8, "WINDOW_UPDATE")
            sid, delta = struct.unpack(">II", payload[:8])
            return WindowUpdate(sid & MAX_STREAM_ID, delta & MAX_WINDOW)
        return UnknownControl(frame_type, flags, payload)
