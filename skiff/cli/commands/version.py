"""``skiff version``: client version (podman's shape, no server)."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from skiff import __version__


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--format", help="'json' or a Go template")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = {
        "Version": __version__,
        "PythonVersion": platform.python_version(),
        "OsArch": f"linux/{platform.machine()}",
    }
    if args.format == "json":
        print(json.dumps({"Client": info}, indent=4))
    elif args.format:
        from skiff.cli.output import render_template

        sys.stdout.write(render_template(args.format, {"Client": info}))
    else:
        print(f"Version:      {info['Version']}")
        print(f"Python:       {info['PythonVersion']}")
        print(f"OS/Arch:      {info['OsArch']}")
    return 0
