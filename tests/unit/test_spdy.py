"""SPDY/3.1: frames, header blocks, and the server session over a socketpair.

The client side of the session tests writes frames with the test client's
own coder (skiff.testing.k8sclient) or by hand, so the server's coder is
checked against an independent one.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from skiff.cri.streaming import spdy
from skiff.cri.streaming.errors import ProtocolViolation, StreamClosed
from skiff.cri.streaming.spdyconn import SpdySession, SpdyStream

# --- the dictionary -------------------------------------------------------------------------


def test_dictionary_is_the_spdy3_one() -> None:
    d = spdy.HEADER_DICTIONARY
    assert len(d) == 1423
    assert zlib.adler32(d) == 0xE3C6A7C2
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_compressed_blocks_name_the_dictionary() -> None:
    block = spdy.HeaderCompressor().compress({"streamtype": "error"})
    # zlib header with FDICT set, then the dictionary's Adler-32
    assert block[1] & 0x20
    assert struct.unpack(">I", block[2:6])[0] == zlib.adler32(spdy.HEADER_DICTIONARY)


# --- header blocks --------------------------------------------------------------------------


def test_header_block_round_trip_over_one_zlib_stream() -> None:
    out, back = spdy.HeaderCompressor(), spdy.HeaderDecompressor()
    blocks = [
        {"streamtype": "stdout"},
        {"streamtype": "data", "port": "8080", "requestid": "0"},
        {"multi": "a\0b", "empty": ""},
    ]
    for headers in blocks:
        assert back.decompress(out.compress(headers)) == headers


def test_header_blocks_from_an_independent_coder() -> None:
    from skiff.testing.k8sclient import SpdyConnection

    client = object.__new__(SpdyConnection)
    client._deflate = zlib.compressobj(  # the test client's own coder
        9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, spdy.HEADER_DICTIONARY
    )
    back = spdy.HeaderDecompressor()
    assert back.decompress(client._headers_out({"streamType": "resize"})) == {
        "streamtype": "resize"
    }
    assert back.decompress(client._headers_out({"port": "80", "requestID": "7"})) == {
        "port": "80",
        "requestid": "7",
    }


def _raw_block(pairs: list[tuple[bytes, bytes]], count: int | None = None) -> bytes:
    out = struct.pack(">I", len(pairs) if count is None else count)
    for name, value in pairs:
        out += struct.pack(">I", len(name)) + name + struct.pack(">I", len(value)) + value
    return out


@pytest.mark.parametrize(
    "block",
    [
        _raw_block([(b"Upper", b"x")]),
        _raw_block([(b"", b"x")]),
        _raw_block([(b"a", b"1"), (b"a", b"2")]),
        _raw_block([(b"a", b"1")], count=2),
        _raw_block([(b"a", b"1")]) + b"junk",
        _raw_block([(b"a", b"\xff")]),
        b"\x00\x00",
    ],
    ids=["upper", "empty-name", "duplicate", "truncated", "trailing", "not-utf8", "short"],
)
def test_bad_header_blocks_are_protocol_violations(block: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        spdy.decode_header_block(block)


def test_encoder_refuses_upper_case_names() -> None:
    with pytest.raises(ValueError, match="lower case"):
        spdy.encode_header_block({"streamType": "x"})


def test_header_bomb_is_refused() -> None:
    raw = _raw_block([(b"x", b"a" * (2 << 20))])
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, spdy.HEADER_DICTIONARY)
    block = z.compress(raw) + z.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(ProtocolViolation, match="inflates beyond"):
        spdy.HeaderDecompressor().decompress(block)


# --- frames ---------------------------------------------------------------------------------

FRAMES: list[spdy.Frame] = [
    spdy.DataFrame(1, b"hello"),
    spdy.DataFrame(3, b"", spdy.FLAG_FIN),
    spdy.DataFrame(spdy.MAX_STREAM_ID, b"x" * 70000),
    spdy.SynStream(5, {"streamtype": "stdin"}, spdy.FLAG_FIN, associated_id=3, priority=7, slot=2),
    spdy.SynReply(5, {}),
    spdy.SynReply(7, {"a": "b"}, spdy.FLAG_FIN),
    spdy.RstStream(9, spdy.CANCEL),
    spdy.Settings(((0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1000), (1, 4, 100))),
    spdy.Ping(42),
    spdy.GoAway(11, spdy.GOAWAY_PROTOCOL_ERROR),
    spdy.HeadersFrame(13, {"x": "y"}, spdy.FLAG_FIN),
    spdy.WindowUpdate(0, 65536),
    spdy.UnknownControl(42, 3, b"whatever"),
]


def _reader(data: bytes) -> spdy.FrameReader:
    pos = 0

    def read_exact(n: int) -> bytes:
        nonlocal pos
        chunk = data[pos : pos + n]
        pos += len(chunk)
        return chunk

    return spdy.FrameReader(read_exact, spdy.HeaderDecompressor())


def test_frames_round_trip() -> None:
    out = spdy.HeaderCompressor()
    wire = b"".join(spdy.encode_frame(f, out) for f in FRAMES)
    reader = _reader(wire)
    assert [reader.read() for _ in FRAMES] == FRAMES
    assert reader.read() is None


def test_wire_layout_of_control_and_data_frames() -> None:
    assert spdy.encode_frame(spdy.Ping(1)) == bytes.fromhex("80030006 00000004 00000001")
    assert spdy.encode_frame(spdy.DataFrame(3, b"ab", spdy.FLAG_FIN)) == bytes.fromhex(
        "00000003 01000002 6162"
    )
    assert spdy.encode_frame(spdy.RstStream(1, 5)) == bytes.fromhex(
        "80030003 00000008 00000001 00000005"
    )
    assert spdy.encode_frame(spdy.WindowUpdate(1, 10)) == bytes.fromhex(
        "80030009 00000008 00000001 0000000a"
    )
    assert spdy.encode_frame(spdy.GoAway(7, 0)) == bytes.fromhex(
        "80030007 00000008 00000007 00000000"
    )
    syn = spdy.encode_frame(spdy.SynStream(1, {}, priority=3), spdy.HeaderCompressor())
    assert syn[:4] == bytes.fromhex("80030001")
    assert syn[8:18] == bytes.fromhex("00000001 00000000 6000")


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (bytes.fromhex("80020006 00000004 00000001"), "version 2"),
        (bytes.fromhex("80030006 0000"), "inside a frame header"),
        (bytes.fromhex("00000001 00000010 6162"), "inside a frame"),
        (bytes.fromhex("80030003 00000004 00000001"), "RST_STREAM frame is too short"),
        (bytes.fromhex("80030004 00000008 00000002 00000007"), "does not fit 2 entries"),
    ],
)
def test_malformed_frames(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolViolation, match=message):
        _reader(wire).read()


def test_encoder_checks_ranges() -> None:
    with pytest.raises(ValueError):
        spdy.encode_frame(spdy.WindowUpdate(1, 0))
    with pytest.raises(ValueError):
        spdy.encode_frame(spdy.DataFrame(1 << 31, b""))
    with pytest.raises(ValueError):
        spdy.encode_frame(spdy.SynReply(1, {}))  # needs the compressor


# --- the session ----------------------------------------------------------------------------


@dataclass
class Peer:
    """The client end: writes frames with its own compressor, reads the server's."""

    sock: socket.socket
    out: spdy.HeaderCompressor
    reader: spdy.FrameReader

    def send(self, frame: spdy.Frame) -> None:
        self.sock.sendall(spdy.encode_frame(frame, self.out))

    def recv(self, timeout: float = 5.0) -> spdy.Frame | None:
        self.sock.settimeout(timeout)
        return self.reader.read()

    def recv_until(
        self, pred: Callable[[spdy.Frame], bool], timeout: float = 5.0
    ) -> list[spdy.Frame]:
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(f"connection ended; saw {seen}")
            seen.append(frame)
            if pred(frame):
                return seen


