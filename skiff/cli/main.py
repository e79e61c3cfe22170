"""The ``skiff`` entry point: global flags, the lazy command table, exit codes.

Start-up time matters (skiff is started for every command), so this module
imports only argparse and the command table; a command's module is imported
only when that command runs. This is also the one place where exceptions
become messages and exit codes (see ``skiff.errors``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import NoReturn

from skiff import __version__, codecache
from skiff.errors import SkiffError, UsageError

codecache.install()  # before any dataclass is defined (see skiff.codecache)


class Cmd:
    """A command implemented by ``module.register(parser)``.

    Plain classes, not dataclasses: this module is imported by every
    command, and generating a dataclass's methods costs ~0.5 ms each."""

    __slots__ = ("aliases", "help", "module")

    def __init__(self, module: str, help: str, aliases: tuple[str, ...] = ()) -> None:
        self.module = module
        self.help = help
        self.aliases = aliases


class Group:
    """A command group (``skiff image …``) whose subcommands load lazily."""

    __slots__ = ("aliases", "commands", "help")

    def __init__(
        self,
        help: str,
        commands: dict[str, Cmd | Group],
        aliases: tuple[str, ...] = (),
    ) -> None:
        self.help = help
        self.commands = commands
        self.aliases = aliases


def _c(name: str, help_text: str, *aliases: str) -> Cmd:
    return Cmd(f"skiff.cli.commands.{name}", help_text, aliases)


IMAGE_COMMANDS: dict[str, Cmd | Group] = {
    "build": _c("build", "Build an image from a Containerfile"),
    "copy": _c("image_copy", "Copy an image from one location to another", "cp"),
    "inspect": _c("image_inspect", "Inspect an image (local, or TRANSPORT:REF like skopeo)"),
    "ls": _c("images", "List images in local storage", "list"),
    "rm": _c("rmi", "Remove images from local storage", "remove"),
    "tag": _c("tag", "Add names to a local image"),
    "untag": _c("untag", "Remove names from a local image"),
    "history": _c("history", "Show the history of an image"),
    "prune": _c("image_prune", "Remove unused images"),
    "mount": _c("mount", "Mount an image's root file system"),
    "unmount": _c("umount", "Unmount an image's root file system", "umount"),
    "exists": _c("images", "Exit 0 if an image exists locally, 1 if not"),
    "tree": _c("images", "Show an image's layers as a tree"),
    "diff": _c("diff", "Show what an image's top layer changed"),
    "list-tags": _c("image_list_tags", "List the tags of a repository in a registry"),
    "delete": _c("image_delete", "Delete an image from a registry or other transport"),
    "import": _c("import_", "Import a tarball to create a filesystem image"),
    "load": _c("load", "Load images from an archive"),
    "pull": _c("pull", "Pull an image from a registry"),
    "push": _c("push", "Push an image to a registry or other destination"),
    "save": _c("save", "Save images to an archive"),
    "sign": _c("image_sign", "Sign images (GPG simple signing) where they are stored"),
    "standalone-sign": _c("image_standalone", "Sign a manifest file with a GPG key (skopeo's)"),
    "standalone-verify": _c("image_standalone", "Verify a signature of a manifest file"),
    "trust": Group(
        "Show or change the trust policy (policy.json)",
        {
            "show": _c("image_trust", "Show the trust policy"),
            "set": _c("image_trust", "Set the trust policy of a scope"),
        },
    ),
    "generate-sigstore-key": _c("image_sigstore_key", "Generate a sigstore key pair"),
}

NETWORK_COMMANDS: dict[str, Cmd | Group] = {
    "create": _c("network", "Create a network"),
    "ls": _c("network", "List networks", "list"),
    "inspect": _c("network", "Show the configuration of networks"),
    "rm": _c("network", "Remove networks", "remove"),
    "prune": _c("network", "Remove networks no container uses"),
    "exists": _c("network", "Exit 0 if a network exists, 1 if not"),
    "connect": _c("network", "Connect a running container to a network"),
    "disconnect": _c("network", "Disconnect a container from a network"),
}

VOLUME_COMMANDS: dict[str, Cmd | Group] = {
    "create": _c("volume", "Create a volume"),
    "ls": _c("volume", "List volumes", "list"),
    "inspect": _c("volume", "Show the details of volumes"),
    "rm": _c("volume", "Remove volumes", "remove"),
    "prune": _c("volume", "Remove volumes no container uses"),
    "exists": _c("volume", "Exit 0 if a volume exists, 1 if not"),
    "mount": _c("volume", "Mount a volume and print its directory"),
    "unmount": _c("volume", "Unmount a volume", "umount"),
}

