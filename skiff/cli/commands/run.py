"""``skiff run`` (podman run): create and start a container, attached or not."""

from __future__ import annotations

import argparse
import sys

from skiff.cli import createopts, imageopts


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a",
        "--attach",
        action="append",
        default=[],
        choices=("stdin", "stdout", "stderr"),
        help="attach to STDIN, STDOUT or STDERR",
    )
    parser.add_argument(
        "-d", "--detach", action="store_true", help="run in the background, print the ID"
    )
    parser.add_argument("--detach-keys", help="key sequence for detaching (default ctrl-p,ctrl-q)")
    imageopts.add_bool(
        parser, "--sig-proxy", "proxy received signals to the process (default true)"
    )
    parser.add_argument(
        "--tls-verify",
        nargs="?",
        const=True,
        default=None,
        type=imageopts.parse_bool,
        help="require HTTPS and verify certificates when pulling",
    )
    parser.add_argument("--creds", help="credentials for pulling")
    parser.add_argument("--authfile", help="auth file for pulling")
    parser.add_argument("--cert-dir", help="certificates for pulling")
    createopts.add_create_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import image_for_run, open_runtime
    from skiff.runtime.attach import DEFAULT_DETACH_KEYS, parse_detach_keys
    from skiff.runtime.run import Streams, flush_std
    from skiff.runtime.run import run as run_container

    rt = open_runtime(args)
    try:
        opts = createopts.create_options(rt, args, image_for_run)
        wanted = set(args.attach) or {"stdin", "stdout", "stderr"}
        streams = Streams(
            stdin=sys.stdin.buffer if "stdin" in wanted and args.interactive else None,
            stdout=sys.stdout.buffer if "stdout" in wanted else None,
            stderr=sys.stderr.buffer if "stderr" in wanted else None,
            detach_keys=parse_detach_keys(args.detach_keys)
            if args.detach_keys is not None
            else DEFAULT_DETACH_KEYS,
            sig_proxy=args.sig_proxy is not False,
        )
        result = run_container(rt, opts, detach=args.detach, streams=streams)
        flush_std()
        if result.detached:
            if args.detach:
                print(result.container.id)
            return 0
        return result.exit_code if result.exit_code is not None else 0
    finally:
        rt.close()
