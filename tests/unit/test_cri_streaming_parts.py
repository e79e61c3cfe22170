"""The streaming server's pure parts: session streams, resize messages, tokens,
request validation, status JSON, addresses."""

from __future__ import annotations

import json
import threading

import pytest

from skiff.cri.streaming.backend import parse_address
from skiff.cri.streaming.errors import ProtocolViolation
from skiff.cri.streaming.model import AttachRequest, ExecRequest, PortForwardRequest
from skiff.cri.streaming.portforward import parse_port, query_ports
from skiff.cri.streaming.remotecommand import (
    expected_streams,
    negotiate,
    status_exit_code,
    status_internal_error,
    status_success,
)
from skiff.cri.streaming.streams import (
    Cancellation,
    InboundBuffer,
    OutputStream,
    ResizeDecoder,
    ResizeEvents,
    TerminalSize,
)
from skiff.cri.streaming.tokens import RequestCache
from skiff.errors import ContainerError, UsageError

# --- inbound buffers ------------------------------------------------------------------------


def test_inbound_buffer_reads_in_order_then_the_end() -> None:
    consumed: list[int] = []
    buffer = InboundBuffer(on_consumed=consumed.append)
    buffer.feed(b"abc")
    buffer.feed(b"defg")
    assert buffer.read(2) == b"ab"
    assert buffer.read(10) == b"cdefg"
    buffer.end()
    assert buffer.read() == b""
    assert buffer.ended and not buffer.aborted
    assert consumed == [2, 5]


def test_inbound_buffer_abort_drops_data_and_is_not_an_end() -> None:
    buffer = InboundBuffer()
    buffer.feed(b"unread")
    buffer.abort()
    assert buffer.read() == b""
    assert buffer.aborted and not buffer.ended
    buffer.feed(b"late")  # ignored
    assert buffer.read() == b""


def test_inbound_buffer_read_times_out() -> None:
    with pytest.raises(TimeoutError):
        InboundBuffer().read(timeout=0.01)


def test_inbound_buffer_holds_the_feeder_back_over_its_limit() -> None:
    buffer = InboundBuffer(limit=4)
    buffer.feed(b"1234")
    fed = threading.Event()
    feeder = threading.Thread(target=lambda: (buffer.feed(b"5"), fed.set()))
    feeder.start()
    assert not fed.wait(0.05)  # over the limit: the feeder waits for the reader
    assert buffer.read(2) == b"12"
    assert fed.wait(5)
    assert buffer.read() == b"345"
    feeder.join()


# --- outbound -----------------------------------------------------------------------------


def test_output_stream_drops_writes_after_a_failure_and_reports_once() -> None:
    sent: list[bytes] = []
    failures: list[int] = []

    def send(data: bytes) -> None:
        if data == b"boom":
            raise BrokenPipeError("gone")
        sent.append(data)

    stream = OutputStream(send, lambda: failures.append(1))
    assert stream.write(b"one") == 3
    assert stream.write(b"boom") == 4
    assert stream.write(b"two") == 3  # dropped, not raised
    stream.flush()
    assert sent == [b"one"]
    assert failures == [1]
    assert stream.failed


# --- resize -----------------------------------------------------------------------------------


def test_resize_decoder_handles_split_and_joined_messages() -> None:
    decoder = ResizeDecoder()
    assert decoder.feed(b'{"Width":80,') == []
    assert decoder.feed(b'"Height":24}\n{"Width":1') == [TerminalSize(80, 24)]
    assert decoder.feed(b'00,"Height":30}{"Height":5,"Width":6}') == [
        TerminalSize(100, 30),
        TerminalSize(6, 5),
    ]
    assert decoder.feed(b"  \n") == []


