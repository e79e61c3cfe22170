"""Network definitions in the store's database (table ``networks``).

Each row keeps the network's JSON exactly as podman writes it (see
model.py) plus indexed scalars (id, name, bridge). The default network
``skiff`` is not stored: like podman's ``podman`` it always exists, with
the same ID (a digest of its name), bridge ``skiff0``, subnet
10.89.0.0/24 and no DNS; it cannot be created, changed or removed.

New networks get, unless told otherwise, the next free bridge name
``skiffN`` (free: not used by another network of this store and not an
interface on the host) and the next free subnet 10.89.N.0/24 (free: not
overlapping another network of this store nor any route of the host, which
is how podman avoids subnets that are in use by other tools).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import NameInUse, StorageError, UsageError
from skiff.runtime.network.model import (
    BRIDGE_PREFIX,
    DEFAULT_BRIDGE,
    DEFAULT_NETWORK,
    DEFAULT_SUBNET,
    DRIVER_BRIDGE,
    IPAM_HOST_LOCAL,
    NAME_PATTERN,
    NAME_RE,
    IPAddress,
    IPNetwork,
    LeaseRange,
    Network,
    Subnet,
    default_network_id,
    format_created,
)
from skiff.storage.db import Database

if TYPE_CHECKING:
    from skiff.storage.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    interface TEXT NOT NULL,
    created REAL NOT NULL,
    config TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS networks_by_interface ON networks(interface);
"""

SUBNET_POOL = ipaddress.IPv4Network("10.89.0.0/16")
"""User networks get /24s from here (10.89.0.0/24 is the default network's)."""
MAX_INTERFACE_NAME = 15  # IFNAMSIZ - 1
BRIDGE_OPTIONS = ("mtu", "vlan", "isolate")
"""The bridge driver options netavark 1.4 knows; anything else is refused as podman does."""
SYS_CLASS_NET = Path("/sys/class/net")


class NetworkUnknown(StorageError):
    """No network with that name or ID."""


class NetworkInUse(StorageError):
    """A network has containers attached and cannot be removed without force."""

    exit_code = 2


@dataclass(frozen=True)
class CreateOptions:
    """``skiff network create``'s flags, as given (strings), validated by ``create``."""

    name: str | None = None
    driver: str = DRIVER_BRIDGE
    interface_name: str | None = None
    subnets: Sequence[str] = ()
    gateways: Sequence[str] = ()
    ip_ranges: Sequence[str] = ()
    ipv6: bool = False
    internal: bool = False
    dns: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    ipam_driver: str | None = None


def default_network() -> Network:
    """The implicit ``skiff`` network (``created`` is now, as podman reports ``podman``'s)."""
    return Network(
        name=DEFAULT_NETWORK,
        id=default_network_id(),
        driver=DRIVER_BRIDGE,
        network_interface=DEFAULT_BRIDGE,
        created=format_created(),
        subnets=(Subnet(DEFAULT_SUBNET, DEFAULT_SUBNET.network_address + 1),),
        dns_enabled=False,
    )


def host_routes() -> list[IPNetwork]:
    """The destinations of the host's routes (main table), default routes left out."""
    routes: list[IPNetwork] = []
    try:
        with open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                cols = line.split()
                if len(cols) < 8:
                    continue
                dest = ipaddress.IPv4Address(bytes.fromhex(cols[1])[::-1])
                mask = bin(int.from_bytes(bytes.fromhex(cols[7])[::-1], "big")).count("1")
                if mask:
                    routes.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    except OSError:
        pass
    try:
        with open("/proc/net/ipv6_route") as f:
            for line in f:
                cols = line.split()
                if len(cols) < 2:
                    continue
                prefix = int(cols[1], 16)
                if prefix == 0:
                    continue
                dest6 = ipaddress.IPv6Address(bytes.fromhex(cols[0]))
                if dest6.is_multicast or dest6.is_link_local or dest6.is_loopback:
                    continue
                routes.append(ipaddress.IPv6Network(f"{dest6}/{prefix}", strict=False))
    except OSError:
        pass
    return routes


def host_interfaces() -> set[str]:
    try:
        return set(os.listdir(SYS_CLASS_NET))
    except OSError:
        return set()


