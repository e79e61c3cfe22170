"""The CRI streaming server against real containers, with real protocol clients.

Containers run under conmon/runc in a private store (tmpfs) made with the
CLI; the server serves them through ``runtime_hooks`` (exec through
conmon's exec sessions, attach to conmon's socket, port forwarding into
the container's network namespace). The clients are the test's own SPDY
and WebSocket implementations (skiff.testing.k8sclient), written apart
from the server.

Covered: exec over SPDY (v4, v5) and WebSocket (v4, v5) — output, exit
codes as NonZeroExitCode, stdin and its close, a terminal with its size
before the start and live resizes, 1 MiB through both flow-control modes,
command not found, a container that is not running, a client that goes
away (its process is killed), the server stopping under a session; attach
to output and with stdin (WebSocket), with a terminal; port forwarding
over SPDY (several connections on one session, a refused port, a port
not in the request) and WebSocket, into a ``--network none`` container,
a bridge-network container (through its recorded namespace) and a pod
(through its infra container); tokens (unknown, used, expired, misrouted
→ 404), requests that do not upgrade (400) or share no protocol (403).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.cri.streaming.backend import StreamingServer
from skiff.cri.streaming.remotecommand import SessionOptions
from skiff.cri.streaming.runtimehooks import runtime_hooks, sandbox_netns
from skiff.errors import UsageError
from skiff.testing import shm_tempdir
from skiff.testing.busybox import INDEX_HTML, BusyboxImage
from skiff.testing.containers import ContainerEnv, wait_for
from skiff.testing.k8sclient import (
    SpdyConnection,
    SpdyRemoteCommand,
    UpgradeRefused,
    WebSocketClient,
    WsRemoteCommand,
    spdy_forward,
    ws_forward,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
    pytest.mark.timeout(120),
]

V4, V5 = "v4.channel.k8s.io", "v5.channel.k8s.io"
HTTP_GET = b"GET / HTTP/1.0\r\n\r\n"
HTTPD = ("busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/var/www")
"""A container command serving the image's /var/www on 127.0.0.1:8080."""


@pytest.fixture(scope="module")
def env(busybox_layout: BusyboxImage) -> Iterator[ContainerEnv]:
    with shm_tempdir("skiff-cri-streaming-") as base:
        environment = ContainerEnv(base / "env", busybox_layout)
        try:
            yield environment
        finally:
            environment.close()


@pytest.fixture(scope="module")
def server(env: ContainerEnv) -> Iterator[StreamingServer]:
    streaming = StreamingServer(runtime_hooks(env.context()))
    streaming.start("127.0.0.1:0")
    try:
        yield streaming
    finally:
        streaming.stop()


@pytest.fixture(scope="module")
def sleeper(env: ContainerEnv) -> str:
    """A running container to exec in."""
    return env.run_detached("--network", "none", env.image, "busybox", "sleep", "100000")


@pytest.fixture(scope="module")
def web(env: ContainerEnv) -> str:
    """busybox httpd on 127.0.0.1:8080 inside a --network none container."""
    cid = env.run_detached("--network", "none", env.image, *HTTPD)
    _wait_httpd(env, cid)
    return cid


def _wait_httpd(env: ContainerEnv, cid: str) -> None:
    """Wait until the container's httpd listens on 8080 in its network namespace."""
    wait_for(lambda: _listening(env.pid(cid), 8080), "httpd to listen", 20)


def _listening(pid: int, port: int) -> bool:
    """Whether something listens on ``port`` in the network namespace of ``pid``."""
    try:
        table = Path(f"/proc/{pid}/net/tcp").read_text()
    except OSError:
        return False
    return any(
        line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"
        for line in table.splitlines()[1:]
    )


