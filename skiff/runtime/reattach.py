"""``attach``: connect to a running container's streams, until it exits or we detach.

The container's conmon serves its stdio on the attach socket (see
``skiff.runtime.attach``). Our stdin is connected only when the container
was created with ``-i`` (and not ``--no-stdin``); with a terminal it goes
through the container's pty, so detaching (ctrl-p ctrl-q by default)
leaves the container's stdin open for the next attach.

When the container's output ends — it exited — the exit code is read from
conmon's exit file and the container is cleaned up (and removed, with
``--rm``) at once, as a foreground ``run`` does; that exit code is what
``attach`` returns (Docker's behaviour; podman 4.3 returns 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, BinaryIO

from skiff.errors import ContainerStateError
from skiff.runtime import lifecycle
from skiff.runtime.attach import DEFAULT_DETACH_KEYS, attach
from skiff.runtime.engine import Runtime
from skiff.runtime.records import Container, Status

NOT_RUNNING = "you can only attach to running containers"


@dataclass
class AttachOptions:
    stdin: BinaryIO | IO[bytes] | None = None
    """None, or ``--no-stdin``: nothing is sent to the container."""
    stdout: BinaryIO | IO[bytes] | None = None
    stderr: BinaryIO | IO[bytes] | None = None
    detach_keys: bytes = DEFAULT_DETACH_KEYS
    sig_proxy: bool = True


@dataclass(frozen=True)
class AttachOutcome:
    exit_code: int | None
    """None when we detached (the container keeps running)."""
    detached: bool = False
    removed: bool = False


def attach_container(rt: Runtime, container: Container, opts: AttachOptions) -> AttachOutcome:
    from skiff.runtime.run import finish_foreground, proxy_signals

    with rt.lock(container.id):
        container = lifecycle.sync(rt, container)
        if container.state.status != Status.RUNNING:
            raise ContainerStateError(NOT_RUNNING, f"container {container.name} is not running")
    paths = rt.paths(container.id)
    with proxy_signals(rt, container.id, opts.sig_proxy and not container.config.tty):
        result = attach(
            paths.socket_dir,
            container.id,
            stdin=opts.stdin if container.config.stdin else None,
            stdout=opts.stdout,
            stderr=opts.stderr,
            tty=container.config.tty,
            detach_keys=opts.detach_keys,
        )
        if result.detached:
            return AttachOutcome(None, detached=True)
        code = lifecycle.wait_for_exit(rt, container, None)
    finished = finish_foreground(rt, container, code)
    return AttachOutcome(finished.exit_code, removed=finished.removed)
