"""Host-wide leases of the addresses on a bridge, across stores.

Each store hands out addresses from its own database (``ipam.py``), but a
bridge network's interface (``skiff0`` for the default network) belongs to
the host: two stores (``--root``) running containers on the default network
at the same time would both give out 10.89.0.2, and one of the two
containers would be unreachable. So an allocation on a bridge also takes a
lease: a file ``LEASES/<interface>/<address>`` naming the store database
and the container. Another store skips leased addresses.

A lease is stale, and is taken over, when its store's database is gone or
no longer records that address for that container (a store deleted, a
container removed by a process that died before it released its lease),
unless it is younger than ``GRACE`` seconds: the lease is written inside
the allocating store's transaction, which may not have committed yet.
Checking that reads the other store's database (read-only, and only for a
leased address a store wants), so nothing depends on every process
cleaning up after itself.

The leases live in ``/run/skiff/ipam`` (``$XDG_RUNTIME_DIR/skiff/ipam``
when not root): a tmpfs, emptied at boot like the bridges themselves.
Choosing and leasing happen under the interface's ``.lock`` (``locks.file_lock``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from skiff.runtime.files import replace_file
from skiff.runtime.locks import file_lock
from skiff.runtime.network.model import IPAddress

GRACE = 30.0
"""Seconds a new lease counts as held whatever its store's database says."""


def leases_root() -> Path:
    if os.geteuid() == 0:
        return Path("/run/skiff/ipam")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return Path(runtime_dir) / "skiff" / "ipam"


class BridgeLeases:
    """The leases of one bridge interface, held for the calling store's database."""

    def __init__(self, interface: str, store_db: Path, root: Path | None = None) -> None:
        self.directory = (root or leases_root()) / interface
        self.store_db = str(store_db)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the interface's lock while choosing and leasing addresses."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return file_lock(self.directory / ".lock")

    def held_elsewhere(self) -> set[IPAddress]:
        """Addresses that containers of other stores hold on this bridge."""
        held: set[IPAddress] = set()
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return held
        for name in names:
            if name.startswith("."):
                continue
            lease = self._read(name)
            if lease is None or lease.get("db") == self.store_db:
                continue
            if self._fresh(name) or _still_held(
                str(lease.get("db", "")), name, str(lease.get("container", ""))
            ):
                held.add(ipaddress.ip_address(name))
        return held

    def take(self, ips: Iterable[IPAddress], container_id: str) -> None:
        """Lease ``ips`` to ``container_id`` of this store (call under ``locked``)."""
        body = json.dumps({"db": self.store_db, "container": container_id}).encode()
        for ip in ips:
            replace_file(self.directory / str(ip), body, 0o666)

    def release(self, ips: Iterable[IPAddress], container_id: str) -> None:
        """Drop the leases this store holds for ``container_id`` on ``ips``."""
        for ip in ips:
            lease = self._read(str(ip))
            if lease == {"db": self.store_db, "container": container_id}:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / str(ip)).unlink()

    def _fresh(self, name: str) -> bool:
        try:
            return time.time() - (self.directory / name).stat().st_mtime < GRACE
        except OSError:
            return False

    def _read(self, name: str) -> dict[str, object] | None:
        try:
            data = json.loads((self.directory / name).read_bytes())
            ipaddress.ip_address(name)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def _still_held(db_path: str, ip: str, container_id: str) -> bool:
    """Whether the store at ``db_path`` still gives ``ip`` to ``container_id``."""
    if not db_path or not Path(db_path).is_file():
        return False
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return True  # cannot tell: keep out of its way
    try:
        row = conn.execute(
            "SELECT 1 FROM network_allocations WHERE ip=? AND container_id=?",
            (ip, container_id),
        ).fetchone()
    except sqlite3.Error:
        return True
    finally:
        conn.close()
    return row is not None


def release_leases(ips: Iterable[IPAddress], container_id: str, store_db: Path) -> None:
    """Drop this store's leases of ``ips`` for ``container_id`` on every bridge."""
    root = leases_root()
    try:
        interfaces = [e.name for e in os.scandir(root) if e.is_dir()]
    except FileNotFoundError:
        return
    wanted = list(ips)
    for interface in interfaces:
        BridgeLeases(interface, store_db, root).release(wanted, container_id)
