"""The vocabulary of container networking: networks, per-container options, results.

A ``Network`` has exactly the JSON shape podman 4 writes to
/etc/containers/networks/NAME.json (and netavark reads in its
``network_info``), so ``skiff network inspect`` prints what ``podman network
inspect`` prints and the same object is handed to netavark unchanged. Keys
keep podman's order; ``labels`` and ``options`` are left out when empty and
``gateway``/``lease_range`` when unset, as Go's ``omitempty`` does.

``PerNetworkOptions`` is what one container asks of one network (netavark's
``networks`` map); ``NetworkResult`` is what netavark reports back for it;
``PortMapping`` is one published port range (netavark's ``port_mappings``).
Everything here is pure data: no I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skiff.errors import StoreCorrupt

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

NAME_PATTERN = "[a-zA-Z0-9][a-zA-Z0-9_.-]*"
NAME_RE = re.compile(rf"\A{NAME_PATTERN}\Z")

DEFAULT_NETWORK = "skiff"
"""The network containers join when they ask for none, like podman's ``podman``."""
DEFAULT_BRIDGE = "skiff0"
DEFAULT_SUBNET = ipaddress.IPv4Network("10.89.0.0/24")
"""Not podman's 10.88.0.0/16, so that both can run side by side on one host."""
BRIDGE_PREFIX = "skiff"
DRIVER_BRIDGE = "bridge"
IPAM_HOST_LOCAL = "host-local"
DNS_DOMAIN = "dns.podman"
"""aardvark-dns serves this search domain; netavark 1.4 has no way to change it."""


def default_network_id(name: str = DEFAULT_NETWORK) -> str:
    """The default network's ID: a digest of its name, as podman derives ``podman``'s."""
    return hashlib.sha256(name.encode()).hexdigest()


def format_created(ns: int | None = None) -> str:
    """A timestamp as Go's RFC 3339 with nanoseconds (``2024-01-02T03:04:05.1234Z``)."""
    if ns is None:
        ns = time.time_ns()
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction:
        text += f".{fraction:09d}".rstrip("0")
    return text + "Z"


