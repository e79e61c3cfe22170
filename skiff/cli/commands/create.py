"""``skiff create IMAGE [COMMAND [ARG...]]`` (podman create): a container, not started.

Takes ``run``'s container flags (``skiff.cli.createopts``) and the pull
flags; the image is pulled when missing (``--pull``). The container gets
its storage (a read-write layer over the image: ``skiff mount``, ``diff``
and ``export`` work on it at once) and its runtime record, and its ID is
printed. ``skiff start`` runs it.
"""

from __future__ import annotations

import argparse

from skiff.cli import createopts, imageopts


def register(parser: argparse.ArgumentParser) -> None:
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
    from skiff.runtime.create import create_container

    rt = open_runtime(args)
    try:
        options = createopts.create_options(rt, args, image_for_run)
        container = create_container(rt, options)
        print(container.id)
        return 0
    finally:
        rt.close()
