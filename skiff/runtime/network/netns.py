"""Persistent network namespaces: RUNROOT/netns/NAME, a bind mount of an nsfs file.

A namespace lives as long as something refers to it; a bind mount of
``/proc/.../ns/net`` onto a file keeps it alive with no process in it, so
skiff can create it before the container exists, hand its path to netavark
and to the OCI runtime (``linux.namespaces[].path``), and remove it after
the container is gone — as podman does.

How it is made: ``unshare(CLONE_NEWNET)`` moves only the calling *thread*
into a new namespace, so a short-lived thread does it, brings ``lo`` up,
bind-mounts ``/proc/thread-self/ns/net`` onto the file and switches back to
the original namespace with ``setns``. No fork (unsafe in a threaded
process), no helper binary. Python 3.11 has no ``os.unshare``/``os.setns``,
so the syscalls go through libc via ctypes.

The RUNROOT/netns directory is not made a shared mount (``ip netns`` does
that so that mounts made later propagate into existing mount namespaces):
container mount namespaces drop the host's mounts at pivot_root, so no
copy of these mounts outlives their removal here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from skiff.errors import ContainerError
from skiff.libc import open_libc

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


_libc = open_libc()
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def _oserror(what: str, path: str | None = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}", path)


def on_own_thread(fn: Callable[[], T], name: str) -> T:
    """``fn()`` run on a new thread, its result or exception handed back here.

    Namespace switches (``unshare``, ``setns``) move only the calling
    thread: a thread of its own keeps them away from the caller's.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # raised again in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def run_in_netns(netns: Path, fn: Callable[[], T], name: str) -> T:
    """``fn()`` on a thread that entered the network namespace ``netns``.

    What ``fn`` makes there keeps the namespace (a socket belongs to the one
    it was created in) and may be used from any thread afterwards.
    """

    def entered() -> T:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(target, CLONE_NEWNET) != 0:
                    raise _oserror("setns into the namespace", str(netns))
                try:
                    return fn()
                finally:
                    if _libc.setns(original, CLONE_NEWNET) != 0:
                        # the thread ends right after; only it is in the wrong namespace
                        raise _oserror("setns back to the original namespace")
            finally:
                os.close(target)
        finally:
            os.close(original)

    return on_own_thread(entered, name)


def netns_dir(run_root: Path) -> Path:
    return run_root / "netns"


def new_netns_name() -> str:
    """A fresh name, ``netns-<uuid>`` as podman names them."""
    return f"netns-{uuid.uuid4()}"


def _bring_loopback_up() -> None:
    """``ip link set lo up`` for the calling thread's namespace (SIOCSIFFLAGS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        reply = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request)
        flags = struct.unpack("16sH14x", reply)[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _make_in_thread(target: Path) -> None:
    """Body of the helper thread: unshare, lo up, bind mount, return to the old namespace."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _oserror("unshare(CLONE_NEWNET)")
        try:
            _bring_loopback_up()
            source = b"/proc/thread-self/ns/net"
            if _libc.mount(source, os.fsencode(target), None, MS_BIND, None) != 0:
                raise _oserror("bind mount of the namespace", str(target))
        finally:
            if _libc.setns(original, CLONE_NEWNET) != 0:
                # the thread ends right after; only it is in the wrong namespace
                raise _oserror("setns back to the original namespace")
    finally:
        os.close(original)


def create_netns(run_root: Path, name: str | None = None) -> Path:
    """Create a network namespace (with ``lo`` up) pinned at RUNROOT/netns/NAME."""
    directory = netns_dir(run_root)
    target = directory / (name or new_netns_name())
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        os.close(fd)
    except OSError as exc:
        raise ContainerError(
            f"cannot create the network namespace file {target}: {exc.strerror}",
            "check that the run root is writable (--runroot)",
        ) from exc
    try:
        on_own_thread(lambda: _make_in_thread(target), "skiff-netns")
    except BaseException as cause:
        _unmount_quietly(target)
        try:
            target.unlink()
        except OSError:
            pass
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        raise ContainerError(
            f"cannot create network namespace {target}: {reason}",
            "creating network namespaces needs root (CAP_SYS_ADMIN)",
        ) from cause
    return target


def _unmount_quietly(path: Path) -> None:
    _libc.umount2(os.fsencode(path), MNT_DETACH)


def is_netns(path: Path) -> bool:
    """Whether ``path`` is a live, mounted network namespace (an nsfs file)."""
    try:
        st = os.stat(path)
        parent = os.stat(path.parent)
    except OSError:
        return False
    return st.st_dev != parent.st_dev


def remove_netns(path: Path) -> None:
    """Unmount and delete a namespace file; a missing or unmounted file is fine."""
    if _libc.umount2(os.fsencode(path), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise ContainerError(
                f"cannot unmount network namespace {path}: {os.strerror(code)}",
                "check what holds it: grep the path in /proc/*/mountinfo",
            )
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ContainerError(
            f"cannot remove network namespace file {path}: {exc.strerror}",
            "unmount it (umount -l) and delete it by hand",
        ) from exc


# --- a veth inside a namespace (rtnetlink), for tearing down a lost namespace --------

RTM_NEWLINK = 16
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
_IFINFOMSG = struct.pack("BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)


def _rtattr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("HH", length, kind) + payload + b"\0" * (-length % 4)


def _veth_request(name: str, peer: str, seq: int) -> bytes:
    peer_info = _IFINFOMSG + _rtattr(IFLA_IFNAME, peer.encode() + b"\0")
    link_info = _rtattr(IFLA_INFO_KIND, b"veth") + _rtattr(
        IFLA_INFO_DATA, _rtattr(VETH_INFO_PEER, peer_info)
    )
    body = (
        _IFINFOMSG + _rtattr(IFLA_IFNAME, name.encode() + b"\0") + _rtattr(IFLA_LINKINFO, link_info)
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return struct.pack("IHHII", 16 + len(body), RTM_NEWLINK, flags, seq, 0) + body


def _add_veth_here(name: str, peer: str) -> None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(_veth_request(name, peer, 1))
        reply = sock.recv(65536)
    if len(reply) < 20:
        raise OSError(errno.EIO, "short netlink reply")
    kind = struct.unpack_from("H", reply, 4)[0]
    if kind != NLMSG_ERROR:
        raise OSError(errno.EIO, f"unexpected netlink reply type {kind}")
    code = struct.unpack_from("i", reply, 16)[0]
    if code:
        raise OSError(-code, f"creating veth {name}: {os.strerror(-code)}")


def add_veth(netns: Path, name: str, peer: str) -> None:
    """Create a veth pair ``name``/``peer`` inside the namespace ``netns``.

    Used to tear down a container whose namespace vanished: netavark's
    teardown deletes the container's veth by name and aborts when it is
    missing, before it removes the bridge and the network's firewall rules.
    Tearing down against a fresh namespace holding a veth of that name
    lets it finish.
    """
    try:
        run_in_netns(netns, lambda: _add_veth_here(name, peer), "skiff-veth")
    except BaseException as cause:
        raise ContainerError(
            f"cannot create interface {name} in {netns}: {cause}",
            "creating interfaces needs root (CAP_NET_ADMIN)",
        ) from cause
