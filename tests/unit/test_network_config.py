"""Network definitions, IPAM and filters against a real SQLite store database.

No namespaces or netavark here (see tests/integration/test_network.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import time
from pathlib import Path

import pytest

from skiff.errors import ContainerError, NameInUse, StoreCorrupt, UsageError
from skiff.runtime.network import leases
from skiff.runtime.network.filters import parse_filters, parse_until
from skiff.runtime.network.ipam import IPAM
from skiff.runtime.network.model import (
    Network,
    NetworkResult,
    PerNetworkOptions,
    format_created,
    parse_created,
)
from skiff.runtime.network.store import (
    SUBNET_POOL,
    CreateOptions,
    NetworkStore,
    NetworkUnknown,
    host_routes,
)
from skiff.storage.db import Database


@pytest.fixture(autouse=True)
def private_leases(tmp_shm: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Host-wide address leases in a directory of the test's own."""
    root = tmp_shm / "leases"
    monkeypatch.setattr(leases, "leases_root", lambda: root)
    return root


@pytest.fixture
def db(tmp_shm: Path) -> Database:
    return Database(tmp_shm / "db.sqlite")


@pytest.fixture
def networks(db: Database) -> NetworkStore:
    return NetworkStore(db)


def _free_pool_subnets(count: int) -> list[str]:
    routes = host_routes()
    out = []
    for candidate in SUBNET_POOL.subnets(new_prefix=24):
        if str(candidate) == "10.89.0.0/24":
            continue
        if not any(candidate.version == r.version and candidate.overlaps(r) for r in routes):
            out.append(str(candidate))
        if len(out) == count:
            return out
    raise AssertionError("no free subnets on this host")


# --- the default network --------------------------------------------------------------


def test_default_network_always_exists(networks: NetworkStore) -> None:
    default = networks.get("skiff")
    assert default.id == hashlib.sha256(b"skiff").hexdigest()
    assert networks.get(default.id[:12]).name == "skiff"
    data = default.to_json()
    data.pop("created")
    assert data == {
        "name": "skiff",
        "id": default.id,
        "driver": "bridge",
        "network_interface": "skiff0",
        "subnets": [{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}],
        "ipv6_enabled": False,
        "internal": False,
        "dns_enabled": False,
        "ipam_options": {"driver": "host-local"},
    }
    assert [n.name for n in networks.list()] == ["skiff"]
    with pytest.raises(NameInUse, match="network name skiff already used"):
        networks.create(CreateOptions(name="skiff"))


# --- create -------------------------------------------------------------------------------


def test_create_defaults_like_podman(networks: NetworkStore) -> None:
    first, second = _free_pool_subnets(2)
    a = networks.create(CreateOptions())
    b = networks.create(CreateOptions(name="web"))
    assert (a.name, a.network_interface) == ("skiff1", "skiff1")
    assert b.name == "web" and b.network_interface.startswith("skiff")
    assert b.network_interface != a.network_interface
    assert [str(s.subnet) for s in a.subnets] == [first]
    assert [str(s.subnet) for s in b.subnets] == [second]
    assert str(a.subnets[0].gateway) == str(ipaddress.ip_network(first).network_address + 1)
    assert a.dns_enabled and not a.internal and not a.ipv6_enabled
    assert len(a.id) == 64 and a.id != b.id
    assert list(a.to_json()) == [
        "name",
        "id",
        "driver",
        "network_interface",
        "created",
        "subnets",
        "ipv6_enabled",
        "internal",
        "dns_enabled",
        "ipam_options",
    ]
    assert [n.name for n in networks.list()] == ["skiff", "skiff1", "web"]


def test_create_with_every_option(networks: NetworkStore) -> None:
    (subnet,) = _free_pool_subnets(1)
    net = ipaddress.ip_network(subnet)
    range_net = list(net.subnets(new_prefix=25))[1]
    created = networks.create(
        CreateOptions(
            name="full",
            interface_name="skfull0",
            subnets=[subnet],
            gateways=[str(net.network_address + 254)],
            ip_ranges=[str(range_net)],
            ipv6=True,
            labels={"a": "1", "b": ""},
            options={"mtu": "1400", "vlan": "5", "isolate": "true"},
        )
    )
    data = created.to_json()
    assert data["network_interface"] == "skfull0"
    assert data["subnets"][0] == {
        "subnet": subnet,
        "gateway": str(net.network_address + 254),
        "lease_range": {
            "start_ip": str(range_net.network_address + 1),
            "end_ip": str(range_net.broadcast_address),
        },
    }
    v6 = ipaddress.ip_network(data["subnets"][1]["subnet"])
    assert v6.prefixlen == 64 and str(v6).startswith("fd")
    assert data["subnets"][1]["gateway"] == str(v6.network_address + 1)
    assert data["ipv6_enabled"] is True
    assert data["labels"] == {"a": "1", "b": ""}
    assert data["options"] == {"mtu": "1400", "vlan": "5", "isolate": "true"}
    assert list(data)[-3:] == ["labels", "options", "ipam_options"]
    assert Network.from_json(json.loads(json.dumps(data))) == created
    assert networks.get("full") == created


