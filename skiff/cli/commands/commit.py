"""``skiff commit`` (podman commit): create an image from a container's changes."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    from skiff.cli.runtimecli import add_true_by_default

    parser.add_argument("-a", "--author", default="", help="set the author of the image")
    parser.add_argument(
        "-c",
        "--change",
        action="append",
        default=[],
        metavar="INSTRUCTION",
        help="apply an instruction to the image: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
        "ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR",
    )
    parser.add_argument(
        "-f", "--format", default="oci", choices=("oci", "docker"), help="image format"
    )
    parser.add_argument("--iidfile", help="write the image ID to this file")
    parser.add_argument(
        "--include-volumes",
        action="store_true",
        help="include the container's volumes as image volumes",
    )
    parser.add_argument("-m", "--message", default="", help="set the commit message")
    add_true_by_default(
        parser, "-p", "--pause", "pause the container while committing (default true)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    parser.add_argument(
        "-s", "--squash", action="store_true", help="squash the image into a single layer"
    )
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("image", metavar="IMAGE", nargs="?")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime.commit import CommitOptions, commit, write_iidfile

    rt = open_runtime(args)
    try:
        report = commit(
            rt,
            args.container,
            CommitOptions(
                name=args.image,
                changes=list(args.change),
                message=args.message,
                author=args.author,
                pause=args.pause,
                format=args.format,
                squash=args.squash,
                include_volumes=args.include_volumes,
            ),
        )
    finally:
        rt.close()
    if args.iidfile:
        write_iidfile(args.iidfile, report.image_id)
    print(report.image_id)
    return 0
