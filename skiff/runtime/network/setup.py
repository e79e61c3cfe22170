"""A container's network, start to end: ``setup_network`` and ``teardown_network``.

The runtime calls ``setup_network`` before it creates the container (the
returned ``NetworkStatus.netns`` goes into config.json as the network
namespace path) and ``teardown_network`` after the container is gone. Both
are idempotent per container and safe to call from different skiff
processes: everything netavark needs to undo its work is in the database.

Modes: ``bridge`` (a new namespace joined to networks through netavark;
no networks named means the default network), ``none`` (a new namespace
with only ``lo``), ``host`` (no namespace of its own), ``ns:PATH`` (an
existing namespace the container joins; skiff neither configures nor
removes it). ``container:ID`` is the runtime's business: it points at the
other container's ``netns``.

Records (intent first, so a crash at any step leaves something teardown
can finish):

    network_containers   one row per container: mode, namespace path, boot,
                         published ports, state (configuring → ready)
    network_attachments  one row per (container, network): the network's
                         JSON as it was at setup, the per-network options
                         sent to netavark (with the allocated addresses), and
                         netavark's status once it answered
    network_allocations  the addresses (ipam.py)

A record from an earlier boot describes host state that no longer exists
(RUNROOT, bridges and firewall rules do not survive a reboot): teardown
only forgets it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import ContainerError, ContainerStateError, UsageError
from skiff.runtime.network import netns as netns_mod
from skiff.runtime.network.ipam import IPAM
from skiff.runtime.network.model import (
    DEFAULT_NETWORK,
    IPAddress,
    Network,
    NetworkResult,
    NetworkStatus,
    PerNetworkOptions,
    PortMapping,
    short_aliases,
)
from skiff.runtime.network.netavark import Netavark, NetavarkFailed, NetavarkRequest
from skiff.runtime.network.ports import assign_host_ports, check_conflicts
from skiff.runtime.network.store import NetworkStore, check_interface_name
from skiff.storage.db import Database, boot_id, process_alive

if TYPE_CHECKING:
    from skiff.storage.store import Store

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS network_containers (
    container_id TEXT PRIMARY KEY,
    container_name TEXT NOT NULL,
    mode TEXT NOT NULL,
    netns TEXT,
    boot_id TEXT NOT NULL,
    state TEXT NOT NULL,
    owner_pid INTEGER,
    ports TEXT NOT NULL DEFAULT '[]',
    dns_servers TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS network_containers_by_name ON network_containers(container_name);
CREATE TABLE IF NOT EXISTS network_attachments (
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    network_name TEXT NOT NULL,
    network TEXT NOT NULL,
    options TEXT NOT NULL,
    with_ports INTEGER NOT NULL DEFAULT 0,
    status TEXT,
    attached REAL NOT NULL,
    PRIMARY KEY (container_id, network_id)
);
CREATE INDEX IF NOT EXISTS network_attachments_by_network ON network_attachments(network_id);
"""

MODES = ("bridge", "none", "host")
NS_PREFIX = "ns:"
STATE_CONFIGURING = "configuring"
STATE_READY = "ready"
STATE_TEARDOWN = "tearing-down"


@dataclass(frozen=True)
class ContainerRecord:
    container_id: str
    container_name: str
    mode: str
    netns: Path | None
    boot_id: str
    state: str
    owner_pid: int | None
    ports: tuple[PortMapping, ...]
    dns_servers: tuple[str, ...]


@dataclass(frozen=True)
class Attachment:
    container_id: str
    network: Network
    options: PerNetworkOptions
    with_ports: bool
    status: NetworkResult | None


