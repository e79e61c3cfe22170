"""Container networking for real: netavark, aardvark-dns, iptables, namespaces, bridges.

No container runtime is involved: busybox applets run inside the network
namespaces through ``nsenter --net=PATH``, which is all a container's
network is. Every test uses its own store on tmpfs, its own network names
(netavark's chain names are derived from them), bridges and subnets, and
the ``env`` fixture tears down whatever a test left, then fails the test
if anything (bridge, firewall rule, namespace mount, aardvark-dns) remains.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.errors import ContainerError, ContainerUnknown, UsageError
from skiff.runtime.network import netns as netns_mod
from skiff.runtime.network.connect import connect_network, disconnect_network, remove_network
from skiff.runtime.network.ipam import IPAM
from skiff.runtime.network.model import Network, NetworkStatus, PerNetworkOptions
from skiff.runtime.network.ports import parse_publish_list
from skiff.runtime.network.setup import (
    NetworkRecords,
    network_status,
    setup_network,
    teardown_network,
)
from skiff.runtime.network.store import CreateOptions, NetworkInUse, NetworkStore
from skiff.storage.store import Store
from skiff.testing.network import (
    NetworkSandbox,
    chains,
    free_subnet,
    interface_exists,
    iptables_lines,
    mounts_under,
    network_sandbox,
    rules_of,
    wait_for,
)

BUSYBOX = "/bin/busybox"
NETAVARK = Path("/usr/lib/podman/netavark")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="container networking needs root"),
    pytest.mark.skipif(not NETAVARK.exists(), reason="netavark is not installed"),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="nsenter is not installed"),
]

_TAG = f"{os.getpid() % 100000}"


def _in_netns(path: Path, *argv: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={path}", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wget(url: str, netns: Path | None = None) -> str | None:
    # no "-T": Debian's busybox wget crashes with it; the subprocess timeout stands in
    argv = [BUSYBOX, "wget", "-q", "-O", "-", url]
    if netns is not None:
        argv = ["nsenter", f"--net={netns}", *argv]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=3, check=False)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout if proc.returncode == 0 else None


def _nslookup(netns: Path, name: str, server: str) -> list[str]:
    proc = _in_netns(netns, BUSYBOX, "nslookup", name, server)
    if proc.returncode != 0:
        return []
    answer = proc.stdout.split("Name:", 1)[-1] if "Name:" in proc.stdout else ""
    return re.findall(r"Address:\s*([0-9a-f.:]+)", answer)


@dataclass
class NetEnv:
    """A store on tmpfs, and the sandbox that checks and cleans the host after the test."""

    store: Store
    root: Path
    sandbox: NetworkSandbox

    def network(self, dns: bool = True, subnet: str | None = None, ipv6: bool = False) -> Network:
        index = len(self.sandbox.networks)
        options = CreateOptions(
            name=f"sknet{_TAG}x{index}",
            interface_name=f"skt{_TAG}x{index}",
            subnets=[subnet or free_subnet()],
            dns=dns,
            ipv6=ipv6,
        )
        return self.sandbox.track(NetworkStore.of(self.store).create(options))

    def httpd(self, status: NetworkStatus, marker: str) -> Path:
        """busybox httpd on port 80 in the container's namespace, serving ``marker``."""
        assert status.netns is not None
        www = self.root / f"www-{status.container_id[:8]}"
        www.mkdir()
        (www / "index.html").write_text(marker + "\n")
        proc = subprocess.Popen(
            ["nsenter", f"--net={status.netns}", BUSYBOX, "httpd", "-f", "-p", "80", "-h", str(www)]
        )
        self.sandbox.processes.append(proc)
        return www


@pytest.fixture
def env(tmp_shm: Path) -> Iterator[NetEnv]:
    store = Store.open(
        SystemContext(storage_root=tmp_shm / "root", run_root=tmp_shm / "run", storage_driver="vfs")
    )
    try:
        with network_sandbox(store, tmp_shm) as sandbox:
            yield NetEnv(store, tmp_shm, sandbox)
    finally:
        store.close()


def _ip(status: NetworkStatus, network: str | None = None) -> str:
    results = status.networks if network is None else {network: status.networks[network]}
    return str(next(iter(results.values())).addresses[0].ip)


