"""Exec and attach over SPDY or WebSocket: Kubernetes' remote-command protocol.

Versions served: ``v4.channel.k8s.io`` and ``v5.channel.k8s.io`` (negotiated
through ``X-Stream-Protocol-Version`` for SPDY and the WebSocket
subprotocol; the client's first supported choice wins). Both report the
outcome as a JSON ``Status`` on the error stream/channel:

    {"metadata":{},"status":"Success"}
    {"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: ...",
     "reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}

and anything that went wrong before the process ran as ``InternalError``
(code 500). v5 adds closing stdin alone: over SPDY that is always possible
(FIN on the stdin stream, so v4 and v5 behave the same), over WebSocket it
is the CLOSE signal, a message on channel 255 naming the channel (v4
clients can only close the whole connection).

SPDY: the client opens one stream per purpose, named by its ``streamType``
header: ``error`` always, ``stdin``/``stdout``/``stderr`` as the request
says (no ``stderr`` with a terminal: it is merged into stdout), ``resize``
with a terminal. The server waits (up to ``stream_creation_timeout``) for
exactly those, resets any other, serves, then closes stdout/stderr, writes
the status on ``error``, closes it and ends the session.

WebSocket: one binary message per chunk, prefixed by its channel: 0 stdin,
1 stdout, 2 stderr, 3 error (the status), 4 resize, 255 CLOSE (v5). On
open the server sends an empty message on the lowest channel it writes
(stdout, else stderr, else error) so the client knows the session is up,
as the Kubernetes servers do.

Resize messages are JSON ``{"Width":W,"Height":H}``; with a terminal the
server waits up to ``initial_resize_wait`` for the first one before it
starts an exec, so that the process starts with the client's size rather
than getting a SIGWINCH right after it started (programs that read the
size once, like ``stty size``, would otherwise race the client).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from skiff.cri.streaming import websocket as ws
from skiff.cri.streaming.errors import ProtocolViolation, StreamClosed
from skiff.cri.streaming.model import AttachRequest, ExecRequest, RuntimeHooks
from skiff.cri.streaming.spdyconn import DataHandler, SpdySession, SpdyStream
from skiff.cri.streaming.streams import (
    ByteSource,
    InboundBuffer,
    OutputStream,
    ResizeDecoder,
    ResizeEvents,
    SessionIO,
)
from skiff.errors import CommandNotFound, CommandNotInvokable, SkiffError

log = logging.getLogger(__name__)

V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
PROTOCOLS = (V5, V4)
"""What this server speaks, for SPDY and WebSocket alike."""

STREAM_TYPE_HEADER = "streamtype"
ERROR, STDIN, STDOUT, STDERR, RESIZE = "error", "stdin", "stdout", "stderr", "resize"

CHANNEL_STDIN = 0
CHANNEL_STDOUT = 1
CHANNEL_STDERR = 2
CHANNEL_ERROR = 3
CHANNEL_RESIZE = 4
CHANNEL_CLOSE = 255


@dataclass(frozen=True)
class SessionOptions:
    stream_creation_timeout: float = 30.0
    """How long a SPDY client has to open the streams it must open."""
    initial_resize_wait: float = 1.0
    """How long a terminal exec waits for the client's first size."""


# --- status ---------------------------------------------------------------------------------


def _status(**fields: Any) -> bytes:
    # field order and compact separators as Go's encoding of metav1.Status
    return json.dumps({"metadata": {}, **fields}, separators=(",", ":")).encode()


def status_success() -> bytes:
    return _status(status="Success")


def status_exit_code(code: int, detail: str) -> bytes:
    return _status(
        status="Failure",
        message=f"command terminated with non-zero exit code: {detail}",
        reason="NonZeroExitCode",
        details={"causes": [{"reason": "ExitCode", "message": str(code)}]},
    )


def status_internal_error(message: str) -> bytes:
    return _status(
        status="Failure",
        message=f"Internal error occurred: {message}",
        reason="InternalError",
        details={"causes": [{"message": message}]},
        code=500,
    )


