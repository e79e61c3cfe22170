"""Port forwarding over SPDY (``portforward.k8s.io``) and WebSocket.

SPDY: every forwarded connection is a pair of streams the client opens,
``streamType: error`` then ``streamType: data``, both with ``port`` and
``requestID`` headers (clients older than Kubernetes 1.4 send no
requestID; the pair is then matched by stream IDs, the data stream's
being the error stream's plus 2). Once both exist the server dials the
port inside the sandbox and copies bytes both ways: the client's FIN on
the data stream shuts our side of the TCP connection for writing, and
the end of what the port sends closes the data stream. A failure (no such
sandbox, connection refused) is written as text on the error stream. A
pair not complete within ``stream_creation_timeout`` is reset. One SPDY
connection carries any number of pairs, to any ports, until the client
closes it.

WebSocket (``v4.channel.k8s.io``, ``portforward.k8s.io``, or no
subprotocol): the ports are fixed when connecting (the CRI request's, else
the ``port`` query parameters); port *i* gets channels 2i (data, both
ways) and 2i+1 (error, server to client), and the first message the
server sends on each starts with the port number as two little-endian
bytes. One connection per port, dialled at once; the WebSocket closes when
every port's connection has ended.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from skiff.cri.streaming import websocket as ws
from skiff.cri.streaming.errors import StreamClosed
from skiff.cri.streaming.model import PortDialer, PortForwardRequest
from skiff.cri.streaming.spdyconn import SpdySession, SpdyStream
from skiff.cri.streaming.streams import ByteSource, InboundBuffer
from skiff.errors import ContainerError, SkiffError, UsageError

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
WEBSOCKET_PROTOCOLS = ("v4.channel.k8s.io", PROTOCOL, "")
CHUNK = 32 * 1024


# --- copying ---------------------------------------------------------------------------------


def _pump_to_socket(
    read: Callable[[], bytes], conn: socket.socket, aborted: Callable[[], bool]
) -> None:
    """Client → port, until the client closes its side."""
    try:
        while chunk := read():
            conn.sendall(chunk)
        how = socket.SHUT_RDWR if aborted() else socket.SHUT_WR
        conn.shutdown(how)
    except OSError as exc:
        log.debug("port forward: writing to the port failed: %s", exc)


def _pump_from_socket(conn: socket.socket, write: Callable[[bytes], None]) -> None:
    """Port → client, until the port closes its side (or the client is gone)."""
    try:
        while chunk := conn.recv(CHUNK):
            write(chunk)
    except OSError as exc:
        log.debug("port forward: reading from the port failed: %s", exc)
    except StreamClosed:
        log.debug("port forward: the client stream is gone")


def parse_port(text: str) -> int:
    """A TCP port number, 1-65535, in plain decimal."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise UsageError(f"invalid port {text!r}", "ports are 1-65535")
    return int(text)


def _dial(request: PortForwardRequest, port: int, dial: PortDialer) -> socket.socket:
    if request.ports and port not in request.ports:
        allowed = ", ".join(map(str, request.ports))
        raise UsageError(f"port {port} was not requested", f"this session forwards {allowed}")
    try:
        return dial(request.sandbox_id, port)
    except OSError as exc:
        raise ContainerError(f"cannot connect to port {port}: {exc.strerror or exc}") from exc


def _failure_message(request: PortForwardRequest, port: int | str, exc: BaseException) -> str:
    return f"error forwarding port {port} to pod {request.sandbox_id}: {exc}"


# --- SPDY ------------------------------------------------------------------------------------


@dataclass
class _Pair:
    created: float
    error: SpdyStream | None = None
    data: SpdyStream | None = None