def _cid(n: int) -> str:
    return f"{n:02x}{_TAG:0>6}".ljust(64, "c")


# --- tests -------------------------------------------------------------------------------


def test_two_containers_reach_each_other_by_address_and_name(env: NetEnv) -> None:
    net = env.network()
    a = setup_network(env.store, _cid(1), f"web{_TAG}", networks=[net.name])
    b = setup_network(env.store, _cid(2), f"client{_TAG}", networks=[net.name], aliases=["bee"])
    assert a.netns is not None and b.netns is not None
    assert a.netns.parent == env.root / "run" / "netns"
    gateway = str(net.subnets[0].gateway)
    ip_a, ip_b = _ip(a), _ip(b)
    assert ip_a != ip_b and {ip_a, ip_b} <= {
        str(h) for h in ipaddress.ip_network(net.subnets[0].subnet).hosts()
    }
    # the interface netavark reported is the one in the namespace
    (iface,) = a.networks[net.name].interfaces
    shown = _in_netns(a.netns, "ip", "-o", "addr", "show", iface.name).stdout
    assert f"{ip_a}/24" in shown
    link = _in_netns(a.netns, "ip", "-o", "link", "show", iface.name).stdout
    assert iface.mac_address in link
    assert [str(s) for s in a.networks[net.name].dns_server_ips] == [gateway]

    env.httpd(a, "hello from a")
    wait_for(lambda: _wget(f"http://{ip_a}/", b.netns) is not None, "httpd in a")
    assert _wget(f"http://{ip_a}/", b.netns) == "hello from a\n"

    assert _nslookup(b.netns, f"web{_TAG}", gateway) == [ip_a]
    assert _nslookup(a.netns, "bee", gateway) == [ip_b]
    assert _nslookup(a.netns, _cid(2)[:12], gateway) == [ip_b]
    assert _nslookup(a.netns, f"client{_TAG}.dns.podman", gateway) == [ip_b]
    assert _nslookup(a.netns, "nobody-by-this-name", gateway) == []


def test_published_ports_reach_the_namespace_from_loopback(env: NetEnv) -> None:
    net = env.network(dns=False)
    with socket.socket() as probe:  # a port free on every address, for -p PORT:80
        probe.bind(("", 0))
        free = probe.getsockname()[1]
    # -p 127.0.0.1::80 (loopback, any free port) and -p PORT:80 (every host address)
    ports = parse_publish_list(["127.0.0.1::80", f"{free}:80"])
    status = setup_network(env.store, _cid(3), "ported", networks=[net.name], ports=ports)
    loopback, everywhere = status.ports
    assert loopback.host_ip == "127.0.0.1" and loopback.host_port > 0
    assert everywhere.host_ip == "" and everywhere.host_port == free
    assert network_status(env.store, _cid(3)) == status
    env.httpd(status, "published")
    for port in (loopback.host_port, everywhere.host_port):
        wait_for(lambda p=port: _wget(f"http://127.0.0.1:{p}/") is not None, f"port {port}")
        assert _wget(f"http://127.0.0.1:{port}/") == "published\n"
    teardown_network(env.store, _cid(3))
    assert _wget(f"http://127.0.0.1:{loopback.host_port}/") is None


