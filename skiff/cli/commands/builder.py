"""``skiff builder from|run|copy|add|config|mount|umount|commit|containers|rm|inspect``.

buildah's verbs for working containers (``skiff from`` is ``builder from``).
One module for the whole group: ``register`` is called with the parser of
one subcommand (its ``prog`` ends with the subcommand's name). Output is
buildah 1.28's: ``from`` prints the container's name, ``mount`` its path,
``copy``/``add`` the content digest, ``umount``/``rm`` the container IDs,
``commit`` the image ID (progress on stderr unless ``-q``), ``containers``
buildah's fixed-width table, ``inspect`` its JSON. A ``run`` whose command
fails prints ``Error: while running runtime: exit status N`` and exits N.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import SkiffError, UsageError

if TYPE_CHECKING:
    from skiff.build.builder import Builder
    from skiff.runtime.engine import Runtime
    from skiff.storage.store import Store


def register(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    REGISTER[command](parser)


def _runtime(args: argparse.Namespace) -> Runtime:
    from skiff.cli.context import system_context
    from skiff.runtime.engine import Runtime

    return Runtime(system_context(args))


def _error(text: str) -> None:
    sys.stdout.flush()
    print(f"Error: {text}", file=sys.stderr)


def _warn(text: str) -> None:
    print(f"WARN[0000] {text}", file=sys.stderr)


# --- from ------------------------------------------------------------------------------


def _register_from(parser: argparse.ArgumentParser) -> None:
    from skiff.cli.commands.pull import add_platform_options, registry_options

    parser.add_argument("image", nargs="?", metavar="IMAGE", help="base image, or scratch")
    parser.add_argument("--name", help="name of the working container")
    parser.add_argument(
        "--pull",
        nargs="?",
        const="missing",
        default="missing",
        metavar="POLICY",
        help="pull the image: always, missing (default), never, newer",
    )
    parser.add_argument("--pull-always", action="store_true", help="same as --pull always")
    parser.add_argument("--pull-never", action="store_true", help="same as --pull never")
    parser.add_argument("-q", "--quiet", action="store_true", help="no pull progress")
    parser.add_argument(
        "--format", default="oci", choices=("oci", "docker"), help="default format of commit"
    )
    parser.add_argument(
        "--network",
        "--net",
        default="none",
        help="default network of builder run: none (default), host, private or a network's name",
    )
    parser.add_argument(
        "-v", "--volume", action="append", default=[], help="bind mount for every run (HOST:CTR)"
    )
    add_platform_options(parser)
    registry_options(parser)
    parser.set_defaults(func=_run_from)


_POLICY_WORDS = ("always", "missing", "never", "newer", "ifmissing", "ifnewer", "true", "false")


def _run_from(args: argparse.Namespace) -> int:
    from skiff.build.builder import FromOptions, PullPolicy, from_image
    from skiff.cli.commands.pull import platform_context, registry_context
    from skiff.cli.progress import podman_progress
    from skiff.cli.trust import attach_policy_and_signers
    from skiff.image.copy import CopyOptions
    from skiff.libimage.pull import PullOptions
    from skiff.runtime.engine import Runtime

    image, pull = args.image, args.pull
    if image is None and pull not in _POLICY_WORDS:
        # "--pull IMAGE": a bare --pull (buildah's --pull is --pull=true) took the image
        image, pull = pull, "missing"
    if image is None:
        raise UsageError("no image given", "skiff builder from IMAGE, or scratch")
    policy = PullPolicy.parse(pull)
    if args.pull_always:
        policy = PullPolicy.ALWAYS
    if args.pull_never:
        policy = PullPolicy.NEVER
    ctx = platform_context(registry_context(args), args)
    copy_options = CopyOptions(progress=podman_progress(args.quiet))
    attach_policy_and_signers(copy_options, ctx, args)

    def note(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    options = FromOptions(
        pull=policy,
        pull_options=PullOptions(copy=copy_options, notes=None if args.quiet else note),
        format=args.format,
        network=args.network,
        volumes=list(args.volume),
    )
    with Runtime(ctx) as rt:
        builder = from_image(rt, image, name=args.name, options=options)
    print(builder.name)
    return 0


# --- run ---------------------------------------------------------------------------------


def _register_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    parser.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE for the run")
    parser.add_argument("-u", "--user", help="USER[:GROUP] to run as")
    parser.add_argument("--workingdir", help="working directory (created when missing)")
    parser.add_argument("-v", "--volume", action="append", default=[], help="HOST:CTR[:OPTIONS]")
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        help="type=bind|cache|tmpfs,target=PATH[,...] as RUN --mount takes it",
    )
    parser.add_argument(
        "--network", "--net", help="none, host, private, or a network's name (default: none)"
    )
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    parser.add_argument("--hostname", help="host name of the run")
    parser.add_argument("--cap-add", action="append", default=[], help="add a capability")
    parser.add_argument("--cap-drop", action="append", default=[], help="drop a capability")
    parser.add_argument("--runtime", default="", help="OCI runtime (crun, runc, or a path)")
    parser.add_argument(
        "--contextdir", type=Path, help="directory --mount type=bind sources are taken from"
    )
    parser.set_defaults(func=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    from skiff.build.run import RunOptions, parse_run_mount, run_in_builder
    from skiff.cli.runtimecli import terminations_raise

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    options = RunOptions(
        command=command,
        env=list(args.env),
        user=args.user,
        workdir=args.workingdir,
        volumes=list(args.volume),
        mounts=[parse_run_mount(m) for m in args.mount],
        network=args.network,
        terminal=args.tty,
        hostname=args.hostname,
        cap_add=list(args.cap_add),
        cap_drop=list(args.cap_drop),
        runtime=args.runtime,
        context_dir=args.contextdir,
    )
    # SIGTERM and SIGHUP end a run the way Ctrl-C does: through the run's cleanup
    with _runtime(args) as rt, terminations_raise(_Terminated):
        try:
            report = run_in_builder(rt, args.container, options)
        except _Terminated as stop:
            _error(f"terminated by signal {stop.signum}; the run was cleaned up")
            return 128 + stop.signum
    if report.exit_code != 0:
        _error(f"while running runtime: exit status {report.exit_code}")
    return report.exit_code


class _Terminated(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# --- copy / add ------------------------------------------------------------------------------


def _register_copy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("paths", nargs="+", metavar="SRC... DEST")
    parser.add_argument("--chown", metavar="USER[:GROUP]", help="owner of the copied files")
    parser.add_argument("--chmod", metavar="MODE", help="permission bits of the copied files")
    parser.add_argument("--from", dest="from_", metavar="CONTAINER|IMAGE", help="copy from there")
    parser.add_argument("--contextdir", type=Path, help="sources must be inside this directory")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the digest")
    parser.set_defaults(func=_run_copy)


def _run_copy(args: argparse.Namespace) -> int:
    from skiff.build.copy import CopyOptions, copy_into

    if len(args.paths) < 2:
        raise UsageError("give at least one source and a destination", "CONTAINER SRC... DEST")
    options = CopyOptions(
        chown=args.chown,
        chmod=args.chmod,
        from_=args.from_,
        context_dir=args.contextdir,
        add=args.prog_command == "add",
    )
    with _runtime(args) as rt:
        report = copy_into(rt, args.container, args.paths[:-1], args.paths[-1], options)
    if not args.quiet:
        print(report.digest.hex)
    return 0


# --- config ------------------------------------------------------------------------------------


def _register_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")

    def many(*flags: str, help_text: str) -> None:
        parser.add_argument(*flags, action="append", default=[], help=help_text)

    parser.add_argument(
        "--entrypoint", help='JSON array, or a command run with /bin/sh -c; "" clears'
    )
    parser.add_argument("--cmd", help='JSON array or words; "" clears')
    many("-e", "--env", help_text="KEY=VALUE, KEY (from here), KEY- (remove)")
    many("-l", "--label", help_text="KEY=VALUE, or KEY- to remove")
    many("--annotation", "-a", help_text="KEY=VALUE, or KEY- to remove")
    many("-p", "--port", help_text="PORT[/PROTO], or PORT- to remove")
    many("-v", "--volume", help_text="PATH, or PATH- to remove")
    many("--onbuild", help_text="add an ONBUILD instruction (docker format)")
    parser.add_argument("-u", "--user", help="USER[:GROUP] the image runs as")
    parser.add_argument("--workingdir", help="working directory of the image")
    parser.add_argument("--stop-signal", help="signal that stops the container")
    parser.add_argument("--shell", help="shell of RUN instructions (docker format)")
    parser.add_argument("--healthcheck", help="NONE, 'CMD …' or 'CMD-SHELL …' (docker format)")
    parser.add_argument("--healthcheck-interval", help="time between checks (default 30s)")
    parser.add_argument("--healthcheck-timeout", help="time a check may take (default 30s)")
    parser.add_argument("--healthcheck-start-period", help="grace time after start")
    parser.add_argument("--healthcheck-retries", type=int, help="failures before unhealthy")
    parser.add_argument("--author", help="author of the image")
    parser.add_argument("--created-by", help="created_by of the commit's history entry")
    parser.add_argument("--comment", help="comment of the image (docker format)")
    parser.add_argument("--history-comment", help="comment of the commit's history entry")
    parser.add_argument("--os", help="operating system of the image")
    parser.add_argument("--arch", help="architecture of the image")
    parser.add_argument("--variant", help="architecture variant of the image")
    parser.add_argument("--hostname", help="host name (docker format)")
    parser.add_argument("--domainname", help="domain name (docker format)")
    parser.set_defaults(func=_run_config)


def _run_config(args: argparse.Namespace) -> int:
    from skiff.build.config import ConfigOptions, configure

    options = ConfigOptions(
        entrypoint=args.entrypoint,
        cmd=args.cmd,
        env=list(args.env),
        labels=list(args.label),
        annotations=list(args.annotation),
        ports=list(args.port),
        volumes=list(args.volume),
        onbuild=list(args.onbuild),
        user=args.user,
        workingdir=args.workingdir,
        stop_signal=args.stop_signal,
        shell=args.shell,
        healthcheck=args.healthcheck,
        healthcheck_interval=args.healthcheck_interval,
        healthcheck_timeout=args.healthcheck_timeout,
        healthcheck_start_period=args.healthcheck_start_period,
        healthcheck_retries=args.healthcheck_retries,
        author=args.author,
        created_by=args.created_by,
        comment=args.comment,
        history_comment=args.history_comment,
        os=args.os,
        arch=args.arch,
        variant=args.variant,
        hostname=args.hostname,
        domainname=args.domainname,
    )
    with _runtime(args) as rt:
        report = configure(rt.store, args.container, options)
    for warning in report.warnings:
        _warn(warning)
    return 0


# --- mount / umount --------------------------------------------------------------------------------


def _register_mount(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=_run_mount)


def _run_mount(args: argparse.Namespace) -> int:
    from skiff.build.builder import get_builder, list_builders, mount_builder

    with _runtime(args) as rt:
        store = rt.store
        if not args.containers:
            for builder in list_builders(store):
                path = _mounted_path(store, builder)
                if path:
                    print(f"{builder.name} {path}")
            return 0
        paths = []
        for ref in args.containers:
            builder = get_builder(store, ref)
            paths.append((builder.name, mount_builder(store, builder)))
    if len(paths) == 1:
        print(paths[0][1])
    else:
        for name, path in paths:
            print(f"{name} {path}")
    return 0


def _mounted_path(store: Store, builder: Builder) -> str:
    """Where the working container is mounted ("" if it is not)."""
    container = store.containers.find(builder.container_id)
    if container is None or not builder.mount_point:
        return ""
    layer = store.layers.get(container.layer_id)
    return builder.mount_point if layer.mount_count > 0 else ""


def _register_umount(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")
    parser.add_argument("-a", "--all", action="store_true", help="unmount every working container")
    parser.set_defaults(func=_run_umount)


def _run_umount(args: argparse.Namespace) -> int:
    from skiff.build.builder import get_builder, list_builders, unmount_builder

    if bool(args.containers) == bool(args.all):
        raise UsageError("give the containers to unmount, or --all (not both)")
    failed: list[str] = []
    with _runtime(args) as rt:
        store = rt.store
        targets = (
            [b for b in list_builders(store) if _mounted_path(store, b)]
            if args.all
            else args.containers
        )
        for ref in targets:
            try:
                builder = ref if not isinstance(ref, str) else get_builder(store, ref)
                unmount_builder(store, builder, force=args.all)
                print(builder.id)
            except SkiffError as exc:
                _error(str(exc))
                failed.append(str(ref))
    return 125 if failed else 0


# --- commit -------------------------------------------------------------------------------------------


def _register_commit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("image", nargs="?", metavar="IMAGE", help="name (or TRANSPORT:REF)")
    parser.add_argument("-f", "--format", choices=("oci", "docker"), help="image format")
    parser.add_argument("--squash", action="store_true", help="one layer for the whole image")
    parser.add_argument("--rm", action="store_true", help="remove the working container after")
    parser.add_argument("--iidfile", type=Path, help="write the image ID to this file")
    parser.add_argument(
        "--timestamp",
        type=int,
        metavar="SECONDS",
        help="created time and file times (reproducible)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    parser.set_defaults(func=_run_commit)


def _run_commit(args: argparse.Namespace) -> int:
    from skiff.build.commit import CommitOptions, commit_builder

    options = CommitOptions(
        format=args.format,
        squash=args.squash,
        timestamp=args.timestamp,
        iidfile=args.iidfile,
        remove=args.rm,
    )
    with _runtime(args) as rt:
        report = commit_builder(rt, args.container, args.image, options)
    for warning in report.warnings:
        _warn(warning)
    if not args.quiet:
        err = sys.stderr
        print("Getting image source signatures", file=err)
        for diff_id in report.diff_ids:
            print(f"Copying blob {diff_id}", file=err)
        print(f"Copying config {report.config_digest}", file=err)
        print("Writing manifest to image destination", file=err)
        print("Storing signatures", file=err)
        err.flush()
    print(report.image_id)
    return 0


# --- containers -------------------------------------------------------------------------------------------


def _register_containers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="also non-builder containers")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only container IDs")
    parser.add_argument("-n", "--noheading", action="store_true", help="no header line")
    parser.add_argument("--notruncate", action="store_true", help="do not shorten IDs and names")
    parser.add_argument("--format", help="a Go template")
    parser.set_defaults(func=_run_containers)


HEADER = "CONTAINER ID  BUILDER  IMAGE ID     IMAGE NAME                       CONTAINER NAME"


def _rows(store: Store, include_all: bool) -> list[dict[str, Any]]:
    from skiff.build.builder import list_builders

    rows = []
    builders = list_builders(store)
    ids = set()
    for b in builders:
        ids.add(b.container_id)
        rows.append(
            {
                "id": b.container_id,
                "builder": True,
                "imageid": b.from_image_id,
                "imagename": b.base_name,
                "containername": b.name,
            }
        )
    if include_all:
        for c in store.containers.all():
            if c.id in ids:
                continue
            name = ""
            if c.image_id and store.images.exists(c.image_id):
                names = store.images.get(c.image_id).names
                name = names[0] if names else ""
            rows.append(
                {
                    "id": c.id,
                    "builder": False,
                    "imageid": c.image_id or "",
                    "imagename": name,
                    "containername": c.name,
                }
            )
    return rows


def _run_containers(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_items, print_json

    with _runtime(args) as rt:
        rows = _rows(rt.store, args.all)
    if args.quiet:
        for row in rows:
            print(row["id"])
        return 0
    if args.json:
        print_json(rows)
        return 0
    if args.format:
        items = [
            {
                "ContainerID": r["id"],
                "Builder": "   *" if r["builder"] else "",
                "ImageID": r["imageid"],
                "ImageName": r["imagename"],
                "ContainerName": r["containername"],
            }
            for r in rows
        ]
        sys.stdout.write(format_items(args.format, items, noheading=args.noheading))
        return 0
    if not args.noheading:
        print(HEADER)
    for r in rows:
        print(containers_line(r, truncate=not args.notruncate))
    return 0


def containers_line(row: dict[str, Any], *, truncate: bool) -> str:
    """One row of buildah's table (its fixed widths, names cut at 32 with ...)."""
    mark = "   *" if row["builder"] else ""
    if truncate:
        name = row["imagename"]
        if len(name) > 32:
            name = name[:29] + "..."
        return (
            f"{row['id'][:12]:<12}  {mark:<8} {row['imageid'][:12]:<12} {name:<32} "
            f"{row['containername']}"
        )
    return (
        f"{row['id']:<64} {mark:<8} {row['imageid']:<64} {row['imagename']:<32} "
        f"{row['containername']}"
    )


