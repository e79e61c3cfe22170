"""``skiff logout REGISTRY`` / ``skiff logout --all`` (podman logout)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "registry", metavar="REGISTRY", nargs="?", help="registry host[:port][/repo]"
    )
    parser.add_argument(
        "-a", "--all", action="store_true", help="remove the credentials of every registry"
    )
    parser.add_argument(
        "--authfile", type=Path, metavar="PATH", help="path of the authentication file"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.commands.login import _normalize_registry
    from skiff.cli.context import system_context
    from skiff.image import auth

    ctx = system_context(args)
    if args.authfile:
        ctx = dataclasses.replace(ctx, auth_file=args.authfile)
    if args.all:
        if args.registry:
            raise UsageError("--all takes no registry")
        auth.remove_all_credentials(ctx)
        print("Removed login credentials for all registries")
        return 0
    if not args.registry:
        raise UsageError("skiff logout: a registry is required", "or use --all")
    key = _normalize_registry(args.registry)
    if not auth.remove_credentials(ctx, key):
        raise UsageError(f"not logged into {key}")
    print(f"Removed login credentials for {key}")
    return 0