def test_teardown_leaves_no_rules_bridge_namespace_or_dns(env: NetEnv) -> None:
    before = set(iptables_lines())
    net = env.network()
    subnet = str(net.subnets[0].subnet)
    ports = parse_publish_list(["127.0.0.1::80"])
    a = setup_network(env.store, _cid(4), "first", networks=[net.name], ports=ports)
    b = setup_network(env.store, _cid(5), "second", networks=[net.name])
    host_port = a.ports[0].host_port
    added = set(iptables_lines()) - before
    assert any(subnet in line for line in added)
    assert any(f"--dport {host_port}" in line for line in added)
    chain, dn_chain = chains(net.name)
    assert f":{chain} - [0:0]" in added and f":{dn_chain} - [0:0]" in added
    assert interface_exists(net.network_interface)
    aardvark_pid = env.sandbox.aardvark_pid()
    assert aardvark_pid is not None and Path(f"/proc/{aardvark_pid}").exists()

    teardown_network(env.store, _cid(4))
    assert a.netns is not None and not a.netns.exists()
    assert interface_exists(net.network_interface), "b still uses the bridge"
    assert not any(f"--dport {host_port}" in line for line in iptables_lines())
    assert _nslookup(b.netns, "first", str(net.subnets[0].gateway)) == []  # type: ignore[arg-type]

    teardown_network(env.store, _cid(5))
    assert rules_of(net, extra=(_cid(4), _cid(5))) == []
    # of what setup added, at most the empty DN chain is left
    assert set(iptables_lines()) & added <= {f":{dn_chain} - [0:0]"}
    assert not interface_exists(net.network_interface)
    assert not mounts_under(env.root)
    assert list((env.root / "run" / "netns").iterdir()) == []
    wait_for(lambda: not Path(f"/proc/{aardvark_pid}").exists(), "aardvark-dns to exit")
    assert NetworkRecords.of(env.store).containers() == []
    assert IPAM(env.store.db).allocated(net.id) == {}
    teardown_network(env.store, _cid(5))  # idempotent


def test_addresses_are_freed_and_reused(env: NetEnv) -> None:
    base = ipaddress.ip_network(free_subnet())
    small = next(base.subnets(new_prefix=29))  # .1 gateway, .2-.6 for containers
    net = env.network(dns=False, subnet=str(small))
    statuses = [
        setup_network(env.store, _cid(10 + i), f"c{i}", networks=[net.name]) for i in range(5)
    ]
    assert [_ip(s) for s in statuses] == [str(small.network_address + n) for n in range(2, 7)]
    with pytest.raises(ContainerError, match="no free IP address left"):
        setup_network(env.store, _cid(15), "c5", networks=[net.name])
    # the failed setup left neither a record nor a namespace behind
    assert network_status(env.store, _cid(15)) is None
    assert len(list((env.root / "run" / "netns").iterdir())) == 5
    teardown_network(env.store, _cid(11))
    again = setup_network(env.store, _cid(15), "c5", networks=[net.name])
    assert _ip(again) == str(small.network_address + 3)


def test_static_ip_and_connect_disconnect(env: NetEnv) -> None:
    one, two = env.network(), env.network()
    gateway_two = str(two.subnets[0].gateway)
    a = setup_network(env.store, _cid(20), f"alpha{_TAG}", networks=[one.name])
    static = str(ipaddress.ip_network(two.subnets[0].subnet).network_address + 50)
    b = setup_network(
        env.store,
        _cid(21),
        "beta",
        networks={
            one.name: PerNetworkOptions(),
        },
    )
    assert b.netns is not None and a.netns is not None
    env.httpd(a, "alpha")
    result = connect_network(env.store, f"alpha{_TAG}", two.name, aliases=["al"])
    ip_a_two = str(result.addresses[0].ip)
    assert result.interfaces[0].name == "eth1"
    result_b = connect_network(
        env.store, _cid(21)[:10], two.name, static_ips=[ipaddress.ip_address(static)]
    )
    assert str(result_b.addresses[0].ip) == static
    assert f"{static}/24" in _in_netns(b.netns, "ip", "-o", "addr", "show", "eth1").stdout
    wait_for(lambda: _wget(f"http://{ip_a_two}/", b.netns) is not None, "alpha on network two")
    assert _nslookup(b.netns, "al", gateway_two) == [ip_a_two]
    status = network_status(env.store, _cid(21))
    assert status is not None and set(status.networks) == {one.name, two.name}

    with pytest.raises(UsageError, match="already connected to network"):
        connect_network(env.store, "beta", two.name)
    with pytest.raises(ContainerUnknown, match="no container with name or ID 'ghost'"):
        connect_network(env.store, "ghost", two.name)

    disconnect_network(env.store, "beta", two.name)
    assert _in_netns(b.netns, "ip", "link", "show", "eth1").returncode != 0
    assert ipaddress.ip_address(static) not in IPAM(env.store.db).allocated(two.id)
    assert _wget(f"http://{_ip(a, one.name)}/", b.netns) == "alpha\n"
    with pytest.raises(UsageError, match="is not connected to network"):
        disconnect_network(env.store, "beta", two.name)
    status = network_status(env.store, _cid(21))
    assert status is not None and set(status.networks) == {one.name}