def run_request(
    request: ExecRequest | AttachRequest,
    io: SessionIO,
    hooks: RuntimeHooks,
    options: SessionOptions,
) -> bytes:
    """Serve ``request`` through ``hooks``; the status to report."""
    try:
        if isinstance(request, ExecRequest):
            if request.tty and not io.resize.wait_first(options.initial_resize_wait):
                log.debug("exec with a terminal: the client sent no size")
            if io.cancellation.cancelled:
                return status_internal_error("the client went away before the command ran")
            code = hooks.exec(request, io)
            if code == 0:
                return status_success()
            command = " ".join(request.cmd)
            return status_exit_code(code, f"error executing command [{command}], exit code {code}")
        hooks.attach(request, io)
        return status_success()
    except (CommandNotFound, CommandNotInvokable) as exc:
        return status_exit_code(exc.exit_code, str(exc))
    except SkiffError as exc:
        what = "executing command in" if isinstance(request, ExecRequest) else "attaching to"
        return status_internal_error(f"error {what} container {request.container_id}: {exc}")
    except Exception as exc:
        log.exception("streaming request for container %s failed", request.container_id)
        return status_internal_error(f"{type(exc).__name__}: {exc}")


def _resize_handler(events: ResizeEvents) -> Callable[[bytes], None]:
    decoder = ResizeDecoder()
    broken = False

    def handle(data: bytes) -> None:
        nonlocal broken
        if not data or broken:
            return
        try:
            sizes = decoder.feed(data)
        except ProtocolViolation as exc:
            log.info("ignoring the rest of a resize stream: %s", exc.message)
            broken = True
            return
        for size in sizes:
            events.push(size)

    return handle


# --- SPDY -----------------------------------------------------------------------------------


def expected_streams(request: ExecRequest | AttachRequest) -> set[str]:
    wanted = {ERROR}
    if request.stdin:
        wanted.add(STDIN)
    if request.stdout:
        wanted.add(STDOUT)
    if request.stderr and not request.tty:
        wanted.add(STDERR)
    if request.tty:
        wanted.add(RESIZE)
    return wanted


def collect_streams(
    session: SpdySession, wanted: set[str], timeout: float
) -> dict[str, SpdyStream]:
    """The client's streams, one per wanted type (others are reset)."""
    deadline = time.monotonic() + timeout
    found: dict[str, SpdyStream] = {}
    while set(found) != wanted:
        remaining = deadline - time.monotonic()
        stream = session.accept(max(remaining, 0.0)) if remaining > 0 else None
        if stream is None:
            missing = ", ".join(sorted(wanted - set(found)))
            if session.closed.is_set():
                raise StreamClosed(f"the client closed the connection before opening {missing}")
            raise ProtocolViolation(
                f"timed out waiting for the client to create streams: {missing}"
            )
        kind = stream.header(STREAM_TYPE_HEADER)
        if kind not in wanted or kind in found:
            log.info("resetting unexpected %r stream %d", kind, stream.id)
            stream.abort()
            continue
        found[kind] = stream
    return found


def serve_spdy(
    rfile: ByteSource,
    sock: socket.socket,
    request: ExecRequest | AttachRequest,
    hooks: RuntimeHooks,
    options: SessionOptions,
) -> None:
    """Serve one exec or attach on a connection just upgraded to SPDY/3.1."""
    resize = ResizeEvents()
    on_resize = _resize_handler(resize)

    def handler_for(headers: dict[str, str]) -> DataHandler | None:
        return on_resize if headers.get(STREAM_TYPE_HEADER) == RESIZE else None

    session = SpdySession(rfile, sock, handler_for)
    session.start()
    try:
        try:
            streams = collect_streams(
                session, expected_streams(request), options.stream_creation_timeout
            )
        except (ProtocolViolation, StreamClosed) as exc:
            log.info("%s session for container %s: %s", _kind(request), request.container_id, exc)
            return
        io = SessionIO(
            stdin=streams[STDIN].inbound if STDIN in streams else None,
            stdout=None,
            stderr=None,
            tty=request.tty,
            resize=resize,
        )
        cancel = io.cancellation.cancel
        if STDOUT in streams:
            io.stdout = OutputStream(streams[STDOUT].write, cancel)
        if STDERR in streams:
            io.stderr = OutputStream(streams[STDERR].write, cancel)
        session.on_closed(cancel)
        if session.closed.is_set():
            cancel()
        status = run_request(request, io, hooks, options)
        io.cancellation.finish()
        for name in (STDOUT, STDERR):
            if name in streams:
                streams[name].close()
        if STDIN in streams:
            streams[STDIN].inbound.abort()  # a relay still reading stdin stops now
        error = streams[ERROR]
        try:
            error.write(status)
        except StreamClosed:
            log.debug("could not report the status: the client is gone")
        error.close()
    finally:
        session.close()