@pytest.fixture
def pair() -> Iterator[tuple[SpdySession, Peer]]:
    server_sock, client_sock = socket.socketpair()
    rfile = server_sock.makefile("rb")
    session = SpdySession(rfile, server_sock)
    session.start()
    client_file = client_sock.makefile("rb")

    def read_exact(n: int) -> bytes:
        return client_file.read(n)

    peer = Peer(
        client_sock,
        spdy.HeaderCompressor(),
        spdy.FrameReader(read_exact, spdy.HeaderDecompressor()),
    )
    try:
        yield session, peer
    finally:
        client_sock.shutdown(socket.SHUT_RDWR)  # the client goes: no drain to wait for
        session.close(drain=5)
        client_sock.close()
        rfile.close()
        server_sock.close()


def _open(session: SpdySession, peer: Peer, sid: int, **headers: str) -> SpdyStream:
    peer.send(spdy.SynStream(sid, dict(headers)))
    reply = peer.recv()
    assert reply == spdy.SynReply(sid, {})
    stream = session.accept(5)
    assert stream is not None and stream.id == sid
    return stream


def test_streams_are_replied_and_carry_data_both_ways(pair: tuple[SpdySession, Peer]) -> None:
    session, peer = pair
    stream = _open(session, peer, 1, streamtype="stdin")
    assert stream.header("streamType") == "stdin"
    peer.send(spdy.DataFrame(1, b"abc"))
    assert stream.read() == b"abc"
    # what the consumer read is acknowledged, on the stream and on the session
    updates = peer.recv_until(lambda f: isinstance(f, spdy.WindowUpdate) and f.stream_id == 0)
    assert updates == [spdy.WindowUpdate(1, 3), spdy.WindowUpdate(0, 3)]
    peer.send(spdy.DataFrame(1, b"def", spdy.FLAG_FIN))
    got = b""
    while chunk := stream.read():
        got += chunk
    assert got == b"def"
    assert stream.remote_closed and not stream.inbound.aborted
    stream.write(b"out")
    stream.close()
    frames = peer.recv_until(lambda f: isinstance(f, spdy.DataFrame) and f.fin)
    data = [f for f in frames if isinstance(f, spdy.DataFrame)]
    assert b"".join(f.data for f in data) == b"out"
    # no acknowledgement after the client's FIN: it sends nothing more
    assert not [f for f in frames if isinstance(f, spdy.WindowUpdate)]