BUILDER_COMMANDS: dict[str, Cmd | Group] = {
    "from": _c("builder", "Create a working container from an image (or scratch)"),
    "run": _c("builder", "Run a command in a working container"),
    "copy": _c("builder", "Copy files into a working container"),
    "add": _c("builder", "Add files, archives and URLs to a working container"),
    "config": _c("builder", "Change the image configuration of a working container"),
    "mount": _c("builder", "Mount a working container's root file system"),
    "umount": _c("builder", "Unmount working containers", "unmount"),
    "commit": _c("builder", "Create an image from a working container"),
    "containers": _c("builder", "List working containers", "ls", "list"),
    "rm": _c("builder", "Remove working containers", "delete"),
    "inspect": _c("builder", "Show a working container's configuration"),
}

CONTAINER_COMMANDS: dict[str, Cmd | Group] = {
    "attach": _c("attach", "Attach to a running container"),
    "exec": _c("exec_", "Run a process in a running container"),
    "exists": _c("container_exists", "Exit 0 if a container exists, 1 if not"),
    "inspect": _c("container_inspect", "Display the configuration of containers"),
    "port": _c("port", "List port mappings of containers"),
    "prune": _c("container_prune", "Remove all containers that are not running"),
    "rename": _c("rename", "Rename a container"),
    "stats": _c("stats", "Display the resource usage of containers"),
    "top": _c("top", "Display the processes of a container"),
    "update": _c("update", "Change the resource limits of a container"),
    "cleanup": _c(
        "container_basic", "Clean up a container after it exited (conmon's exit command)"
    ),
    "create": _c("create", "Create but do not start a container"),
    "diff": _c("diff", "Show the changes of a container's file system"),
    "export": _c("export", "Export a container's file system as a tar archive"),
    "mount": _c("mount", "Mount a container's root file system"),
    "unmount": _c("umount", "Unmount a container's root file system", "umount"),
    "commit": _c("commit", "Create new image based on the changed container"),
    "cp": _c("cp", "Copy files/folders between a container and the local filesystem"),
    "init": _c(
        "container_basic", "Initialize containers (create them in the runtime, do not start)"
    ),
    "kill": _c("container_basic", "Kill running containers with a signal"),
    "logs": _c("logs", "Fetch the logs of containers"),
    "ls": _c("ps", "List containers", "list", "ps"),
    "pause": _c("container_basic", "Pause containers"),
    "restart": _c("container_basic", "Restart containers"),
    "rm": _c("rm", "Remove containers", "remove"),
    "run": _c("run", "Run a command in a new container"),
    "start": _c("container_basic", "Start containers"),
    "stop": _c("container_basic", "Stop containers"),
    "unpause": _c("container_basic", "Unpause containers"),
    "wait": _c("container_basic", "Wait for containers to exit and print their exit codes"),
}

POD_COMMANDS: dict[str, Cmd | Group] = {
    "create": _c("pod", "Create a new empty pod"),
    "exists": _c("pod", "Exit 0 if a pod exists, 1 if not"),
    "inspect": _c("pod", "Display the configuration of pods"),
    "kill": _c("pod", "Send a signal to the containers of pods"),
    "pause": _c("pod", "Pause the containers of pods"),
    "prune": _c("pod", "Remove all stopped pods and their containers"),
    "ps": _c("pod", "List pods", "ls", "list"),
    "restart": _c("pod", "Restart pods"),
    "rm": _c("pod", "Remove pods and their containers", "remove"),
    "start": _c("pod", "Start pods"),
    "stats": _c("pod", "Display the resource usage of the containers of pods"),
    "stop": _c("pod", "Stop pods"),
    "top": _c("pod", "Display the processes of the containers of a pod"),
    "unpause": _c("pod", "Unpause the containers of pods"),
}

KUBE_COMMANDS: dict[str, Cmd | Group] = {
    "play": _c("kube", "Create pods and containers from Kubernetes YAML"),
    "down": _c("kube", "Remove the pods a Kubernetes YAML file created"),
    "generate": _c("kube", "Generate Kubernetes YAML from pods or containers"),
}

SYSTEM_COMMANDS: dict[str, Cmd | Group] = {
    "check": _c("system", "Check the store for inconsistencies (--repair fixes them)"),
    "df": _c("system", "Show disk usage by images, containers and volumes"),
    "info": _c("system", "Display skiff system information"),
    "prune": _c("system", "Remove unused data (images)"),
}

CRI_COMMANDS: dict[str, Cmd | Group] = {
    "serve": _c("cri", "Serve the Kubernetes CRI (RuntimeService, ImageService) on a socket"),
}