def _overlap(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and a.overlaps(b)


class NetworkStore:
    """The networks of one store."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("networks", SCHEMA)

    @classmethod
    def of(cls, store: Store) -> NetworkStore:
        return cls(store.db)

    # --- reading ----------------------------------------------------------------------

    def list(self) -> list[Network]:
        """Every network, the default one included, sorted by name (as podman lists them)."""
        rows = self.db.read("SELECT config FROM networks")
        networks = [Network.from_json(json.loads(r["config"])) for r in rows]
        networks.append(default_network())
        return sorted(networks, key=lambda n: n.name)

    def find(self, ref: str) -> Network | None:
        """By name, full ID, or unique ID prefix (as podman resolves them)."""
        if ref in (DEFAULT_NETWORK, default_network_id()):
            return default_network()
        row = self.db.read_one("SELECT config FROM networks WHERE name=? OR id=?", (ref, ref))
        if row is not None:
            return Network.from_json(json.loads(row["config"]))
        candidates = [n for n in self.list() if ref and n.id.startswith(ref)]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise UsageError(
                f"more than one network has an ID starting with {ref!r}",
                "give more characters of the ID, or the name",
            )
        return None

    def get(self, ref: str) -> Network:
        found = self.find(ref)
        if found is None:
            raise NetworkUnknown(
                f"unable to find network with name or ID {ref}: network not found",
                "list networks with 'skiff network ls'",
            )
        return found

    def exists(self, ref: str) -> bool:
        return self.find(ref) is not None

    # --- writing ----------------------------------------------------------------------

    def create(self, options: CreateOptions) -> Network:
        """Validate ``options`` like podman and store the new network."""
        if options.driver != DRIVER_BRIDGE:
            raise UsageError(
                f"unsupported driver {options.driver!r}", "skiff supports the bridge driver only"
            )
        if options.ipam_driver not in (None, "", IPAM_HOST_LOCAL):
            raise UsageError(
                f"unsupported IPAM driver {options.ipam_driver!r}",
                f"skiff supports {IPAM_HOST_LOCAL} only",
            )
        bridge_options = _bridge_options(options.options)
        if options.name is not None:
            _check_name(options.name)
        if options.interface_name is not None:
            _check_bridge_name(options.interface_name)
        requested = _requested_subnets(options)
        with self.db.write():
            existing = self.list()
            names = {n.name for n in existing}
            name = options.name or _next_free(f"{BRIDGE_PREFIX}{{}}", names, start=1)
            if name in names:
                raise NameInUse(
                    f"network name {name} already used: network already exists",
                    "choose another name, or remove the network first",
                )
            bridges = {n.network_interface for n in existing}
            if options.interface_name is not None:
                if options.interface_name in bridges:
                    raise NameInUse(
                        f"bridge name {options.interface_name} already used by another network",
                        "choose another --interface-name",
                    )
                bridge = options.interface_name
            else:
                bridge = _next_free(f"{BRIDGE_PREFIX}{{}}", bridges | host_interfaces(), start=1)
            used = [s.subnet for n in existing for s in n.subnets]
            subnets = _choose_subnets(options, requested, used, host_routes())
            network = Network(
                name=name,
                id=_new_id(existing),
                driver=DRIVER_BRIDGE,
                network_interface=bridge,
                created=format_created(),
                subnets=tuple(subnets),
                ipv6_enabled=any(s.subnet.version == 6 for s in subnets),
                internal=options.internal,
                dns_enabled=options.dns,
                labels=dict(options.labels),
                options=bridge_options,
            )
            self.db.conn.execute(
                "INSERT INTO networks(id, name, interface, created, config) VALUES (?,?,?,?,?)",
                (network.id, network.name, bridge, time.time(), json.dumps(network.to_json())),
            )
        return network

    def delete(self, network_id: str) -> None:
        """Remove a network's row (policy — in use, default — is the caller's: connect.py)."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM networks WHERE id=?", (network_id,))


# --- validation helpers ---------------------------------------------------------------


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UsageError(
            f"network name {name!r} invalid: names must match {NAME_PATTERN}",
            "use letters, digits, '_', '.' and '-'",
        )


def check_interface_name(name: str) -> None:
    """A usable Linux interface name; ``lo`` is taken in every namespace."""
    if (
        not name
        or len(name) > MAX_INTERFACE_NAME
        or name in (".", "..", "lo")
        or any(c in name for c in "/: \t\n")
    ):
        raise UsageError(
            f"invalid interface name {name!r}",
            f"use at most {MAX_INTERFACE_NAME} characters, no '/', ':' or spaces, not 'lo'",
        )


def _check_bridge_name(name: str) -> None:
    """A bridge name must be free or name an existing bridge (netavark then uses it)."""
    check_interface_name(name)
    if (SYS_CLASS_NET / name).exists() and not (SYS_CLASS_NET / name / "bridge").exists():
        raise UsageError(
            f"interface {name} exists on the host and is not a bridge",
            "choose another --interface-name",
        )


