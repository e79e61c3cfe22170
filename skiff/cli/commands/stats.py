"""``skiff stats`` (podman stats): live resource usage of containers.

Without names: the running containers (``-a``: all, stopped ones as
zeros). ``--no-stream`` prints one report; otherwise a report every
``--interval`` seconds, the screen cleared before each unless
``--no-reset``, until interrupted (ctrl-c ends it with exit 0).
"""

from __future__ import annotations

import argparse
from typing import Any

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show all containers")
    parser.add_argument("--format", help="'json', a Go template, or 'table ...'")
    parser.add_argument(
        "-i", "--interval", type=int, default=5, help="seconds between reports (default 5)"
    )
    parser.add_argument("-l", "--latest", action="store_true", help="the latest container")
    parser.add_argument("--no-reset", action="store_true", help="do not clear the screen")
    parser.add_argument("--no-stream", action="store_true", help="print one report and exit")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate IDs")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=run)


def _containers(rt: Any, args: argparse.Namespace) -> list[Any]:
    from skiff.runtime.records import Status
    from skiff.runtime.usage import synced

    if args.latest:
        return synced(rt, rt.records.all()[-1:])
    if args.containers:
        return synced(rt, [rt.records.get(ref) for ref in args.containers])
    everything = synced(rt, rt.records.all())
    if args.all:
        return everything
    return [c for c in everything if c.state.status in (Status.RUNNING, Status.PAUSED)]


def run(args: argparse.Namespace) -> int:
    from skiff.cli.live import check_interval, print_reports
    from skiff.cli.runtimecli import open_runtime
    from skiff.cli.statsview import format_stats
    from skiff.runtime.stats import stats_report
    from skiff.runtime.usage import sample_containers

    check_interval(args)
    if args.latest and (args.containers or args.all):
        raise UsageError("--latest cannot be combined with names or --all")
    rt = open_runtime(args)
    previous: list[Any] | None = None

    def report() -> str:
        nonlocal previous
        samples = sample_containers(rt, _containers(rt, args))
        text = format_stats(stats_report(previous, samples), args.format, no_trunc=args.no_trunc)
        previous = samples
        return text

    try:
        return print_reports(args, report)
    finally:
        rt.close()
