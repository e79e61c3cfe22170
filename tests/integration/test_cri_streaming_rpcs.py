"""Exec, Attach and PortForward through the CRI server's RPCs and its URLs.

The RPCs return single-use URLs of the server's streaming server; the
test's own SPDY and WebSocket clients (skiff.testing.k8sclient, written
apart from the server) connect there, as kubelet and crictl do. Covered:
exec over SPDY (v4) and WebSocket (v5) with stdin, output and the exit
code; attach to a container's own streams; port forwarding to a busybox
httpd in a pod sandbox; the RPCs' own refusals (a container that is not
running, an unknown one, tty with stderr, a stopped sandbox).
"""

from __future__ import annotations

import cri_fixtures
import grpc
from cri_api.v1 import api_pb2
from cri_fixtures import code_of, requirements

from skiff.testing.busybox import INDEX_HTML
from skiff.testing.criserver import CRIEnv
from skiff.testing.k8sclient import SpdyConnection, SpdyRemoteCommand, WsRemoteCommand, spdy_forward

pytestmark = requirements
cri = cri_fixtures.cri
clean = cri_fixtures.clean

HTTP_GET = b"GET / HTTP/1.0\r\n\r\n"


def test_exec_over_spdy_and_websocket(clean: CRIEnv) -> None:
    env = clean
    sid, config = env.run_sandbox()
    cid = env.create_container(sid, config, env.container_config("t", ["busybox", "sleep", "1000"]))
    env.start_container(cid)
    url = env.runtime.Exec(
        api_pb2.ExecRequest(
            container_id=cid,
            cmd=["sh", "-c", "echo out; echo err >&2; exit 4"],
            stdout=True,
            stderr=True,
        )
    ).url
    outcome = SpdyRemoteCommand(url).finish()
    assert (outcome.stdout, outcome.stderr, outcome.exit_code) == (b"out\n", b"err\n", 4)
    url = env.runtime.Exec(
        api_pb2.ExecRequest(container_id=cid, cmd=["cat"], stdin=True, stdout=True, stderr=True)
    ).url
    session = WsRemoteCommand(url, stdin=True, protocols=["v5.channel.k8s.io"])
    session.write(b"through stdin\n")
    session.close_stdin()
    outcome = session.finish()
    assert outcome.stdout == b"through stdin\n" and outcome.exit_code == 0


def test_attach_to_a_containers_streams(clean: CRIEnv) -> None:
    env = clean
    sid, config = env.run_sandbox()
    cid = env.create_container(
        sid,
        config,
        env.container_config("cat", ["busybox", "cat"], stdin=True, stdin_once=True),
    )
    env.start_container(cid)
    url = env.runtime.Attach(
        api_pb2.AttachRequest(container_id=cid, stdin=True, stdout=True, stderr=True)
    ).url
    session = WsRemoteCommand(url, stdin=True)
    session.write(b"echoed back\n")
    session.read_stdout_until(b"echoed back\n")
    session.close_stdin()
    session.finish()
    env.wait_container_state(cid, api_pb2.CONTAINER_EXITED)


def test_stdin_stays_open_across_attach_sessions_without_stdin_once(clean: CRIEnv) -> None:
    env = clean
    sid, config = env.run_sandbox()
    cid = env.create_container(
        sid, config, env.container_config("cat", ["busybox", "cat"], stdin=True, stdin_once=False)
    )
    env.start_container(cid)
    request = api_pb2.AttachRequest(container_id=cid, stdin=True, stdout=True, stderr=True)
    for line in (b"first session\n", b"second session\n"):
        session = WsRemoteCommand(env.runtime.Attach(request).url, stdin=True)
        session.write(line)
        session.read_stdout_until(line)
        session.close_stdin()  # the client's stdin ends; the container's stays open
        session.client.shutdown()
        status = env.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid))
        assert status.status.state == api_pb2.CONTAINER_RUNNING
    env.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0))


def test_port_forward_into_a_sandbox(clean: CRIEnv) -> None:
    env = clean
    sid, config = env.run_sandbox()
    cid = env.create_container(
        sid, config, env.container_config("web", ["httpd", "-f", "-p", "8080", "-h", "/var/www"])
    )
    env.start_container(cid)
    url = env.runtime.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=sid, port=[8080])).url
    conn = SpdyConnection(url, ["portforward.k8s.io"])
    try:
        for attempt in range(50):
            result = spdy_forward(conn, 8080, attempt, HTTP_GET)
            if result.data:
                break
        assert result.data.startswith(b"HTTP/1.") and result.data.endswith(INDEX_HTML)
    finally:
        conn.close()


def test_streaming_rpcs_refuse_what_cannot_work(clean: CRIEnv) -> None:
    env = clean
    sid, config = env.run_sandbox()
    created = env.create_container(sid, config, env.container_config("idle", ["true"]))
    exec_created = api_pb2.ExecRequest(container_id=created, cmd=["true"], stdout=True)
    assert code_of(env.runtime.Exec, exec_created) == grpc.StatusCode.FAILED_PRECONDITION
    attach = api_pb2.AttachRequest(container_id=created, stdout=True)
    assert code_of(env.runtime.Attach, attach) == grpc.StatusCode.FAILED_PRECONDITION
    unknown = api_pb2.ExecRequest(container_id="9" * 64, cmd=["true"], stdout=True)
    assert code_of(env.runtime.Exec, unknown) == grpc.StatusCode.NOT_FOUND
    running = env.create_container(
        sid, config, env.container_config("r", ["busybox", "sleep", "100"])
    )
    env.start_container(running)
    both = api_pb2.ExecRequest(container_id=running, cmd=["sh"], tty=True, stdout=True, stderr=True)
    assert code_of(env.runtime.Exec, both) == grpc.StatusCode.INVALID_ARGUMENT
    env.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sid))
    forward = api_pb2.PortForwardRequest(pod_sandbox_id=sid, port=[80])
    assert code_of(env.runtime.PortForward, forward) == grpc.StatusCode.FAILED_PRECONDITION
    checkpoint = api_pb2.CheckpointContainerRequest(container_id=running)
    assert code_of(env.runtime.CheckpointContainer, checkpoint) == grpc.StatusCode.UNIMPLEMENTED