@pytest.mark.parametrize(
    "data",
    [
        b"[1,2]",
        b'{"Width":"80","Height":24}',
        b'{"Width":-1,"Height":1}',
        b"\xff\xfe{}",
        b"x" * 5000,
    ],
)
def test_resize_decoder_rejects_garbage(data: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        ResizeDecoder().feed(data)


def test_resize_events_give_the_latest_to_a_late_subscriber() -> None:
    events = ResizeEvents()
    assert not events.wait_first(0.01)
    events.push(TerminalSize(1, 2))
    events.push(TerminalSize(3, 4))
    got: list[TerminalSize] = []
    events.subscribe(got.append)
    events.push(TerminalSize(5, 6))
    events.unsubscribe(got.append)
    events.push(TerminalSize(7, 8))
    assert got == [TerminalSize(3, 4), TerminalSize(5, 6)]
    assert events.wait_first(0)


def test_resize_subscriber_errors_do_not_escape() -> None:
    events = ResizeEvents()

    def fail(_: TerminalSize) -> None:
        raise ContainerError("the ctl fifo is gone")

    events.subscribe(fail)
    events.push(TerminalSize(1, 1))  # logged, not raised


# --- cancellation ---------------------------------------------------------------------------


def test_cancellation_runs_callbacks_once_and_late_ones_at_once() -> None:
    calls: list[str] = []
    cancellation = Cancellation()
    cancellation.add_callback(lambda: calls.append("early"))
    cancellation.cancel()
    cancellation.cancel()
    cancellation.add_callback(lambda: calls.append("late"))
    assert calls == ["early", "late"]
    assert cancellation.cancelled


def test_finished_sessions_ignore_cancellation() -> None:
    calls: list[str] = []
    cancellation = Cancellation()
    cancellation.add_callback(lambda: calls.append("x"))
    cancellation.finish()
    cancellation.cancel()
    assert calls == []


# --- tokens -----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_are_single_use_and_expire() -> None:
    clock = Clock()
    cache = RequestCache(ttl=60, clock=clock)
    request = ExecRequest("c", ("true",))
    first = cache.insert(request)
    second = cache.insert(request)
    assert first != second and len(first) >= 20
    assert cache.consume(first) == request
    assert cache.consume(first) is None
    clock.now += 60
    assert cache.consume(second) is None
    assert len(cache) == 0


def test_tokens_in_flight_are_bounded() -> None:
    clock = Clock()
    cache = RequestCache(ttl=10, max_in_flight=2, clock=clock)
    cache.insert(AttachRequest("c"))
    cache.insert(AttachRequest("c"))
    with pytest.raises(ContainerError, match="2 are already waiting"):
        cache.insert(AttachRequest("c"))
    clock.now += 11  # expired ones make room
    cache.insert(AttachRequest("c"))


# --- requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (ExecRequest("", ("sh",)), "container ID is required"),
        (ExecRequest("c", ()), "command is empty"),
        (ExecRequest("c", ("sh",), tty=True, stderr=True), "tty and stderr"),
        (ExecRequest("c", ("sh",), stdout=False, stderr=False), "one of stdin"),
        (AttachRequest("c", stdout=False, stderr=False), "one of stdin"),
        (PortForwardRequest(""), "sandbox ID is required"),
        (PortForwardRequest("p", (0,)), "out of range"),
    ],
)
def test_requests_are_validated(
    request_: ExecRequest | AttachRequest | PortForwardRequest, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        request_.validate()


def test_expected_streams_follow_the_request() -> None:
    assert expected_streams(ExecRequest("c", ("sh",))) == {"error", "stdout", "stderr"}
    assert expected_streams(ExecRequest("c", ("sh",), tty=True, stdin=True, stderr=False)) == {
        "error",
        "stdin",
        "stdout",
        "resize",
    }
    assert expected_streams(AttachRequest("c", stdin=True, stdout=False, stderr=False)) == {
        "error",
        "stdin",
    }


def test_protocol_negotiation_follows_the_clients_order() -> None:
    assert negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"]) == "v4.channel.k8s.io"
    assert negotiate(["v3.channel.k8s.io", "v5.channel.k8s.io"]) == "v5.channel.k8s.io"
    assert negotiate(["v2.channel.k8s.io"]) is None
    assert negotiate([]) is None


# --- status JSON ----------------------------------------------------------------------------


def test_status_documents_are_metav1_status() -> None:
    assert status_success() == b'{"metadata":{},"status":"Success"}'
    assert json.loads(status_exit_code(3, "boom")) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: boom",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    internal = json.loads(status_internal_error("no such container"))
    assert internal["reason"] == "InternalError"
    assert internal["code"] == 500
    assert internal["message"] == "Internal error occurred: no such container"
    assert internal["details"]["causes"] == [{"message": "no such container"}]


# --- addresses and ports --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:10010", ("127.0.0.1", 10010)),
        ("127.0.0.1", ("127.0.0.1", 0)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::1]", ("::1", 0)),
        ("::1", ("::1", 0)),  # a bare IPv6 address: no port
    ],
)
def test_parse_address(text: str, parsed: tuple[str, int]) -> None:
    assert parse_address(text) == parsed


@pytest.mark.parametrize("text", [":80", "host:port", "1.2.3.4:70000", "[::1", "[::1]x", "[]:80"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_address(text)


def test_ports() -> None:
    assert parse_port("8080") == 8080
    assert query_ports(["80,443", "8080"]) == (80, 443, 8080)
    for bad in ("0", "65536", "-1", " 80", "8o", "", "٣"):
        with pytest.raises(UsageError):
            parse_port(bad)