SYSTEM_CONTAINER_COMMANDS: dict[str, Cmd | Group] = {
    "install": _c("system_container", "Install an image as a systemd service"),
    "uninstall": _c("system_container", "Remove a system container, its unit and files"),
    "update": _c("system_container", "Pull the image again and switch to a new deployment"),
    "rollback": _c("system_container", "Switch back to the previous deployment"),
    "list": _c("system_container", "List system containers", "ls"),
    "inspect": _c("system_container", "Show a system container's record"),
}

COMMANDS: dict[str, Cmd | Group] = {
    "container": Group("Manage containers", CONTAINER_COMMANDS),
    "attach": _c("attach", "Attach to a running container"),
    "exec": _c("exec_", "Run a process in a running container"),
    "inspect": _c("container_inspect", "Display the configuration of containers, images, ..."),
    "port": _c("port", "List port mappings of containers"),
    "rename": _c("rename", "Rename a container"),
    "stats": _c("stats", "Display the resource usage of containers"),
    "top": _c("top", "Display the processes of a container"),
    "update": _c("update", "Change the resource limits of a container"),
    "create": _c("create", "Create but do not start a container"),
    "diff": _c("diff", "Show the changes of a container's or image's file system"),
    "export": _c("export", "Export a container's file system as a tar archive"),
    "history": _c("history", "Show the history of an image"),
    "images": _c("images", "List images in local storage"),
    "info": _c("info", "Display skiff system information"),
    "mount": _c("mount", "Mount a container's (or an image's) root file system"),
    "rmi": _c("rmi", "Remove images from local storage"),
    "system": Group("Manage skiff: disk usage, store checks, pruning", SYSTEM_COMMANDS),
    "tag": _c("tag", "Add names to a local image"),
    "umount": _c("umount", "Unmount a container's root file system", "unmount"),
    "untag": _c("untag", "Remove names from a local image"),
    "commit": _c("commit", "Create new image based on the changed container"),
    "cp": _c("cp", "Copy files/folders between a container and the local filesystem"),
    "init": _c("container_basic", "Initialize containers"),
    "kill": _c("container_basic", "Kill running containers with a signal"),
    "logs": _c("logs", "Fetch the logs of containers"),
    "pause": _c("container_basic", "Pause containers"),
    "ps": _c("ps", "List containers"),
    "restart": _c("container_basic", "Restart containers"),
    "rm": _c("rm", "Remove containers"),
    "run": _c("run", "Run a command in a new container"),
    "start": _c("container_basic", "Start containers"),
    "stop": _c("container_basic", "Stop containers"),
    "unpause": _c("container_basic", "Unpause containers"),
    "wait": _c("container_basic", "Wait for containers to exit and print their exit codes"),
    "image": Group("Manage images", IMAGE_COMMANDS),
    "import": _c("import_", "Import a tarball to create a filesystem image"),
    "load": _c("load", "Load images from an archive"),
    "pull": _c("pull", "Pull an image from a registry"),
    "push": _c("push", "Push an image to a registry or other destination"),
    "save": _c("save", "Save images to an archive"),
    "network": Group("Manage networks", NETWORK_COMMANDS),
    "volume": Group("Manage volumes", VOLUME_COMMANDS),
    "pod": Group("Manage pods", POD_COMMANDS),
    "kube": Group("Play and generate Kubernetes YAML", KUBE_COMMANDS),
    "cri": Group("Kubernetes Container Runtime Interface server", CRI_COMMANDS),
    "system-container": Group(
        "Install images as systemd services (atomic install --system)", SYSTEM_CONTAINER_COMMANDS
    ),
    "build": _c("build", "Build an image from a Containerfile", "bud"),
    "builder": Group("Build images in working containers (buildah's verbs)", BUILDER_COMMANDS),
    "from": _c("builder", "Create a working container from an image (builder from)"),
    "login": _c("login", "Log in to a container registry"),
    "logout": _c("logout", "Log out of a container registry"),
    "version": _c("version", "Show version information"),
}

LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}

log = logging.getLogger("skiff")


