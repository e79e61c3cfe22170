"""``skiff container exists`` (podman's): exit 0 if the container exists, 1 if not.

Nothing is printed either way; only a failure to look (an unreadable store)
is an error (exit 125).
"""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER", help="container name or ID")
    parser.add_argument(
        "--external", action="store_true", help="also count storage-only containers"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.errors import ContainerError

    rt = open_runtime(args)
    try:
        try:
            found = rt.records.find(args.container) is not None
        except ContainerError:  # an ambiguous ID prefix names no one container
            found = False
        if not found and args.external:
            found = rt.store.containers.find(args.container) is not None
        return 0 if found else 1
    finally:
        rt.close()
