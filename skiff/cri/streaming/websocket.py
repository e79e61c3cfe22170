"""WebSocket (RFC 6455), server side: the opening handshake and a connection.

Kubernetes' newer clients (kubectl 1.30+ for exec/attach) speak the
remote-command protocols over WebSocket instead of SPDY: one binary
message per chunk, its first byte naming the channel. This module knows
nothing of channels; it gives ``remotecommand``/``portforward`` whole
messages.

Handshake (RFC 6455 4.2): a GET with ``Upgrade: websocket``, ``Connection:
Upgrade``, ``Sec-WebSocket-Version: 13`` and a 16-byte base64
``Sec-WebSocket-Key``; the answer is 101 with ``Sec-WebSocket-Accept`` =
base64(SHA-1(key + the RFC's GUID)) and the one subprotocol chosen from
those the client offered — the first, in the client's order, that the
server supports (as the Kubernetes servers pick). ``check_handshake``
raises ``HandshakeRefused`` with the HTTP status to answer otherwise.

Framing (RFC 6455 5): frames from a client must be masked, frames from the
server are not; RSV bits must be 0 (no extension is negotiated); control
frames (close, ping, pong) carry at most 125 bytes and are never
fragmented but may come between the fragments of a message; a message is
limited to ``max_message`` bytes (1009 "too big" beyond). A ping is
answered with a pong carrying its payload. Text must be UTF-8 (1007).
Any violation fails the connection: a close frame with the code, then the
socket is shut.

Closing (RFC 6455 7): whoever closes first sends a close frame; the other
answers with one; then TCP is closed. ``close`` sends ours and waits (with
a deadline) for the client's answer, reading and discarding data
meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from skiff.cri.streaming.errors import ProtocolViolation, StreamClosed
from skiff.cri.streaming.streams import ByteSource, read_exact

log = logging.getLogger(__name__)

GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION: Final = "13"

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_DATA_OPS: Final = (OP_TEXT, OP_BINARY)
_CONTROL_OPS: Final = (OP_CLOSE, OP_PING, OP_PONG)

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_NO_STATUS: Final = 1005
CLOSE_ABNORMAL: Final = 1006
CLOSE_INVALID_DATA: Final = 1007
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011

DEFAULT_MAX_MESSAGE: Final = 16 << 20
CLOSE_TIMEOUT: Final = 5.0


# --- handshake ------------------------------------------------------------------------------


class HandshakeRefused(ProtocolViolation):
    """The request is not an acceptable WebSocket opening handshake."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = tuple(headers)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()  # noqa: S324 - RFC 6455 fixes SHA-1
    return base64.b64encode(digest).decode("ascii")


def header_tokens(values: Iterable[str]) -> list[str]:
    """Comma-separated tokens of (possibly repeated) header values, trimmed."""
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def is_websocket_request(headers: Mapping[str, Sequence[str]]) -> bool:
    """Whether the request asks to upgrade to WebSocket (headers by lower-case name)."""
    upgrade = [t.lower() for t in header_tokens(headers.get("upgrade", ()))]
    return "websocket" in upgrade


