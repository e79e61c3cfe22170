"""TCP connections made inside another network namespace (for port forwarding).

``setns(CLONE_NEWNET)`` switches only the calling *thread*, and a socket
belongs for its whole life to the namespace it was created in. So a
short-lived thread enters the sandbox's namespace, connects to
127.0.0.1:PORT there, switches back, and hands the connected socket to
whoever relays the bytes, from any thread. No helper process, no
``nsenter``/``socat`` (the kubelet's old way): the thread is
``skiff.runtime.network.netns.run_in_netns``'s.
"""

from __future__ import annotations

import socket
from pathlib import Path

from skiff.errors import ContainerError

CONNECT_TIMEOUT = 10.0


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout)
    sock.settimeout(None)
    return sock


def connect_in_netns(
    netns: Path | None, port: int, host: str = "127.0.0.1", timeout: float = CONNECT_TIMEOUT
) -> socket.socket:
    """A socket connected to ``host:port`` inside ``netns`` (None: the host's)."""
    from skiff.runtime.network.netns import run_in_netns

    where = f"{host}:{port} in network namespace {netns}" if netns else f"{host}:{port}"
    try:
        if netns is None:
            return _connect(host, port, timeout)
        return run_in_netns(netns, lambda: _connect(host, port, timeout), "netns-dial")
    except OSError as cause:
        raise _dial_error(where, timeout, cause) from cause


def _dial_error(where: str, timeout: float, cause: OSError) -> ContainerError:
    if isinstance(cause, ConnectionRefusedError):
        return ContainerError(
            f"cannot connect to {where}: connection refused",
            "nothing listens on that port inside the sandbox",
        )
    if isinstance(cause, TimeoutError):
        return ContainerError(f"cannot connect to {where}: timed out after {timeout} s")
    if isinstance(cause, FileNotFoundError):
        return ContainerError(
            f"cannot connect to {where}: the network namespace is gone",
            "the sandbox is not running",
        )
    if isinstance(cause, PermissionError):
        return ContainerError(
            f"cannot connect to {where}: {cause.strerror}",
            "entering a network namespace needs root (CAP_SYS_ADMIN)",
        )
    return ContainerError(f"cannot connect to {where}: {cause.strerror or cause}")
