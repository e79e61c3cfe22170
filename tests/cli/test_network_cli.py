"""``skiff network …`` end to end, as a user types it, with podman's output as reference.

Each test has a private store (``CliEnv``: temp ``--root``/``--runroot``).
Containers are stood in for by network namespaces set up through the
library (``setup_network``), which is what ``network connect``, ``rm`` and
``prune`` act on; the ``cli`` fixture tears them down and checks that the
host (bridges, iptables, mounts, aardvark-dns) is clean afterwards.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skiff.config import SystemContext
from skiff.runtime.network.model import Network
from skiff.runtime.network.setup import network_status, setup_network
from skiff.runtime.network.store import NetworkStore
from skiff.storage.store import Store
from skiff.testing.cli import CliEnv, Result
from skiff.testing.network import NetworkSandbox, free_subnet, interface_exists, network_sandbox

NETWORK_KEYS = [
    "name",
    "id",
    "driver",
    "network_interface",
    "created",
    "subnets",
    "ipv6_enabled",
    "internal",
    "dns_enabled",
]
TAG = f"{os.getpid() % 100000}"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="container networking needs root")


@dataclass
class NetCli:
    env: CliEnv
    store: Store
    sandbox: NetworkSandbox

    def skiff(self, *args: str, expect: int | None = 0, **kw: Any) -> Result:
        return self.env.skiff(*args, expect=expect, **kw)

    def fails(self, *args: str, code: int = 125, **kw: Any) -> str:
        return self.env.fails(*args, code=code, **kw)

    def create(self, index: int, *flags: str) -> Network:
        """``skiff network create`` with a free subnet and a bridge name unique to the test."""
        name = f"cli{TAG}x{index}"
        args = ["network", "create", "--interface-name", f"skc{TAG}x{index}", *flags]
        if "--subnet" not in flags:
            args += ["--subnet", free_subnet()]
        assert self.skiff(*args, name).stdout == f"{name}\n"
        return self.sandbox.track(NetworkStore.of(self.store).get(name))

    def container(self, index: int, *networks: str) -> str:
        """A stand-in container (its network namespace) attached to ``networks``."""
        container_id = f"{index:02x}{TAG:0>6}".ljust(64, "e")
        setup_network(self.store, container_id, f"ctr{TAG}x{index}", networks=list(networks))
        return f"ctr{TAG}x{index}"


@pytest.fixture
def cli(tmp_shm: Path) -> Iterator[NetCli]:
    env = CliEnv(tmp_shm / "cli")
    env.skiff("network", "ls", "-q")  # the store exists before the library opens it
    store = Store.open(SystemContext(storage_root=env.root, run_root=env.runroot))
    try:
        with network_sandbox(store, tmp_shm) as sandbox:
            yield NetCli(env, store, sandbox)
    finally:
        store.close()


# --- listing and inspecting ---------------------------------------------------------------


def test_ls_on_a_fresh_store_shows_the_default_network(cli: NetCli) -> None:
    default_id = NetworkStore.of(cli.store).get("skiff").id
    assert cli.skiff("network", "ls").stdout == (
        f"NETWORK ID    NAME        DRIVER\n{default_id[:12]}  skiff       bridge\n"
    )
    assert cli.skiff("network", "list", "-q").stdout == "skiff\n"
    assert cli.skiff("network", "ls", "--noheading").stdout.startswith(default_id[:12])
    no_trunc = cli.skiff("network", "ls", "--no-trunc").stdout.splitlines()
    assert no_trunc[1].split()[0] == default_id
    assert cli.skiff("network", "ls", "--format", "{{.Name}}/{{.Driver}}").stdout == (
        "skiff/bridge\n"
    )
    inspected = cli.skiff("network", "inspect", "skiff").json()
    assert inspected[0]["network_interface"] == "skiff0"
    assert inspected[0]["subnets"] == [{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]
    assert inspected[0]["dns_enabled"] is False


def test_create_inspect_ls_rm_round_trip(cli: NetCli) -> None:
    subnet = ipaddress.ip_network(free_subnet())
    net = cli.create(
        1,
        "--subnet",
        str(subnet),
        "--gateway",
        str(subnet.network_address + 254),
        "--ip-range",
        str(list(subnet.subnets(new_prefix=25))[1]),
        "--label",
        "tier=web",
        "--label",
        "flag",
        "-o",
        "mtu=1400",
    )
    result = cli.skiff("network", "inspect", net.name)
    # podman's inspect layout: a JSON array indented by five spaces
    assert result.stdout.startswith('[\n     {\n          "name": ')
    (data,) = result.json()
    assert list(data) == [*NETWORK_KEYS, "labels", "options", "ipam_options"]
    assert data["labels"] == {"tier": "web", "flag": ""}
    assert data["options"] == {"mtu": "1400"}
    assert data["subnets"][0]["gateway"] == str(subnet.network_address + 254)
    assert data["subnets"][0]["lease_range"]["start_ip"] == str(subnet.network_address + 129)
    assert cli.skiff("network", "inspect", net.id[:10]).json() == [data]
    template = '{{.Name}} {{.NetworkInterface}} {{.DNSEnabled}} {{index .Labels "tier"}}'
    assert cli.skiff("network", "inspect", "--format", template, net.name).stdout == (
        f"{net.name} {net.network_interface} true web\n"
    )

    table = cli.skiff("network", "ls").stdout.splitlines()
    assert table[0] == "NETWORK ID    NAME        DRIVER"
    assert re.fullmatch(rf"{net.id[:12]}  {net.name} +bridge", table[1])
    listed = cli.skiff("network", "ls", "--format", "json")
    assert listed.stdout.startswith('[\n  {\n    "name": ')  # podman's ls: two spaces
    assert [n["name"] for n in listed.json()] == [net.name, "skiff"]
    labels = cli.skiff("network", "ls", "--filter", "label=tier", "--format", "{{.Labels}}")
    assert labels.stdout == "flag=,tier=web\n"
    assert cli.skiff("network", "ls", "-q", "--filter", "name=^skif").stdout == "skiff\n"

    cli.skiff("network", "exists", net.name)
    assert cli.skiff("network", "rm", net.name).stdout == f"{net.name}\n"
    cli.skiff("network", "exists", net.name, expect=1)
    assert cli.skiff("network", "ls", "-q").stdout == "skiff\n"


def test_create_without_name_or_subnet(cli: NetCli) -> None:
    first = cli.skiff("network", "create", "--interface-name", f"skc{TAG}a").stdout.strip()
    second = cli.skiff("network", "create", "--interface-name", f"skc{TAG}b").stdout.strip()
    assert (first, second) == ("skiff1", "skiff2")
    networks = NetworkStore.of(cli.store)
    one, two = networks.get(first), networks.get(second)
    cli.sandbox.track(one)
    cli.sandbox.track(two)
    subnets = {str(one.subnets[0].subnet), str(two.subnets[0].subnet)}
    assert len(subnets) == 2
    assert all(
        ipaddress.ip_network(s).subnet_of(ipaddress.ip_network("10.89.0.0/16")) for s in subnets
    )
    assert "10.89.0.0/24" not in subnets


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_create_writes_what_podman_writes(cli: NetCli) -> None:
    """The same flags give podman's JSON, key for key (IDs, times and bridges aside)."""
    config_dir = cli.env.base / "podman-networks"
    conf = cli.env.base / "containers.conf"
    conf.write_text(
        f'[network]\nnetwork_backend = "netavark"\nnetwork_config_dir = "{config_dir}"\n'
    )
    podman_env = {"CONTAINERS_CONF": str(conf)}
    cases = [
        [],
        ["--internal", "--disable-dns"],
        ["--label", "a=1", "--label", "b", "-o", "mtu=1400", "-o", "vlan=5"],
        ["--ip-range", "{range}"],
        ["--gateway", "{gateway}"],
    ]
    for index, raw_flags in enumerate(cases):
        subnet = ipaddress.ip_network(free_subnet())
        values = {
            "range": str(list(subnet.subnets(new_prefix=26))[2]),
            "gateway": str(subnet.network_address + 100),
        }
        flags = [f.format(**values) for f in raw_flags]
        name = f"cmp{TAG}x{index}"
        common = ["network", "create", "--subnet", str(subnet), *flags, name]
        cli.skiff(*common[:2], "--interface-name", f"skp{TAG}x{index}", *common[2:])
        cli.sandbox.track(NetworkStore.of(cli.store).get(name))
        cli.env.podman(*common, env=podman_env)
        ours = cli.skiff("network", "inspect", name).json()[0]
        theirs = cli.env.podman("network", "inspect", name, env=podman_env).json()[0]
        for data in (ours, theirs):
            for key in ("id", "created", "network_interface"):
                assert data.pop(key)
        assert ours == theirs, flags
        assert list(ours) == list(theirs)


