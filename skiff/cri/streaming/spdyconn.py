"""A SPDY/3.1 session, server side: streams the client opens, multiplexed
over one upgraded HTTP connection.

One reader thread decodes frames and routes them; any thread may write
(frames go out whole, under one lock, and header blocks are compressed
under that lock too because the compressor is one stateful zlib stream).
Every SYN_STREAM the client sends is answered with a SYN_REPLY at once,
as the kubelet does, and queued for ``accept``.

Flow control (SPDY/3.1: 64 KiB initial windows per stream and per
session). Receiving: a stream's data is buffered (``InboundBuffer``) and
WINDOW_UPDATEs — stream and session — are sent as the consumer reads it,
so a client that honours windows is held to what we have room for.
Sending: windows are tracked from the start but only *enforced* once the
client has shown it does flow control (it sent a WINDOW_UPDATE or a
SETTINGS INITIAL_WINDOW_SIZE). The SPDY library kubectl, crictl and the
kubelet use (moby/spdystream) neither sends nor reads window updates;
holding such a client to 64 KiB would stall every transfer larger than
that, so it is not held to it.

A stream can hand its data to a callback in the reader thread instead of
buffering it (the session's ``handler_for`` picks one from the stream's
headers when it opens, before any of its data is read): the resize stream
uses that, so a resize is applied before any stdin that follows it on the
wire.

The session ends when the client closes the connection, sends something
malformed (GOAWAY with PROTOCOL_ERROR, then close), or ``close`` is
called: GOAWAY, then our write side is shut down and the rest of what the
client sends is drained until it closes too (closing a socket with unread
data would reset it and could destroy output the client has not read yet).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Callable

from skiff.cri.streaming import spdy
from skiff.cri.streaming.errors import ProtocolViolation, StreamClosed
from skiff.cri.streaming.streams import ByteSource, InboundBuffer, read_exact

log = logging.getLogger(__name__)

DataHandler = Callable[[bytes], None]
"""Takes a stream's data in the reader thread; b"" once the stream ended."""

MAX_DATA_FRAME = 32 * 1024
"""Outbound data is cut into frames of at most this size."""
WINDOW_UPDATE_THRESHOLD = spdy.DEFAULT_WINDOW // 4
"""Consumed bytes are acknowledged once this many accumulate (or the buffer empties)."""
DRAIN_TIMEOUT = 5.0
"""How long ``close`` waits for the client to close its side."""


class SpdyStream:
    """One stream the client opened (see the module docstring)."""

    def __init__(
        self,
        session: SpdySession,
        stream_id: int,
        headers: spdy.Headers,
        handler: DataHandler | None = None,
    ) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.inbound = InboundBuffer(on_consumed=self._consumed)
        self._handler = handler
        self._ack_lock = threading.Lock()
        self.remote_closed = False
        self.local_closed = False
        self.reset = False
        self.send_window = session.initial_send_window
        self._unacked = 0

    def header(self, name: str) -> str:
        """A header's value ("" when absent); ``name`` in any case."""
        return self.headers.get(name.lower(), "")

    # --- reading ----------------------------------------------------------------------

    def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes; b"" once the client closed the stream, reset it,
        or the connection ended (``inbound.aborted`` tells the latter two)."""
        return self.inbound.read(n)

    def _deliver(self, data: bytes, fin: bool) -> None:
        """From the reader thread."""
        if self._handler is not None:
            if data:
                self._handler(data)
                self._consumed(len(data))
            if fin:
                self._end_handler()
            return
        if data:
            self.inbound.feed(data)
        if fin:
            self.inbound.end()

    def _consumed(self, n: int) -> None:
        if self.remote_closed or self.reset:
            return
        with self._ack_lock:
            self._unacked += n
            delta = 0
            if self._unacked >= WINDOW_UPDATE_THRESHOLD or not self.inbound.buffered:
                delta, self._unacked = self._unacked, 0
        if delta:
            self.session.acknowledge(self.id, delta)

    def _end_handler(self) -> None:
        if self._handler is not None:
            handler, self._handler = self._handler, None
            try:
                handler(b"")
            except Exception:
                log.exception("the data handler of SPDY stream %d failed", self.id)

    # --- writing ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send ``data`` (blocks under flow control); StreamClosed when the
        stream was closed by us, reset, or the connection is gone."""
        view = memoryview(data)
        while view:
            size = self.session.reserve(self, min(len(view), MAX_DATA_FRAME))
            self.session.send_frame(spdy.DataFrame(self.id, bytes(view[:size])))
            view = view[size:]

    def close(self) -> None:
        """Half-close: FIN on our side (idempotent; a reset stream is left alone)."""
        with self.session.state_lock:
            if self.local_closed or self.reset:
                return
            self.local_closed = True
        with contextlib.suppress(StreamClosed, OSError):
            self.session.send_frame(spdy.DataFrame(self.id, b"", spdy.FLAG_FIN))

    def abort(self, status: int = spdy.CANCEL) -> None:
        """RST_STREAM: the stream is over in both directions."""
        with self.session.state_lock:
            if self.reset:
                return
            self.reset = True
            self.local_closed = True
            self.session.state_lock.notify_all()
        self.inbound.abort()
        with contextlib.suppress(StreamClosed, OSError):
            self.session.send_frame(spdy.RstStream(self.id, status))