def test_teardown_by_another_process(env: NetEnv) -> None:
    """Everything teardown needs is in the database: a new process can do it."""
    net = env.network()
    script = f"""
import sys
from pathlib import Path
from skiff.config import SystemContext
from skiff.runtime.network.ports import parse_publish_list
from skiff.runtime.network.setup import setup_network
from skiff.storage.store import Store
store = Store.open(SystemContext(storage_root=Path({str(env.root / "root")!r}),
                                 run_root=Path({str(env.root / "run")!r})))
status = setup_network(store, {_cid(30)!r}, "elsewhere", networks=[{net.name!r}],
                       ports=parse_publish_list(["127.0.0.1::80"]))
print(status.netns)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    netns = Path(proc.stdout.strip())
    assert netns_mod.is_netns(netns)
    assert any(str(net.subnets[0].subnet) in line for line in iptables_lines())
    teardown_network(env.store, _cid(30))
    assert not netns.exists()
    assert rules_of(net) == []
    assert not interface_exists(net.network_interface)


def test_teardown_after_the_namespace_vanished(env: NetEnv) -> None:
    net = env.network()
    status = setup_network(
        env.store,
        _cid(31),
        "lost",
        networks=[net.name],
        ports=parse_publish_list(["127.0.0.1::80"]),
    )
    assert status.netns is not None
    netns_mod.remove_netns(status.netns)  # e.g. someone cleaned RUNROOT by hand
    assert interface_exists(net.network_interface)
    teardown_network(env.store, _cid(31))
    assert not interface_exists(net.network_interface)
    assert rules_of(net) == []
    assert not mounts_under(env.root)


def test_failed_setup_undoes_everything(env: NetEnv) -> None:
    good, bad = env.network(), env.network()
    # a definition netavark refuses (an MTU no bridge takes), written past skiff's
    # validation as an older or hand-edited store could hold it: netavark sets up
    # the first network, fails on the second
    config = bad.to_json() | {"options": {"mtu": "99999"}}
    with env.store.db.write() as conn:
        conn.execute("UPDATE networks SET config=? WHERE id=?", (json.dumps(config), bad.id))
    with pytest.raises(ContainerError) as info:
        setup_network(
            env.store,
            _cid(32),
            "broken",
            networks=[good.name, bad.name],
            ports=parse_publish_list(["127.0.0.1::80"]),
        )
    assert info.value.message.startswith("netavark setup failed for container broken: ")
    assert "create bridge" in info.value.message
    assert network_status(env.store, _cid(32)) is None
    assert IPAM(env.store.db).allocated(good.id) == {}
    assert list((env.root / "run" / "netns").iterdir()) == []
    assert not mounts_under(env.root)
    for network in (good, bad):
        assert not interface_exists(network.network_interface)
        assert rules_of(network) == []
    # and the good network works for the next container
    status = setup_network(env.store, _cid(33), "fine", networks=[good.name])
    assert _ip(status) == str(good.subnets[0].subnet.network_address + 2)


def test_container_interface_names_are_checked(env: NetEnv) -> None:
    net = env.network(dns=False)
    for name in ("lo", "x" * 16, "a/b"):
        with pytest.raises(UsageError, match="invalid interface name"):
            setup_network(
                env.store,
                _cid(34),
                "badif",
                networks={net.name: PerNetworkOptions(interface_name=name)},
            )
    assert network_status(env.store, _cid(34)) is None
    plain = next(
        n
        for n in sorted(os.listdir("/sys/class/net"))
        if n != "lo" and len(n) <= 15 and not Path("/sys/class/net", n, "bridge").exists()
    )
    with pytest.raises(UsageError, match=f"interface {plain} exists on the host and is not a"):
        NetworkStore.of(env.store).create(CreateOptions(name=f"if{_TAG}", interface_name=plain))


def test_network_in_use_is_removed_only_with_force(env: NetEnv) -> None:
    net = env.network()
    setup_network(env.store, _cid(40), "user", networks=[net.name])
    with pytest.raises(NetworkInUse, match=f"network {net.name} is used by container"):
        remove_network(env.store, net.name)
    assert NetworkStore.of(env.store).exists(net.name)
    with pytest.raises(UsageError, match="default network skiff cannot be removed"):
        remove_network(env.store, "skiff")
    remove_network(env.store, net.name, force=True)
    assert not NetworkStore.of(env.store).exists(net.name)
    assert not interface_exists(net.network_interface)
    status = network_status(env.store, _cid(40))
    assert status is not None and status.networks == {}
    teardown_network(env.store, _cid(40))


def test_none_host_and_ns_modes(env: NetEnv) -> None:
    none = setup_network(env.store, _cid(50), "isolated", mode="none")
    assert none.netns is not None and netns_mod.is_netns(none.netns)
    links = _in_netns(none.netns, "ip", "-o", "link").stdout.splitlines()
    assert len(links) == 1 and "lo:" in links[0] and "UP" in links[0]
    assert _in_netns(none.netns, BUSYBOX, "ping", "-c", "1", "-W", "2", "127.0.0.1").returncode == 0
    with pytest.raises(UsageError, match="networks and ports need the bridge network mode"):
        setup_network(env.store, _cid(51), "x", mode="none", networks=["skiff"])

    host = setup_network(env.store, _cid(52), "hosty", mode="host")
    assert host.netns is None and network_status(env.store, _cid(52)) is None
    joined = setup_network(env.store, _cid(53), "joined", mode=f"ns:{none.netns}")
    assert joined.netns == none.netns
    teardown_network(env.store, _cid(53))
    assert netns_mod.is_netns(none.netns)
    with pytest.raises(UsageError, match="unknown network mode 'slirp4netns'"):
        setup_network(env.store, _cid(54), "x", mode="slirp4netns")

    teardown_network(env.store, _cid(50))
    assert not none.netns.exists()


def test_default_network(env: NetEnv) -> None:
    bridge_before = interface_exists("skiff0")
    status = setup_network(env.store, _cid(60), "plain")
    assert set(status.networks) == {"skiff"}
    assert ipaddress.ip_address(_ip(status)) in ipaddress.ip_network("10.89.0.0/24")
    assert status.networks["skiff"].dns_server_ips == ()  # no DNS, as podman's default
    assert interface_exists("skiff0")
    teardown_network(env.store, _cid(60))
    if not bridge_before:
        assert not interface_exists("skiff0")
    assert not any(_cid(60) in line for line in iptables_lines())


def test_setting_up_twice_is_refused(env: NetEnv) -> None:
    net = env.network(dns=False)
    setup_network(env.store, _cid(70), "once", networks=[net.name])
    with pytest.raises(ContainerError, match="network of container once is already set up"):
        setup_network(env.store, _cid(70), "once", networks=[net.name])
    with pytest.raises(UsageError, match="interface name eth0 is asked for twice"):
        setup_network(
            env.store,
            _cid(71),
            "twice",
            networks={
                net.name: PerNetworkOptions(interface_name="eth0"),
                "skiff": PerNetworkOptions(interface_name="eth0"),
            },
        )
    assert network_status(env.store, _cid(71)) is None


def test_dual_stack_network(env: NetEnv) -> None:
    net = env.network(ipv6=True)
    v4, v6 = (s.subnet for s in net.subnets)
    assert v6.version == 6 and str(v6).startswith("fd")
    a = setup_network(env.store, _cid(80), f"six{_TAG}", networks=[net.name])
    b = setup_network(env.store, _cid(81), "peer", networks=[net.name])
    assert b.netns is not None
    addresses = {x.ip.version: x.ip for x in a.addresses}
    assert addresses[4] in v4 and addresses[6] in v6
    ping = _in_netns(b.netns, BUSYBOX, "ping", "-c", "1", "-W", "3", str(addresses[6]))
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert sorted(_nslookup(b.netns, f"six{_TAG}", str(net.subnets[0].gateway))) == sorted(
        [str(addresses[4]), str(addresses[6])]
    )
    assert any(str(v6) in line for line in iptables_lines(6))
    teardown_network(env.store, _cid(80))
    teardown_network(env.store, _cid(81))
    assert rules_of(net) == []
