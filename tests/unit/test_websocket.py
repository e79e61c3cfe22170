"""RFC 6455, server side: handshake checks, framing, and a connection over a socketpair.

Client frames are built by hand here (not with the module's encoder), so
the parser is checked against an independent writer.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from skiff.cri.streaming import websocket as ws
from skiff.cri.streaming.errors import StreamClosed

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
V4, V5 = "v4.channel.k8s.io", "v5.channel.k8s.io"


def handshake(**extra: list[str]) -> dict[str, list[str]]:
    headers = {
        "connection": ["keep-alive, Upgrade"],
        "upgrade": ["websocket"],
        "sec-websocket-version": ["13"],
        "sec-websocket-key": [KEY],
    }
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


# --- handshake ------------------------------------------------------------------------------


def test_accept_key_is_the_rfc_example() -> None:
    assert ws.accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_handshake_picks_the_clients_first_supported_protocol() -> None:
    accept, chosen = ws.check_handshake(
        "GET",
        handshake(sec_websocket_protocol=["base64.channel.k8s.io, v4.channel.k8s.io", V5]),
        (V5, V4),
    )
    assert accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert chosen == V4


def test_no_subprotocol_is_accepted_only_where_allowed() -> None:
    assert ws.check_handshake("GET", handshake(), (V4, ""))[1] is None
    with pytest.raises(ws.HandshakeRefused) as refused:
        ws.check_handshake("GET", handshake(), (V5, V4))
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("POST", handshake(), 405),
        ("GET", handshake(upgrade=["h2c"]), 400),
        ("GET", handshake(connection=["keep-alive"]), 400),
        ("GET", handshake(sec_websocket_version=["8"]), 426),
        ("GET", handshake(sec_websocket_key=["short"]), 400),
        ("GET", handshake(sec_websocket_key=[KEY, KEY]), 400),
        ("GET", handshake(sec_websocket_protocol=["chat"]), 403),
    ],
    ids=["post", "no-upgrade", "no-connection", "version", "bad-key", "two-keys", "protocol"],
)
def test_bad_handshakes_are_refused(
    method: str, headers: dict[str, list[str]], status: int
) -> None:
    with pytest.raises(ws.HandshakeRefused) as refused:
        ws.check_handshake(method, headers, (V4,))
    assert refused.value.status == status
    if status == 426:
        assert ("Sec-WebSocket-Version", "13") in refused.value.headers


def test_header_tokens_split_repeated_and_comma_joined_values() -> None:
    assert ws.header_tokens(["a, b", " c ,", "d"]) == ["a", "b", "c", "d"]


# --- frames ---------------------------------------------------------------------------------


def test_masking_is_the_rfc_example_and_its_own_inverse() -> None:
    key = bytes.fromhex("37fa213d")
    assert ws.apply_mask(b"Hello", key) == bytes.fromhex("7f9f4d5158")
    data = bytes(range(256)) * 3
    assert ws.apply_mask(ws.apply_mask(data, key), key) == data
    assert ws.apply_mask(b"", key) == b""


@pytest.mark.parametrize(
    ("size", "head"),
    [
        (0, "8200"),
        (125, "827d"),
        (126, "827e007e"),
        (65535, "827effff"),
        (65536, "827f0000000000010000"),
    ],
)
def test_server_frame_lengths(size: int, head: str) -> None:
    frame = ws.encode_frame(ws.OP_BINARY, b"x" * size)
    assert frame[: len(head) // 2] == bytes.fromhex(head)
    assert len(frame) == len(head) // 2 + size


# --- the connection -------------------------------------------------------------------------


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, (0x80 if masked else 0) | n])
    elif n < 65536:
        head = bytes([first, (0x80 if masked else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, (0x80 if masked else 0) | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    mask = b"\x11\x22\x33\x44"
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the server's next frame; None at the end."""
        self.sock.settimeout(5)
        head = self.file.read(2)
        if len(head) < 2:
            return None
        assert not head[1] & 0x80, "server frames are never masked"
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.file.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.file.read(8))[0]
        return head[0] & 0x0F, self.file.read(n)


@pytest.fixture
def conn_pair() -> Iterator[tuple[ws.WebSocketConnection, Client]]:
    server, client = socket.socketpair()
    rfile = server.makefile("rb")
    conn = ws.WebSocketConnection(rfile, server, max_message=1000)
    try:
        yield conn, Client(client)
    finally:
        client.close()
        rfile.close()
        server.close()


def test_binary_message_is_unmasked(conn_pair: tuple[ws.WebSocketConnection, Client]) -> None:
    conn, client = conn_pair
    client.send(client_frame(ws.OP_BINARY, b"\x00hello"))
    assert conn.receive() == ws.Message(ws.OP_BINARY, b"\x00hello")


def test_fragments_are_joined_and_pings_answered_in_between(
    conn_pair: tuple[ws.WebSocketConnection, Client],
) -> None:
    conn, client = conn_pair
    client.send(client_frame(ws.OP_TEXT, "hé".encode()[:2], fin=False))
    client.send(client_frame(ws.OP_PING, b"are you there"))
    client.send(client_frame(ws.OP_CONTINUATION, "hé".encode()[2:] + b"llo"))
    assert conn.receive() == ws.Message(ws.OP_TEXT, "héllo".encode())
    assert client.frame() == (ws.OP_PONG, b"are you there")