def _bridge_options(raw: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key not in BRIDGE_OPTIONS:
            raise UsageError(
                f"unsupported bridge network option {key}",
                f"supported options: {', '.join(BRIDGE_OPTIONS)}",
            )
        if key in ("mtu", "vlan"):
            if not value.isdigit():
                raise UsageError(f"bridge option {key}={value!r}: not a number")
            if key == "vlan" and int(value) > 4094:
                raise UsageError(f"bridge option vlan={value}: VLAN IDs are 0-4094")
        if key == "isolate" and value not in ("true", "false", "strict"):
            raise UsageError(f"bridge option isolate={value!r}: use true, false or strict")
        out[key] = value
    return out


def _next_free(pattern: str, taken: Iterable[str], start: int) -> str:
    taken_set = set(taken)
    index = start
    while pattern.format(index) in taken_set:
        index += 1
    return pattern.format(index)


def _new_id(existing: Sequence[Network]) -> str:
    ids = {n.id[:12] for n in existing}
    while True:
        candidate = secrets.token_hex(32)
        if candidate[:12] not in ids:
            return candidate


def _parse_subnet(text: str) -> IPNetwork:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise UsageError(
            f"invalid CIDR address: {text}", "write subnets as ADDRESS/PREFIX"
        ) from None
    if net.num_addresses < 4:
        raise UsageError(f"subnet {net} is too small", "use at most /30 (IPv4) or /126 (IPv6)")
    return net


def _parse_ip(text: str, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise UsageError(f"invalid {what} {text!r}: not an IP address") from None


def _lease_range(text: str, subnet: IPNetwork) -> LeaseRange:
    """``--ip-range`` as CIDR (podman 4) or START-END, within ``subnet``."""
    if "-" in text:
        start_text, _, end_text = text.partition("-")
        start = _parse_ip(start_text, "--ip-range start")
        end = _parse_ip(end_text, "--ip-range end")
        if start.version != end.version or start > end:  # type: ignore[operator]
            raise UsageError(f"invalid --ip-range {text}: start must not be after end")
    else:
        try:
            net = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise UsageError(f"invalid --ip-range {text!r}", "use CIDR or START-END") from None
        start = net.network_address + 1
        end = net.broadcast_address
    for address in (start, end):
        if address not in subnet:
            raise UsageError(f"--ip-range {text} is not in subnet {subnet}")
    return LeaseRange(start, end)


def _requested_subnets(options: CreateOptions) -> list[Subnet]:
    """The --subnet/--gateway/--ip-range triples, paired by position as podman pairs them."""
    if not options.subnets and (options.gateways or options.ip_ranges):
        raise UsageError(
            "cannot set gateway or range without subnet", "add --subnet for each --gateway"
        )
    if len(options.gateways) > len(options.subnets):
        raise UsageError("cannot set more gateways than subnets")
    if len(options.ip_ranges) > len(options.subnets):
        raise UsageError("cannot set more ranges than subnets")
    out: list[Subnet] = []
    for index, text in enumerate(options.subnets):
        net = _parse_subnet(text)
        gateway: IPAddress | None = None
        if index < len(options.gateways) and options.gateways[index]:
            gateway = _parse_ip(options.gateways[index], "gateway")
            if gateway not in net:
                raise UsageError(f"gateway {gateway} not in subnet {net}")
            if gateway == net.network_address or (
                net.version == 4 and gateway == net.broadcast_address
            ):
                raise UsageError(f"gateway {gateway} is not a host address of subnet {net}")
        elif not options.internal:
            gateway = net.network_address + 1
        lease = None
        if index < len(options.ip_ranges) and options.ip_ranges[index]:
            lease = _lease_range(options.ip_ranges[index], net)
        out.append(Subnet(net, gateway, lease))
    return out


def _choose_subnets(
    options: CreateOptions,
    requested: list[Subnet],
    used: Sequence[IPNetwork],
    routes: Sequence[IPNetwork],
) -> list[Subnet]:
    for index, subnet in enumerate(requested):
        for other in requested[:index]:
            if _overlap(subnet.subnet, other.subnet):
                raise UsageError(f"subnet {subnet.subnet} overlaps subnet {other.subnet}")
        if any(_overlap(subnet.subnet, u) for u in [*used, *routes]):
            raise UsageError(
                f"subnet {subnet.subnet} is already used on the host or by another config",
                "choose another --subnet, or leave it out to get a free one",
            )
    subnets = list(requested)
    taken = [*used, *routes, *(s.subnet for s in subnets)]
    has_v6 = any(s.subnet.version == 6 for s in subnets)
    if not subnets:
        net4 = _free_ipv4_subnet(taken)
        gateway = None if options.internal else net4.network_address + 1
        subnets.append(Subnet(net4, gateway))
        taken.append(net4)
    if options.ipv6 and not has_v6:
        net6 = _free_ipv6_subnet(taken)
        subnets.append(Subnet(net6, None if options.internal else net6.network_address + 1))
    return subnets


def _free_ipv4_subnet(taken: Sequence[IPNetwork]) -> ipaddress.IPv4Network:
    for candidate in SUBNET_POOL.subnets(new_prefix=24):
        if candidate == DEFAULT_SUBNET:
            continue
        if not any(_overlap(candidate, t) for t in taken):
            return candidate
    raise UsageError(f"could not find a free subnet in {SUBNET_POOL}", "give one with --subnet")


def _free_ipv6_subnet(taken: Sequence[IPNetwork]) -> ipaddress.IPv6Network:
    """A random unique-local /64 (fdXX:XXXX:XXXX:XXXX::/64), as podman picks them."""
    for _ in range(100):
        prefix = b"\xfd" + secrets.token_bytes(7) + bytes(8)
        candidate = ipaddress.IPv6Network((prefix, 64))
        if not any(_overlap(candidate, t) for t in taken):
            return candidate
    raise UsageError("could not find a free IPv6 subnet", "give one with --subnet")
