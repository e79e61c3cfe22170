"""``skiff cp`` (podman cp): copy files between containers and the host."""

from __future__ import annotations

import argparse
import sys

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    from skiff.cli.runtimecli import add_true_by_default

    add_true_by_default(
        parser,
        "-a",
        "--archive",
        "chown copied files to the primary uid/gid of the destination (default true)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="allow to overwrite directories with non-directories and vice versa",
    )
    parser.add_argument("source", metavar="[CONTAINER:]SRC_PATH")
    parser.add_argument("destination", metavar="[CONTAINER:]DEST_PATH")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime.copy import CopyOptions, copy, parse_location

    src = parse_location(args.source)
    dst = parse_location(args.destination)
    if src.is_stream and dst.is_stream:
        raise UsageError("cp: SRC and DEST cannot both be '-'")
    rt = open_runtime(args)
    try:
        report = copy(
            rt,
            src,
            dst,
            CopyOptions(archive=args.archive, overwrite=args.overwrite),
            stdin=sys.stdin.buffer if src.is_stream else None,
            stdout=sys.stdout.buffer if dst.is_stream else None,
        )
    finally:
        rt.close()
    for warning in report.warnings:
        print(f"WARN: {warning}", file=sys.stderr)
    return 0