# --- errors -------------------------------------------------------------------------------


def test_errors_are_one_line(cli: NetCli) -> None:
    net = cli.create(2)
    subnet = str(net.subnets[0].subnet)
    assert cli.fails("network", "create", "--subnet", free_subnet(), net.name) == (
        f"Error: network name {net.name} already used: network already exists "
        "(choose another name, or remove the network first)"
    )
    inside = str(next(ipaddress.ip_network(subnet).subnets(new_prefix=25)))
    assert cli.fails("network", "create", "--subnet", inside, "other").startswith(
        f"Error: subnet {inside} is already used on the host or by another config"
    )
    for args, message in [
        (["--subnet", "abc"], "Error: invalid CIDR address: abc"),
        (["--gateway", "10.89.1.1"], "Error: cannot set gateway or range without subnet"),
        (["-d", "macvlan"], "Error: unsupported driver 'macvlan'"),
        (["-o", "foo=bar"], "Error: unsupported bridge network option foo"),
        (["--label", "=x"], "Error: invalid --label '=x'"),
    ]:
        assert cli.fails("network", "create", *args, "x").startswith(message)
    assert cli.fails("network", "create", "bad name").startswith(
        "Error: network name 'bad name' invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
    )
    assert cli.fails("network", "ls", "--filter", "foo=bar").startswith(
        'Error: invalid filter "foo"'
    )
    assert cli.fails("network", "rm", "nope", code=1).startswith(
        "Error: unable to find network with name or ID nope: network not found"
    )
    assert cli.fails("network", "rm", "skiff").startswith(
        "Error: default network skiff cannot be removed"
    )
    result = cli.skiff("network", "inspect", "nope", expect=125)
    assert result.stdout == "[]\n"
    assert result.stderr.startswith("Error: unable to find network with name or ID nope")
    assert cli.fails("network", "connect", net.name, "ghost").startswith(
        "Error: no container with name or ID 'ghost' found"
    )
    assert cli.fails("network", "bogus").startswith("Error: skiff network: argument COMMAND")
    assert [n["name"] for n in cli.skiff("network", "ls", "--format", "json").json()] == [
        net.name,
        "skiff",
    ]


