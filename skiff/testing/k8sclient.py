"""Kubernetes streaming clients for tests: SPDY/3.1 and WebSocket, client side.

They play kubectl/crictl against skiff's CRI streaming server, and are
written apart from it on purpose — own framing, own header coding, own
WebSocket handshake and masking — so that a misreading of the protocols
in the server is not mirrored here. The one thing shared is the SPDY/3
header dictionary (a constant of the spec).

    SpdyConnection        HTTP upgrade to SPDY/3.1, streams opened by the client
    WebSocketClient       HTTP upgrade to WebSocket, masked frames, close handshake
    SpdyRemoteCommand     exec/attach over SPDY (error/stdin/stdout/stderr/resize streams)
    WsRemoteCommand       exec/attach over WebSocket channels (v4/v5)
    spdy_forward          one port-forward connection over SPDY (a data+error stream pair)
    ws_forward            port forwarding over WebSocket (port-prefixed channels)

Like client-go's SPDY library (moby/spdystream), ``SpdyConnection`` sends no
WINDOW_UPDATEs unless asked to (``flow_control=True``, then it acknowledges
data as the test reads it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from skiff.cri.streaming.spdy import HEADER_DICTIONARY

DEFAULT_TIMEOUT = 30.0


class UpgradeRefused(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"upgrade refused: HTTP {status}: {body[:200]!r}")
        self.status = status
        self.headers = headers
        self.body = body


def _http_upgrade(
    url: str, method: str, headers: list[tuple[str, str]], timeout: float
) -> tuple[socket.socket, bytes, dict[str, str]]:
    """Send the request; returns the socket, bytes read past the 101's headers,
    and the response headers (lower-case names, repeated ones comma-joined)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    sock = socket.create_connection((host, parts.port or 80), timeout)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            sock.close()
            raise UpgradeRefused(0, {}, data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    response: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        response[key] = f"{response[key]}, {value.strip()}" if key in response else value.strip()
    if status != 101:
        length = int(response.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        sock.close()
        raise UpgradeRefused(status, response, rest)
    return sock, rest, response


class _Buffered:
    """Exact reads from a socket, with bytes already read first."""

    def __init__(self, sock: socket.socket, initial: bytes) -> None:
        self.sock = sock
        self.pending = initial

    def exact(self, n: int) -> bytes | None:
        while len(self.pending) < n:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self.pending += chunk
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


# --- SPDY, client side ---------------------------------------------------------------------

_CONTROL = 0x8000
_SPDY3 = 3


class ClientStream:
    """A stream the client opened."""

    def __init__(self, conn: SpdyConnection, stream_id: int, headers: Mapping[str, str]) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers = dict(headers)
        self.replied = threading.Event()
        self.cond = threading.Condition()
        self.data = bytearray()
        self.received_total = 0
        self.fin = False
        self.reset_status: int | None = None

    def write(self, data: bytes) -> None:
        for i in range(0, len(data), 16384):
            self.conn._send_data(self.id, data[i : i + 16384], fin=False)

    def close(self) -> None:
        """FIN: the client is done sending on this stream."""
        self.conn._send_data(self.id, b"", fin=True)

    def reset(self, status: int = 5) -> None:
        self.conn._send(_control_frame(3, 0, struct.pack(">II", self.id, status)))

    @property
    def ended(self) -> bool:
        return self.fin or self.reset_status is not None or self.conn.closed.is_set()

    def read(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """What arrived (waiting for something or the end); b"" at the end."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.data or self.ended, timeout):
                raise TimeoutError(f"nothing on SPDY stream {self.id} within {timeout} s")
            out = bytes(self.data)
            self.data.clear()
        if out and self.conn.flow_control:
            self.conn._send(_control_frame(9, 0, struct.pack(">II", self.id, len(out))))
            self.conn._send(_control_frame(9, 0, struct.pack(">II", 0, len(out))))
        return out

    def read_all(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        out = bytearray()
        while chunk := self.read(max(0.01, deadline - time.monotonic())):
            out += chunk
        return bytes(out)

    def read_until(self, needle: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        out = bytearray()
        while needle not in out:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{needle!r} not seen on stream {self.id}; got {bytes(out)!r}")
            chunk = self.read(remaining)
            if not chunk:
                raise AssertionError(
                    f"stream {self.id} ended before {needle!r}; got {bytes(out)!r}"
                )
            out += chunk
        return bytes(out)


def _control_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return (
        struct.pack(">HHB", _CONTROL | _SPDY3, kind, flags)
        + len(payload).to_bytes(3, "big")
        + payload
    )


class SpdyConnection:
    """A client's SPDY/3.1 connection after ``POST URL`` + ``Upgrade: SPDY/3.1``."""

    def __init__(
        self,
        url: str,
        protocols: Iterable[str],
        *,
        method: str = "POST",
        flow_control: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        headers = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        headers += [("X-Stream-Protocol-Version", p) for p in protocols]
        self.sock, rest, self.response_headers = _http_upgrade(url, method, headers, timeout)
        self.sock.settimeout(None)
        self.protocol = self.response_headers.get("x-stream-protocol-version", "")
        self.flow_control = flow_control
        self._reader = _Buffered(self.sock, rest)
        self._send_lock = threading.Lock()
        self._deflate = zlib.compressobj(
            9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY
        )
        self._inflate = zlib.decompressobj(15, HEADER_DICTIONARY)
        self._next_id = 1
        self.streams: dict[int, ClientStream] = {}
        self.closed = threading.Event()
        self.goaway: tuple[int, int] | None = None
        self.frames: list[tuple[str, int]] = []
        """(kind, stream id) of every frame received, in order."""
        self.pings: list[int] = []
        self.window_updates: list[tuple[int, int]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # header blocks, independently of the server's coder
    def _headers_out(self, headers: Mapping[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            n, v = name.lower().encode(), value.encode()
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def _headers_in(self, block: bytes) -> dict[str, str]:
        raw = self._inflate.decompress(block)
        (count,), pos = struct.unpack_from(">I", raw, 0), 4
        out = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            (n,) = struct.unpack_from(">I", raw, pos)
            out[name] = raw[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
        return out

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    def _send_data(self, stream_id: int, data: bytes, fin: bool) -> None:
        self._send(
            struct.pack(">IB", stream_id, 1 if fin else 0) + len(data).to_bytes(3, "big") + data
        )

    def open_stream(
        self, headers: Mapping[str, str], timeout: float = DEFAULT_TIMEOUT
    ) -> ClientStream:
        """SYN_STREAM, then wait for the server's SYN_REPLY."""
        with self._send_lock:
            stream_id = self._next_id
            self._next_id += 2
            stream = ClientStream(self, stream_id, headers)
            self.streams[stream_id] = stream
            block = self._headers_out(headers)
            payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + block
            self.sock.sendall(_control_frame(1, 0, payload))
        if not stream.replied.wait(timeout):
            raise TimeoutError(f"no SYN_REPLY for stream {stream_id}")
        if stream.reset_status is not None:
            raise ConnectionError(f"stream {stream_id} was reset ({stream.reset_status})")
        return stream

    def ping(self, ping_id: int = 1) -> None:
        self._send(_control_frame(6, 0, struct.pack(">I", ping_id)))

    def send_raw(self, data: bytes) -> None:
        self._send(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        return self.closed.wait(timeout)

    def _stream_event(self, stream_id: int, fn: Any) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            with stream.cond:
                fn(stream)
                stream.cond.notify_all()

    def _run(self) -> None:
        try:
            while True:
                head = self._reader.exact(8)
                if head is None:
                    return
                first, second = struct.unpack(">II", head)
                length, flags = second & 0xFFFFFF, second >> 24
                payload = self._reader.exact(length) if length else b""
                if payload is None:
                    return
                if not first & 0x80000000:
                    self._on_data(first, flags, payload)
                else:
                    self._on_control(first & 0xFFFF, flags, payload)
        finally:
            self.closed.set()
            for stream in list(self.streams.values()):
                with stream.cond:
                    stream.cond.notify_all()
                stream.replied.set()

    def _on_data(self, stream_id: int, flags: int, payload: bytes) -> None:
        self.frames.append(("data", stream_id))

        def add(stream: ClientStream) -> None:
            stream.data += payload
            stream.received_total += len(payload)
            if flags & 1:
                stream.fin = True

        self._stream_event(stream_id, add)

    def _on_control(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == 2:  # SYN_REPLY
            (sid,) = struct.unpack(">I", payload[:4])
            self._headers_in(payload[4:])
            self.frames.append(("syn_reply", sid))
            stream = self.streams.get(sid)
            if stream is not None:
                stream.replied.set()
                if flags & 1:
                    self._stream_event(sid, lambda s: setattr(s, "fin", True))
        elif kind == 3:  # RST_STREAM
            sid, status = struct.unpack(">II", payload[:8])
            self.frames.append(("rst", sid))
            self._stream_event(sid, lambda s: setattr(s, "reset_status", status))
            stream = self.streams.get(sid)
            if stream is not None:
                stream.replied.set()
        elif kind == 6:  # PING
            (ping_id,) = struct.unpack(">I", payload[:4])
            self.frames.append(("ping", ping_id))
            self.pings.append(ping_id)
        elif kind == 7:  # GOAWAY
            self.goaway = struct.unpack(">II", payload[:8])
            self.frames.append(("goaway", self.goaway[0]))
        elif kind == 9:  # WINDOW_UPDATE
            sid, delta = struct.unpack(">II", payload[:8])
            self.window_updates.append((sid, delta))
            self.frames.append(("window_update", sid))
        elif kind == 8:  # HEADERS
            (sid,) = struct.unpack(">I", payload[:4])
            self._headers_in(payload[4:])
            self.frames.append(("headers", sid))
        else:
            self.frames.append((f"control-{kind}", 0))


# --- WebSocket, client side ----------------------------------------------------------------

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketClient:
    """A client's WebSocket connection (RFC 6455: masked frames out)."""

    def __init__(
        self, url: str, protocols: Iterable[str], *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        headers = [
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key),
        ]
        offered = list(protocols)
        if offered:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(offered)))
        http_url = url.replace("ws://", "http://", 1)
        self.sock, rest, self.response_headers = _http_upgrade(http_url, "GET", headers, timeout)
        self.sock.settimeout(None)
        expected = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()  # noqa: S324
        if self.response_headers.get("sec-websocket-accept") != expected:
            self.sock.close()
            raise ConnectionError("the server's Sec-WebSocket-Accept is wrong")
        self.protocol = self.response_headers.get("sec-websocket-protocol", "")
        self._reader = _Buffered(self.sock, rest)
        self._send_lock = threading.Lock()
        self.close_code: int | None = None
        self.close_sent = False
        self.pongs: list[bytes] = []

    def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", (0x80 if fin else 0) | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack(">BBH", (0x80 if fin else 0) | opcode, 0x80 | 126, n)
        else:
            head = struct.pack(">BBQ", (0x80 if fin else 0) | opcode, 0x80 | 127, n)
        with self._send_lock:
            self.sock.sendall(head + mask + masked)

    def send_binary(self, payload: bytes) -> None:
        self.send(2, payload)

    def send_unmasked(self, opcode: int, payload: bytes) -> None:
        """A frame breaking RFC 6455 (clients must mask), for negative tests."""
        with self._send_lock:
            self.sock.sendall(struct.pack(">BB", 0x80 | opcode, len(payload)) + payload)

    def receive(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next data message; None once closed."""
        parts: list[bytes] = []
        opcode = 0
        while True:
            head = self._reader.exact(2)
            if head is None:
                return None
            fin, op, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
            if head[1] & 0x80:
                raise ConnectionError("the server masked a frame (servers must not)")
            if length == 126:
                raw = self._reader.exact(2)
                length = struct.unpack(">H", raw or b"\0\0")[0]
            elif length == 127:
                raw = self._reader.exact(8)
                length = struct.unpack(">Q", raw or bytes(8))[0]
            payload = self._reader.exact(length) if length else b""
            if payload is None:
                return None
            if op == 8:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                if not self.close_sent:
                    self.close(self.close_code if self.close_code != 1005 else 1000)
                return None
            if op == 9:
                self.send(10, payload)
                continue
            if op == 10:
                self.pongs.append(payload)
                continue
            if op in (1, 2):
                opcode = op
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)

    def close(self, code: int = 1000) -> None:
        if not self.close_sent:
            self.close_sent = True
            with contextlib.suppress(OSError):
                self.send(8, struct.pack(">H", code))

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


# --- remote command -------------------------------------------------------------------------


@dataclass
class Outcome:
    stdout: bytes = b""
    stderr: bytes = b""
    status: dict[str, Any] | None = None
    """The JSON status from the error stream (None when none came)."""
    protocol: str = ""

    @property
    def exit_code(self) -> int | None:
        """0 for Success, the ExitCode cause for NonZeroExitCode, else None."""
        if self.status is None:
            return None
        if self.status.get("status") == "Success":
            return 0
        if self.status.get("reason") == "NonZeroExitCode":
            for cause in self.status.get("details", {}).get("causes", []):
                if cause.get("reason") == "ExitCode":
                    return int(cause["message"])
        return None


def _parse_status(raw: bytes) -> dict[str, Any] | None:
    return json.loads(raw) if raw else None


class SpdyRemoteCommand:
    """An exec/attach session over SPDY, set up as client-go does: the error
    stream first, then stdin, stdout, stderr, resize as wanted."""

    def __init__(
        self,
        url: str,
        *,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tty: bool = False,
        protocols: Iterable[str] = ("v4.channel.k8s.io",),
        flow_control: bool = False,
        initial_size: tuple[int, int] | None = None,
    ) -> None:
        self.conn = SpdyConnection(url, protocols, flow_control=flow_control)
        self.streams: dict[str, ClientStream] = {}
        wanted = ["error"]
        wanted += ["stdin"] if stdin else []
        wanted += ["stdout"] if stdout else []
        wanted += ["stderr"] if stderr and not tty else []
        wanted += ["resize"] if tty else []
        for kind in wanted:
            self.streams[kind] = self.conn.open_stream({"streamType": kind})
        self.streams["error"].close()  # the client never writes on it
        if initial_size is not None:
            self.resize(*initial_size)

    @property
    def protocol(self) -> str:
        return self.conn.protocol

    def write(self, data: bytes) -> None:
        self.streams["stdin"].write(data)

    def close_stdin(self) -> None:
        self.streams["stdin"].close()

    def resize(self, width: int, height: int) -> None:
        self.streams["resize"].write(
            json.dumps({"Width": width, "Height": height}).encode() + b"\n"
        )

    def read_stdout_until(self, needle: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        return self.streams["stdout"].read_until(needle, timeout)

    def finish(self, timeout: float = DEFAULT_TIMEOUT) -> Outcome:
        """Read everything to the end; the outcome."""
        outcome = Outcome(protocol=self.protocol)
        if "stdout" in self.streams:
            outcome.stdout = self.streams["stdout"].read_all(timeout)
        if "stderr" in self.streams:
            outcome.stderr = self.streams["stderr"].read_all(timeout)
        outcome.status = _parse_status(self.streams["error"].read_all(timeout))
        self.conn.wait_closed(timeout)
        self.conn.close()
        return outcome


class WsRemoteCommand:
    """An exec/attach session over WebSocket channels."""

    def __init__(
        self,
        url: str,
        *,
        stdin: bool = False,
        tty: bool = False,
        protocols: Iterable[str] = ("v5.channel.k8s.io",),
        initial_size: tuple[int, int] | None = None,
    ) -> None:
        self.client = WebSocketClient(url, protocols)
        self.stdin = stdin
        self.tty = tty
        self.channels: dict[int, bytearray] = {}
        self.first_message: bytes | None = None
        self.cond = threading.Condition()
        self.ended = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if initial_size is not None:
            self.resize(*initial_size)

    @property
    def protocol(self) -> str:
        return self.client.protocol

    def _run(self) -> None:
        try:
            while (message := self.client.receive()) is not None:
                _, payload = message
                with self.cond:
                    if self.first_message is None:
                        self.first_message = payload
                    if payload:
                        self.channels.setdefault(payload[0], bytearray()).extend(payload[1:])
                    self.cond.notify_all()
        except OSError:
            pass
        finally:
            with self.cond:
                self.ended = True
                self.cond.notify_all()

    def write(self, data: bytes) -> None:
        self.client.send_binary(b"\x00" + data)

    def close_stdin(self) -> None:
        self.client.send_binary(b"\xff\x00")

    def resize(self, width: int, height: int) -> None:
        self.client.send_binary(b"\x04" + json.dumps({"Width": width, "Height": height}).encode())

    def read_stdout_until(self, needle: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        with self.cond:
            if not self.cond.wait_for(
                lambda: needle in self.channels.get(1, b"") or self.ended, timeout
            ):
                raise TimeoutError(f"{needle!r} not seen; got {bytes(self.channels.get(1, b''))!r}")
            return bytes(self.channels.get(1, b""))

    def finish(self, timeout: float = DEFAULT_TIMEOUT) -> Outcome:
        with self.cond:
            self.cond.wait_for(lambda: self.ended, timeout)
        self._thread.join(timeout)
        self.client.shutdown()
        return Outcome(
            stdout=bytes(self.channels.get(1, b"")),
            stderr=bytes(self.channels.get(2, b"")),
            status=_parse_status(bytes(self.channels.get(3, b""))),
            protocol=self.protocol,
        )


# --- port forwarding -------------------------------------------------------------------------


@dataclass
class ForwardResult:
    data: bytes = b""
    error: bytes = b""
    streams: list[ClientStream] = field(default_factory=list)


def spdy_forward(
    conn: SpdyConnection,
    port: int,
    request_id: int,
    payload: bytes,
    *,
    half_close: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> ForwardResult:
    """One forwarded connection as kubectl makes it: error stream, data
    stream, send ``payload``, read the answer until the server ends it."""
    headers = {"port": str(port), "requestID": str(request_id)}
    error = conn.open_stream({"streamType": "error", **headers})
    error.close()
    data = conn.open_stream({"streamType": "data", **headers})
    if payload:
        data.write(payload)
    if half_close:
        data.close()
    answer = data.read_all(timeout)
    return ForwardResult(answer, error.read_all(timeout), [error, data])


def ws_forward(
    url: str,
    ports: list[int],
    payloads: Mapping[int, bytes],
    *,
    protocols: Iterable[str] = ("v4.channel.k8s.io",),
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[int, ForwardResult]:
    """Port forwarding over WebSocket: checks the port prefix on each
    channel's first message, sends each port's payload, reads until close."""
    query = "&".join(f"port={p}" for p in ports)
    client = WebSocketClient(f"{url}?{query}", protocols)
    first: dict[int, bytes] = {}
    results = {port: ForwardResult() for port in ports}
    try:
        for index, port in enumerate(ports):
            if payloads.get(port):
                client.send_binary(bytes([2 * index]) + payloads[port])
        client.sock.settimeout(timeout)
        while (message := client.receive()) is not None:
            _, body = message
            channel, rest = body[0], body[1:]
            if channel not in first:
                first[channel] = rest[:2]
                rest = rest[2:]
            port = ports[channel // 2]
            if channel % 2 == 0:
                results[port].data += rest
            else:
                results[port].error += rest
    finally:
        client.shutdown()
    for index, port in enumerate(ports):
        for channel in (2 * index, 2 * index + 1):
            if first.get(channel) != struct.pack("<H", port):
                raise AssertionError(f"channel {channel} did not start with port {port}: {first}")
    return results