# --- rm ---------------------------------------------------------------------------------------------------


def _register_rm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")
    parser.add_argument("-a", "--all", action="store_true", help="remove every working container")
    parser.set_defaults(func=_run_rm)


def _run_rm(args: argparse.Namespace) -> int:
    from skiff.build.builder import remove_all_builders, remove_builder

    if bool(args.containers) == bool(args.all):
        raise UsageError("give the containers to remove, or --all (not both)")
    failed = False
    with _runtime(args) as rt:
        if args.all:

            def report(name: str, exc: SkiffError) -> None:
                nonlocal failed
                failed = True
                _error(f"removing {name}: {exc}")

            for container_id in remove_all_builders(rt.store, report):
                print(container_id)
        else:
            errors: list[SkiffError] = []
            for ref in args.containers:
                try:
                    print(remove_builder(rt.store, ref))
                except SkiffError as exc:
                    errors.append(exc)
            if len(errors) == 1 and len(args.containers) == 1:
                raise errors[0]
            for error in errors:
                failed = True
                _error(str(error))
    return 125 if failed else 0


# --- inspect -----------------------------------------------------------------------------------------------


def _register_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("-f", "--format", help="a Go template")
    parser.add_argument(
        "-t", "--type", default="container", choices=("container",), help="what to inspect"
    )
    parser.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from skiff.build.builder import get_builder, inspect_builder
    from skiff.cli.output import print_json, render_template

    with _runtime(args) as rt:
        data = inspect_builder(rt.store, get_builder(rt.store, args.container))
    if args.format:
        sys.stdout.write(render_template(args.format, data))
    else:
        print_json(data)
    return 0


def _with_command(name: str, func: Any) -> Any:
    def register_it(parser: argparse.ArgumentParser) -> None:
        func(parser)
        parser.set_defaults(prog_command=name)

    return register_it


REGISTER = {
    "from": _register_from,
    "run": _register_run,
    "copy": _with_command("copy", _register_copy),
    "add": _with_command("add", _register_copy),
    "config": _register_config,
    "mount": _register_mount,
    "umount": _register_umount,
    "unmount": _register_umount,
    "commit": _register_commit,
    "containers": _register_containers,
    "ls": _register_containers,
    "list": _register_containers,
    "rm": _register_rm,
    "delete": _register_rm,
    "inspect": _register_inspect,
}
