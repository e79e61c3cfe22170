"""``skiff attach`` (podman attach): connect to a running container's streams.

Exits with the container's exit code once it exits, or 0 after the detach
keys (default ctrl-p,ctrl-q) left it running.
"""

from __future__ import annotations

import argparse
import sys

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detach-keys", help="key sequence for detaching (default ctrl-p,ctrl-q)")
    parser.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    parser.add_argument(
        "--sig-proxy",
        nargs="?",
        const="true",
        default="true",
        choices=("true", "false"),
        help="proxy received signals to the container (default true)",
    )
    parser.add_argument("-l", "--latest", action="store_true", help="the latest container")
    parser.add_argument("container", metavar="CONTAINER", nargs="?", help="container name or ID")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import container_or_latest, open_runtime
    from skiff.runtime.attach import DEFAULT_DETACH_KEYS, parse_detach_keys
    from skiff.runtime.reattach import AttachOptions, attach_container
    from skiff.runtime.run import flush_std

    if (args.container is None) == (not args.latest):
        raise UsageError("attach requires the name or ID of one container, or --latest")
    keys = (
        parse_detach_keys(args.detach_keys) if args.detach_keys is not None else DEFAULT_DETACH_KEYS
    )
    rt = open_runtime(args)
    try:
        container = container_or_latest(rt, args.container, args.latest, "attach")
        outcome = attach_container(
            rt,
            container,
            AttachOptions(
                stdin=None if args.no_stdin else sys.stdin.buffer,
                stdout=sys.stdout.buffer,
                stderr=sys.stderr.buffer,
                detach_keys=keys,
                sig_proxy=args.sig_proxy == "true",
            ),
        )
        flush_std()
        return outcome.exit_code or 0
    finally:
        rt.close()
