"""``-p``/``-P`` parsing, validation and host port choice (skiff.runtime.network.ports)."""

from __future__ import annotations

import random
import socket

import pytest

from skiff.errors import UsageError
from skiff.runtime.network.model import PortMapping
from skiff.runtime.network.ports import (
    assign_host_ports,
    check_conflicts,
    parse_exposed,
    parse_publish,
    parse_publish_list,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [PortMapping(80, 0, 1, "tcp", "")]),
        ("8080:80", [PortMapping(80, 8080, 1, "tcp", "")]),
        ("127.0.0.1:8080:80", [PortMapping(80, 8080, 1, "tcp", "127.0.0.1")]),
        ("127.0.0.1::80", [PortMapping(80, 0, 1, "tcp", "127.0.0.1")]),
        ("53/udp", [PortMapping(53, 0, 1, "udp", "")]),
        ("5353:53/UDP", [PortMapping(53, 5353, 1, "udp", "")]),
        ("8080-8082:80-82", [PortMapping(80, 8080, 3, "tcp", "")]),
        ("80-81", [PortMapping(80, 0, 2, "tcp", "")]),
        ("[::1]:8080:80", [PortMapping(80, 8080, 1, "tcp", "::1")]),
        ("[::1]::80/udp", [PortMapping(80, 0, 1, "udp", "::1")]),
        (
            "8080:80/tcp,udp",
            [PortMapping(80, 8080, 1, "tcp", ""), PortMapping(80, 8080, 1, "udp", "")],
        ),
        ("9000:9000/sctp", [PortMapping(9000, 9000, 1, "sctp", "")]),
        ("0:80", [PortMapping(80, 0, 1, "tcp", "")]),
        ("65535:65535", [PortMapping(65535, 65535, 1, "tcp", "")]),
    ],
)
def test_parse_valid(spec: str, expected: list[PortMapping]) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("70000:80", "host port 70000 is out of range (0-65535)"),
        ("8080:70000", "container port 70000 is out of range (1-65535)"),
        ("abc", "container port 'abc' is not a number"),
        ("80:abc", "container port 'abc' is not a number"),
        ("abc:80", "host port 'abc' is not a number"),
        ("0", "container port 0 is out of range (1-65535)"),
        ("", "empty"),
        ("80/xyz", "unknown protocol 'xyz'"),
        ("8080-8081:80", "host and container port ranges have different lengths (2 vs 1)"),
        ("80-79", "container port range 80-79 ends before it starts"),
        ("1.2.3:80:80", "'1.2.3' is not an IP address"),
        ("[1.2.3.4]:80:80", "1.2.3.4 in brackets is not an IPv6 address"),
        ("::1:80:80", "too many ':'"),
        ("[::1]80", "an IPv6 host address must be written"),
        ("65535-65536:80-81", "host port 65536 is out of range"),
        ("65000:65535-65536", "container port 65536 is out of range"),
        ("65535:1-2", "different lengths (1 vs 2)"),
        ("80-:80", "host port range '80-' is incomplete"),
        ("-1:80", "host port range '-1' is incomplete"),
        ("\uff18\uff10", "container port '\uff18\uff10' is not a number"),  # fullwidth digits
    ],
)
def test_parse_invalid(spec: str, reason: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_publish(spec)
    message = str(info.value)
    assert info.value.message.startswith(f"invalid port spec {spec!r}: ")
    assert reason in message
    assert "\n" not in message
    assert "-p [IP:][HOSTPORT:]CONTAINERPORT[/PROTOCOL]" in (info.value.hint or "")


def test_netavark_json_shape() -> None:
    (mapping,) = parse_publish("127.0.0.1:8080-8081:80-81/udp")
    assert mapping.to_json() == {
        "host_ip": "127.0.0.1",
        "container_port": 80,
        "host_port": 8080,
        "range": 2,
        "protocol": "udp",
    }
    assert PortMapping.from_json(mapping.to_json()) == mapping
    assert str(mapping) == "80/udp -> 127.0.0.1:8080"
    assert str(PortMapping(80, 8080)) == "80/tcp -> 0.0.0.0:8080"


def test_expose_publish_all() -> None:
    exposed = ["80/tcp", "53/udp", "8000-8001"]
    assert parse_exposed(exposed) == [
        PortMapping(80, 0, 1, "tcp"),
        PortMapping(53, 0, 1, "udp"),
        PortMapping(8000, 0, 2, "tcp"),
    ]
    # -P skips exposed ports that -p already publishes
    mappings = parse_publish_list(["8080:80"], publish_all=True, exposed=exposed)
    assert mappings == [
        PortMapping(80, 8080, 1, "tcp"),
        PortMapping(53, 0, 1, "udp"),
        PortMapping(8000, 0, 2, "tcp"),
    ]
    with pytest.raises(UsageError, match="invalid port spec"):
        parse_exposed(["http/tcp"])


def test_conflicting_host_ports_refused() -> None:
    with pytest.raises(UsageError, match="host port 8081/tcp is published twice"):
        parse_publish_list(["8080-8081:80-81", "8081:90"])
    with pytest.raises(UsageError, match="published twice"):
        parse_publish_list(["127.0.0.1:8080:80", "8080:81"])
    # different protocols, different addresses, or random ports do not clash
    check_conflicts(parse_publish("8080:80/tcp,udp"))
    check_conflicts(parse_publish("127.0.0.1:8080:80") + parse_publish("127.0.0.2:8080:80"))
    check_conflicts(parse_publish("80") + parse_publish("81"))


def test_assign_host_ports_picks_bindable_ports() -> None:
    fixed = PortMapping(80, 18080, 1, "tcp", "127.0.0.1")
    mappings = [fixed, PortMapping(81, 0, 1, "tcp", "127.0.0.1"), PortMapping(53, 0, 3, "udp")]
    assigned = assign_host_ports(mappings, rng=random.Random(7))
    assert assigned[0] == fixed
    single, ranged = assigned[1], assigned[2]
    assert single.host_port > 0 and single.container_port == 81
    assert ranged.range == 3 and 1024 <= ranged.host_port <= 65533
    for port in range(ranged.host_port, ranged.host_port + 3):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("", port))


def test_assign_host_ports_skips_ports_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rng = random.Random()
        rng.randint = lambda a, b: port  # type: ignore[method-assign]
        with pytest.raises(UsageError, match="no free host port range of 2"):
            assign_host_ports([PortMapping(80, 0, 2, "tcp", "127.0.0.1")], attempts=3, rng=rng)
