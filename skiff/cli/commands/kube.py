"""``skiff kube play|down|generate`` (podman kube play/down/generate).

``play FILE`` prints what podman 4.3 prints: per pod ``Pod:`` and its ID,
then ``Container:``/``Containers:`` and their IDs, and a blank line;
``Volume:`` names for PersistentVolumeClaim documents. ``play --down
FILE`` (or ``down FILE``) prints ``Pods stopped:`` and ``Pods removed:``
with the pods' IDs. ``generate CTR|POD...`` prints the YAML (or writes it
to ``-f FILE``). ``FILE`` may be ``-`` for standard input. Images missing
from the store are pulled, following each container's imagePullPolicy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from skiff.errors import UsageError

PULL = {"Always": "always", "Never": "never", "IfNotPresent": "missing", "": "missing"}


def register(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    if command == "generate":
        parser.add_argument("-f", "--filename", type=Path, help="write the YAML to this file")
        parser.add_argument(
            "-s", "--service", action="store_true", help="also generate a Service (not supported)"
        )
        parser.add_argument("names", nargs="+", metavar="CONTAINER|POD")
        parser.set_defaults(func=_generate)
        return
    if command == "play":
        from skiff.cli.imageopts import add_bool, parse_bool

        parser.add_argument("--down", action="store_true", help="stop and remove the pods instead")
        parser.add_argument("--replace", action="store_true", help="replace existing pods")
        parser.add_argument(
            "--configmap", action="append", default=[], help="a YAML file with ConfigMaps"
        )
        add_bool(parser, "--start", "start the pods (default true)")
        parser.add_argument(
            "--network", action="append", default=[], help="networks of the pods (repeatable)"
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="no pull progress")
        parser.add_argument(
            "--tls-verify", nargs="?", const=True, default=None, type=parse_bool,
            help="require HTTPS and verify certificates when pulling",
        )  # fmt: skip
        parser.add_argument("--creds", help="credentials for pulling")
        parser.add_argument("--authfile", help="auth file for pulling")
        parser.add_argument("--cert-dir", help="certificates for pulling")
    parser.add_argument("file", metavar="FILE", help="Kubernetes YAML file ('-' for stdin)")
    parser.set_defaults(func=_down if command == "down" else _play)


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(), path
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text (YAML) file") from None


def _load(path: str) -> Any:
    from skiff.runtime.kube.parse import parse_yaml

    text, source = _read(path)
    return parse_yaml(text, source)


def _resolver(rt: Any, args: argparse.Namespace) -> Any:
    from skiff.cli.runtimecli import image_for_run

    def resolve(reference: str, policy: str) -> Any:
        return image_for_run(rt, args, reference, PULL.get(policy, "missing"), args.quiet)

    return resolve


def _play(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime.kube.model import KubeFile
    from skiff.runtime.kube.parse import parse_yaml
    from skiff.runtime.kube.play import PlayOptions, play

    kube = _load(args.file)
    if args.down:
        return _print_down(args, kube)
    extra = KubeFile()
    for path in args.configmap:
        text, source = _read(path)
        parsed = parse_yaml(text, source)
        if parsed.pods or parsed.claims:
            raise UsageError(f"--configmap {path}: the file must hold ConfigMaps only")
        extra.config_maps += parsed.config_maps
    rt = open_runtime(args)
    try:
        report = play(
            rt,
            kube,
            PlayOptions(
                config_maps=extra.config_maps,
                replace=args.replace,
                start=args.start is not False,
                networks=[n for item in args.network for n in item.split(",") if n],
                resolve_image=_resolver(rt, args),
                create_command=["skiff", *sys.argv[1:]],
            ),
        )
    finally:
        rt.close()
    for warning in report.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    for volume in report.volumes:
        print(f"Volume:\n{volume}")
    for pod in report.pods:
        print(f"Pod:\n{pod.id}")
        print("Container:" if len(pod.containers) == 1 else "Containers:")
        for container_id in pod.containers:
            print(container_id)
        print()
    return 0


def _print_down(args: argparse.Namespace, kube: Any) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime.kube.play import down

    rt = open_runtime(args)
    try:
        report = down(rt, kube)
    finally:
        rt.close()
    if report.stopped:
        print("Pods stopped:")
        for pod_id in report.stopped:
            print(pod_id)
    if report.removed:
        print("Pods removed:")
        for pod_id in report.removed:
            print(pod_id)
    return 0


def _down(args: argparse.Namespace) -> int:
    return _print_down(args, _load(args.file))


def _generate(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime.kube.generate import generate

    if args.service:
        raise UsageError("kube generate --service is not supported by skiff")
    rt = open_runtime(args)
    try:
        text = generate(rt, list(args.names))
    finally:
        rt.close()
    if args.filename is not None:
        if args.filename.exists():
            raise UsageError(f"cannot write to {args.filename}: the file exists")
        tmp = args.filename.with_name(f".{args.filename.name}.tmp")
        tmp.write_text(text)
        tmp.replace(args.filename)
    else:
        sys.stdout.write(text)
    return 0