@dataclass
class _Forwards:
    """The connections a session made, so its end can stop them all."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sockets: set[socket.socket] = field(default_factory=set)
    threads: list[threading.Thread] = field(default_factory=list)

    def add(self, conn: socket.socket) -> None:
        with self.lock:
            self.sockets.add(conn)

    def discard(self, conn: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(conn)

    def stop(self) -> None:
        with self.lock:
            for conn in self.sockets:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            threads = list(self.threads)
        for thread in threads:
            thread.join(5.0)


def _request_id(stream: SpdyStream, kind: str) -> str:
    given = stream.header("requestid")
    if given:
        return given
    return str(stream.id if kind == "error" else stream.id - 2)


def serve_spdy_portforward(
    rfile: ByteSource,
    sock: socket.socket,
    request: PortForwardRequest,
    dial: PortDialer,
    stream_creation_timeout: float = 30.0,
) -> None:
    """Serve port forwarding on a connection just upgraded to SPDY/3.1."""
    session = SpdySession(rfile, sock)
    session.start()
    pairs: dict[str, _Pair] = {}
    forwards = _Forwards()
    try:
        while True:
            wait = 1.0
            if pairs:
                oldest = min(p.created for p in pairs.values())
                wait = max(0.05, oldest + stream_creation_timeout - time.monotonic())
            stream = session.accept(min(wait, 1.0))
            _expire(pairs, stream_creation_timeout)
            if stream is None:
                if session.closed.is_set():
                    break
                continue
            kind = stream.header("streamtype")
            if kind not in ("error", "data"):
                log.info("port forward: resetting a stream of type %r", kind)
                stream.abort()
                continue
            request_id = _request_id(stream, kind)
            pair = pairs.setdefault(request_id, _Pair(time.monotonic()))
            if getattr(pair, kind) is not None:
                log.info("port forward: request %s has two %s streams", request_id, kind)
                stream.abort()
                continue
            setattr(pair, kind, stream)
            if pair.error is not None and pair.data is not None:
                del pairs[request_id]
                thread = threading.Thread(
                    target=_forward_pair,
                    args=(pair.error, pair.data, request, dial, forwards),
                    name=f"portforward-{request_id}",
                    daemon=True,
                )
                with forwards.lock:
                    forwards.threads.append(thread)
                thread.start()
    finally:
        forwards.stop()
        session.close()


def _expire(pairs: dict[str, _Pair], timeout: float) -> None:
    now = time.monotonic()
    for request_id in [r for r, p in pairs.items() if p.created + timeout <= now]:
        pair = pairs.pop(request_id)
        log.info("port forward: request %s timed out waiting for its other stream", request_id)
        for stream in (pair.error, pair.data):
            if stream is not None:
                stream.abort()


def _forward_pair(
    error: SpdyStream,
    data: SpdyStream,
    request: PortForwardRequest,
    dial: PortDialer,
    forwards: _Forwards,
) -> None:
    port_text = data.header("port")
    try:
        port = parse_port(port_text)
        conn = _dial(request, port, dial)
    except SkiffError as exc:
        message = _failure_message(request, port_text, exc)
        log.info("%s", message)
        with contextlib.suppress(StreamClosed):
            error.write(message.encode())
        error.close()
        data.close()
        return
    forwards.add(conn)
    try:
        upstream = threading.Thread(
            target=_pump_to_socket,
            args=(data.read, conn, lambda: data.inbound.aborted),
            name=f"portforward-in-{port}",
            daemon=True,
        )
        upstream.start()
        _pump_from_socket(conn, data.write)
        data.close()
        error.close()
    finally:
        forwards.discard(conn)
        conn.close()


# --- WebSocket -------------------------------------------------------------------------------


def query_ports(values: list[str]) -> tuple[int, ...]:
    """Ports from ``port`` query parameters (each may list several, comma-separated)."""
    ports = []
    for value in values:
        for part in value.split(","):
            ports.append(parse_port(part))
    return tuple(ports)


def serve_websocket_portforward(
    conn: ws.WebSocketConnection,
    request: PortForwardRequest,
    ports: tuple[int, ...],
    dial: PortDialer,
) -> None:
    """Serve port forwarding on a connection just upgraded to WebSocket."""
    inbound = [InboundBuffer() for _ in ports]
    try:
        for index, port in enumerate(ports):
            prefix = struct.pack("<H", port)
            conn.send_binary(bytes([2 * index]) + prefix)
            conn.send_binary(bytes([2 * index + 1]) + prefix)
    except StreamClosed:
        return
    reader = threading.Thread(
        target=_ws_demultiplex, args=(conn, inbound), name="ws-portforward", daemon=True
    )
    reader.start()
    forwards = _Forwards()
    workers = [
        threading.Thread(
            target=_ws_forward,
            args=(conn, request, index, port),
            kwargs={"inbound": inbound[index], "dial": dial, "forwards": forwards},
            name=f"ws-portforward-{port}",
            daemon=True,
        )
        for index, port in enumerate(ports)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    conn.close(ws.CLOSE_NORMAL)
    forwards.stop()
    reader.join(ws.CLOSE_TIMEOUT)


def _ws_demultiplex(conn: ws.WebSocketConnection, inbound: list[InboundBuffer]) -> None:
    try:
        while (message := conn.receive()) is not None:
            if message.opcode != ws.OP_BINARY or not message.data:
                continue
            channel, data = message.data[0], message.data[1:]
            if channel % 2 == 0 and channel // 2 < len(inbound):
                inbound[channel // 2].feed(data)
    finally:
        for buffer in inbound:
            buffer.abort()


def _ws_forward(
    conn: ws.WebSocketConnection,
    request: PortForwardRequest,
    index: int,
    port: int,
    *,
    inbound: InboundBuffer,
    dial: PortDialer,
    forwards: _Forwards,
) -> None:
    data_prefix, error_prefix = bytes([2 * index]), bytes([2 * index + 1])
    try:
        target = _dial(request, port, dial)
    except SkiffError as exc:
        message = _failure_message(request, port, exc)
        log.info("%s", message)
        with contextlib.suppress(StreamClosed):
            conn.send_binary(error_prefix + message.encode())
        return
    forwards.add(target)
    try:
        upstream = threading.Thread(
            target=_pump_to_socket,
            args=(inbound.read, target, lambda: inbound.aborted),
            name=f"ws-portforward-in-{port}",
            daemon=True,
        )
        upstream.start()
        _pump_from_socket(target, lambda chunk: conn.send_binary(data_prefix + chunk))
    finally:
        forwards.discard(target)
        target.close()
