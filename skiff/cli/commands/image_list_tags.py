"""``skiff image list-tags docker://REPO`` (skopeo list-tags)."""

from __future__ import annotations

import argparse
import json

from skiff.cli import imageopts
from skiff.errors import InvalidReference


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", metavar="REPOSITORY", help="docker://HOST/REPO")
    imageopts.add_common_options(parser)
    imageopts.add_side_options(parser, "")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.image.transports import parse_image_name
    from skiff.image.transports.docker import list_tags

    ctx = imageopts.side_context(system_context(args), args, "")
    if not args.repository.startswith("docker://"):
        raise InvalidReference(
            f"unsupported transport in {args.repository!r} for list-tags",
            "only docker://REPOSITORY is supported",
        )
    from skiff.oci.reference import parse_normalized_named

    named = parse_normalized_named(args.repository.removeprefix("docker://"))
    if not named.is_name_only():
        raise InvalidReference(
            f"tag or digest are not supported in {args.repository!r} for list-tags",
            "give the repository only, e.g. docker://quay.io/ns/repo",
        )
    ref = parse_image_name(args.repository)
    tags = list_tags(ctx, ref)
    print(json.dumps({"Repository": named.name, "Tags": tags}, indent=4))
    return 0
