"""The per-container files bind-mounted over the image's: /etc/hosts,
/etc/resolv.conf, /etc/hostname and /run/.containerenv.

They live in the container's userdata directory (``store.container_dir``),
written by the lifecycle code once it knows the container's addresses;
the spec bind-mounts them (``ContainerFiles``). The renderers are pure;
``write_container_files`` writes them atomically.

What podman 4.3 writes, and what is kept here:

- hosts: the ``--add-host`` entries first (they win lookups), then a base
  file's entries (podman: the host's /etc/hosts, containers.conf
  ``base_hosts_file``; here the caller passes the text it wants, or none),
  localhost lines for IPv4/IPv6 unless the base already maps localhost,
  ``host.containers.internal`` when a gateway is given, and last the
  container's own address (or 127.0.0.1 without one) → hostname and name.
- resolv.conf: ``--dns``/``--dns-search``/``--dns-option`` replace the
  host's nameservers/search/options one kind at a time; the host's
  loopback nameservers (127.0.0.0/8, ::1) are dropped when the container
  has its own network namespace, since they would point at the container
  itself; with nothing left, Google's public servers, as podman does.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import UsageError
from skiff.runtime.files import replace_file

DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
DEFAULT_NAMESERVERS_V6 = ("2001:4860:4860::8888", "2001:4860:4860::8844")
HOST_GATEWAY_NAME = "host.containers.internal"


@dataclass(frozen=True)
class ContainerFiles:
    """Host paths of the files to bind-mount; None leaves the image's file."""

    hosts: Path | None = None
    resolv_conf: Path | None = None
    hostname: Path | None = None
    containerenv: Path | None = None
    shm: Path | None = None
    """A directory to bind at /dev/shm (e.g. a tmpfs shared with another
    container that shares the IPC namespace); None: a private tmpfs."""


@dataclass(frozen=True)
class HostEntry:
    """One ``--add-host NAME:IP`` (``NAME1;NAME2:IP`` adds several names)."""

    names: tuple[str, ...]
    address: str


def parse_add_host(text: str) -> HostEntry:
    """``name:1.2.3.4``, ``name:2001:db8::1``, ``a;b:10.0.0.1`` → HostEntry.

    ``host-gateway`` as the address is kept symbolic; the lifecycle code
    replaces it with the gateway address (``resolve_host_gateway``).
    """
    names_part, sep, address = text.partition(":")
    address = address.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    names = tuple(n for n in names_part.split(";") if n)
    if not sep or not names or not address:
        raise UsageError(f"invalid --add-host {text!r}", "use HOST:IP, e.g. db:10.0.0.5")
    for name in names:
        if any(c.isspace() or c in "/#" for c in name):
            raise UsageError(f"invalid --add-host {text!r}: bad host name {name!r}")
    if address != "host-gateway":
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise UsageError(
                f"invalid --add-host {text!r}: {address!r} is not an IP address",
                "use HOST:IP, e.g. db:10.0.0.5, or HOST:host-gateway",
            ) from None
    return HostEntry(names, address)


def resolve_host_gateway(entries: Sequence[HostEntry], gateway: str | None) -> list[HostEntry]:
    out = []
    for entry in entries:
        if entry.address == "host-gateway":
            if gateway is None:
                raise UsageError(
                    f"--add-host {';'.join(entry.names)}:host-gateway needs a network with a gateway",
                    "give an IP address instead",
                )
            out.append(HostEntry(entry.names, gateway))
        else:
            out.append(entry)
    return out


def _base_entries(text: str) -> list[tuple[str, list[str]]]:
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split()
        if len(line) >= 2:
            entries.append((line[0], line[1:]))
    return entries


