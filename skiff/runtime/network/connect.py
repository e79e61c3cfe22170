"""Changing networks under running containers, and removing networks.

``connect_network`` joins a container whose network is set up (it has a
namespace: it runs, or was created and not yet cleaned up) to one more
network; ``disconnect_network`` takes it off one. Port mappings stay on
the networks the container started with, as in podman.

A network is in use while containers are attached to it (rows in
``network_attachments``); ``remove_network`` refuses those unless forced,
in which case it disconnects the containers first. podman's ``-f`` removes
the containers themselves: that is the runtime's decision, not this
module's (the runtime removes its containers, then calls this).

Containers that are not running are not known here: their network list
lives in the runtime's container configuration, which a connect to a
stopped container would have to change. That is left to the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from skiff.errors import ContainerError, ContainerStateError, ContainerUnknown, UsageError
from skiff.runtime.network import netns as netns_mod
from skiff.runtime.network.model import (
    IPAddress,
    Network,
    NetworkResult,
    PerNetworkOptions,
    short_aliases,
)
from skiff.runtime.network.netavark import Netavark, NetavarkRequest
from skiff.runtime.network.setup import (
    STATE_READY,
    ContainerRecord,
    NetworkRecords,
    interface_names,
    run_teardown,
)
from skiff.runtime.network.store import NetworkInUse, NetworkStore
from skiff.storage.db import boot_id

if TYPE_CHECKING:
    from skiff.storage.store import Store


def find_container(store: Store, ref: str) -> ContainerRecord:
    """The network record of a container by name, ID or ID prefix; clear errors otherwise."""
    records = NetworkRecords.of(store)
    record = records.find_container(ref)
    if record is not None:
        return record
    known = store.containers.find(ref)
    if known is not None:
        raise ContainerStateError(
            f"container {known.name or known.id[:12]} is not running: it has no network "
            "namespace to change",
            "start it first",
        )
    raise ContainerUnknown(
        f"no container with name or ID {ref!r} found", "list containers with 'skiff ps -a'"
    )


def _live(record: ContainerRecord) -> None:
    if record.mode != "bridge":
        raise ContainerStateError(
            f"container {record.container_name} uses the {record.mode} network mode",
            "only containers in bridge mode can join networks",
        )
    if (
        record.state != STATE_READY
        or record.boot_id != boot_id()
        or record.netns is None
        or not netns_mod.is_netns(record.netns)
    ):
        raise ContainerStateError(
            f"container {record.container_name} is not running: its network namespace is gone",
            "start it again",
        )


def connect_network(
    store: Store,
    container_ref: str,
    network_ref: str,
    *,
    aliases: Sequence[str] = (),
    static_ips: Sequence[IPAddress] = (),
    static_mac: str = "",
    netavark: Netavark | None = None,
) -> NetworkResult:
    """Join a running container to one more network; what netavark set up for it."""
    records = NetworkRecords.of(store)
    record = find_container(store, container_ref)
    _live(record)
    network = NetworkStore.of(store).get(network_ref)
    attached = records.attachments(record.container_id)
    if any(a.network.id == network.id for a in attached):
        raise UsageError(
            f"container {record.container_name} is already connected to network {network.name}",
            "disconnect it first to change its options",
        )
    interface = interface_names(
        [PerNetworkOptions()], {a.options.interface_name for a in attached}
    )[0]
    options = PerNetworkOptions(
        static_ips=tuple(static_ips),
        aliases=short_aliases(record.container_id, aliases),
        interface_name=interface,
        static_mac=static_mac,
    )
    sent = records.add_attachment(record.container_id, network, options, with_ports=False)
    request = NetavarkRequest(
        container_id=record.container_id,
        container_name=record.container_name,
        networks={network.name: sent},
        network_info={network.name: network},
        dns_servers=record.dns_servers,
    )
    runner = netavark or Netavark.for_run_root(store.run_root)
    assert record.netns is not None
    try:
        results = runner.setup(record.netns, request)
    except BaseException:
        records.drop_attachment(record.container_id, network.id)
        raise
    records.set_status(record.container_id, results, {network.name: network})
    return results.get(network.name, NetworkResult())


def disconnect_network(
    store: Store,
    container_ref: str,
    network_ref: str,
    *,
    force: bool = False,
    netavark: Netavark | None = None,
) -> None:
    """Take a container off one network (``force``: forget it even if netavark fails)."""
    records = NetworkRecords.of(store)
    record = find_container(store, container_ref)
    network = NetworkStore.of(store).find(network_ref)
    attachments = [
        a
        for a in records.attachments(record.container_id)
        if (network is not None and a.network.id == network.id) or a.network.name == network_ref
    ]
    if not attachments:
        raise UsageError(
            f"container {record.container_name} is not connected to network {network_ref}",
            "see the container's networks with 'skiff inspect'",
        )
    attachment = attachments[0]
    errors: list[str] = []
    if record.boot_id == boot_id():
        errors = run_teardown(
            netavark or Netavark.for_run_root(store.run_root),
            store.run_root,
            record,
            [attachment],
        )
    if errors and not force:
        raise ContainerError(
            f"cannot disconnect container {record.container_name} from network "
            f"{attachment.network.name}: " + "; ".join(errors),
            "use --force to forget the connection anyway",
        )
    records.drop_attachment(record.container_id, attachment.network.id)


def remove_network(
    store: Store, network_ref: str, *, force: bool = False, netavark: Netavark | None = None
) -> Network:
    """Remove a network; with ``force``, disconnect its containers first. Returns it."""
    definitions = NetworkStore.of(store)
    records = NetworkRecords.of(store)
    network = definitions.get(network_ref)
    if network.is_default:
        raise UsageError(
            f"default network {network.name} cannot be removed",
            "it always exists, like podman's 'podman' network",
        )
    users = records.users(network.id)
    if users and not force:
        names = ", ".join(name or cid[:12] for cid, name in users)
        raise NetworkInUse(
            f"network {network.name} is used by container(s): {names}",
            "stop them first, or use -f to disconnect them",
        )
    for container_id, _name in users:
        disconnect_network(store, container_id, network.id, force=True, netavark=netavark)
    definitions.delete(network.id)
    return network


def prune_networks(store: Store, keep: Callable[[Network], bool] | None = None) -> list[Network]:
    """Remove every network no container uses (never the default one); the removed ones."""
    definitions = NetworkStore.of(store)
    records = NetworkRecords.of(store)
    removed: list[Network] = []
    for network in definitions.list():
        if network.is_default or records.users(network.id):
            continue
        if keep is not None and keep(network):
            continue
        definitions.delete(network.id)
        removed.append(network)
    return removed
