"""Waiting for short-lived child processes without a sleep loop.

``Popen.wait(timeout)`` — and so ``subprocess.run(timeout=...)`` once the
pipes are drained — cannot block in waitpid with a deadline, so it polls:
sleep 0.5 ms, 1 ms, 2 ms, ... up to 50 ms between looks. For the quick
calls a container's life is made of (the runtime's ``start`` and
``delete``, conmon's first process daemonizing) that added about a
millisecond each, several per ``skiff run``. Here the deadline is kept by
a pidfd (poll wakes when the process exits) or by a timer thread that
kills the process, and the wait itself blocks.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
from collections.abc import Sequence
from typing import IO, Any


def wait(proc: subprocess.Popen[Any], timeout: float | None) -> int | None:
    """``proc``'s exit status, or None if ``timeout`` seconds passed first."""
    if timeout is None:
        return proc.wait()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (kernel < 5.3), or already reaped: the portable way
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            return None
    finally:
        os.close(pidfd)
    return proc.wait()


def run(
    argv: Sequence[str],
    *,
    timeout: float | None,
    input_data: bytes | None = None,
    stdin: int | IO[Any] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """``subprocess.run(argv, check=False, close_fds=True, ...)``, with the
    timeout kept by a timer that kills the process (then TimeoutExpired,
    as ``subprocess.run`` raises)."""
    with subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if input_data is not None else stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        close_fds=True,
    ) as proc:
        expired = threading.Event()
        timer: threading.Timer | None = None
        if timeout is not None:

            def expire() -> None:
                expired.set()
                proc.kill()

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            out, err = proc.communicate(input_data)
        finally:
            if timer is not None:
                timer.cancel()
        if expired.is_set():
            raise subprocess.TimeoutExpired(list(argv), timeout or 0.0, out, err)
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