def _processes(needle: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == needle:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# --- exec -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocols", [[V4], [V5, V4]], ids=["v4", "v5"])
def test_spdy_exec_echo(server: StreamingServer, sleeper: str, protocols: list[str]) -> None:
    url = server.register_exec(sleeper, ["echo", "hi"])
    session = SpdyRemoteCommand(url, protocols=protocols)
    outcome = session.finish()
    assert outcome.protocol == protocols[0]
    assert outcome.stdout == b"hi\n"
    assert outcome.stderr == b""
    assert outcome.status == {"metadata": {}, "status": "Success"}
    assert session.conn.goaway is not None  # the server ended the session


@pytest.mark.parametrize("protocol", [V5, V4])
def test_websocket_exec_echo(server: StreamingServer, sleeper: str, protocol: str) -> None:
    url = server.register_exec(sleeper, ["echo", "hi"])
    session = WsRemoteCommand(url, protocols=[protocol])
    outcome = session.finish()
    assert outcome.protocol == protocol
    assert session.first_message == b"\x01"  # an empty message on stdout: the session is up
    assert outcome.stdout == b"hi\n"
    assert outcome.status == {"metadata": {}, "status": "Success"}
    assert session.client.close_code == 1000


def test_spdy_exec_nonzero_exit_code(server: StreamingServer, sleeper: str) -> None:
    url = server.register_exec(sleeper, ["sh", "-c", "echo oops >&2; exit 3"])
    outcome = SpdyRemoteCommand(url).finish()
    assert outcome.stderr == b"oops\n"
    assert outcome.exit_code == 3
    assert outcome.status == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: "
        "error executing command [sh -c echo oops >&2; exit 3], exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }


def test_websocket_exec_nonzero_exit_code(server: StreamingServer, sleeper: str) -> None:
    url = server.register_exec(sleeper, ["sh", "-c", "echo oops >&2; exit 42"])
    outcome = WsRemoteCommand(url).finish()
    assert outcome.stderr == b"oops\n"
    assert outcome.exit_code == 42
    assert outcome.status is not None and outcome.status["reason"] == "NonZeroExitCode"


def test_spdy_exec_stdin_and_its_close(server: StreamingServer, sleeper: str) -> None:
    data = os.urandom(200_000)
    url = server.register_exec(sleeper, ["cat"], stdin=True)
    session = SpdyRemoteCommand(url, stdin=True)
    session.write(data)
    session.close_stdin()  # FIN on the stdin stream: cat sees the end and exits
    outcome = session.finish()
    assert outcome.stdout == data
    assert outcome.exit_code == 0


def test_websocket_v5_exec_stdin_close(server: StreamingServer, sleeper: str) -> None:
    url = server.register_exec(sleeper, ["sh", "-c", "wc -c; echo done"], stdin=True)
    session = WsRemoteCommand(url, stdin=True, protocols=[V5])
    session.write(b"x" * 70_000)
    session.close_stdin()  # the v5 CLOSE signal for channel 0
    outcome = session.finish()
    assert outcome.stdout.split() == [b"70000", b"done"]
    assert outcome.exit_code == 0


@pytest.mark.parametrize("flow_control", [False, True], ids=["spdystream-like", "windowed"])
def test_spdy_exec_large_output(server: StreamingServer, sleeper: str, flow_control: bool) -> None:
    url = server.register_exec(sleeper, ["head", "-c", "1048576", "/dev/zero"], stderr=False)
    session = SpdyRemoteCommand(url, stderr=False, flow_control=flow_control)
    outcome = session.finish()
    assert outcome.stdout == bytes(1048576)
    assert outcome.exit_code == 0
    # the server acknowledges nothing it did not receive; a windowed client
    # turns enforcement on, a spdystream-like one (no updates) does not
    assert session.conn.flow_control is flow_control


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_exec_tty_starts_with_the_clients_size(
    server: StreamingServer, sleeper: str, transport: str
) -> None:
    # after a moment: crun 1.8 sizes an exec's new terminal (process.consoleSize)
    # from its side while the command may already run (~1 in 40 saw 0 rows)
    command = ["sh", "-c", "sleep 0.3; stty size"]
    url = server.register_exec(sleeper, command, tty=True, stdin=True, stderr=False)
    if transport == "spdy":
        outcome = SpdyRemoteCommand(url, stdin=True, tty=True, initial_size=(123, 45)).finish()
    else:
        outcome = WsRemoteCommand(url, stdin=True, tty=True, initial_size=(123, 45)).finish()
    assert outcome.stdout == b"45 123\r\n"  # rows columns, through the terminal
    assert outcome.exit_code == 0


def test_exec_tty_live_resize(server: StreamingServer, sleeper: str) -> None:
    url = server.register_exec(sleeper, ["sh"], tty=True, stdin=True, stderr=False)
    session = SpdyRemoteCommand(url, stdin=True, tty=True, initial_size=(80, 24))
    session.write(b"stty size\n")
    session.read_stdout_until(b"24 80")
    session.resize(100, 30)
    deadline = time.monotonic() + 20
    seen = b""
    while b"30 100" not in seen:  # the resize and the next line race through conmon
        assert time.monotonic() < deadline, seen
        session.write(b"stty size\n")
        seen += session.streams["stdout"].read(5)
    session.write(b"exit 7\n")
    outcome = session.finish()
    assert outcome.exit_code == 7


def test_exec_command_not_found(server: StreamingServer, sleeper: str) -> None:
    url = server.register_exec(sleeper, ["no-such-command"])
    outcome = SpdyRemoteCommand(url).finish()
    assert outcome.exit_code == 127
    assert outcome.status is not None
    assert "no-such-command" in outcome.status["message"]


def test_exec_in_a_container_that_is_not_running(
    server: StreamingServer, env: ContainerEnv
) -> None:
    cid = env.skiff("create", "--network", "none", env.image, "busybox", "true").stdout.strip()
    url = server.register_exec(cid, ["echo", "hi"])
    outcome = SpdyRemoteCommand(url).finish()
    assert outcome.status is not None
    assert outcome.status["status"] == "Failure"
    assert outcome.status["reason"] == "InternalError"
    assert outcome.status["code"] == 500
    assert "is not running" in outcome.status["message"]
    env.skiff("rm", cid)


def test_exec_process_is_killed_when_the_client_goes_away(
    server: StreamingServer, sleeper: str
) -> None:
    needle = b"sleep\x004242\x00"
    url = server.register_exec(sleeper, ["sleep", "4242"])
    session = SpdyRemoteCommand(url)
    wait_for(lambda: bool(_processes(needle)), "the exec process to run", 20)
    session.conn.close()
    wait_for(lambda: not _processes(needle), "the exec process to be killed", 20)


def test_stopping_the_server_ends_its_sessions(env: ContainerEnv, sleeper: str) -> None:
    needle = b"sleep\x004343\x00"
    own = StreamingServer(runtime_hooks(env.context()))
    own.start()
    try:
        session = SpdyRemoteCommand(own.register_exec(sleeper, ["sleep", "4343"]))
        wait_for(lambda: bool(_processes(needle)), "the exec process to run", 20)
    finally:
        own.stop()
    assert session.conn.wait_closed(10)
    wait_for(lambda: not _processes(needle), "the exec process to be killed", 20)


# --- attach ---------------------------------------------------------------------------------


def test_attach_to_output_leaves_the_container_running(
    server: StreamingServer, env: ContainerEnv
) -> None:
    cid = env.run_detached(
        "--network", "none", env.image, "sh", "-c", "while true; do echo tick; sleep 0.1; done"
    )
    session = SpdyRemoteCommand(server.register_attach(cid))
    assert b"tick" in session.read_stdout_until(b"tick\n")
    session.conn.close()
    assert env.state(cid) == "running"
    # and a second client can attach again
    again = WsRemoteCommand(server.register_attach(cid))
    again.read_stdout_until(b"tick\n")
    again.client.shutdown()
    env.skiff("rm", "-f", "-t", "0", cid)


def test_attach_with_stdin_over_websocket(server: StreamingServer, env: ContainerEnv) -> None:
    cid = env.run_detached("-i", "--network", "none", env.image, "busybox", "cat")
    session = WsRemoteCommand(server.register_attach(cid, stdin=True), stdin=True)
    session.write(b"round trip\n")
    session.read_stdout_until(b"round trip\n")
    session.close_stdin()  # closes cat's stdin: it exits, and so does the container
    outcome = session.finish()
    assert outcome.status == {"metadata": {}, "status": "Success"}
    env.wait_state(cid, "exited")
    env.skiff("rm", cid)


def test_attach_with_a_terminal_and_resize(server: StreamingServer, env: ContainerEnv) -> None:
    cid = env.run_detached("-i", "-t", "--network", "none", env.image, "sh")
    url = server.register_attach(cid, tty=True, stdin=True, stderr=False)
    session = SpdyRemoteCommand(url, stdin=True, tty=True, initial_size=(77, 22))
    deadline = time.monotonic() + 20
    seen = b""
    while b"22 77" not in seen:
        assert time.monotonic() < deadline, seen
        session.write(b"stty size\n")
        seen += session.streams["stdout"].read(5)
    session.write(b"exit\n")
    outcome = session.finish()
    assert outcome.status == {"metadata": {}, "status": "Success"}
    env.wait_state(cid, "exited")
    env.skiff("rm", cid)


def test_attach_to_a_stopped_container_fails(server: StreamingServer, env: ContainerEnv) -> None:
    cid = env.skiff("create", "--network", "none", env.image, "busybox", "true").stdout.strip()
    outcome = SpdyRemoteCommand(server.register_attach(cid)).finish()
    assert outcome.status is not None and outcome.status["reason"] == "InternalError"
    assert "error attaching to container" in outcome.status["message"]
    env.skiff("rm", cid)


# --- port forwarding ---------------------------------------------------------------------------


def test_spdy_portforward(server: StreamingServer, web: str) -> None:
    conn = SpdyConnection(server.register_portforward(web), ["portforward.k8s.io"])
    assert conn.protocol == "portforward.k8s.io"
    try:
        for request_id in range(3):  # several connections over one session
            result = spdy_forward(conn, 8080, request_id, HTTP_GET)
            assert result.error == b""
            assert result.data.startswith(b"HTTP/1.")
            assert result.data.endswith(INDEX_HTML)
        refused = spdy_forward(conn, 8081, 10, HTTP_GET)
        assert refused.data == b""
        assert b"error forwarding port 8081" in refused.error
        assert b"connection refused" in refused.error
    finally:
        conn.close()


def test_spdy_portforward_keeps_to_the_requested_ports(server: StreamingServer, web: str) -> None:
    conn = SpdyConnection(server.register_portforward(web, [8080]), ["portforward.k8s.io"])
    try:
        assert spdy_forward(conn, 8080, 1, HTTP_GET).data.endswith(INDEX_HTML)
        other = spdy_forward(conn, 22, 2, b"")
        assert b"port 22 was not requested" in other.error
    finally:
        conn.close()


def test_spdy_portforward_concurrent_connections(server: StreamingServer, web: str) -> None:
    conn = SpdyConnection(server.register_portforward(web), ["portforward.k8s.io"])
    try:
        pairs = []
        for request_id in range(4):  # all open before any is answered
            headers = {"port": "8080", "requestID": str(request_id)}
            error = conn.open_stream({"streamType": "error", **headers})
            data = conn.open_stream({"streamType": "data", **headers})
            pairs.append((error, data))
        for _, data in pairs:
            data.write(HTTP_GET)
            data.close()
        for error, data in pairs:
            assert data.read_all().endswith(INDEX_HTML)
            assert error.read_all() == b""
    finally:
        conn.close()


@pytest.mark.parametrize("protocol", [V4, "portforward.k8s.io"])
def test_websocket_portforward(server: StreamingServer, web: str, protocol: str) -> None:
    results = ws_forward(
        server.register_portforward(web), [8080], {8080: HTTP_GET}, protocols=[protocol]
    )
    assert results[8080].error == b""
    assert results[8080].data.endswith(INDEX_HTML)


def test_websocket_portforward_reports_a_refused_port(server: StreamingServer, web: str) -> None:
    results = ws_forward(server.register_portforward(web), [8081], {})
    assert b"connection refused" in results[8081].error


def test_portforward_into_a_bridge_network_namespace(
    server: StreamingServer, env: ContainerEnv
) -> None:
    network = env.network()
    cid = env.run_detached("--network", network, env.image, *HTTPD)
    try:
        _wait_httpd(env, cid)
        from skiff.runtime.engine import Runtime

        with Runtime(env.context()) as rt:
            netns = sandbox_netns(rt, cid)
        assert netns is not None and netns.parent == env.runroot / "netns"  # the recorded one
        conn = SpdyConnection(server.register_portforward(cid), ["portforward.k8s.io"])
        try:
            assert spdy_forward(conn, 8080, 0, HTTP_GET).data.endswith(INDEX_HTML)
        finally:
            conn.close()
    finally:
        env.skiff("rm", "-f", "-t", "0", cid)


def test_portforward_into_a_pod_sandbox(server: StreamingServer, env: ContainerEnv) -> None:
    pod = env.skiff("pod", "create", "--name", "pf", "--network", "none").stdout.strip()
    try:
        cid = env.run_detached("--pod", "pf", env.image, *HTTPD)
        _wait_httpd(env, cid)
        conn = SpdyConnection(server.register_portforward(pod), ["portforward.k8s.io"])
        try:  # the pod's namespace is its infra container's, shared by the member
            assert spdy_forward(conn, 8080, 0, HTTP_GET).data.endswith(INDEX_HTML)
        finally:
            conn.close()
    finally:
        env.skiff("pod", "rm", "-f", "-t", "0", "pf")


# --- tokens and upgrades ------------------------------------------------------------------------


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_unknown_and_used_tokens_are_not_found(server: StreamingServer, sleeper: str) -> None:
    with pytest.raises(UpgradeRefused) as refused:
        SpdyRemoteCommand(f"{server.base_url}/exec/no-such-token")
    assert refused.value.status == 404
    url = server.register_exec(sleeper, ["true"])
    assert SpdyRemoteCommand(url).finish().exit_code == 0
    with pytest.raises(UpgradeRefused) as again:
        SpdyRemoteCommand(url)
    assert again.value.status == 404
    assert _get(f"{server.base_url}/nothing/here")[0] == 404


def test_tokens_expire(env: ContainerEnv, sleeper: str) -> None:
    own = StreamingServer(runtime_hooks(env.context()), token_ttl=0.2)
    own.start()
    try:
        url = own.register_exec(sleeper, ["true"])
        wait_for(lambda: len(own.cache) == 0, "the token to expire", 10)
        with pytest.raises(UpgradeRefused) as refused:
            SpdyRemoteCommand(url)
        assert refused.value.status == 404
    finally:
        own.stop()


def test_a_token_only_opens_its_own_kind(server: StreamingServer, sleeper: str) -> None:
    url = server.register_exec(sleeper, ["true"])
    with pytest.raises(UpgradeRefused) as refused:
        SpdyRemoteCommand(url.replace("/exec/", "/attach/"))
    assert refused.value.status == 404
    with pytest.raises(UpgradeRefused):  # and it is spent
        SpdyRemoteCommand(url)


def test_requests_that_do_not_upgrade_are_refused(server: StreamingServer, sleeper: str) -> None:
    status, _, body = _get(server.register_exec(sleeper, ["true"]))
    assert status == 400
    assert b"must upgrade to SPDY/3.1 or WebSocket" in body


def test_no_common_protocol_is_forbidden(server: StreamingServer, sleeper: str) -> None:
    with pytest.raises(UpgradeRefused) as refused:
        SpdyRemoteCommand(server.register_exec(sleeper, ["true"]), protocols=["v3.channel.k8s.io"])
    assert refused.value.status == 403
    assert refused.value.headers["x-accepted-stream-protocol-versions"] == f"{V5}, {V4}"
    with pytest.raises(UpgradeRefused) as ws_refused:
        WebSocketClient(server.register_exec(sleeper, ["true"]), ["base64.channel.k8s.io"])
    assert ws_refused.value.status == 403


def test_register_validates_like_the_cri(server: StreamingServer, sleeper: str) -> None:
    with pytest.raises(UsageError, match="tty and stderr"):
        server.register_exec(sleeper, ["sh"], tty=True, stderr=True)
    with pytest.raises(UsageError, match="command is empty"):
        server.register_exec(sleeper, [])
    with pytest.raises(UsageError, match="one of stdin, stdout and stderr"):
        server.register_attach(sleeper, stdout=False, stderr=False)
    with pytest.raises(UsageError, match="out of range"):
        server.register_portforward(sleeper, [70000])


def test_spdy_streams_must_come_in_time(env: ContainerEnv, sleeper: str) -> None:
    own = StreamingServer(
        runtime_hooks(env.context()), options=SessionOptions(stream_creation_timeout=0.5)
    )
    own.start()
    try:
        conn = SpdyConnection(own.register_exec(sleeper, ["true"]), [V4])
        conn.open_stream({"streamType": "error"})  # but never stdout/stderr
        assert conn.wait_closed(10)
        assert conn.goaway is not None
    finally:
        own.stop()


def test_json_status_is_compact(server: StreamingServer, sleeper: str) -> None:
    url = server.register_exec(sleeper, ["true"])
    session = SpdyRemoteCommand(url)
    session.streams["stdout"].read_all()
    session.streams["stderr"].read_all()
    raw = session.streams["error"].read_all()
    assert raw == b'{"metadata":{},"status":"Success"}'
    assert json.loads(raw)["status"] == "Success"
    session.conn.close()
