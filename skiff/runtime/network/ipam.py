"""IP address management: which container holds which address of which network.

Table ``network_allocations`` has one row per (network, address). An
address is taken inside the caller's write transaction, so two skiff
processes never hand out the same one, and released when the container's
network is torn down. Each subnet of a network gives the container one
address: a static one if asked for (and free), else the lowest free one in
the subnet's lease range — skipping the network address, the gateway and
the IPv4 broadcast address.

podman's host-local IPAM hands addresses out round robin; skiff takes the
lowest free one, which is deterministic (a restarted container tends to
keep its address) and never runs out while addresses are free.

On a bridge, addresses that containers of *other* stores hold on the same
interface are skipped too (host-wide leases, ``leases.py``): the bridge is
the host's, not the store's.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

from skiff.errors import ContainerError, UsageError
from skiff.runtime.network.leases import BridgeLeases, release_leases
from skiff.runtime.network.model import IPAddress, Network, Subnet
from skiff.storage.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS network_allocations (
    network_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    container_id TEXT NOT NULL,
    allocated REAL NOT NULL,
    PRIMARY KEY (network_id, ip)
);
CREATE INDEX IF NOT EXISTS network_allocations_by_container
    ON network_allocations(container_id);
"""


class IPAM:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("network_allocations", SCHEMA)

    def allocated(self, network_id: str) -> dict[IPAddress, str]:
        """Every taken address of a network → the container holding it."""
        rows = self.db.read(
            "SELECT ip, container_id FROM network_allocations WHERE network_id=?", (network_id,)
        )
        return {ipaddress.ip_address(r["ip"]): str(r["container_id"]) for r in rows}

    def of_container(self, container_id: str, network_id: str) -> list[IPAddress]:
        rows = self.db.read(
            "SELECT ip FROM network_allocations WHERE container_id=? AND network_id=?",
            (container_id, network_id),
        )
        return [ipaddress.ip_address(r["ip"]) for r in rows]

    def allocate(
        self, network: Network, container_id: str, static_ips: Sequence[IPAddress] = ()
    ) -> list[IPAddress]:
        """One address per subnet of ``network`` for ``container_id`` (static ones honoured)."""
        leases = self._leases(network)
        if leases is None:
            return self._allocate(network, container_id, static_ips, set())
        with self.db.write(), leases.locked():
            chosen = self._allocate(network, container_id, static_ips, leases.held_elsewhere())
            leases.take(chosen, container_id)
        return chosen

    def _leases(self, network: Network) -> BridgeLeases | None:
        if network.driver != "bridge" or not network.network_interface:
            return None
        return BridgeLeases(network.network_interface, self.db.path)

    def _allocate(
        self,
        network: Network,
        container_id: str,
        static_ips: Sequence[IPAddress],
        held_elsewhere: set[IPAddress],
    ) -> list[IPAddress]:
        with self.db.write() as conn:
            taken = self.allocated(network.id)
            for ip in held_elsewhere:
                taken.setdefault(ip, "a container of another store")
            mine = [ip for ip, owner in taken.items() if owner == container_id]
            if mine:
                raise UsageError(
                    f"container {container_id[:12]} already has addresses on network "
                    f"{network.name}: {', '.join(map(str, mine))}",
                    "disconnect it from the network first",
                )
            wanted: dict[int, IPAddress] = {}
            for ip in static_ips:
                index = _subnet_index(network, ip)
                if index in wanted:
                    raise UsageError(
                        f"static IPs {wanted[index]} and {ip} are in the same subnet of network "
                        f"{network.name}",
                        "give at most one address per subnet",
                    )
                _check_static(network, network.subnets[index], ip, taken)
                wanted[index] = ip
            chosen: list[IPAddress] = []
            for index, subnet in enumerate(network.subnets):
                ip = wanted[index] if index in wanted else _lowest_free(network, subnet, taken)
                chosen.append(ip)
                taken[ip] = container_id
            now = time.time()
            conn.executemany(
                "INSERT INTO network_allocations(network_id, ip, container_id, allocated) "
                "VALUES (?,?,?,?)",
                [(network.id, str(ip), container_id, now) for ip in chosen],
            )
        return chosen

    def release(self, container_id: str, network_id: str | None = None) -> None:
        """Free a container's addresses (on one network, or on all)."""
        with self.db.write() as conn:
            query = "SELECT ip FROM network_allocations WHERE container_id=?"
            args: tuple[str, ...] = (container_id,)
            if network_id is not None:
                query += " AND network_id=?"
                args = (container_id, network_id)
            released = [ipaddress.ip_address(r["ip"]) for r in self.db.read(query, args)]
            if released:
                release_leases(released, container_id, self.db.path)
            if network_id is None:
                conn.execute(
                    "DELETE FROM network_allocations WHERE container_id=?", (container_id,)
                )
            else:
                conn.execute(
                    "DELETE FROM network_allocations WHERE container_id=? AND network_id=?",
                    (container_id, network_id),
                )


def _subnet_index(network: Network, ip: IPAddress) -> int:
    for index, subnet in enumerate(network.subnets):
        if ip.version == subnet.subnet.version and ip in subnet.subnet:
            return index
    raise UsageError(
        f"requested static ip {ip} not in any subnet on network {network.name}",
        "subnets: " + ", ".join(str(s.subnet) for s in network.subnets),
    )


def _bounds(subnet: Subnet) -> tuple[int, int]:
    """First and last assignable address (as integers) of a subnet's lease range."""
    net = subnet.subnet
    first = int(net.network_address) + 1
    last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
    if subnet.lease_range is not None:
        if subnet.lease_range.start_ip is not None:
            first = max(first, int(subnet.lease_range.start_ip))
        if subnet.lease_range.end_ip is not None:
            last = min(last, int(subnet.lease_range.end_ip))
    return first, last


def _check_static(
    network: Network, subnet: Subnet, ip: IPAddress, taken: dict[IPAddress, str]
) -> None:
    net = subnet.subnet
    if ip == net.network_address or (net.version == 4 and ip == net.broadcast_address):
        raise UsageError(f"static ip {ip} is not a host address of subnet {net}")
    if ip == subnet.gateway:
        raise UsageError(f"static ip {ip} is the gateway of network {network.name}")
    if ip in taken:
        owner = taken[ip]
        raise UsageError(
            f"IP address {ip} is already allocated on network {network.name} "
            f"({'container ' + owner[:12] if len(owner) == 64 else owner})",
            "choose another --ip, or leave it out",
        )


def _lowest_free(network: Network, subnet: Subnet, taken: dict[IPAddress, str]) -> IPAddress:
    first, last = _bounds(subnet)
    version = subnet.subnet.version
    excluded = {int(ip) for ip in taken if ip.version == version}
    if subnet.gateway is not None:
        excluded.add(int(subnet.gateway))
    candidate = first
    while candidate <= last:
        if candidate not in excluded:
            return _address(candidate, version)
        candidate += 1
    raise ContainerError(
        f"no free IP address left in subnet {subnet.subnet} of network {network.name}",
        "disconnect or remove containers, or create a network with a larger subnet",
    )


def _address(value: int, version: int) -> IPAddress:
    if version == 4:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value)