def render_hosts(
    *,
    hostname: str,
    name: str = "",
    addresses: Sequence[str] = (),
    add_hosts: Sequence[HostEntry] = (),
    base: str = "",
    host_gateway: str | None = None,
) -> str:
    """The container's /etc/hosts (see the module docstring).

    ``addresses``: the container's IPs on its networks (none: the hostname
    maps to 127.0.0.1, as podman does for --network none);
    ``base``: the text of a hosts file to include (e.g. the host's).
    """
    lines = [f"{e.address}\t{' '.join(e.names)}" for e in add_hosts]
    base_entries = _base_entries(base)
    lines.extend(f"{address}\t{' '.join(names)}" for address, names in base_entries)
    has_v4 = any(a == "127.0.0.1" and "localhost" in n for a, n in base_entries)
    has_v6 = any(a == "::1" and "localhost" in n for a, n in base_entries)
    if not has_v4:
        lines.append(
            "127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4"
        )
    if not has_v6:
        lines.append("::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6")
    if host_gateway:
        lines.append(f"{host_gateway}\t{HOST_GATEWAY_NAME}")
    own = [hostname] + ([name] if name and name != hostname else [])
    for address in addresses or ("127.0.0.1",):
        lines.append(f"{address}\t{' '.join(own)}")
    return "\n".join(lines) + "\n"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def render_resolv_conf(
    *,
    host_resolv_conf: str = "",
    servers: Sequence[str] = (),
    search: Sequence[str] = (),
    options: Sequence[str] = (),
    private_netns: bool = True,
    ipv6: bool = False,
) -> str:
    """The container's /etc/resolv.conf (see the module docstring).

    ``host_resolv_conf``: the text of the host's file; ``servers``/``search``
    /``options``: --dns, --dns-search (``.`` clears the host's), --dns-option.
    """
    host_servers: list[str] = []
    host_search: list[str] = []
    host_options: list[str] = []
    for raw in host_resolv_conf.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            host_servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            host_search = fields[1:]
        elif fields[0] == "options":
            host_options.extend(fields[1:])
    for server in servers:
        try:
            ipaddress.ip_address(server.split("%", 1)[0])
        except ValueError:
            raise UsageError(f"invalid --dns {server!r}: not an IP address") from None
    if servers:
        chosen = list(servers)
    else:
        chosen = [s for s in host_servers if not (private_netns and _is_loopback(s))]
        if not chosen and private_netns:
            chosen = list(DEFAULT_NAMESERVERS) + (list(DEFAULT_NAMESERVERS_V6) if ipv6 else [])
    domains = ([] if list(search) == ["."] else list(search)) if search else host_search
    lines = []
    if domains:
        lines.append("search " + " ".join(domains))
    lines.extend(f"nameserver {s}" for s in chosen)
    opts = list(options) if options else host_options
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + ("\n" if lines else "")


def render_hostname(hostname: str) -> str:
    return hostname + "\n"


def render_containerenv(
    *,
    engine: str,
    name: str,
    container_id: str,
    image: str,
    image_id: str,
    privileged: bool,
) -> str:
    """/run/.containerenv: empty unless privileged, as podman (a privileged
    container may learn about its host; an unprivileged one is told only
    that it is in a container)."""
    if not privileged:
        return ""
    return (
        f'engine="{engine}"\nname="{name}"\nid="{container_id}"\n'
        f'image="{image}"\nimageid="{image_id}"\nrootless={int(os.getuid() != 0)}\n'
    )


def _write_atomic(path: Path, text: str) -> None:
    """A reader (or the runtime's bind mount) never sees half a file; no
    fsync: every start writes these files again (an fsync per file cost
    ~0.5 ms each, more under load, on every ``run``)."""
    replace_file(path, text.encode())


def write_container_files(
    directory: Path,
    *,
    hosts: str | None = None,
    resolv_conf: str | None = None,
    hostname: str | None = None,
    containerenv: str | None = None,
) -> ContainerFiles:
    """Write the given files into ``directory`` (the userdata dir), each
    atomically (temp name, rename), and say where they are."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path | None] = {}
    for key, filename, text in (
        ("hosts", "hosts", hosts),
        ("resolv_conf", "resolv.conf", resolv_conf),
        ("hostname", "hostname", hostname),
        ("containerenv", ".containerenv", containerenv),
    ):
        if text is None:
            paths[key] = None
            continue
        path = directory / filename
        _write_atomic(path, text)
        paths[key] = path
    return ContainerFiles(
        hosts=paths["hosts"],
        resolv_conf=paths["resolv_conf"],
        hostname=paths["hostname"],
        containerenv=paths["containerenv"],
    )