def parse_created(text: str) -> datetime:
    """The datetime of a ``created`` value (nanoseconds are cut to microseconds)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    micro = (match.group(2) or "").ljust(6, "0")[:6]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(f"{match.group(1)}.{micro}{zone}").astimezone(UTC)


# --- networks --------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRange:
    """The part of a subnet containers get addresses from (``--ip-range``)."""

    start_ip: IPAddress | None = None
    end_ip: IPAddress | None = None

    def to_json(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.start_ip is not None:
            out["start_ip"] = str(self.start_ip)
        if self.end_ip is not None:
            out["end_ip"] = str(self.end_ip)
        return out


@dataclass(frozen=True)
class Subnet:
    subnet: IPNetwork
    gateway: IPAddress | None = None
    lease_range: LeaseRange | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subnet": str(self.subnet)}
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        if self.lease_range is not None:
            out["lease_range"] = self.lease_range.to_json()
        return out


@dataclass(frozen=True)
class Network:
    """One network definition, as podman 4 writes it."""

    name: str
    id: str
    driver: str
    network_interface: str
    created: str
    subnets: tuple[Subnet, ...]
    ipv6_enabled: bool = False
    internal: bool = False
    dns_enabled: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    ipam_options: Mapping[str, str] = field(default_factory=lambda: {"driver": IPAM_HOST_LOCAL})

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_NETWORK

    def to_json(self) -> dict[str, Any]:
        """podman's JSON object for this network, key for key."""
        out: dict[str, Any] = {
            "name": self.name,
            "id": self.id,
            "driver": self.driver,
            "network_interface": self.network_interface,
            "created": self.created,
            "subnets": [s.to_json() for s in self.subnets],
            "ipv6_enabled": self.ipv6_enabled,
            "internal": self.internal,
            "dns_enabled": self.dns_enabled,
        }
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.options:
            out["options"] = dict(self.options)
        if self.ipam_options:
            out["ipam_options"] = dict(self.ipam_options)
        return out

    @classmethod
    def from_json(cls, data: object) -> Network:
        """Parse a network object (from the database or a podman file); strict."""
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            subnets = tuple(_subnet_from_json(s) for s in data.get("subnets") or [])
            return cls(
                name=_str(data["name"]),
                id=_str(data["id"]),
                driver=_str(data["driver"]),
                network_interface=_str(data.get("network_interface", "")),
                created=_str(data.get("created", "")),
                subnets=subnets,
                ipv6_enabled=bool(data.get("ipv6_enabled", False)),
                internal=bool(data.get("internal", False)),
                dns_enabled=bool(data.get("dns_enabled", False)),
                labels=_str_map(data.get("labels") or {}),
                options=_str_map(data.get("options") or {}),
                ipam_options=_str_map(data.get("ipam_options") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreCorrupt(
                f"invalid network record: {exc}", "remove the network and create it again"
            ) from exc

    def template_data(self) -> dict[str, Any]:
        """The network as podman's Go struct (types.Network) for ``--format`` templates."""
        return {
            "Name": self.name,
            "ID": self.id,
            "Driver": self.driver,
            "NetworkInterface": self.network_interface,
            "Created": parse_created(self.created) if self.created else None,
            "Subnets": [
                {
                    "Subnet": str(s.subnet),
                    "Gateway": str(s.gateway) if s.gateway is not None else None,
                    "LeaseRange": s.lease_range.to_json() if s.lease_range else None,
                }
                for s in self.subnets
            ],
            "IPv6Enabled": self.ipv6_enabled,
            "Internal": self.internal,
            "DNSEnabled": self.dns_enabled,
            "Labels": dict(self.labels),
            "Options": dict(self.options),
            "IPAMOptions": dict(self.ipam_options),
        }


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError("expected a JSON object of strings")
    return {_str(k): _str(v) for k, v in value.items()}


def _subnet_from_json(data: object) -> Subnet:
    if not isinstance(data, dict):
        raise TypeError("subnet: not a JSON object")
    net = ipaddress.ip_network(_str(data["subnet"]), strict=False)
    gateway = ipaddress.ip_address(_str(data["gateway"])) if data.get("gateway") else None
    lease = None
    raw = data.get("lease_range")
    if isinstance(raw, dict) and raw:
        lease = LeaseRange(
            ipaddress.ip_address(_str(raw["start_ip"])) if raw.get("start_ip") else None,
            ipaddress.ip_address(_str(raw["end_ip"])) if raw.get("end_ip") else None,
        )
    return Subnet(net, gateway, lease)


# --- what a container asks for, and what it gets ------------------------------------------


@dataclass(frozen=True)
class PerNetworkOptions:
    """One container's wishes for one network (netavark's ``networks`` entries)."""

    static_ips: tuple[IPAddress, ...] = ()
    aliases: tuple[str, ...] = ()
    interface_name: str = ""
    static_mac: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.static_ips:
            out["static_ips"] = [str(ip) for ip in self.static_ips]
        if self.aliases:
            out["aliases"] = list(self.aliases)
        out["interface_name"] = self.interface_name
        if self.static_mac:
            out["static_mac"] = self.static_mac
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PerNetworkOptions:
        return cls(
            static_ips=tuple(ipaddress.ip_address(ip) for ip in data.get("static_ips") or ()),
            aliases=tuple(data.get("aliases") or ()),
            interface_name=str(data.get("interface_name") or ""),
            static_mac=str(data.get("static_mac") or ""),
        )


@dataclass(frozen=True)
class PortMapping:
    """A published port range: host ``host_port..+range`` → container ``container_port..``.

    ``host_ip`` "" means every host address; ``host_port`` 0 means "pick a
    free one" and is replaced before netavark sees it.
    """

    container_port: int
    host_port: int = 0
    range: int = 1
    protocol: str = "tcp"
    host_ip: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "host_ip": self.host_ip,
            "container_port": self.container_port,
            "host_port": self.host_port,
            "range": self.range,
            "protocol": self.protocol,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PortMapping:
        return cls(
            container_port=int(data["container_port"]),
            host_port=int(data.get("host_port") or 0),
            range=int(data.get("range") or 1),
            protocol=str(data.get("protocol") or "tcp"),
            host_ip=str(data.get("host_ip") or ""),
        )

    def __str__(self) -> str:
        """As ``podman port`` prints it: ``80/tcp -> 0.0.0.0:8080`` (first port of a range)."""
        host = self.host_ip or "0.0.0.0"  # noqa: S104 - how podman prints "all addresses"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.container_port}/{self.protocol} -> {host}:{self.host_port}"


@dataclass(frozen=True)
class InterfaceAddress:
    ipnet: IPInterface
    gateway: IPAddress | None = None


@dataclass(frozen=True)
class InterfaceStatus:
    """One interface netavark made in the container: its name, MAC and addresses."""

    name: str
    mac_address: str
    subnets: tuple[InterfaceAddress, ...] = ()


@dataclass(frozen=True)
class NetworkResult:
    """What netavark set up for one network (its status block)."""

    interfaces: tuple[InterfaceStatus, ...] = ()
    dns_server_ips: tuple[IPAddress, ...] = ()
    dns_search_domains: tuple[str, ...] = ()

    @property
    def addresses(self) -> list[IPInterface]:
        return [a.ipnet for i in self.interfaces for a in i.subnets]

    def to_json(self) -> dict[str, Any]:
        """netavark's own status JSON, for the database."""
        return {
            "dns_search_domains": list(self.dns_search_domains),
            "dns_server_ips": [str(ip) for ip in self.dns_server_ips],
            "interfaces": {
                i.name: {
                    "mac_address": i.mac_address,
                    "subnets": [
                        {"ipnet": str(a.ipnet)}
                        | ({"gateway": str(a.gateway)} if a.gateway is not None else {})
                        for a in i.subnets
                    ],
                }
                for i in self.interfaces
            },
        }

    @classmethod
    def from_json(cls, data: object) -> NetworkResult:
        """Parse netavark's status block for one network (raises ValueError/TypeError)."""
        if not isinstance(data, dict):
            raise TypeError("network status is not a JSON object")
        interfaces = []
        for name, raw in (data.get("interfaces") or {}).items():
            if not isinstance(raw, dict):
                raise TypeError(f"interface {name!r} is not a JSON object")
            addresses = tuple(
                InterfaceAddress(
                    ipaddress.ip_interface(_str(s["ipnet"])),
                    ipaddress.ip_address(_str(s["gateway"])) if s.get("gateway") else None,
                )
                for s in raw.get("subnets") or []
            )
            interfaces.append(
                InterfaceStatus(str(name), str(raw.get("mac_address") or ""), addresses)
            )
        return cls(
            interfaces=tuple(interfaces),
            dns_server_ips=tuple(
                ipaddress.ip_address(_str(ip)) for ip in data.get("dns_server_ips") or []
            ),
            dns_search_domains=tuple(_str(d) for d in data.get("dns_search_domains") or []),
        )


@dataclass(frozen=True)
class NetworkStatus:
    """A container's network as set up: where its namespace is, and per network what it got.

    ``netns`` is None for ``host`` mode (the container shares the host's).
    The runtime uses ``netns`` as the ``path`` of the network namespace in
    config.json, and the results to write /etc/hosts and resolv.conf.
    """

    container_id: str
    mode: str
    netns: Path | None
    networks: Mapping[str, NetworkResult] = field(default_factory=dict)
    ports: tuple[PortMapping, ...] = ()

    @property
    def addresses(self) -> list[IPInterface]:
        return [a for result in self.networks.values() for a in result.addresses]

    @property
    def dns_servers(self) -> list[IPAddress]:
        seen: list[IPAddress] = []
        for result in self.networks.values():
            seen.extend(ip for ip in result.dns_server_ips if ip not in seen)
        return seen

    @property
    def dns_search_domains(self) -> list[str]:
        seen: list[str] = []
        for result in self.networks.values():
            seen.extend(d for d in result.dns_search_domains if d not in seen)
        return seen


def short_aliases(container_id: str, aliases: Sequence[str]) -> tuple[str, ...]:
    """The DNS names of a container on a network: its aliases, then its short ID (as podman)."""
    out = [a for a in aliases if a]
    short = container_id[:12]
    if short and short not in out:
        out.append(short)
    return tuple(dict.fromkeys(out))