class NetworkRecords:
    """The runtime network tables of one store (not the definitions: store.py)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("network_containers", SCHEMA)
        self.ipam = IPAM(db)

    @classmethod
    def of(cls, store: Store) -> NetworkRecords:
        return cls(store.db)

    def container(self, container_id: str) -> ContainerRecord | None:
        row = self.db.read_one(
            "SELECT * FROM network_containers WHERE container_id=?", (container_id,)
        )
        return _record(row) if row is not None else None

    def containers(self) -> list[ContainerRecord]:
        rows = self.db.read("SELECT * FROM network_containers ORDER BY created")
        return [_record(r) for r in rows]

    def attachments(self, container_id: str) -> list[Attachment]:
        rows = self.db.read(
            "SELECT * FROM network_attachments WHERE container_id=? ORDER BY attached, rowid",
            (container_id,),
        )
        return [_attachment(r) for r in rows]

    def users(self, network_id: str) -> list[tuple[str, str]]:
        """(container ID, name) of every container attached to a network."""
        rows = self.db.read(
            "SELECT a.container_id, c.container_name FROM network_attachments a "
            "JOIN network_containers c ON c.container_id = a.container_id "
            "WHERE a.network_id=? ORDER BY a.attached",
            (network_id,),
        )
        return [(str(r["container_id"]), str(r["container_name"])) for r in rows]

    def find_container(self, ref: str) -> ContainerRecord | None:
        """A container with a network record, by ID, name or unique ID prefix."""
        row = self.db.read_one(
            "SELECT * FROM network_containers WHERE container_id=? OR container_name=?",
            (ref, ref),
        )
        if row is not None:
            return _record(row)
        if len(ref) >= 3:
            rows = self.db.read(
                "SELECT * FROM network_containers WHERE container_id >= ? AND container_id < ?",
                (ref, ref + "\uffff"),
            )
            if len(rows) == 1:
                return _record(rows[0])
        return None

    def set_status(
        self,
        container_id: str,
        results: Mapping[str, NetworkResult],
        networks: Mapping[str, Network],
    ) -> None:
        with self.db.write() as conn:
            for name, result in results.items():
                network = networks.get(name)
                if network is None:
                    continue
                conn.execute(
                    "UPDATE network_attachments SET status=? WHERE container_id=? AND network_id=?",
                    (json.dumps(result.to_json()), container_id, network.id),
                )

    def add_attachment(
        self,
        container_id: str,
        network: Network,
        options: PerNetworkOptions,
        with_ports: bool,
    ) -> PerNetworkOptions:
        """Allocate addresses and record the attachment (inside the caller's transaction)."""
        with self.db.write() as conn:
            ips = self.ipam.allocate(network, container_id, options.static_ips)
            sent = PerNetworkOptions(
                static_ips=tuple(ips),
                aliases=options.aliases if network.dns_enabled else (),
                interface_name=options.interface_name,
                static_mac=options.static_mac,
            )
            conn.execute(
                "INSERT INTO network_attachments(container_id, network_id, network_name, network,"
                " options, with_ports, attached) VALUES (?,?,?,?,?,?,?)",
                (
                    container_id,
                    network.id,
                    network.name,
                    json.dumps(network.to_json()),
                    json.dumps(sent.to_json()),
                    int(with_ports),
                    time.time(),
                ),
            )
        return sent

    def drop_attachment(self, container_id: str, network_id: str) -> None:
        with self.db.write() as conn:
            self.ipam.release(container_id, network_id)
            conn.execute(
                "DELETE FROM network_attachments WHERE container_id=? AND network_id=?",
                (container_id, network_id),
            )

    def drop_container(self, container_id: str) -> None:
        with self.db.write() as conn:
            self.ipam.release(container_id)
            conn.execute("DELETE FROM network_attachments WHERE container_id=?", (container_id,))
            conn.execute("DELETE FROM network_containers WHERE container_id=?", (container_id,))


def _record(row: Any) -> ContainerRecord:
    return ContainerRecord(
        container_id=str(row["container_id"]),
        container_name=str(row["container_name"]),
        mode=str(row["mode"]),
        netns=Path(row["netns"]) if row["netns"] else None,
        boot_id=str(row["boot_id"]),
        state=str(row["state"]),
        owner_pid=row["owner_pid"],
        ports=tuple(PortMapping.from_json(p) for p in json.loads(row["ports"])),
        dns_servers=tuple(json.loads(row["dns_servers"])),
    )


def _attachment(row: Any) -> Attachment:
    status = row["status"]
    return Attachment(
        container_id=str(row["container_id"]),
        network=Network.from_json(json.loads(row["network"])),
        options=PerNetworkOptions.from_json(json.loads(row["options"])),
        with_ports=bool(row["with_ports"]),
        status=NetworkResult.from_json(json.loads(status)) if status else None,
    )


# --- setup ------------------------------------------------------------------------------


def _normalise_networks(
    networks: Mapping[str, PerNetworkOptions] | Sequence[str] | None,
) -> dict[str, PerNetworkOptions]:
    if networks is None:
        return {}
    if isinstance(networks, Mapping):
        return dict(networks)
    return {name: PerNetworkOptions() for name in networks}


def interface_names(wanted: list[PerNetworkOptions], taken: set[str]) -> list[str]:
    """Each network's interface: the one asked for, else the next free ethN."""
    names: list[str] = []
    used = set(taken) | {o.interface_name for o in wanted if o.interface_name}
    index = 0
    for options in wanted:
        if options.interface_name:
            check_interface_name(options.interface_name)
            if options.interface_name in names:
                raise UsageError(
                    f"interface name {options.interface_name} is asked for twice",
                    "give each network its own interface name",
                )
            names.append(options.interface_name)
            continue
        while f"eth{index}" in used:
            index += 1
        names.append(f"eth{index}")
        used.add(f"eth{index}")
    return names


def setup_network(
    store: Store,
    container_id: str,
    container_name: str,
    *,
    mode: str = "bridge",
    networks: Mapping[str, PerNetworkOptions] | Sequence[str] | None = None,
    aliases: Sequence[str] = (),
    ports: Sequence[PortMapping] = (),
    dns_servers: Sequence[str] = (),
    netavark: Netavark | None = None,
) -> NetworkStatus:
    """Give a container its network namespace and networks; return what it got.

    ``networks``: network names (or name → options) for ``bridge`` mode;
    none means the default network. ``aliases`` are DNS names on every
    network with DNS (``--network-alias``), besides the container name and
    short ID. ``ports``: published ports (host port 0: a free one is
    chosen). ``dns_servers``: upstream servers aardvark-dns forwards to.
    """
    if mode.startswith(NS_PREFIX):
        path = Path(mode[len(NS_PREFIX) :])
        if not netns_mod.is_netns(path):
            raise UsageError(
                f"{path} is not a mounted network namespace", "check --network ns:PATH"
            )
        return NetworkStatus(container_id, mode, path)
    if mode not in MODES:
        raise UsageError(
            f"unknown network mode {mode!r}", "use bridge, none, host, ns:PATH or container:ID"
        )
    if mode == "host":
        if ports:
            raise UsageError("ports cannot be published with the host network", "drop -p/-P")
        return NetworkStatus(container_id, mode, None)
    wanted = _normalise_networks(networks)
    if mode == "none":
        if wanted or ports:
            raise UsageError(
                "networks and ports need the bridge network mode", "drop --network none"
            )
    elif not wanted:
        wanted = {DEFAULT_NETWORK: PerNetworkOptions()}
    definitions = NetworkStore.of(store)
    records = NetworkRecords.of(store)
    resolved: dict[str, tuple[Network, PerNetworkOptions]] = {}
    for ref, options in wanted.items():
        network = definitions.get(ref)
        if network.name in resolved:
            raise UsageError(f"network {network.name} is given twice")
        resolved[network.name] = (network, options)
    interfaces = interface_names([o for _, o in resolved.values()], set())
    check_conflicts(ports)
    published = assign_host_ports(ports)
    path = netns_mod.netns_dir(store.run_root) / netns_mod.new_netns_name()

    with store.db.write() as conn:
        if records.container(container_id) is not None:
            raise ContainerStateError(
                f"the network of container {container_name} is already set up",
                "tear it down first (stop the container)",
            )
        conn.execute(
            "INSERT INTO network_containers(container_id, container_name, mode, netns, boot_id,"
            " state, owner_pid, ports, dns_servers, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                container_id,
                container_name,
                mode,
                str(path),
                boot_id(),
                STATE_CONFIGURING,
                os.getpid(),
                json.dumps([p.to_json() for p in published]),
                json.dumps(list(dns_servers)),
                time.time(),
            ),
        )
        sent: dict[str, PerNetworkOptions] = {}
        for (name, (network, options)), interface in zip(resolved.items(), interfaces, strict=True):
            per_network = PerNetworkOptions(
                static_ips=options.static_ips,
                aliases=short_aliases(container_id, [*options.aliases, *aliases]),
                interface_name=interface,
                static_mac=options.static_mac,
            )
            sent[name] = records.add_attachment(container_id, network, per_network, True)

    netavark_ran = False
    runner = netavark or Netavark.for_run_root(store.run_root)
    try:
        netns_mod.create_netns(store.run_root, path.name)
        results: dict[str, NetworkResult] = {}
        if sent:
            request = NetavarkRequest(
                container_id=container_id,
                container_name=container_name,
                networks=sent,
                network_info={name: network for name, (network, _) in resolved.items()},
                port_mappings=published,
                dns_servers=dns_servers,
            )
            netavark_ran = True
            results = runner.setup(path, request)
    except NetavarkFailed:
        # netavark reported the error after undoing its own partial work
        _undo_failed_setup(store, records, runner, container_id, netavark_ran=False)
        raise
    except BaseException:
        _undo_failed_setup(store, records, runner, container_id, netavark_ran)
        raise
    records.set_status(container_id, results, {n: net for n, (net, _) in resolved.items()})
    with store.db.write() as conn:
        conn.execute(
            "UPDATE network_containers SET state=?, owner_pid=NULL WHERE container_id=?",
            (STATE_READY, container_id),
        )
    return NetworkStatus(container_id, mode, path, results, tuple(published))