def test_client_ping_is_echoed(pair: tuple[SpdySession, Peer]) -> None:
    _, peer = pair
    peer.send(spdy.Ping(7))
    assert peer.recv() == spdy.Ping(7)


@pytest.mark.parametrize(
    ("sid", "status"),
    [(2, spdy.PROTOCOL_ERROR), (1, spdy.STREAM_IN_USE)],
    ids=["even-id", "reused-id"],
)
def test_bad_stream_ids_are_reset(pair: tuple[SpdySession, Peer], sid: int, status: int) -> None:
    session, peer = pair
    _open(session, peer, 1)
    peer.send(spdy.SynStream(sid, {}))
    assert peer.recv() == spdy.RstStream(sid, status)


def test_data_for_an_unknown_stream_is_reset(pair: tuple[SpdySession, Peer]) -> None:
    _, peer = pair
    peer.send(spdy.DataFrame(9, b"x"))
    assert peer.recv() == spdy.RstStream(9, spdy.INVALID_STREAM)


def test_client_reset_ends_reads_and_writes(pair: tuple[SpdySession, Peer]) -> None:
    session, peer = pair
    stream = _open(session, peer, 1)
    peer.send(spdy.RstStream(1, spdy.CANCEL))
    assert stream.read() == b""
    assert stream.inbound.aborted
    with pytest.raises(StreamClosed):
        stream.write(b"x")


def test_malformed_frame_gets_goaway_and_ends_the_session(pair: tuple[SpdySession, Peer]) -> None:
    session, peer = pair
    stream = _open(session, peer, 1)
    peer.sock.sendall(bytes.fromhex("80020006 00000004 00000001"))  # SPDY/2 ping
    assert peer.recv() == spdy.GoAway(1, spdy.GOAWAY_PROTOCOL_ERROR)
    assert session.closed.wait(5)
    assert "version 2" in (session.error or "")
    assert stream.read() == b""
    assert stream.inbound.aborted
    assert session.accept(0.1) is None


def test_connection_loss_aborts_streams_and_calls_back(pair: tuple[SpdySession, Peer]) -> None:
    session, peer = pair
    called = threading.Event()
    session.on_closed(called.set)
    stream = _open(session, peer, 1)
    peer.sock.shutdown(socket.SHUT_WR)
    assert called.wait(5)
    assert stream.read() == b""
    assert stream.inbound.aborted


