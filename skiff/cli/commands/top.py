"""``skiff top`` (podman top): the processes of a running container.

``skiff top CONTAINER [DESCRIPTOR...]`` with ps(1) AIX format descriptors
(``user pid args``, or ``user,pid,args``; see ``skiff.runtime.top``).
"""

from __future__ import annotations

import argparse
import sys

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-l", "--latest", action="store_true", help="the latest container")
    parser.add_argument(
        "--list-descriptors", action="store_true", help="list the supported descriptors"
    )
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, metavar="CONTAINER [DESCRIPTOR...]", help=""
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_table
    from skiff.cli.runtimecli import container_or_latest, open_runtime
    from skiff.runtime.top import list_descriptors
    from skiff.runtime.usage import container_processes

    if args.list_descriptors:
        print("\n".join(list_descriptors()))
        return 0
    words = list(args.args)
    if not args.latest and not words:
        raise UsageError("you must provide the name or ID of a running container", "or --latest")
    rt = open_runtime(args)
    try:
        ref = None if args.latest else words.pop(0)
        container = container_or_latest(rt, ref, args.latest, "top")
        headers, rows = container_processes(rt, container, words)
        sys.stdout.write(format_table(headers, rows))
        return 0
    finally:
        rt.close()