def _undo_failed_setup(
    store: Store, records: NetworkRecords, runner: Netavark, container_id: str, netavark_ran: bool
) -> None:
    """Remove what a failed setup left: netavark's partial work, the namespace, the records.

    ``netavark_ran``: netavark may have stopped half-way without undoing
    its work (it timed out, was interrupted, or printed nonsense), so a
    teardown is tried. The setup's own error is what the caller sees; what
    goes wrong while cleaning up after it is logged.
    """
    record = records.container(container_id)
    try:
        if record is not None and netavark_ran and netns_mod.is_netns(record.netns or Path()):
            for error in run_teardown(
                runner, store.run_root, record, records.attachments(container_id)
            ):
                log.warning("cleaning up after a failed network setup: %s", error)
        if record is not None and record.netns is not None:
            netns_mod.remove_netns(record.netns)
    finally:
        records.drop_container(container_id)


def network_status(store: Store, container_id: str) -> NetworkStatus | None:
    """The container's network as recorded, or None if it has none set up."""
    records = NetworkRecords.of(store)
    record = records.container(container_id)
    if record is None:
        return None
    results = {
        a.network.name: a.status for a in records.attachments(container_id) if a.status is not None
    }
    return NetworkStatus(container_id, record.mode, record.netns, results, record.ports)


