"""``skiff network create|ls|inspect|rm|prune|exists|connect|disconnect`` (podman network).

One module for the whole group: ``register`` is called with the parser of
one subcommand (its ``prog`` ends with the subcommand's name) and adds that
subcommand's flags. Output follows podman 4: ``ls`` prints NETWORK ID, NAME,
DRIVER; ``inspect`` a JSON array indented by five spaces; ``ls --format
json`` two spaces; ``rm`` and ``prune`` the names removed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skiff.cli.objectgroup import (
    gojson,
    key_values,
    open_store,
    print_error,
    prune_confirmed,
    rm_exit_code,
)
from skiff.errors import SkiffError, UsageError

if TYPE_CHECKING:
    from skiff.runtime.network.model import Network
    from skiff.storage.store import Store

INSPECT_INDENT = " " * 5  # podman network inspect
LS_JSON_INDENT = " " * 2  # podman network ls --format json
PRUNE_WARNING = (
    "WARNING! This will remove all networks not used by at least one container.\n"
    "Are you sure you want to continue? [y/N] "
)


def register(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    REGISTER[command](parser)


# --- create --------------------------------------------------------------------------


def _register_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", nargs="?", help="network name (default: skiffN)")
    parser.add_argument("-d", "--driver", default="bridge", help="network driver (bridge)")
    parser.add_argument(
        "--subnet", action="append", default=[], help="subnet in CIDR notation (repeatable)"
    )
    parser.add_argument(
        "--gateway", action="append", default=[], help="gateway of the subnet at the same position"
    )
    parser.add_argument(
        "--ip-range",
        action="append",
        default=[],
        help="allocate container addresses from this CIDR or START-END range",
    )
    parser.add_argument("--ipv6", action="store_true", help="enable IPv6 (adds a ULA subnet)")
    parser.add_argument(
        "--internal", action="store_true", help="restrict external access from this network"
    )
    parser.add_argument("--disable-dns", action="store_true", help="disable aardvark-dns")
    parser.add_argument("--ipam-driver", help="IP address management driver (host-local)")
    parser.add_argument("--interface-name", help="name of the bridge (default: skiffN)")
    parser.add_argument(
        "--label", action="append", default=[], help="set metadata KEY[=VALUE] (repeatable)"
    )
    parser.add_argument(
        "-o", "--opt", action="append", default=[], help="driver option: mtu, vlan, isolate"
    )
    parser.add_argument(
        "--ignore", action="store_true", help="do not fail if the network already exists"
    )
    parser.set_defaults(func=_run_create)


def _run_create(args: argparse.Namespace) -> int:
    from skiff.runtime.network.store import CreateOptions, NetworkStore

    options = CreateOptions(
        name=args.name,
        driver=args.driver,
        interface_name=args.interface_name,
        subnets=tuple(args.subnet),
        gateways=tuple(args.gateway),
        ip_ranges=tuple(args.ip_range),
        ipv6=args.ipv6,
        internal=args.internal,
        dns=not args.disable_dns,
        labels=key_values(args.label, "--label"),
        options=key_values(args.opt, "--opt"),
        ipam_driver=args.ipam_driver,
    )
    store = open_store(args)
    networks = NetworkStore.of(store)
    if args.ignore and args.name and networks.exists(args.name):
        print(networks.get(args.name).name)
        return 0
    print(networks.create(options).name)
    return 0


# --- ls ------------------------------------------------------------------------------


def _register_ls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filter", action="append", default=[], help="filter output (e.g. name=foo)"
    )
    parser.add_argument("--format", help="'json' or a Go template")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate network IDs")
    parser.add_argument("--noheading", action="store_true", help="do not print headers")
    parser.add_argument("-q", "--quiet", action="store_true", help="display only names")
    parser.set_defaults(func=_run_ls)


def _ls_row(network: Network, no_trunc: bool) -> dict[str, Any]:
    row = network.template_data()
    if not no_trunc:
        row["ID"] = network.id[:12]
    row["Labels"] = ",".join(f"{k}={v}" for k, v in sorted(network.labels.items()))
    return row


def _selected(store: Store, specs: list[str], allowed: tuple[str, ...]) -> list[Network]:
    from skiff.runtime.network.filters import parse_filters
    from skiff.runtime.network.setup import NetworkRecords
    from skiff.runtime.network.store import NetworkStore

    wanted = parse_filters(specs, allowed)
    records = NetworkRecords.of(store)

    def in_use(network: Network) -> bool:
        return bool(records.users(network.id))

    return [n for n in NetworkStore.of(store).list() if wanted.matches(n, in_use)]


def _run_ls(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_items, is_json
    from skiff.runtime.network.filters import LS_KEYS

    store = open_store(args)
    networks = _selected(store, args.filter, LS_KEYS)
    if args.quiet:
        for network in networks:
            print(network.name)
        return 0
    if is_json(args.format):
        print(gojson([n.to_json() for n in networks], LS_JSON_INDENT))
        return 0
    rows = [_ls_row(n, args.no_trunc) for n in networks]
    sys.stdout.write(
        format_items(
            args.format,
            rows,
            default_columns=[("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER")],
            headers={"ID": "NETWORK ID"},
            noheading=args.noheading,
        )
    )
    return 0


# --- inspect -------------------------------------------------------------------------


def _register_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("networks", metavar="NETWORK", nargs="+", help="network name or ID")
    parser.add_argument("-f", "--format", help="'json' or a Go template applied to each network")
    parser.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_items, is_json
    from skiff.runtime.network.store import NetworkStore

    store = open_store(args)
    networks = NetworkStore.of(store)
    found: list[Network] = []
    failure: SkiffError | None = None
    for ref in args.networks:
        try:
            found.append(networks.get(ref))
        except SkiffError as exc:
            failure = exc
    if args.format is None or is_json(args.format):
        print(gojson([n.to_json() for n in found], INSPECT_INDENT))
    else:
        sys.stdout.write(format_items(args.format, [n.template_data() for n in found]))
    if failure is not None:
        raise failure
    return 0


# --- rm, prune, exists -----------------------------------------------------------------


def _register_rm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("networks", metavar="NETWORK", nargs="+", help="network name or ID")
    parser.add_argument(
        "-f", "--force", action="store_true", help="disconnect containers using the network"
    )
    parser.add_argument(
        "-t",
        "--time",
        type=int,
        default=10,
        help="accepted for podman compatibility (skiff does not stop containers here)",
    )
    parser.set_defaults(func=_run_rm)


def _run_rm(args: argparse.Namespace) -> int:
    from skiff.runtime.network.connect import remove_network
    from skiff.runtime.network.store import NetworkInUse, NetworkUnknown

    store = open_store(args)
    status = 0
    for ref in args.networks:
        try:
            print(remove_network(store, ref, force=args.force).name)
        except SkiffError as exc:
            print_error(exc)
            status = rm_exit_code(exc, status, NetworkUnknown, NetworkInUse)
    return status


def _register_prune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter", action="append", default=[], help="label=KEY[=VALUE], label!=..., until=..."
    )
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    parser.set_defaults(func=_run_prune)


def _confirm(ask: Callable[[], str]) -> bool:
    sys.stdout.write(PRUNE_WARNING)
    return prune_confirmed(ask)


def _run_prune(args: argparse.Namespace) -> int:
    from skiff.runtime.network.connect import prune_networks
    from skiff.runtime.network.filters import PRUNE_KEYS

    store = open_store(args)
    wanted = {n.id for n in _selected(store, args.filter, PRUNE_KEYS)}
    if not args.force and not _confirm(input):
        return 0
    for network in prune_networks(store, keep=lambda n: n.id not in wanted):
        print(network.name)
    return 0


def _register_exists(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", metavar="NETWORK", help="network name or ID")
    parser.set_defaults(func=_run_exists)


def _run_exists(args: argparse.Namespace) -> int:
    from skiff.runtime.network.store import NetworkStore

    return 0 if NetworkStore.of(open_store(args)).exists(args.network) else 1


# --- connect, disconnect ---------------------------------------------------------------


def _register_connect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", metavar="NETWORK", help="network name or ID")
    parser.add_argument("container", metavar="CONTAINER", help="container name or ID")
    parser.add_argument(
        "--alias", action="append", default=[], help="network-scoped DNS alias (repeatable)"
    )
    parser.add_argument("--ip", help="static IPv4 address on this network")
    parser.add_argument("--ip6", help="static IPv6 address on this network")
    parser.add_argument("--mac-address", default="", help="static MAC address on this network")
    parser.set_defaults(func=_run_connect)


def _static_ip(text: str | None, version: int, flag: str) -> list[Any]:
    import ipaddress

    if not text:
        return []
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(f"invalid {flag} {text!r}: not an IP address") from None
    if address.version != version:
        raise UsageError(f"{flag} {text} is not an IPv{version} address")
    return [address]


def _run_connect(args: argparse.Namespace) -> int:
    from skiff.runtime.network.connect import connect_network

    aliases = [a for item in args.alias for a in item.split(",") if a]
    static_ips = _static_ip(args.ip, 4, "--ip") + _static_ip(args.ip6, 6, "--ip6")
    connect_network(
        open_store(args),
        args.container,
        args.network,
        aliases=aliases,
        static_ips=static_ips,
        static_mac=args.mac_address,
    )
    return 0


def _register_disconnect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("network", metavar="NETWORK", help="network name or ID")
    parser.add_argument("container", metavar="CONTAINER", help="container name or ID")
    parser.add_argument(
        "-f", "--force", action="store_true", help="forget the connection even if teardown fails"
    )
    parser.set_defaults(func=_run_disconnect)


def _run_disconnect(args: argparse.Namespace) -> int:
    from skiff.runtime.network.connect import disconnect_network

    disconnect_network(open_store(args), args.container, args.network, force=args.force)
    return 0


REGISTER: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "create": _register_create,
    "ls": _register_ls,
    "inspect": _register_inspect,
    "rm": _register_rm,
    "prune": _register_prune,
    "exists": _register_exists,
    "connect": _register_connect,
    "disconnect": _register_disconnect,
}