class SpdySession:
    """The server side of one SPDY/3.1 connection."""

    def __init__(
        self,
        rfile: ByteSource,
        sock: socket.socket,
        handler_for: Callable[[spdy.Headers], DataHandler | None] | None = None,
    ) -> None:
        self._rfile = rfile
        self._handler_for = handler_for
        self._sock = sock
        self._reader = spdy.FrameReader(self._read_exact, spdy.HeaderDecompressor())
        self._compressor = spdy.HeaderCompressor()
        self._send_lock = threading.Lock()
        self.state_lock = threading.Condition()
        self._streams: dict[int, SpdyStream] = {}
        self._accepted: queue.Queue[SpdyStream | None] = queue.Queue()
        self._last_client_id = 0
        self._goaway_sent = False
        self._write_failed = False
        self.flow_control = False
        """Whether the client does flow control (see the module docstring)."""
        self.initial_send_window = spdy.DEFAULT_WINDOW
        self._session_send_window = spdy.DEFAULT_WINDOW
        self.closed = threading.Event()
        """Set when the reader ended: the client closed or broke the connection."""
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="spdy-reader", daemon=True)
        self._on_closed: list[Callable[[], None]] = []

    def start(self) -> None:
        self._thread.start()

    def on_closed(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (in the reader thread) when the connection ends."""
        self._on_closed.append(fn)

    # --- accepting ------------------------------------------------------------------------

    def accept(self, timeout: float | None = None) -> SpdyStream | None:
        """The next stream the client opened; None when the connection ended
        or ``timeout`` passed."""
        if self.closed.is_set() and self._accepted.empty():
            return None
        try:
            stream = self._accepted.get(timeout=timeout)
        except queue.Empty:
            return None
        if stream is None:
            self._accepted.put(None)  # keep telling later callers
        return stream

    # --- sending ----------------------------------------------------------------------------

    def send_frame(self, frame: spdy.Frame) -> None:
        with self._send_lock:
            if self._write_failed:
                raise StreamClosed("the SPDY connection is closed")
            data = spdy.encode_frame(frame, self._compressor)
            try:
                self._sock.sendall(data)
            except OSError as exc:
                self._write_failed = True
                raise StreamClosed(f"cannot write to the SPDY connection: {exc}") from exc

    def reserve(self, stream: SpdyStream, wanted: int) -> int:
        """How much of ``wanted`` bytes may go out on ``stream`` now (waits
        while flow control says nothing may); the windows are charged."""
        with self.state_lock:
            while True:
                if stream.local_closed or stream.reset:
                    raise StreamClosed(f"SPDY stream {stream.id} is closed")
                if self.closed.is_set() or self._write_failed:
                    raise StreamClosed("the SPDY connection is closed")
                if not self.flow_control:
                    size = wanted
                    break
                room = min(stream.send_window, self._session_send_window)
                if room > 0:
                    size = min(wanted, room)
                    break
                self.state_lock.wait()
            stream.send_window -= size
            self._session_send_window -= size
            return size

    def acknowledge(self, stream_id: int, delta: int) -> None:
        """WINDOW_UPDATEs for ``delta`` bytes the consumer of a stream read."""
        if self.closed.is_set():
            return
        with contextlib.suppress(StreamClosed):
            self.send_frame(spdy.WindowUpdate(stream_id, delta))
            self.send_frame(spdy.WindowUpdate(0, delta))

    # --- closing ----------------------------------------------------------------------------

    def close(self, status: int = spdy.GOAWAY_OK, drain: float = DRAIN_TIMEOUT) -> None:
        """GOAWAY, shut our side, drain the client's side, close (see the docstring)."""
        with self.state_lock:
            send_goaway = not self._goaway_sent
            self._goaway_sent = True
            last = self._last_client_id
        if send_goaway:
            with contextlib.suppress(StreamClosed):
                self.send_frame(spdy.GoAway(last, status))
        with self._send_lock:
            self._write_failed = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(drain)
        if self._thread.is_alive():
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    # --- the reader -------------------------------------------------------------------------

    def _read_exact(self, n: int) -> bytes:
        return read_exact(self._rfile, n)

    def _run(self) -> None:
        try:
            while True:
                frame = self._reader.read()
                if frame is None:
                    break
                self._dispatch(frame)
        except ProtocolViolation as exc:
            self.error = exc.message
            log.info("SPDY client broke the protocol: %s", exc.message)
            with self.state_lock:
                self._goaway_sent = True
                last = self._last_client_id
            with contextlib.suppress(StreamClosed):
                self.send_frame(spdy.GoAway(last, spdy.GOAWAY_PROTOCOL_ERROR))
        except (OSError, ValueError) as exc:
            self.error = str(exc)
            log.debug("SPDY connection ended: %s", exc)
        finally:
            self._finish()

    def _finish(self) -> None:
        with self.state_lock:
            self.closed.set()
            streams = list(self._streams.values())
            self.state_lock.notify_all()
        for stream in streams:
            if not stream.remote_closed:
                stream.inbound.abort()
                stream._end_handler()
        self._accepted.put(None)
        for fn in self._on_closed:
            try:
                fn()
            except Exception:
                log.exception("a SPDY close callback failed")

    def _dispatch(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.DataFrame):
            self._on_data(frame)
        elif isinstance(frame, spdy.SynStream):
            self._on_syn_stream(frame)
        elif isinstance(frame, spdy.RstStream):
            self._on_rst(frame)
        elif isinstance(frame, spdy.WindowUpdate):
            self._on_window_update(frame)
        elif isinstance(frame, spdy.Settings):
            self._on_settings(frame)
        elif isinstance(frame, spdy.Ping):
            if frame.ping_id % 2 == 1:  # the client's ping (ours would be even): echo it
                with contextlib.suppress(StreamClosed):
                    self.send_frame(frame)
        elif isinstance(frame, spdy.HeadersFrame):
            stream = self._streams.get(frame.stream_id)
            if stream is not None and frame.fin:
                self._remote_fin(stream)
        elif isinstance(frame, spdy.GoAway):
            log.debug("SPDY client sent GOAWAY (last stream %d)", frame.last_good_stream_id)
        # SYN_REPLY (we open no streams) and unknown control frames are ignored

    def _on_syn_stream(self, frame: spdy.SynStream) -> None:
        sid = frame.stream_id
        with self.state_lock:
            if self._goaway_sent:
                refuse: int | None = spdy.REFUSED_STREAM
            elif sid in self._streams:
                refuse = spdy.STREAM_IN_USE
            elif sid % 2 == 0 or sid <= self._last_client_id:
                refuse = spdy.PROTOCOL_ERROR
            else:
                refuse = None
                self._last_client_id = sid
                handler = self._handler_for(frame.headers) if self._handler_for else None
                stream = SpdyStream(self, sid, frame.headers, handler)
                self._streams[sid] = stream
        if refuse is not None:
            with contextlib.suppress(StreamClosed):
                self.send_frame(spdy.RstStream(sid, refuse))
            return
        with contextlib.suppress(StreamClosed):
            self.send_frame(spdy.SynReply(sid, {}))
        if frame.fin or frame.unidirectional:
            self._remote_fin(stream)
        self._accepted.put(stream)

    def _on_data(self, frame: spdy.DataFrame) -> None:
        stream = self._streams.get(frame.stream_id)
        if stream is None:
            with contextlib.suppress(StreamClosed):
                self.send_frame(spdy.RstStream(frame.stream_id, spdy.INVALID_STREAM))
            return
        if stream.reset:
            return
        if stream.remote_closed:
            stream.abort(spdy.STREAM_ALREADY_CLOSED)
            return
        if frame.fin:
            stream.remote_closed = True
        stream._deliver(frame.data, frame.fin)

    def _remote_fin(self, stream: SpdyStream) -> None:
        if stream.remote_closed:
            return
        stream.remote_closed = True
        stream._deliver(b"", True)

    def _on_rst(self, frame: spdy.RstStream) -> None:
        stream = self._streams.get(frame.stream_id)
        if stream is None:
            return
        with self.state_lock:
            stream.reset = True
            stream.local_closed = True
            self.state_lock.notify_all()
        if not stream.remote_closed:
            stream.inbound.abort()
            stream._end_handler()

    def _on_window_update(self, frame: spdy.WindowUpdate) -> None:
        with self.state_lock:
            self.flow_control = True
            if frame.stream_id == 0:
                self._session_send_window = min(
                    self._session_send_window + frame.delta, spdy.MAX_WINDOW
                )
            else:
                stream = self._streams.get(frame.stream_id)
                if stream is not None:
                    stream.send_window = min(stream.send_window + frame.delta, spdy.MAX_WINDOW)
            self.state_lock.notify_all()

    def _on_settings(self, frame: spdy.Settings) -> None:
        value = frame.value(spdy.SETTINGS_INITIAL_WINDOW_SIZE)
        if value is None:
            return
        if value > spdy.MAX_WINDOW:
            raise ProtocolViolation(f"SPDY initial window size {value} is out of range")
        with self.state_lock:
            self.flow_control = True
            delta = value - self.initial_send_window
            self.initial_send_window = value
            for stream in self._streams.values():
                stream.send_window += delta
            self.state_lock.notify_all()
