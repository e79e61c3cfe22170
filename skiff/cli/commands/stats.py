"""``skiff stats`` (podman stats): live resource usage of containers.

Without names: the running containers (``-a``: all, stopped ones as
zeros). ``--no-stream`` prints one report; otherwise a report every
``--interval`` seconds, the screen cleared before each unless
``--no-reset``, until interrupted (ctrl-c ends it with exit 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from skiff.errors import UsageError

CLEAR_SCREEN = "\x1b[2J\x1b[H"


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
    from skiff.cli.runtimecli import open_runtime
    from skiff.cli.statsview import format_stats
    from skiff.runtime.stats import stats_report
    from skiff.runtime.usage import sample_containers

    if args.interval < 1:
        raise UsageError(f"invalid --interval {args.interval}", "give at least 1 second")
    if args.latest and (args.containers or args.all):
        raise UsageError("--latest cannot be combined with names or --all")
    rt = open_runtime(args)
    try:
        previous = None
        while True:
            containers = _containers(rt, args)
            samples = sample_containers(rt, containers)
            text = format_stats(
                stats_report(previous, samples), args.format, no_trunc=args.no_trunc
            )
            if not args.no_stream and not args.no_reset:
                sys.stdout.write(CLEAR_SCREEN)
            sys.stdout.write(text)
            sys.stdout.flush()
            if args.no_stream:
                return 0
            previous = samples
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        rt.close()
