"""Published ports: ``-p`` and ``-P`` strings → validated ``PortMapping``s.

Syntax (podman's): ``[IP:][HOSTPORT:]CONTAINERPORT[/PROTOCOL]``, where
either port may be a range ``START-END`` (ranges must have the same
length), IP may be an IPv6 address in brackets (``[::1]:8080:80``), an
empty or missing HOSTPORT means "any free port", and PROTOCOL is ``tcp``
(default), ``udp``, ``sctp`` or a comma-separated list of them (one mapping
per protocol). ``-P`` publishes every port the image EXPOSEs on a free
host port.

Free host ports are chosen by binding a socket to port 0 (or trying random
ranges), which is what podman does; the port may be taken by someone else
before netavark's DNAT rule exists — the same window podman has.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Iterable, Sequence

from skiff.errors import UsageError
from skiff.runtime.network.model import PortMapping

PROTOCOLS = ("tcp", "udp", "sctp")
SYNTAX_HINT = "use -p [IP:][HOSTPORT:]CONTAINERPORT[/PROTOCOL], e.g. -p 127.0.0.1:8080:80/tcp"
MAX_PORT = 65535


def _error(spec: str, reason: str) -> UsageError:
    return UsageError(f"invalid port spec {spec!r}: {reason}", SYNTAX_HINT)


def _port(spec: str, text: str, what: str, allow_zero: bool) -> int:
    if not text.isdigit() or not text.isascii():
        raise _error(spec, f"{what} {text!r} is not a number")
    value = int(text)
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_PORT:
        raise _error(spec, f"{what} {value} is out of range ({low}-{MAX_PORT})")
    return value


def _port_range(spec: str, text: str, what: str, allow_zero: bool) -> tuple[int, int]:
    """(first port, length) of ``N`` or ``N-M``."""
    if not text:
        raise _error(spec, f"{what} is empty")
    start_text, dash, end_text = text.partition("-")
    if dash and (not start_text or not end_text):
        raise _error(spec, f"{what} range {text!r} is incomplete")
    start = _port(spec, start_text, what, allow_zero)
    if not dash:
        return start, 1
    end = _port(spec, end_text, what, allow_zero)
    if end < start:
        raise _error(spec, f"{what} range {text} ends before it starts")
    return start, end - start + 1


def _protocols(spec: str, text: str) -> list[str]:
    out: list[str] = []
    for proto in text.lower().split(","):
        if proto not in PROTOCOLS:
            raise _error(spec, f"unknown protocol {proto!r} (use {', '.join(PROTOCOLS)})")
        if proto not in out:
            out.append(proto)
    return out


def _split_host_ip(spec: str, text: str) -> tuple[str, str]:
    """(host IP or "", the rest) of ``[IP:]...``; brackets hold IPv6 addresses."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise _error(spec, "an IPv6 host address must be written [ADDRESS]:HOSTPORT:PORT")
        return _host_ip(spec, text[1:close], ipv6=True), text[close + 2 :]
    parts = text.split(":")
    if len(parts) > 3:
        raise _error(spec, "too many ':' (write IPv6 host addresses in brackets)")
    if len(parts) == 3:
        return _host_ip(spec, parts[0], ipv6=False), f"{parts[1]}:{parts[2]}"
    return "", text


def _host_ip(spec: str, text: str, ipv6: bool) -> str:
    if not text:
        return ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise _error(spec, f"{text!r} is not an IP address") from None
    if ipv6 and address.version != 6:
        raise _error(spec, f"{text} in brackets is not an IPv6 address")
    return str(address)


def parse_publish(spec: str) -> list[PortMapping]:
    """One ``-p`` value → its mappings (one per protocol); host port 0 = pick one later."""
    text = spec.strip()
    if not text:
        raise _error(spec, "empty")
    body, slash, proto_text = text.rpartition("/")
    if not slash:
        body, proto_text = text, "tcp"
    protocols = _protocols(spec, proto_text)
    host_ip, ports = _split_host_ip(spec, body)
    host_text, colon, container_text = ports.rpartition(":")
    if not colon:
        host_text = ""
    container_port, length = _port_range(spec, container_text, "container port", False)
    host_port, host_length = 0, length
    if host_text:
        host_port, host_length = _port_range(spec, host_text, "host port", True)
    if host_port and host_length != length:
        raise _error(
            spec,
            f"host and container port ranges have different lengths ({host_length} vs {length})",
        )
    return [
        PortMapping(
            container_port=container_port,
            host_port=host_port,
            range=length,
            protocol=proto,
            host_ip=host_ip,
        )
        for proto in protocols
    ]