class Parser(argparse.ArgumentParser):
    """argparse with podman's exit code (125) for usage errors, no SystemExit(2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", f"see '{self.prog} --help'")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse checks every argument through a new formatter, which asks
        # for the terminal's size each time (~90 times for ``run``): ask once
        formatter: argparse.HelpFormatter = self.formatter_class(  # type: ignore[call-arg]
            prog=self.prog, width=_help_width()
        )
        return formatter


@functools.cache
def _help_width() -> int:
    """The width argparse's formatters use: the terminal's, less 2."""
    import shutil

    return shutil.get_terminal_size().columns - 2


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--version", action="version", version=f"skiff version {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SKIFF_LOG_LEVEL", "warn"),
        choices=sorted(LOG_LEVELS),
        help="log messages at and above this level (default: warn)",
    )
    parser.add_argument("--root", type=Path, help="storage root directory")
    parser.add_argument("--runroot", type=Path, help="storage state (run) directory")
    parser.add_argument("--storage-driver", help="storage driver (overlay, vfs)")
    parser.add_argument("--registries-conf", type=Path, help="path to registries.conf")
    parser.add_argument(
        "--policy",
        "--signature-policy",
        dest="policy",
        type=Path,
        help="path to the trust policy (policy.json)",
    )
    parser.add_argument(
        "--insecure-policy", action="store_true", help="run without any policy check"
    )
    parser.add_argument(
        "--registries.d",
        dest="registries_d",
        type=Path,
        help="directory with the lookaside (registries.d) configuration",
    )
    parser.add_argument("--tmpdir", type=Path, help="directory for temporary files")


def _command_word(argv: Sequence[str], parser: argparse.ArgumentParser) -> str | None:
    """The first positional word of argv, skipping global options and their values."""
    takes_value = {
        opt
        for action in parser._actions
        if action.nargs != 0 and action.option_strings
        for opt in action.option_strings
    }
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word == "--":
            return None
        if word.startswith("-"):
            if "=" not in word and word in takes_value:
                skip = True
            continue
        return word
    return None


def _add_commands(
    subparsers: argparse._SubParsersAction[Parser],
    table: dict[str, Cmd | Group],
    argv: list[str],
    prefix: str,
) -> None:
    """Add the commands of ``table``; import the module only of the one chosen.

    When argv names one of them, only that one is added: building a
    subparser per command (over a hundred) cost ~60 ms of every start, in
    argparse's gettext lookups. Without a known command word all are added,
    for the help text and the "invalid choice" error.
    """
    chosen = argv[0] if argv else None
    known = chosen is not None and any(
        chosen == name or chosen in entry.aliases for name, entry in table.items()
    )
    for name, entry in table.items():
        if known and not (chosen == name or chosen in entry.aliases):
            continue
        sub = subparsers.add_parser(
            name,
            help=entry.help,
            aliases=list(entry.aliases),
            description=entry.help,
            conflict_handler="resolve",  # lets run/create take -h for --hostname, as podman
        )
        selected = chosen == name or chosen in entry.aliases
        if isinstance(entry, Group):
            sub.set_defaults(group_parser=sub)
            nested = sub.add_subparsers(dest=f"{prefix}{name}_command", metavar="COMMAND")
            rest = _positionals_after(argv[1:]) if selected else []
            _add_commands(nested, entry.commands, rest, f"{prefix}{name}_")
        elif selected:
            import_module(entry.module).register(sub)


def _positionals_after(argv: list[str]) -> list[str]:
    """argv from the first word that is not an option (a subcommand's name)."""
    for index, word in enumerate(argv):
        if not word.startswith("-"):
            return argv[index:]
    return []


def build_parser(argv: Sequence[str]) -> Parser:
    parser = Parser(
        prog="skiff",
        description="skiff: manage images, containers, pods and builds without a daemon",
    )
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    word = _command_word(argv, parser)
    rest: list[str] = []
    if word is not None:
        rest = list(argv[list(argv).index(word) :])
    _add_commands(subparsers, COMMANDS, rest, "")
    return parser


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s[%(name)s] %(message)s"))
    root = logging.getLogger("skiff")
    root.handlers[:] = [handler]
    root.setLevel(LOG_LEVELS[level])
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = False
    try:
        parser = build_parser(args_list)
        args = parser.parse_args(args_list)
        configure_logging(args.log_level)
        debug = args.log_level in ("debug", "trace")
        func = getattr(args, "func", None)
        if func is None:
            group_parser = getattr(args, "group_parser", None)
            (group_parser or parser).print_help()
            return 0 if group_parser is None else 125
        return int(func(args) or 0)
    except SkiffError as exc:
        _print_error(str(exc))
        if debug:
            import traceback

            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except BrokenPipeError:
        # the reader of our output went away (| head): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the closed stdout
        except OSError:
            pass
        return 0
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:
        _print_error(f"internal error: {type(exc).__name__}: {exc}")
        if debug:
            import traceback

            traceback.print_exc()
        else:
            print("(run with --log-level=debug for the traceback)", file=sys.stderr)
        return 125


def _print_error(message: str) -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(f"Error: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
