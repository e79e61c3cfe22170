"""``skiff port`` (podman port): a container's published ports.

``port CTR`` prints ``80/tcp -> 0.0.0.0:8080`` per port (ranges expanded);
``port CTR 80[/tcp]`` prints the host address of that one port, or fails
("failed to find published port"); ``port -a`` lists every running
container's ports, each line prefixed with the short ID and a tab.
"""

from __future__ import annotations

import argparse
from typing import Any

from skiff.errors import ContainerError, UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="all running containers")
    parser.add_argument("-l", "--latest", action="store_true", help="the latest container")
    parser.add_argument("args", nargs="*", metavar="CONTAINER [PRIVATE_PORT[/PROTO]]")
    parser.set_defaults(func=run)


def _parse_port(text: str) -> tuple[int, str]:
    number, _, proto = text.partition("/")
    if not number.isdigit() or not 0 < int(number) < 65536 or "/" in proto:
        raise UsageError(
            f"port formats are port/protocol. '{text}' is invalid", "e.g. 80 or 53/udp"
        )
    return int(number), proto or "tcp"


def _lines(ports: list[dict[str, Any]]) -> list[tuple[int, str, str, int]]:
    """(container port, protocol, host ip, host port) for every port of every range."""
    out = []
    for p in ports:
        host_ip = p.get("host_ip") or "0.0.0.0"  # noqa: S104 - how podman prints "every address"
        for offset in range(int(p.get("range") or 1)):
            for proto in str(p.get("protocol") or "tcp").split(","):
                out.append(
                    (
                        int(p["container_port"]) + offset,
                        proto,
                        host_ip,
                        int(p.get("host_port") or 0) + offset,
                    )
                )
    return out


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime import lifecycle
    from skiff.runtime.inspect import published_ports
    from skiff.runtime.records import Status

    positional = list(args.args)
    if args.all and args.latest:
        raise UsageError("--all and --latest cannot be used together")
    if not positional and not args.all and not args.latest:
        raise UsageError("you must supply a running container name or id")
    if args.all and len(positional) > 0:
        raise UsageError("no arguments are needed with --all")
    container_ref = None if args.all or args.latest else positional.pop(0)
    if len(positional) > 1:
        raise UsageError("port takes at most one PRIVATE_PORT[/PROTO]")
    wanted = _parse_port(positional[0]) if positional else None
    rt = open_runtime(args)
    try:
        if args.all:
            containers = rt.records.all()
        elif args.latest:
            containers = rt.records.all()[-1:]
        else:
            containers = [rt.records.get(container_ref)]
        found = False
        examined = False
        for record in containers:
            with rt.lock(record.id):
                c = lifecycle.sync(rt, record)
            if c.state.status not in (Status.RUNNING, Status.PAUSED):
                continue  # podman lists running containers only
            examined = True
            prefix = f"{c.short_id}\t" if args.all else ""
            for port, proto, host_ip, host_port in _lines(published_ports(c)):
                host = f"[{host_ip}]" if ":" in host_ip else host_ip
                if wanted is None:
                    print(f"{prefix}{port}/{proto} -> {host}:{host_port}")
                elif (port, proto) == wanted:
                    print(f"{host}:{host_port}")
                    found = True
        if wanted is not None and examined and not found:
            raise ContainerError(
                f'failed to find published port "{positional[0]}"',
                "list the container's ports with 'skiff port CONTAINER'",
            )
        return 0
    finally:
        rt.close()