# --- teardown ---------------------------------------------------------------------------


def _claim(records: NetworkRecords, container_id: str) -> ContainerRecord | None:
    """Mark a record as being torn down by this process (refuse a live competitor)."""
    with records.db.write() as conn:
        record = records.container(container_id)
        if record is None:
            return None
        if (
            record.state in (STATE_TEARDOWN, STATE_CONFIGURING)
            and record.owner_pid not in (None, os.getpid())
            and record.boot_id == boot_id()
            and process_alive(record.owner_pid)
        ):
            raise ContainerStateError(
                f"the network of container {record.container_name} is being "
                f"{'set up' if record.state == STATE_CONFIGURING else 'torn down'} "
                f"by process {record.owner_pid}",
                "wait for it to finish, then retry",
            )
        conn.execute(
            "UPDATE network_containers SET state=?, owner_pid=? WHERE container_id=?",
            (STATE_TEARDOWN, os.getpid(), container_id),
        )
    return record


def teardown_request(
    record: ContainerRecord, attachments: Sequence[Attachment], with_ports: bool
) -> NetavarkRequest:
    chosen = [a for a in attachments if a.with_ports == with_ports]
    return NetavarkRequest(
        container_id=record.container_id,
        container_name=record.container_name,
        networks={a.network.name: a.options for a in chosen},
        network_info={a.network.name: a.network for a in chosen},
        port_mappings=record.ports if with_ports else (),
        dns_servers=record.dns_servers,
    )