def test_data_handler_gets_data_in_order_and_the_end() -> None:
    server_sock, client_sock = socket.socketpair()
    got: list[bytes] = []
    session = SpdySession(
        server_sock.makefile("rb"),
        server_sock,
        lambda headers: got.append if headers.get("streamtype") == "resize" else None,
    )
    session.start()
    try:
        out = spdy.HeaderCompressor()
        for frame in (
            spdy.SynStream(1, {"streamtype": "resize"}),
            spdy.DataFrame(1, b"a"),
            spdy.DataFrame(1, b"b", spdy.FLAG_FIN),
            spdy.SynStream(3, {"streamtype": "stdin"}),
        ):
            client_sock.sendall(spdy.encode_frame(frame, out))
        session.accept(5)
        stdin = session.accept(5)
        assert stdin is not None and stdin.id == 3
        assert got == [b"a", b"b", b""]  # handled before the next stream was read
    finally:
        client_sock.shutdown(socket.SHUT_RDWR)
        session.close(drain=5)
        client_sock.close()
        server_sock.close()


def test_without_client_flow_control_writes_are_not_held_to_the_window(
    pair: tuple[SpdySession, Peer],
) -> None:
    session, peer = pair
    stream = _open(session, peer, 1)
    size = 3 * spdy.DEFAULT_WINDOW
    writer = threading.Thread(target=stream.write, args=(b"z" * size,))
    writer.start()
    received = 0
    while received < size:
        frame = peer.recv()
        if isinstance(frame, spdy.DataFrame):
            received += len(frame.data)
    writer.join(5)
    assert not writer.is_alive()
    assert not session.flow_control


def test_client_flow_control_is_enforced(pair: tuple[SpdySession, Peer]) -> None:
    session, peer = pair
    peer.send(spdy.Settings(((0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1000),)))
    stream = _open(session, peer, 1)
    assert session.flow_control
    writer = threading.Thread(target=stream.write, args=(b"q" * 5000,))
    writer.start()
    received = 0
    while received < 1000:
        frame = peer.recv()
        if isinstance(frame, spdy.DataFrame):
            received += len(frame.data)
    assert received == 1000
    assert stream.send_window == 0
    assert writer.is_alive()  # nothing more may go out: the writer waits
    peer.send(spdy.WindowUpdate(1, 4000))
    while received < 5000:
        frame = peer.recv()
        if isinstance(frame, spdy.DataFrame):
            received += len(frame.data)
    writer.join(5)
    assert not writer.is_alive()
    assert received == 5000


def test_session_window_limits_all_streams(pair: tuple[SpdySession, Peer]) -> None:
    session, peer = pair
    peer.send(spdy.WindowUpdate(0, 1))  # the client does flow control
    stream = _open(session, peer, 1)
    peer.send(spdy.WindowUpdate(1, 10 * spdy.DEFAULT_WINDOW))  # a big stream window
    writer = threading.Thread(target=stream.write, args=(b"s" * (2 * spdy.DEFAULT_WINDOW),))
    writer.start()
    received = 0
    while received < spdy.DEFAULT_WINDOW + 1:
        frame = peer.recv()
        if isinstance(frame, spdy.DataFrame):
            received += len(frame.data)
    assert received == spdy.DEFAULT_WINDOW + 1  # the session window, not the stream's
    assert writer.is_alive()
    peer.send(spdy.WindowUpdate(0, spdy.DEFAULT_WINDOW))
    writer.join(5)
    assert not writer.is_alive()


def test_close_sends_goaway_then_ends_the_connection(pair: tuple[SpdySession, Peer]) -> None:
    session, peer = pair
    _open(session, peer, 1)
    _open(session, peer, 3)
    closer = threading.Thread(target=session.close)
    closer.start()
    assert peer.recv() == spdy.GoAway(3, spdy.GOAWAY_OK)
    assert peer.recv() is None  # our write side is shut
    peer.sock.shutdown(socket.SHUT_WR)
    closer.join(5)
    assert not closer.is_alive()
    assert session.closed.is_set()


def test_streams_after_goaway_are_refused(pair: tuple[SpdySession, Peer]) -> None:
    session, peer = pair
    threading.Thread(target=session.close, kwargs={"drain": 2.0}).start()
    assert peer.recv() == spdy.GoAway(0, spdy.GOAWAY_OK)
    assert peer.recv() is None  # our side is shut after the GOAWAY
    peer.send(spdy.SynStream(1, {}))
    peer.sock.shutdown(socket.SHUT_WR)
    assert session.closed.wait(5)  # the reader read the SYN_STREAM, then the end
    assert session.accept(0) is None  # refused, never accepted
