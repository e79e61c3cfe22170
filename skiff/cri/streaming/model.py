"""What a streaming session is asked to do, and the runtime calls that do it.

The CRI ``Exec``, ``Attach`` and ``PortForward`` RPCs register one of the
requests below with the streaming server and hand the client a URL; the
client connects there and the server serves the request through the
``RuntimeHooks`` it was built with. The hooks are plain callables so the
protocol side can be exercised against any implementation; skiff's real
one is ``runtimehooks.runtime_hooks`` (exec through conmon, attach to
conmon's socket, connections made inside the sandbox's network namespace).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from skiff.cri.streaming.streams import SessionIO
from skiff.errors import UsageError


@dataclass(frozen=True)
class ExecRequest:
    """CRI ExecRequest: run ``cmd`` in a running container."""

    container_id: str
    cmd: tuple[str, ...]
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True

    def validate(self) -> None:
        if not self.container_id:
            raise UsageError("exec: a container ID is required")
        if not self.cmd:
            raise UsageError(f"exec in container {self.container_id}: the command is empty")
        _check_streams(
            "exec",
            self.container_id,
            tty=self.tty,
            stdin=self.stdin,
            stdout=self.stdout,
            stderr=self.stderr,
        )


@dataclass(frozen=True)
class AttachRequest:
    """CRI AttachRequest: connect to a running container's own streams."""

    container_id: str
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True

    def validate(self) -> None:
        if not self.container_id:
            raise UsageError("attach: a container ID is required")
        _check_streams(
            "attach",
            self.container_id,
            tty=self.tty,
            stdin=self.stdin,
            stdout=self.stdout,
            stderr=self.stderr,
        )


@dataclass(frozen=True)
class PortForwardRequest:
    """CRI PortForwardRequest: forward connections to ports of a pod sandbox.

    ``ports`` empty: any port the client names; otherwise only those.
    """

    sandbox_id: str
    ports: tuple[int, ...] = ()

    def validate(self) -> None:
        if not self.sandbox_id:
            raise UsageError("port forward: a pod sandbox ID is required")
        for port in self.ports:
            if not 1 <= port <= 65535:
                raise UsageError(
                    f"port forward to {self.sandbox_id}: port {port} is out of range",
                    "ports are 1-65535",
                )


def _check_streams(
    what: str, container_id: str, *, tty: bool, stdin: bool, stdout: bool, stderr: bool
) -> None:
    # the CRI's rules (api.proto): one stream at least; a terminal merges stderr
    if not (stdin or stdout or stderr):
        raise UsageError(
            f"{what} in container {container_id}: one of stdin, stdout and stderr must be set"
        )
    if tty and stderr:
        raise UsageError(
            f"{what} in container {container_id}: tty and stderr cannot both be set",
            "with a terminal, stderr is merged into stdout",
        )


StreamRequest = ExecRequest | AttachRequest | PortForwardRequest

ExecHandler = Callable[[ExecRequest, SessionIO], int]
"""Runs the command with the session's streams; returns its exit code.
Raises a SkiffError when it could not run (CommandNotFound, 127, and
CommandNotInvokable, 126, are reported as that exit code)."""

AttachHandler = Callable[[AttachRequest, SessionIO], None]
"""Relays the container's streams until its output ends or the session is
cancelled; raises a SkiffError when it cannot attach."""

PortDialer = Callable[[str, int], socket.socket]
"""(sandbox ID, port) → a connected TCP socket to that port on the
sandbox's loopback, inside its network namespace; SkiffError if not."""


@dataclass(frozen=True)
class RuntimeHooks:
    exec: ExecHandler
    attach: AttachHandler
    dial: PortDialer
