"""Per-object locks across processes (flock on files in the run root).

Several skiff processes may act on one container at once (a CLI ``stop``
while conmon's exit command runs ``cleanup``); each lifecycle step holds the
container's lock for its read-modify-write. Locks are re-entrant within a
process (a step may call another step), and live in the run root because
they mean nothing after a reboot.

Re-entrancy is per thread: another thread of the same process (the CRI
server serves every RPC in a thread of its own) opens the lock file again
and waits on its own flock, as another process would — flock locks belong
to an open file description, so two of them in one process exclude each
other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

_held: dict[tuple[int, str], tuple[int, int]] = {}
_guard = threading.Lock()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    key = (threading.get_ident(), str(path))
    with _guard:
        held = _held.get(key)
        if held is not None:
            _held[key] = (held[0], held[1] + 1)
            fd = -1
        else:
            fd = -2
    if fd == -1:
        try:
            yield
        finally:
            with _guard:
                fd0, depth = _held[key]
                _held[key] = (fd0, depth - 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with _guard:
            _held[key] = (fd, 1)
        try:
            yield
        finally:
            with _guard:
                del _held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def container_lock(run_root: Path, container_id: str) -> contextlib.AbstractContextManager[None]:
    return file_lock(run_root / "locks" / f"container-{container_id}.lock")


def pod_lock(run_root: Path, pod_id: str) -> contextlib.AbstractContextManager[None]:
    return file_lock(run_root / "locks" / f"pod-{pod_id}.lock")


def remove_lock_file(run_root: Path, container_id: str) -> None:
    (run_root / "locks" / f"container-{container_id}.lock").unlink(missing_ok=True)