def run_teardown(
    netavark: Netavark,
    run_root: Path,
    record: ContainerRecord,
    attachments: Sequence[Attachment],
) -> list[str]:
    """netavark teardown of ``attachments``; the errors met (teardown goes on past them).

    When the namespace vanished (same boot), a scratch namespace with veths
    of the container's interface names stands in for it, so that netavark
    still removes the ports, DNS records, bridge and firewall rules.
    """
    errors: list[str] = []
    if not attachments or record.netns is None:
        return errors
    scratch: Path | None = None
    target = record.netns
    if not netns_mod.is_netns(target):
        log.warning(
            "network namespace %s of container %s is gone; tearing down against a stand-in",
            target,
            record.container_name,
        )
        try:
            scratch = netns_mod.create_netns(run_root)
            for index, attachment in enumerate(attachments):
                netns_mod.add_veth(
                    scratch, attachment.options.interface_name or "eth0", f"skiffrm{index}"
                )
        except ContainerError as exc:
            errors.append(str(exc.message))
        target = scratch or target
    try:
        for with_ports in (True, False):
            request = teardown_request(record, attachments, with_ports)
            if not request.networks:
                continue
            try:
                netavark.teardown(target, request)
            except ContainerError as exc:
                errors.append(exc.message)
    finally:
        if scratch is not None:
            netns_mod.remove_netns(scratch)
    return errors


def teardown_network(store: Store, container_id: str, netavark: Netavark | None = None) -> None:
    """Undo ``setup_network``: netavark teardown, namespace removed, addresses freed.

    A container without a network record is left alone (idempotent). The
    records are removed even when netavark reports errors — a second
    teardown cannot succeed where the first failed, since netavark has
    already undone part of its work — and the errors are then raised as
    one ContainerError.
    """
    records = NetworkRecords.of(store)
    record = _claim(records, container_id)
    if record is None:
        return
    errors: list[str] = []
    if record.boot_id == boot_id():
        attachments = records.attachments(container_id)
        if attachments and record.mode == "bridge":
            errors = run_teardown(
                netavark or Netavark.for_run_root(store.run_root),
                store.run_root,
                record,
                attachments,
            )
    if record.netns is not None and record.mode in ("bridge", "none"):
        try:
            netns_mod.remove_netns(record.netns)
        except ContainerError as exc:
            errors.append(exc.message)
    records.drop_container(container_id)
    if errors:
        raise ContainerError(
            f"network teardown of container {record.container_name} was incomplete: "
            + "; ".join(errors),
            "check iptables-save and 'ip link' for leftovers of this container",
        )


def addresses_of(status: NetworkStatus) -> dict[str, list[IPAddress]]:
    """Per network name, the container's addresses (for /etc/hosts and inspect)."""
    return {name: [a.ip for a in result.addresses] for name, result in status.networks.items()}