def test_create_internal_has_no_gateway(networks: NetworkStore) -> None:
    net = networks.create(CreateOptions(name="inner", internal=True, dns=False))
    assert net.internal and not net.dns_enabled
    assert net.subnets[0].gateway is None
    assert "gateway" not in net.to_json()["subnets"][0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (CreateOptions(name="bad name"), "network name 'bad name' invalid: names must match"),
        (CreateOptions(name="-x"), "names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
        (CreateOptions(driver="macvlan"), "unsupported driver 'macvlan'"),
        (CreateOptions(ipam_driver="dhcp"), "unsupported IPAM driver 'dhcp'"),
        (CreateOptions(options={"foo": "bar"}), "unsupported bridge network option foo"),
        (CreateOptions(options={"mtu": "abc"}), "bridge option mtu='abc': not a number"),
        (CreateOptions(subnets=["abc"]), "invalid CIDR address: abc"),
        (CreateOptions(subnets=["10.89.250.0/31"]), "subnet 10.89.250.0/31 is too small"),
        (CreateOptions(gateways=["10.89.250.1"]), "cannot set gateway or range without subnet"),
        (
            CreateOptions(subnets=["10.89.250.0/24"], gateways=["10.89.251.1"]),
            "gateway 10.89.251.1 not in subnet 10.89.250.0/24",
        ),
        (
            CreateOptions(subnets=["10.89.250.0/24"], gateways=["10.89.250.255"]),
            "is not a host address",
        ),
        (
            CreateOptions(subnets=["10.89.250.0/24"], ip_ranges=["10.89.251.0/25"]),
            "--ip-range 10.89.251.0/25 is not in subnet 10.89.250.0/24",
        ),
        (
            CreateOptions(subnets=["10.89.250.0/24", "10.89.250.0/25"]),
            "subnet 10.89.250.0/25 overlaps subnet 10.89.250.0/24",
        ),
        (
            CreateOptions(subnets=["10.89.0.128/25"]),
            "already used on the host or by another config",
        ),
        (CreateOptions(interface_name="x" * 16), "invalid interface name"),
        (CreateOptions(interface_name="a/b"), "invalid interface name"),
    ],
)
def test_create_refuses_bad_options(
    networks: NetworkStore, options: CreateOptions, message: str
) -> None:
    with pytest.raises(UsageError) as info:
        networks.create(options)
    assert message in info.value.message
    assert [n.name for n in networks.list()] == ["skiff"]


def test_create_refuses_duplicates(networks: NetworkStore) -> None:
    (subnet,) = _free_pool_subnets(1)
    networks.create(CreateOptions(name="one", subnets=[subnet], interface_name="skdup0"))
    with pytest.raises(NameInUse, match="network name one already used: network already exists"):
        networks.create(CreateOptions(name="one"))
    inner = str(next(ipaddress.ip_network(subnet).subnets(new_prefix=26)))
    with pytest.raises(UsageError, match=f"subnet {inner} is already used on the host"):
        networks.create(CreateOptions(name="two", subnets=[inner]))
    with pytest.raises(NameInUse, match="bridge name skdup0 already used"):
        networks.create(CreateOptions(name="three", interface_name="skdup0"))


def test_subnets_used_by_host_routes_are_skipped(networks: NetworkStore) -> None:
    routes = [r for r in host_routes() if r.version == 4 and r.prefixlen > 0]
    assert routes, "the host has no IPv4 route"
    with pytest.raises(UsageError, match="already used on the host"):
        networks.create(CreateOptions(name="clash", subnets=[str(routes[0])]))


def test_find_by_id_prefix(networks: NetworkStore) -> None:
    created = networks.create(CreateOptions(name="pfx"))
    assert networks.get(created.id[:5]) == created
    assert networks.get(created.id) == created
    with pytest.raises(NetworkUnknown, match="unable to find network with name or ID nope"):
        networks.get("nope")
    assert not networks.exists("nope")
    networks.delete(created.id)
    assert not networks.exists("pfx")