def check_handshake(
    method: str, headers: Mapping[str, Sequence[str]], supported: Sequence[str]
) -> tuple[str, str | None]:
    """(Sec-WebSocket-Accept, chosen subprotocol) for an opening handshake.

    ``headers`` maps lower-case names to their values. ``supported`` lists
    the subprotocols the endpoint speaks; "" in it means a client offering
    none is accepted too (the answer then names none).
    """
    if method != "GET":
        raise HandshakeRefused(405, f"a WebSocket handshake must be a GET, not {method}")
    connection = [t.lower() for t in header_tokens(headers.get("connection", ()))]
    if "upgrade" not in connection or not is_websocket_request(headers):
        raise HandshakeRefused(
            400, "not a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)"
        )
    versions = header_tokens(headers.get("sec-websocket-version", ()))
    if versions != [VERSION]:
        raise HandshakeRefused(
            426,
            f"WebSocket version {', '.join(versions) or 'none'} is not supported",
            [("Sec-WebSocket-Version", VERSION)],
        )
    keys = headers.get("sec-websocket-key", ())
    key = keys[0].strip() if len(keys) == 1 else ""
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise HandshakeRefused(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    offered = header_tokens(headers.get("sec-websocket-protocol", ()))
    chosen = negotiate_subprotocol(offered, supported)
    if chosen is None:
        wanted = ", ".join(p for p in supported if p) or "none"
        raise HandshakeRefused(
            403,
            f"WebSocket subprotocol(s) {', '.join(offered) or 'none'} not supported; "
            f"this endpoint speaks {wanted}",
        )
    return accept_key(key), chosen or None


def negotiate_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first offered subprotocol that is supported; "" when the client
    offered none and "" is supported; None when nothing fits."""
    if not offered:
        return "" if "" in supported else None
    for protocol in offered:
        if protocol and protocol in supported:
            return protocol
    return None


# --- frames ----------------------------------------------------------------------------------


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` (its own inverse)."""
    n = len(data)
    if not n:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame; ``mask`` (4 bytes) for a client's frames, None for a server's."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        head = struct.pack(">BB", first, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack(">BBQ", first, mask_bit | 127, n)
    if mask is None:
        return head + payload
    if len(mask) != 4:
        raise ValueError("a WebSocket masking key is 4 bytes")
    return head + mask + apply_mask(payload, mask)


@dataclass(frozen=True)
class WireFrame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes
    """Unmasked."""


class _Failure(Exception):
    """Fail the connection with this close code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def read_frame(read_exact: Callable[[int], bytes], max_payload: int) -> WireFrame | None:
    """The next frame; None at a clean end of input before a frame."""
    head = read_exact(2)
    if not head:
        return None
    if len(head) < 2:
        raise _Failure(CLOSE_ABNORMAL, "connection ended inside a frame header")
    first, second = head[0], head[1]
    length = second & 0x7F
    if length == 126:
        raw = read_exact(2)
        if len(raw) < 2:
            raise _Failure(CLOSE_ABNORMAL, "connection ended inside a frame header")
        (length,) = struct.unpack(">H", raw)
    elif length == 127:
        raw = read_exact(8)
        if len(raw) < 8:
            raise _Failure(CLOSE_ABNORMAL, "connection ended inside a frame header")
        (length,) = struct.unpack(">Q", raw)
        if length >> 63:
            raise _Failure(CLOSE_PROTOCOL_ERROR, "frame length has its top bit set")
    masked = bool(second & 0x80)
    key = b""
    if masked:
        key = read_exact(4)
        if len(key) < 4:
            raise _Failure(CLOSE_ABNORMAL, "connection ended inside a frame header")
    if length > max_payload:
        raise _Failure(CLOSE_TOO_BIG, f"frame of {length} bytes exceeds {max_payload}")
    payload = read_exact(length) if length else b""
    if len(payload) < length:
        raise _Failure(CLOSE_ABNORMAL, "connection ended inside a frame")
    if masked:
        payload = apply_mask(payload, key)
    return WireFrame(bool(first & 0x80), (first >> 4) & 0x7, first & 0x0F, masked, payload)


def _valid_close_code(code: int) -> bool:
    """Codes a close frame may carry (RFC 6455 7.4, and the IANA registry)."""
    if 3000 <= code <= 4999:
        return True
    return 1000 <= code <= 1014 and code not in (1004, CLOSE_NO_STATUS, CLOSE_ABNORMAL)


# --- the connection --------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    opcode: int
    """OP_TEXT or OP_BINARY."""
    data: bytes


class WebSocketConnection:
    """The server's end of an upgraded connection (see the module docstring).

    One thread calls ``receive``; any thread may send.
    """

    def __init__(
        self, rfile: ByteSource, sock: socket.socket, *, max_message: int = DEFAULT_MAX_MESSAGE
    ) -> None:
        self._rfile = rfile
        self._sock = sock
        self._max = max_message
        self._send_lock = threading.Lock()
        self._close_sent = False
        self._ended = threading.Event()
        self.close_code: int | None = None
        """The code of the client's close frame (CLOSE_NO_STATUS if it had none,
        CLOSE_ABNORMAL if the connection just ended)."""
        self.close_reason = ""
        self._reader: threading.Thread | None = None

    @property
    def ended(self) -> bool:
        """No more messages will come (closed, failed, or connection lost)."""
        return self._ended.is_set()

    def _read_exact(self, n: int) -> bytes:
        return read_exact(self._rfile, n)

    # --- receiving --------------------------------------------------------------------------

    def receive(self) -> Message | None:
        """The next text or binary message; None once the connection is closing
        or gone (``close_code`` says how)."""
        if self._ended.is_set():
            return None
        self._reader = threading.current_thread()
        try:
            return self._receive()
        except _Failure as failure:
            self._fail(failure.code, failure.reason)
        except OSError as exc:
            log.debug("WebSocket connection lost: %s", exc)
            self._lost()
        return None

    def _receive(self) -> Message | None:
        opcode: int | None = None
        parts: list[bytes] = []
        size = 0
        while True:
            frame = read_frame(self._read_exact, self._max)
            if frame is None:
                self._lost()
                return None
            if frame.rsv:
                raise _Failure(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
            if not frame.masked:
                raise _Failure(CLOSE_PROTOCOL_ERROR, "a client's frames must be masked")
            if frame.opcode in _CONTROL_OPS:
                if not frame.fin or len(frame.payload) > 125:
                    raise _Failure(
                        CLOSE_PROTOCOL_ERROR, "control frames are short and unfragmented"
                    )
                if frame.opcode == OP_PING:
                    with contextlib.suppress(StreamClosed):
                        self._send_frame(OP_PONG, frame.payload)
                elif frame.opcode == OP_CLOSE:
                    self._on_close(frame.payload)
                    return None
                continue
            if frame.opcode in _DATA_OPS:
                if opcode is not None:
                    raise _Failure(
                        CLOSE_PROTOCOL_ERROR, "a new message began inside a fragmented one"
                    )
                opcode = frame.opcode
            elif frame.opcode == OP_CONTINUATION:
                if opcode is None:
                    raise _Failure(CLOSE_PROTOCOL_ERROR, "continuation frame without a message")
            else:
                raise _Failure(CLOSE_PROTOCOL_ERROR, f"unknown opcode {frame.opcode}")
            size += len(frame.payload)
            if size > self._max:
                raise _Failure(CLOSE_TOO_BIG, f"message exceeds {self._max} bytes")
            parts.append(frame.payload)
            if frame.fin:
                data = b"".join(parts)
                if opcode == OP_TEXT:
                    try:
                        data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise _Failure(CLOSE_INVALID_DATA, "text message is not UTF-8") from None
                return Message(opcode, data)

    def _on_close(self, payload: bytes) -> None:
        code, reason = CLOSE_NO_STATUS, ""
        if len(payload) == 1:
            raise _Failure(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
        if len(payload) >= 2:
            (code,) = struct.unpack(">H", payload[:2])
            if not _valid_close_code(code):
                raise _Failure(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise _Failure(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
        self.close_code, self.close_reason = code, reason
        if not self._close_sent:
            answer = struct.pack(">H", code) if code != CLOSE_NO_STATUS else b""
            with contextlib.suppress(StreamClosed):
                self._send_close(answer)
        self._ended.set()

    def _fail(self, code: int, reason: str) -> None:
        log.info("failing WebSocket connection (%d): %s", code, reason)
        if code != CLOSE_ABNORMAL and not self._close_sent:
            with contextlib.suppress(StreamClosed):
                self._send_close(struct.pack(">H", code) + reason.encode("utf-8")[:120])
        self.close_code, self.close_reason = CLOSE_ABNORMAL, reason
        self._ended.set()
        self._shutdown()

    def _lost(self) -> None:
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL
        self._ended.set()

    # --- sending ----------------------------------------------------------------------------

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        with self._send_lock:
            if self._close_sent:
                raise StreamClosed("the WebSocket connection is closing")
            self._write(encode_frame(opcode, payload))

    def _send_close(self, payload: bytes) -> None:
        with self._send_lock:
            if self._close_sent:
                return
            self._close_sent = True
            self._write(encode_frame(OP_CLOSE, payload))

    def _write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self._close_sent = True
            raise StreamClosed(f"cannot write to the WebSocket connection: {exc}") from exc

    def send_binary(self, data: bytes) -> None:
        """One binary message; StreamClosed once the connection is closing."""
        self._send_frame(OP_BINARY, data)

    def send_text(self, text: str) -> None:
        self._send_frame(OP_TEXT, text.encode("utf-8"))

    def ping(self, payload: bytes = b"") -> None:
        self._send_frame(OP_PING, payload)

    # --- closing ----------------------------------------------------------------------------

    def close(
        self, code: int = CLOSE_NORMAL, reason: str = "", timeout: float = CLOSE_TIMEOUT
    ) -> None:
        """Send our close frame and wait for the client's: another thread that
        reads messages sees it; without one, data is read and dropped here."""
        with contextlib.suppress(StreamClosed):
            self._send_close(struct.pack(">H", code) + reason.encode("utf-8")[:120])
        reader = self._reader
        if reader is not None and reader.is_alive() and reader is not threading.current_thread():
            self._ended.wait(timeout)
        elif not self._ended.is_set():
            self._drain(timeout)
        self._shutdown()

    def _drain(self, timeout: float) -> None:
        with contextlib.suppress(OSError):
            self._sock.settimeout(timeout)
        try:
            while not self._ended.is_set():
                if self.receive() is None:
                    break
        except TimeoutError:
            pass
        finally:
            self._ended.set()

    def _shutdown(self) -> None:
        with self._send_lock:
            self._close_sent = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
