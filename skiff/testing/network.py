"""Host-side checks and cleanup for tests that set up real container networks.

Network tests change the host: bridges, iptables rules (netavark's),
namespace mounts, aardvark-dns processes. ``NetworkSandbox`` records the
networks a test makes; on exit it tears down every container network of
the store through skiff, waits for the host to be clean, removes by hand
whatever is still there (so a failing test does not poison the next run),
and then fails if anything had to be removed that way.

Only the test's own objects are looked at: its subnets, its bridge names,
netavark's chains for its network names (``NETAVARK-`` + the first 13 hex
digits of SHA-512 of the name, upper case), mounts under its directory.
Other users of netavark on the host (podman, other test runs) are not
touched.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skiff.runtime.network.model import Network
    from skiff.storage.store import Store

_counter = itertools.count()
TEST_POOL_THIRD_OCTETS = range(128, 255)
"""Test subnets are 10.89.128.0/24 .. 10.89.254.0/24, above what skiff hands out first."""


def free_subnet() -> str:
    """A /24 for a test network that no host route touches (rotating within the process)."""
    from skiff.runtime.network.store import host_routes

    routes = host_routes()
    size = len(TEST_POOL_THIRD_OCTETS)
    for _ in range(size):
        third = TEST_POOL_THIRD_OCTETS[(next(_counter) + os.getpid()) % size]
        candidate = ipaddress.IPv4Network(f"10.89.{third}.0/24")
        if not any(r.version == 4 and r.overlaps(candidate) for r in routes):
            return str(candidate)
    raise RuntimeError("no free test subnet in 10.89.128.0/17")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a test to publish."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str) -> bytes | None:
    """The body ``url`` answers with, or None when nothing answers within 2 s
    (for polling a published port with ``wait_for``)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - the test's own http:// port
            return bytes(response.read())
    except OSError:  # urllib's URLError is one
        return None


def iptables_lines(family: int = 4) -> list[str]:
    """``iptables-save`` (``ip6tables-save`` for 6) without comments."""
    tool = "iptables-save" if family == 4 else "ip6tables-save"
    out = subprocess.run([tool], capture_output=True, text=True, check=True, timeout=30).stdout
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def chains(network_name: str) -> tuple[str, str]:
    """The NAT and port-forwarding chains netavark makes for a network name."""
    digest = hashlib.sha512(network_name.encode()).hexdigest()[:13].upper()
    return f"NETAVARK-{digest}", f"NETAVARK-DN-{digest}"


def rules_of(network: Network, extra: tuple[str, ...] = ()) -> list[str]:
    """iptables-save lines about ``network`` — except netavark 1.4's empty DN chain.

    netavark 1.4 keeps the (empty) port-forwarding chain of a network when
    the last container to leave it published no ports; it holds no rule and
    is reused by the next container (podman on netavark 1.4 leaves it too).
    """
    subnets = [str(s.subnet) for s in network.subnets]
    chain, dn_chain = chains(network.name)
    needles = (*subnets, chain, dn_chain, *extra)
    families = (4, 6) if network.ipv6_enabled else (4,)
    return [
        line
        for family in families
        for line in iptables_lines(family)
        if any(n in line for n in needles) and line != f":{dn_chain} - [0:0]"
    ]


def interface_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def mounts_under(prefix: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(str(prefix))]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` with a growing delay until it holds; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@dataclass
class NetworkSandbox:
    """The networks and processes of one test, and the host checks for them."""

    store: Store
    base: Path
    networks: list[Network] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def track(self, network: Network) -> Network:
        self.networks.append(network)
        return network

    def aardvark_pid(self) -> int | None:
        pid_file = self.store.run_root / "networks" / "aardvark-dns" / "aardvark.pid"
        try:
            text = pid_file.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def leftovers(self) -> list[str]:
        """What of this test is still on the host (empty when all is clean)."""
        found = [
            f"bridge {n.network_interface}"
            for n in self.networks
            if interface_exists(n.network_interface)
        ]
        found += [f"iptables: {line}" for n in self.networks for line in rules_of(n)]
        found += [f"mount {m}" for m in mounts_under(self.base)]
        pid = self.aardvark_pid()
        if pid and Path(f"/proc/{pid}").exists():
            found.append(f"aardvark-dns pid {pid}")
        return found

    def drop_empty_chains(self) -> None:
        """Delete the empty DN chains netavark 1.4 keeps (see ``rules_of``), ours only."""
        for family, tool in ((4, "iptables"), (6, "ip6tables")):
            lines = set(iptables_lines(family))
            for network in self.networks:
                dn_chain = chains(network.name)[1]
                if f":{dn_chain} - [0:0]" in lines and not any(
                    dn_chain in line for line in lines if line.startswith("-A")
                ):
                    subprocess.run([tool, "-t", "nat", "-X", dn_chain], check=False)

    def force_cleanup(self) -> None:
        """Last resort when skiff's teardown failed: rules, bridges, mounts, aardvark by hand."""
        needles = {str(s.subnet) for n in self.networks for s in n.subnets}
        our_chains = {c for n in self.networks for c in chains(n.name)}
        for family, tool in ((4, "iptables"), (6, "ip6tables")):
            table = ""
            for line in iptables_lines(family):
                if line.startswith("*"):
                    table = line[1:]
                elif line.startswith("-A ") and any(x in line for x in needles | our_chains):
                    argv = [tool, "-t", table, "-D", *shlex.split(line)[1:]]
                    subprocess.run(argv, check=False)
            for chain in our_chains:
                for tbl in ("nat", "filter"):
                    argv = [tool, "-t", tbl, "-X", chain]
                    subprocess.run(argv, capture_output=True, check=False)
        for network in self.networks:
            if interface_exists(network.network_interface):
                subprocess.run(["ip", "link", "del", network.network_interface], check=False)
        for mount in mounts_under(self.base):
            subprocess.run(["umount", "-l", mount], check=False)
        pid = self.aardvark_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Tear everything down; raise AssertionError if skiff left anything behind."""
        from skiff.errors import ContainerError
        from skiff.runtime.network.setup import NetworkRecords, teardown_network

        for proc in self.processes:
            proc.kill()
            proc.wait()
        errors = []
        for record in NetworkRecords.of(self.store).containers():
            try:
                teardown_network(self.store, record.container_id)
            except ContainerError as exc:
                errors.append(str(exc))
        try:  # aardvark-dns exits on its own once its last record is gone
            wait_for(lambda: not self.leftovers(), "the host to be clean", timeout=5)
        except AssertionError:
            pass
        leftovers = self.leftovers()
        if leftovers:
            self.force_cleanup()
        self.drop_empty_chains()
        assert not errors, errors
        assert not leftovers, leftovers


@contextmanager
def network_sandbox(store: Store, base: Path) -> Iterator[NetworkSandbox]:
    sandbox = NetworkSandbox(store, base)
    try:
        yield sandbox
    finally:
        sandbox.close()