def test_corrupt_record_is_a_clear_error(db: Database, networks: NetworkStore) -> None:
    with db.write() as conn:
        conn.execute(
            "INSERT INTO networks(id, name, interface, created, config) VALUES (?,?,?,?,?)",
            ("f" * 64, "broken", "skbroken", time.time(), json.dumps({"name": "broken"})),
        )
    with pytest.raises(StoreCorrupt, match="invalid network record"):
        networks.get("broken")


# --- model --------------------------------------------------------------------------------


def test_created_timestamps_round_trip() -> None:
    text = format_created(1_700_000_000_123_456_789)
    assert text == "2023-11-14T22:13:20.123456789Z"
    assert format_created(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert parse_created(text).timestamp() == pytest.approx(1_700_000_000.123456)
    assert parse_created("2024-09-05T15:00:04.45111926+02:00").hour == 13


def test_netavark_status_parses() -> None:
    raw = {
        "dns_search_domains": ["dns.podman"],
        "dns_server_ips": ["10.89.77.1"],
        "interfaces": {
            "eth0": {
                "mac_address": "86:e1:a8:87:52:88",
                "subnets": [{"gateway": "10.89.77.1", "ipnet": "10.89.77.2/24"}],
            }
        },
    }
    result = NetworkResult.from_json(raw)
    assert [str(a) for a in result.addresses] == ["10.89.77.2/24"]
    assert result.interfaces[0].mac_address == "86:e1:a8:87:52:88"
    assert NetworkResult.from_json(result.to_json()) == result


def test_per_network_options_json() -> None:
    options = PerNetworkOptions(
        static_ips=(ipaddress.ip_address("10.0.0.5"),), aliases=("a",), interface_name="eth1"
    )
    assert options.to_json() == {
        "static_ips": ["10.0.0.5"],
        "aliases": ["a"],
        "interface_name": "eth1",
    }
    assert PerNetworkOptions.from_json(options.to_json()) == options


# --- IPAM ---------------------------------------------------------------------------------


def _small_network(networks: NetworkStore, name: str, prefix: int = 29, **kw: object) -> Network:
    (subnet,) = _free_pool_subnets(1)
    small = str(next(ipaddress.ip_network(subnet).subnets(new_prefix=prefix)))
    return networks.create(CreateOptions(name=name, subnets=[small], **kw))  # type: ignore[arg-type]


def test_ipam_lowest_free_and_reuse(db: Database, networks: NetworkStore) -> None:
    net = _small_network(networks, "small")
    base = net.subnets[0].subnet.network_address
    ipam = IPAM(db)
    got = [ipam.allocate(net, f"c{i}")[0] for i in range(5)]
    assert got == [base + n for n in range(2, 7)]  # .1 is the gateway, .7 the broadcast
    with pytest.raises(ContainerError, match="no free IP address left in subnet"):
        ipam.allocate(net, "c5")
    ipam.release("c2")
    assert ipam.allocate(net, "c6") == [base + 4]
    assert ipam.allocated(net.id)[base + 4] == "c6"
    with pytest.raises(UsageError, match="already has addresses on network small"):
        ipam.allocate(net, "c6")


def test_ipam_static_addresses(db: Database, networks: NetworkStore) -> None:
    net = _small_network(networks, "static", prefix=28)
    base = net.subnets[0].subnet.network_address
    ipam = IPAM(db)
    assert ipam.allocate(net, "a", [base + 9]) == [base + 9]
    with pytest.raises(UsageError, match=f"IP address {base + 9} is already allocated"):
        ipam.allocate(net, "b", [base + 9])
    with pytest.raises(UsageError, match="is the gateway of network static"):
        ipam.allocate(net, "b", [base + 1])
    with pytest.raises(UsageError, match="not a host address"):
        ipam.allocate(net, "b", [base + 15])
    with pytest.raises(UsageError, match="not in any subnet on network static"):
        ipam.allocate(net, "b", [ipaddress.ip_address("192.0.2.10")])
    assert ipam.allocate(net, "b") == [base + 2]
    assert ipam.of_container("a", net.id) == [base + 9]


def test_ipam_lease_range_and_ipv6(db: Database, networks: NetworkStore) -> None:
    (subnet,) = _free_pool_subnets(1)
    net4 = ipaddress.ip_network(subnet)
    net = networks.create(
        CreateOptions(
            name="ranged",
            subnets=[subnet, "fd00:aaaa:bbbb:cccc::/64"],
            ip_ranges=[f"{net4.network_address + 100}-{net4.network_address + 101}"],
        )
    )
    ipam = IPAM(db)
    assert ipam.allocate(net, "a") == [
        net4.network_address + 100,
        ipaddress.ip_address("fd00:aaaa:bbbb:cccc::2"),
    ]
    assert ipam.allocate(net, "b")[0] == net4.network_address + 101
    with pytest.raises(ContainerError, match="no free IP address"):
        ipam.allocate(net, "c")
    # a failed allocation takes nothing
    assert set(ipam.allocated(net.id).values()) == {"a", "b"}


def test_ipam_skips_addresses_other_stores_hold_on_the_same_bridge(
    tmp_shm: Path, networks: NetworkStore, db: Database, private_leases: Path
) -> None:
    """Two stores, one host bridge: each store's IPAM sees the other's leases."""
    net = _small_network(networks, "shared")
    base = net.subnets[0].subnet.network_address
    other_db = Database(tmp_shm / "other.sqlite")
    mine, theirs = IPAM(db), IPAM(other_db)
    assert mine.allocate(net, "a") == [base + 2]
    assert theirs.allocate(net, "b") == [base + 3]  # same network definition, other store
    assert mine.allocate(net, "c") == [base + 4]
    assert (private_leases / net.network_interface / str(base + 3)).is_file()
    theirs.release("b")
    assert not (private_leases / net.network_interface / str(base + 3)).exists()
    assert mine.allocate(net, "d") == [base + 3]
    with pytest.raises(UsageError, match="a container of another store"):
        theirs.allocate(net, "e", [base + 2])
    other_db.close()


def test_ipam_takes_over_stale_leases(
    tmp_shm: Path, networks: NetworkStore, db: Database, private_leases: Path
) -> None:
    net = _small_network(networks, "stale")
    base = net.subnets[0].subnet.network_address
    gone = Database(tmp_shm / "gone.sqlite")
    assert IPAM(gone).allocate(net, "ghost") == [base + 2]
    gone.close()
    assert IPAM(db).allocate(net, "x") == [base + 3]
    lease = private_leases / net.network_interface / str(base + 2)
    for name in ("gone.sqlite", "gone.sqlite-wal", "gone.sqlite-shm"):
        (tmp_shm / name).unlink(missing_ok=True)  # the store deleted, its container with it
    old = time.time() - leases.GRACE - 1
    os.utime(lease, (old, old))
    assert IPAM(db).allocate(net, "y") == [base + 2]


# --- filters ------------------------------------------------------------------------------


def test_filters(networks: NetworkStore) -> None:
    networks.create(CreateOptions(name="alpha", labels={"tier": "web"}))
    networks.create(CreateOptions(name="beta", labels={"tier": "db", "x": ""}))
    all_networks = networks.list()

    def names(*specs: str, used: tuple[str, ...] = ()) -> list[str]:
        wanted = parse_filters(specs)
        return [n.name for n in all_networks if wanted.matches(n, lambda n: n.name in used)]

    assert names("name=^a") == ["alpha"]
    assert names("name=alpha", "name=beta") == ["alpha", "beta"]
    assert names("label=tier=web") == ["alpha"]
    assert names("label=x") == ["beta"]
    assert names("label!=tier=web") == ["beta", "skiff"]
    assert names("driver=bridge", "label=tier") == ["alpha", "beta"]
    assert names(f"id={networks.get('skiff').id[:6]}") == ["skiff"]
    assert names("dangling=true", used=("alpha",)) == ["beta", "skiff"]
    assert names("dangling=false", used=("alpha",)) == ["alpha"]
    assert names("until=1h") == []
    assert names(f"until={int(time.time()) + 60}") == ["alpha", "beta", "skiff"]
    for bad, message in [
        ("foo=bar", 'invalid filter "foo"'),
        ("name", 'invalid filter "name"'),
        ("until=yesterday", "invalid until value"),
        ("dangling=maybe", "invalid dangling filter value"),
        ("name=(", "invalid name filter"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_filters([bad])
    with pytest.raises(UsageError, match='invalid filter "name"'):
        parse_filters(["name=x"], allowed=("label",))


def test_parse_until() -> None:
    assert parse_until("90m", now=10_000.0) == 10_000.0 - 5400
    assert parse_until("1h30m", now=10_000.0) == 10_000.0 - 5400
    assert parse_until("1700000000") == 1_700_000_000.0
    assert parse_until("2023-11-14T22:13:20Z") == 1_700_000_000.0
    assert parse_until("2023-11-14") == 1_699_920_000.0
