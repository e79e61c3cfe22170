"""``run``: create, start attached (or detached), wait, clean up, remove.

The foreground ``skiff run`` does the cleanup itself as soon as the
container exits (conmon's exit command would too; both are idempotent under
the container's lock), so its exit status is the container's and nothing is
left behind when it returns — even with ``--rm``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from skiff.errors import ContainerError, SkiffError
from skiff.runtime import lifecycle
from skiff.runtime.attach import DEFAULT_DETACH_KEYS, attach
from skiff.runtime.create import CreateOptions, create_container
from skiff.runtime.engine import Runtime
from skiff.runtime.records import Container, Status

FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


@dataclass
class Streams:
    """Which of our streams to connect (``-a``), and the detach keys."""

    stdin: IO[bytes] | None = None
    stdout: IO[bytes] | None = None
    stderr: IO[bytes] | None = None
    detach_keys: bytes = DEFAULT_DETACH_KEYS
    sig_proxy: bool = True


@dataclass
class RunResult:
    container: Container
    exit_code: int | None
    """None when detached (by -d or the detach keys)."""
    detached: bool = False
    removed: bool = False
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def proxy_signals(rt: Runtime, container_id: str, enabled: bool) -> Iterator[None]:
    """Forward the signals we receive to the container (``--sig-proxy``)."""
    if not enabled:
        yield
        return
    runtime_name = rt.records.get(container_id).config.runtime

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(SkiffError):
            rt.oci(runtime_name).kill(container_id, signum)

    previous: dict[signal.Signals, Any] = {}
    for sig in FORWARDED_SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)


def attach_and_start(
    rt: Runtime, container: Container, streams: Streams
) -> Callable[[Callable[[], None]], Any]:
    """The ``attach`` callback for ``lifecycle.start``."""
    paths = rt.paths(container.id)

    def do_attach(start_fn: Callable[[], None]) -> Any:
        return attach(
            paths.socket_dir,
            container.id,
            stdin=streams.stdin if container.config.stdin else None,
            stdout=streams.stdout,
            stderr=streams.stderr,
            tty=container.config.tty,
            detach_keys=streams.detach_keys,
            start=start_fn,
        )

    return do_attach


def run(rt: Runtime, opts: CreateOptions, *, detach: bool, streams: Streams) -> RunResult:
    container = create_container(rt, opts)
    try:
        if detach:
            container = lifecycle.start(rt, container)
            return RunResult(container, None, detached=True)
        outcome: list[Any] = []

        def attach_cb(start_fn: Callable[[], None]) -> Any:
            result = attach_and_start(rt, container, streams)(start_fn)
            outcome.append(result)
            return result

        with proxy_signals(rt, container.id, streams.sig_proxy and not container.config.tty):
            container = lifecycle.start(rt, container, attach=attach_cb)
            if outcome and getattr(outcome[0], "detached", False):
                return RunResult(container, None, detached=True)
            code = lifecycle.wait_for_exit(rt, container, None)
    except BaseException:
        if opts.auto_remove:
            with contextlib.suppress(SkiffError):
                lifecycle.remove(rt, rt.records.get(container.id), force=True, volumes=True)
        raise
    return finish_foreground(rt, container, code)


def finish_foreground(rt: Runtime, container: Container, code: int | None) -> RunResult:
    """After a foreground container exited: clean up (and remove with --rm) now."""
    removed = False
    with contextlib.suppress(SkiffError):
        lifecycle.cleanup(rt, container.id)
    current = rt.records.find(container.id)
    if current is None:
        removed = True
        current = container
    elif current.config.auto_remove and current.state.status == Status.EXITED:
        lifecycle.remove(rt, current, force=True, volumes=True)
        removed = True
    if code is None:
        raise ContainerError(f"container {container.name} ended without an exit code")
    return RunResult(current, code, removed=removed)


def flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
