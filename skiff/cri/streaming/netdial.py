"""TCP connections made inside another network namespace (for port forwarding).

``setns(CLONE_NEWNET)`` switches only the calling *thread*, and a socket
belongs for its whole life to the namespace it was created in. So a
short-lived thread enters the sandbox's namespace, connects to
127.0.0.1:PORT there, switches back, and hands the connected socket to
whoever relays the bytes, from any thread. No helper process, no
``nsenter``/``socat`` (the kubelet's old way); Python 3.11 has no
``os.setns``, so the call goes through libc.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from pathlib import Path

from skiff.errors import ContainerError

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 10.0


def _load_libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.setns.restype = ctypes.c_int
    return libc


_libc: ctypes.CDLL | None = None


def _setns(fd: int, what: str) -> None:
    global _libc  # noqa: PLW0603 - loaded once, on first use (no libc work at import)
    if _libc is None:
        _libc = _load_libc()
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns into {what}: {os.strerror(code)}")


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout)
    sock.settimeout(None)
    return sock


def connect_in_netns(
    netns: Path | None, port: int, host: str = "127.0.0.1", timeout: float = CONNECT_TIMEOUT
) -> socket.socket:
    """A socket connected to ``host:port`` inside ``netns`` (None: the host's)."""
    where = f"{host}:{port} in network namespace {netns}" if netns else f"{host}:{port}"
    result: list[socket.socket] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if netns is None:
                result.append(_connect(host, port, timeout))
                return
            original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target, str(netns))
                    try:
                        result.append(_connect(host, port, timeout))
                    finally:
                        _setns(original, "the original network namespace")
                finally:
                    os.close(target)
            finally:
                os.close(original)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="netns-dial", daemon=True)
    thread.start()
    thread.join()
    if result and not failure:
        return result[0]
    for sock in result:
        sock.close()
    cause = failure[0] if failure else RuntimeError("no result")
    if isinstance(cause, ConnectionRefusedError):
        raise ContainerError(
            f"cannot connect to {where}: connection refused",
            "nothing listens on that port inside the sandbox",
        ) from cause
    if isinstance(cause, TimeoutError):
        raise ContainerError(f"cannot connect to {where}: timed out after {timeout} s") from cause
    if isinstance(cause, FileNotFoundError):
        raise ContainerError(
            f"cannot connect to {where}: the network namespace is gone",
            "the sandbox is not running",
        ) from cause
    if isinstance(cause, PermissionError):
        raise ContainerError(
            f"cannot connect to {where}: {cause.strerror}",
            "entering a network namespace needs root (CAP_SYS_ADMIN)",
        ) from cause
    if isinstance(cause, OSError):
        raise ContainerError(f"cannot connect to {where}: {cause.strerror or cause}") from cause
    raise cause