def test_server_messages_reach_the_client(conn_pair: tuple[ws.WebSocketConnection, Client]) -> None:
    conn, client = conn_pair
    conn.send_binary(b"\x01out")
    conn.send_text("text")
    assert client.frame() == (ws.OP_BINARY, b"\x01out")
    assert client.frame() == (ws.OP_TEXT, b"text")


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([client_frame(ws.OP_BINARY, b"x", masked=False)], ws.CLOSE_PROTOCOL_ERROR),
        ([client_frame(ws.OP_BINARY, b"x", rsv=4)], ws.CLOSE_PROTOCOL_ERROR),
        ([client_frame(ws.OP_PING, b"p" * 126)], ws.CLOSE_PROTOCOL_ERROR),
        ([client_frame(ws.OP_PING, b"p", fin=False)], ws.CLOSE_PROTOCOL_ERROR),
        ([client_frame(ws.OP_CONTINUATION, b"x")], ws.CLOSE_PROTOCOL_ERROR),
        (
            [client_frame(ws.OP_BINARY, b"x", fin=False), client_frame(ws.OP_BINARY, b"y")],
            ws.CLOSE_PROTOCOL_ERROR,
        ),
        ([client_frame(0x3, b"x")], ws.CLOSE_PROTOCOL_ERROR),
        ([client_frame(ws.OP_BINARY, b"x" * 1001)], ws.CLOSE_TOO_BIG),
        (
            [
                client_frame(ws.OP_BINARY, b"x" * 600, fin=False),
                client_frame(ws.OP_CONTINUATION, b"x" * 600),
            ],
            ws.CLOSE_TOO_BIG,
        ),
        ([client_frame(ws.OP_TEXT, b"\xff\xfe")], ws.CLOSE_INVALID_DATA),
        ([client_frame(ws.OP_CLOSE, b"\x03")], ws.CLOSE_PROTOCOL_ERROR),
        ([client_frame(ws.OP_CLOSE, struct.pack(">H", 999))], ws.CLOSE_PROTOCOL_ERROR),
        ([client_frame(ws.OP_CLOSE, struct.pack(">H", 1005))], ws.CLOSE_PROTOCOL_ERROR),
    ],
    ids=[
        "unmasked",
        "rsv",
        "long-ping",
        "fragmented-ping",
        "lone-continuation",
        "nested-message",
        "unknown-opcode",
        "frame-too-big",
        "message-too-big",
        "bad-utf8",
        "one-byte-close",
        "close-999",
        "close-1005",
    ],
)
def test_violations_fail_the_connection(
    conn_pair: tuple[ws.WebSocketConnection, Client], frames: list[bytes], code: int
) -> None:
    conn, client = conn_pair
    for frame in frames:
        client.send(frame)
    assert conn.receive() is None
    assert conn.ended
    opcode, payload = client.frame() or (0, b"")
    assert opcode == ws.OP_CLOSE
    assert struct.unpack(">H", payload[:2])[0] == code
    assert client.frame() is None  # and the connection is shut
    with pytest.raises(StreamClosed):
        conn.send_binary(b"late")


def test_client_close_is_answered(conn_pair: tuple[ws.WebSocketConnection, Client]) -> None:
    conn, client = conn_pair
    client.send(client_frame(ws.OP_CLOSE, struct.pack(">H", 1001) + b"bye"))
    assert conn.receive() is None
    assert (conn.close_code, conn.close_reason) == (1001, "bye")
    assert client.frame() == (ws.OP_CLOSE, struct.pack(">H", 1001))


def test_empty_close_is_answered_without_a_code(
    conn_pair: tuple[ws.WebSocketConnection, Client],
) -> None:
    conn, client = conn_pair
    client.send(client_frame(ws.OP_CLOSE, b""))
    assert conn.receive() is None
    assert conn.close_code == ws.CLOSE_NO_STATUS
    assert client.frame() == (ws.OP_CLOSE, b"")


def test_connection_lost_mid_frame(conn_pair: tuple[ws.WebSocketConnection, Client]) -> None:
    conn, client = conn_pair
    client.send(client_frame(ws.OP_BINARY, b"abcdef")[:5])
    client.sock.shutdown(socket.SHUT_WR)
    assert conn.receive() is None
    assert conn.close_code == ws.CLOSE_ABNORMAL


def test_server_close_waits_for_the_clients_answer_read_by_another_thread(
    conn_pair: tuple[ws.WebSocketConnection, Client],
) -> None:
    conn, client = conn_pair
    messages: list[ws.Message] = []
    first = threading.Event()

    def read_all() -> None:
        while (message := conn.receive()) is not None:
            messages.append(message)
            first.set()

    reader = threading.Thread(target=read_all)
    reader.start()
    client.send(client_frame(ws.OP_BINARY, b"first"))
    assert first.wait(5)
    closer = threading.Thread(target=conn.close, kwargs={"code": ws.CLOSE_NORMAL, "reason": "done"})
    closer.start()
    assert client.frame() == (ws.OP_CLOSE, struct.pack(">H", 1000) + b"done")
    assert closer.is_alive()  # waiting for the client's answer, which the reader will see
    client.send(client_frame(ws.OP_CLOSE, struct.pack(">H", 1000)))
    closer.join(5)
    reader.join(5)
    assert not closer.is_alive() and not reader.is_alive()
    assert messages == [ws.Message(ws.OP_BINARY, b"first")]
    assert conn.close_code == 1000


def test_server_close_without_a_reader_drains_until_the_client_closes(
    conn_pair: tuple[ws.WebSocketConnection, Client],
) -> None:
    conn, client = conn_pair
    client.send(client_frame(ws.OP_BINARY, b"unread"))
    client.send(client_frame(ws.OP_CLOSE, struct.pack(">H", 1000)))
    conn.close()
    assert client.frame() == (ws.OP_CLOSE, struct.pack(">H", 1000))
    assert conn.ended