# --- WebSocket ------------------------------------------------------------------------------


def serve_websocket(
    conn: ws.WebSocketConnection,
    protocol: str,
    request: ExecRequest | AttachRequest,
    hooks: RuntimeHooks,
    options: SessionOptions,
) -> None:
    """Serve one exec or attach on a connection just upgraded to WebSocket."""
    v5 = protocol == V5
    stdin = InboundBuffer() if request.stdin else None
    io = SessionIO(stdin=stdin, stdout=None, stderr=None, tty=request.tty)
    cancel = io.cancellation.cancel

    def channel_writer(channel: int) -> Callable[[bytes], None]:
        prefix = bytes([channel])
        return lambda data: conn.send_binary(prefix + data)

    if request.stdout:
        io.stdout = OutputStream(channel_writer(CHANNEL_STDOUT), cancel)
    if request.stderr and not request.tty:
        io.stderr = OutputStream(channel_writer(CHANNEL_STDERR), cancel)
    first = CHANNEL_STDOUT if io.stdout else CHANNEL_STDERR if io.stderr else CHANNEL_ERROR
    try:
        conn.send_binary(bytes([first]))
    except StreamClosed:
        return
    reader = threading.Thread(
        target=_demultiplex,
        args=(conn, stdin, _resize_handler(io.resize), v5, cancel),
        name="ws-reader",
        daemon=True,
    )
    reader.start()
    status = run_request(request, io, hooks, options)
    io.cancellation.finish()
    if stdin is not None:
        stdin.abort()
    try:
        conn.send_binary(bytes([CHANNEL_ERROR]) + status)
    except StreamClosed:
        log.debug("could not report the status: the client is gone")
    conn.close(ws.CLOSE_NORMAL)
    reader.join(ws.CLOSE_TIMEOUT)


def _demultiplex(
    conn: ws.WebSocketConnection,
    stdin: InboundBuffer | None,
    on_resize: Callable[[bytes], None],
    v5: bool,
    cancel: Callable[[], None],
) -> None:
    """The reader thread: route the client's messages by channel."""
    try:
        while (message := conn.receive()) is not None:
            if message.opcode != ws.OP_BINARY or not message.data:
                continue  # the binary protocol has no use for text or empty messages
            channel, data = message.data[0], message.data[1:]
            if channel == CHANNEL_STDIN:
                if stdin is not None:
                    stdin.feed(data)
            elif channel == CHANNEL_RESIZE:
                on_resize(data)
            elif channel == CHANNEL_CLOSE and v5:
                if data[:1] == bytes([CHANNEL_STDIN]) and stdin is not None:
                    stdin.end()
            else:
                log.debug("ignoring a message on channel %d", channel)
    finally:
        if stdin is not None and not stdin.ended:
            stdin.abort()
        cancel()


def _kind(request: ExecRequest | AttachRequest) -> str:
    return "exec" if isinstance(request, ExecRequest) else "attach"


def negotiate(offered: Sequence[str], supported: Sequence[str] = PROTOCOLS) -> str | None:
    """The first protocol the client offered (in its order) that is supported."""
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None
