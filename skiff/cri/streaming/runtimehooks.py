"""The streaming server's hooks into skiff's runtime: exec, attach, dial.

Each call opens the store for the session's thread (``Runtime(ctx)``),
finds the container by ID or name, and closes the store again before the
long relaying part where it can.

exec    ``skiff.runtime.exec.exec_in`` — the same conmon exec session as
        ``skiff exec`` — with the session's streams (no detach keys: the
        Kubernetes protocols have none, and binary stdin must pass
        untouched). The terminal size is sent to conmon's ``ctl`` fifo just
        before the process starts and on every resize. When the client
        goes away first, the process is killed (SIGKILL) so that nothing
        waits forever on a stdin nobody will write; its exit code (137)
        then ends the session as usual.
attach  a relay over the container's conmon attach socket: its output to
        the client until the container's output ends; the client's stdin to
        the container if it was created with one (its end closes the
        container's stdin, as ``skiff attach`` does); sizes to ``ctl``.
        The container keeps running when the client goes away.
dial    the sandbox's network namespace — the pod's infra container, or the
        container itself — from the network records (``network_status``),
        else ``/proc/PID/ns/net`` of its process, and a connection to
        127.0.0.1:PORT made in there (``netdial``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import signal
import socket
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from skiff.cri.streaming.model import AttachRequest, ExecRequest, RuntimeHooks
from skiff.cri.streaming.netdial import connect_in_netns
from skiff.cri.streaming.streams import InboundBuffer, OutputStream, SessionIO, TerminalSize
from skiff.errors import ContainerError, ContainerStateError

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.runtime.engine import Runtime
    from skiff.runtime.records import Container

log = logging.getLogger(__name__)

MAX_TERMINAL = 1000
"""conmon takes at most 1000 rows and columns."""


def runtime_hooks(ctx: SystemContext) -> RuntimeHooks:
    """Hooks that serve sessions from the store ``ctx`` names."""
    return RuntimeHooks(
        exec=functools.partial(exec_session, ctx),
        attach=functools.partial(attach_session, ctx),
        dial=functools.partial(dial_sandbox, ctx),
    )


def _open(ctx: SystemContext) -> Runtime:
    from skiff.runtime.engine import Runtime

    return Runtime(ctx)


def _running(rt: Runtime, ref: str) -> Container:
    from skiff.runtime import lifecycle
    from skiff.runtime.records import Status

    container = rt.records.get(ref)
    with rt.lock(container.id):
        container = lifecycle.sync(rt, container)
    if container.state.status != Status.RUNNING:
        raise ContainerStateError(
            f"container {container.name} is not running (it is {container.state.status})",
            "start it first",
        )
    return container


def _resizer(directory: Path) -> functools.partial[None]:
    return functools.partial(_send_size, directory)


def _send_size(directory: Path, size: TerminalSize) -> None:
    from skiff.runtime.attach import send_resize

    send_resize(directory, *_capped(size))


def _capped(size: TerminalSize) -> tuple[int, int]:
    """(rows, columns) as conmon takes them."""
    return min(size.height, MAX_TERMINAL), min(size.width, MAX_TERMINAL)


def _as_io(stream: OutputStream | InboundBuffer | None) -> IO[bytes] | None:
    # the runtime's relay calls read/write/flush only; OutputStream and
    # InboundBuffer have those, not the whole IO[bytes] surface mypy knows
    return cast("IO[bytes] | None", stream)


# --- exec -----------------------------------------------------------------------------------


class _ExecControl:
    """Terminal sizes and cancellation for one exec session."""

    def __init__(self, io: SessionIO) -> None:
        self.io = io
        self._lock = threading.Lock()
        self._pid = 0
        self._done = False
        self._resize: functools.partial[None] | None = None

    def before_start(self, directory: Path) -> None:
        if self.io.tty:
            self._resize = _resizer(directory)
            self.io.resize.subscribe(self._resize)

    def started(self, pid: int) -> None:
        with self._lock:
            self._pid = pid
        if self.io.cancellation.cancelled:
            self.kill()

    def kill(self) -> None:
        with self._lock:
            if self._done or not self._pid:
                return
            log.info("client of exec process %d went away: killing it", self._pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)

    def done(self) -> None:
        with self._lock:
            self._done = True
        if self._resize is not None:
            self.io.resize.unsubscribe(self._resize)


def exec_session(ctx: SystemContext, request: ExecRequest, io: SessionIO) -> int:
    from skiff.runtime.exec import ExecOptions, ExecStreams, exec_in

    control = _ExecControl(io)
    io.cancellation.add_callback(control.kill)
    rt = _open(ctx)
    try:
        container = _running(rt, request.container_id)
        opts = ExecOptions(
            command=list(request.cmd),
            tty=request.tty,
            interactive=request.stdin,
            detach_keys=b"",
            console_size=_console_size(io),
        )
        streams = ExecStreams(
            stdin=_as_io(io.stdin if request.stdin else None),
            stdout=_as_io(io.stdout),
            stderr=_as_io(io.stderr),
        )
        result = exec_in(
            rt,
            container,
            opts,
            streams,
            before_start=control.before_start,
            on_start=control.started,
        )
    finally:
        control.done()
        rt.close()
    if result.exit_code is None:
        raise ContainerError(f"exec session {result.session_id} ended without an exit code")
    return result.exit_code


def _console_size(io: SessionIO) -> tuple[int, int] | None:
    """The client's first terminal size (the server waited for it), capped as conmon's."""
    size = io.resize.latest if io.tty else None
    return None if size is None else _capped(size)


# --- attach -----------------------------------------------------------------------------------


def attach_session(ctx: SystemContext, request: AttachRequest, io: SessionIO) -> None:
    from skiff.runtime.attach import connect_attach_socket
    from skiff.runtime.conmon import attach_dir

    rt = _open(ctx)
    try:
        container = _running(rt, request.container_id)
        directory = attach_dir(rt.paths(container.id).socket_dir, container.id)
    finally:
        rt.close()
    sock = connect_attach_socket(directory)
    resize = _resizer(directory) if container.config.tty else None
    try:
        if resize is not None:
            io.resize.subscribe(resize)
        stdin = io.stdin if request.stdin and container.config.stdin else None
        _AttachRelay(sock, stdin, io).run()
    finally:
        if resize is not None:
            io.resize.unsubscribe(resize)
        sock.close()


class _AttachRelay:
    """Container output → client until it ends or the session is cancelled;
    client stdin → container in a thread of its own."""

    def __init__(self, sock: socket.socket, stdin: InboundBuffer | None, io: SessionIO) -> None:
        self.sock = sock
        self.stdin = stdin
        self.io = io

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        lock = threading.Lock()
        pipe_open = True

        def wake() -> None:
            # a cancellation may come after the relay ended: never write to a
            # closed (and possibly reused) descriptor
            with lock, contextlib.suppress(OSError):
                if pipe_open:
                    os.write(wake_w, b"\0")

        try:
            self.io.cancellation.add_callback(wake)
            if self.stdin is not None:
                threading.Thread(target=self._pump_stdin, name="attach-stdin", daemon=True).start()
            self._relay_output(wake_r)
        finally:
            with lock:
                pipe_open = False
                os.close(wake_r)
                os.close(wake_w)

    def _pump_stdin(self) -> None:
        from skiff.runtime.attach import SEND_CHUNK

        assert self.stdin is not None
        try:
            while data := self.stdin.read(SEND_CHUNK):
                self.sock.sendall(data)
            if not self.stdin.aborted:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            log.debug("attach: stdin relay ended: %s", exc)

    def _relay_output(self, wake_fd: int) -> None:
        from skiff.runtime.attach import RECV_SIZE, STREAM_STDERR

        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(wake_fd, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if wake_fd in ready:
                return
            if self.sock.fileno() not in ready:
                continue
            try:
                packet = self.sock.recv(RECV_SIZE)
            except (ConnectionResetError, InterruptedError):
                return
            if not packet:
                return
            stream = self.io.stderr if packet[0] == STREAM_STDERR else self.io.stdout
            if stream is not None:
                stream.write(packet[1:])


# --- port forwarding -----------------------------------------------------------------------


def sandbox_netns(rt: Runtime, sandbox_id: str) -> Path | None:
    """The network namespace of a pod (its infra container) or container;
    None when it shares the host's."""
    from skiff.runtime.network.setup import network_status
    from skiff.runtime.pods.records import PodRecords

    pod = PodRecords(rt.store.db).find(sandbox_id)
    if pod is not None:
        if not pod.infra_id:
            raise ContainerError(
                f"pod {pod.name} has no infra container, so no network namespace of its own",
                "forward ports of one of its containers instead",
            )
        container = _running(rt, pod.infra_id)
    else:
        container = _running(rt, sandbox_id)
    status = network_status(rt.store, container.id)
    if status is not None:
        return status.netns
    if container.state.pid:
        return Path(f"/proc/{container.state.pid}/ns/net")
    raise ContainerStateError(f"container {container.name} has no network namespace")


def dial_sandbox(ctx: SystemContext, sandbox_id: str, port: int) -> socket.socket:
    rt = _open(ctx)
    try:
        netns = sandbox_netns(rt, sandbox_id)
    finally:
        rt.close()
    return connect_in_netns(netns, port)