def parse_exposed(exposed: Iterable[str], host_ip: str = "") -> list[PortMapping]:
    """``-P``: the image's EXPOSE entries (``80/tcp``, ``53/udp``, ``8000-8001``) on free ports."""
    out: list[PortMapping] = []
    for entry in exposed:
        port_text, slash, proto = entry.partition("/")
        spec = port_text + (f"/{proto}" if slash else "")
        for mapping in parse_publish(spec):
            out.append(
                PortMapping(mapping.container_port, 0, mapping.range, mapping.protocol, host_ip)
            )
    return out


def _overlaps(a: PortMapping, b: PortMapping) -> bool:
    if a.protocol != b.protocol or not a.host_port or not b.host_port:
        return False
    if a.host_ip and b.host_ip and a.host_ip != b.host_ip:
        return False
    return a.host_port < b.host_port + b.range and b.host_port < a.host_port + a.range


def check_conflicts(mappings: Sequence[PortMapping]) -> None:
    """Refuse two mappings of one host port (same protocol, overlapping addresses)."""
    for index, first in enumerate(mappings):
        for second in mappings[index + 1 :]:
            if _overlaps(first, second):
                raise UsageError(
                    f"host port {max(first.host_port, second.host_port)}/{first.protocol} "
                    "is published twice",
                    "give each -p its own host port",
                )


def parse_publish_list(
    specs: Iterable[str], publish_all: bool = False, exposed: Iterable[str] = ()
) -> list[PortMapping]:
    """Every ``-p`` (and with ``-P`` the image's exposed ports not published already)."""
    mappings = [m for spec in specs for m in parse_publish(spec)]
    if publish_all:
        taken = {(m.container_port + i, m.protocol) for m in mappings for i in range(m.range)}
        for mapping in parse_exposed(exposed):
            if (mapping.container_port, mapping.protocol) not in taken:
                mappings.append(mapping)
    check_conflicts(mappings)
    return mappings


# --- choosing free host ports ------------------------------------------------------


def _socket_type(protocol: str) -> int:
    return socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM


def _family(host_ip: str) -> int:
    return socket.AF_INET6 if ":" in host_ip else socket.AF_INET


def _bindable(host_ip: str, port: int, protocol: str) -> bool:
    try:
        with socket.socket(_family(host_ip), _socket_type(protocol)) as sock:
            sock.bind((host_ip, port))
    except OSError:
        return False
    return True


def _free_port(host_ip: str, protocol: str) -> int:
    with socket.socket(_family(host_ip), _socket_type(protocol)) as sock:
        sock.bind((host_ip, 0))
        return int(sock.getsockname()[1])


def assign_host_ports(
    mappings: Sequence[PortMapping], attempts: int = 20, rng: random.Random | None = None
) -> list[PortMapping]:
    """The mappings with every host port 0 replaced by a free one (a free range for ranges)."""
    rng = rng or random.Random()
    out: list[PortMapping] = []
    for mapping in mappings:
        if mapping.host_port:
            out.append(mapping)
            continue
        chosen = 0
        for _ in range(attempts):
            if mapping.range == 1:
                candidate = _free_port(mapping.host_ip, mapping.protocol)
            else:
                candidate = rng.randint(1024, MAX_PORT - mapping.range + 1)
            ports = range(candidate, candidate + mapping.range)
            clash = any(
                _overlaps(
                    PortMapping(1, candidate, mapping.range, mapping.protocol, mapping.host_ip), o
                )
                for o in out
            )
            if not clash and all(_bindable(mapping.host_ip, p, mapping.protocol) for p in ports):
                chosen = candidate
                break
        if not chosen:
            raise UsageError(
                f"no free host port range of {mapping.range} for container port "
                f"{mapping.container_port}/{mapping.protocol}",
                "give the host port explicitly with -p HOSTPORT:CONTAINERPORT",
            )
        out.append(
            PortMapping(
                mapping.container_port, chosen, mapping.range, mapping.protocol, mapping.host_ip
            )
        )
    return out
