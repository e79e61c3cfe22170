"""``skiff update`` (podman update): change a container's resource limits.

Prints the container's ID, as podman does.
"""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cpu-period", type=int, help="CFS period (µs)")
    parser.add_argument("--cpu-quota", type=int, help="CFS quota (µs); -1 removes it")
    parser.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    parser.add_argument("--cpus", help="number of CPUs (0 removes the limit)")
    parser.add_argument("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    parser.add_argument("--cpuset-mems", help="memory nodes in which to allow execution")
    parser.add_argument("-m", "--memory", help="memory limit (e.g. 64m; -1 removes it)")
    parser.add_argument("--memory-reservation", help="memory soft limit")
    parser.add_argument("--memory-swap", help="memory plus swap limit; -1 for unlimited swap")
    parser.add_argument("--memory-swappiness", type=int, help="swappiness (0-100, -1 default)")
    parser.add_argument("--pids-limit", type=int, help="pids limit (-1 removes it)")
    parser.add_argument("container", metavar="CONTAINER", help="container name or ID")
    parser.set_defaults(func=run)


def _size(text: str | None, what: str) -> int | None:
    from skiff.runtime.specgen.limits import parse_size

    if text is None:
        return None
    if text.strip() == "-1":
        return -1
    return parse_size(text, what)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime.specgen.limits import parse_cpus
    from skiff.runtime.update import UpdateOptions, update_container

    cpus: float | None = None
    if args.cpus is not None:
        cpus = 0.0 if args.cpus.strip() in ("0", "0.0") else parse_cpus(args.cpus)
    opts = UpdateOptions(
        memory=_size(args.memory, "--memory"),
        memory_reservation=_size(args.memory_reservation, "--memory-reservation"),
        memory_swap=_size(args.memory_swap, "--memory-swap"),
        memory_swappiness=args.memory_swappiness,
        cpus=cpus,
        cpu_period=args.cpu_period,
        cpu_quota=args.cpu_quota,
        cpu_shares=args.cpu_shares,
        cpuset_cpus=args.cpuset_cpus,
        cpuset_mems=args.cpuset_mems,
        pids_limit=args.pids_limit,
    )
    rt = open_runtime(args)
    try:
        container = update_container(rt, rt.records.get(args.container), opts)
        print(container.id)
        return 0
    finally:
        rt.close()
