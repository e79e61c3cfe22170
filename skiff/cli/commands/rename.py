"""``skiff rename`` (podman rename): give a container a new name."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER", help="container name or ID")
    parser.add_argument("name", metavar="NAME", help="the new name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime.rename import rename

    rt = open_runtime(args)
    try:
        rename(rt, rt.records.get(args.container), args.name)
        return 0
    finally:
        rt.close()