# --- containers on networks ----------------------------------------------------------------


@needs_root
def test_rm_refuses_a_network_in_use_unless_forced(cli: NetCli) -> None:
    net = cli.create(3)
    container = cli.container(3, net.name)
    assert interface_exists(net.network_interface)
    assert cli.fails("network", "rm", net.name, code=2) == (
        f"Error: network {net.name} is used by container(s): {container} "
        "(stop them first, or use -f to disconnect them)"
    )
    cli.skiff("network", "exists", net.name)
    assert cli.skiff("network", "rm", "-f", net.name).stdout == f"{net.name}\n"
    cli.skiff("network", "exists", net.name, expect=1)
    assert not interface_exists(net.network_interface)


@needs_root
def test_prune_removes_unused_networks(cli: NetCli) -> None:
    used = cli.create(4)
    unused = cli.create(5, "--label", "keep=no")
    labelled = cli.create(6, "--label", "keep=yes")
    cli.container(4, used.name)

    declined = cli.skiff("network", "prune", input_text="n\n")
    assert "Are you sure you want to continue? [y/N]" in declined.stdout
    assert len(cli.skiff("network", "ls", "-q").stdout.split()) == 4

    assert cli.skiff("network", "prune", "-f", "--filter", "label=keep=no").stdout == (
        f"{unused.name}\n"
    )
    accepted = cli.skiff("network", "prune", input_text="y\n")
    assert accepted.stdout.endswith(f"[y/N] {labelled.name}\n")
    assert cli.skiff("network", "ls", "-q").stdout.split() == [used.name, "skiff"]


@needs_root
def test_connect_and_disconnect_a_running_container(cli: NetCli) -> None:
    first, second = cli.create(7), cli.create(8)
    container = cli.container(7, first.name)
    static = str(second.subnets[0].subnet.network_address + 77)
    cli.skiff("network", "connect", "--alias", "extra", "--ip", static, second.name, container)
    status = network_status(cli.store, f"{7:02x}{TAG:0>6}".ljust(64, "e"))
    assert status is not None and status.netns is not None
    assert [str(a.ip) for a in status.networks[second.name].addresses] == [static]
    shown = subprocess.run(
        ["nsenter", f"--net={status.netns}", "ip", "-o", "-4", "addr", "show", "eth1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{static}/24" in shown

    assert cli.fails("network", "connect", second.name, container).startswith(
        f"Error: container {container} is already connected to network {second.name}"
    )
    assert cli.fails("network", "connect", "--ip", "10.0.0.1.5", second.name, container) == (
        "Error: invalid --ip '10.0.0.1.5': not an IP address"
    )
    cli.skiff("network", "disconnect", second.name, container)
    status = network_status(cli.store, f"{7:02x}{TAG:0>6}".ljust(64, "e"))
    assert status is not None and set(status.networks) == {first.name}
    assert cli.fails("network", "disconnect", second.name, container).startswith(
        f"Error: container {container} is not connected to network {second.name}"
    )
