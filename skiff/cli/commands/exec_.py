"""``skiff exec`` (podman exec): run a process in a running container."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-d", "--detach", action="store_true", help="run in the background, print the session ID"
    )
    parser.add_argument("--detach-keys", help="key sequence for detaching (default ctrl-p,ctrl-q)")
    parser.add_argument(
        "-e", "--env", action="append", default=[], metavar="KEY[=VALUE]", help="set variables"
    )
    parser.add_argument(
        "--env-file", action="append", default=[], metavar="FILE", help="read variables from FILE"
    )
    parser.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    parser.add_argument("-l", "--latest", action="store_true", help="the latest container")
    parser.add_argument("--privileged", action="store_true", help="give extended privileges")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    parser.add_argument("-u", "--user", help="user (name or uid, [:group]) to run as")
    parser.add_argument("-w", "--workdir", help="working directory inside the container")
    parser.add_argument("container", metavar="CONTAINER", nargs="?", help="container name or ID")
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="COMMAND", help="command and args"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import container_or_latest, open_runtime
    from skiff.runtime.attach import DEFAULT_DETACH_KEYS, parse_detach_keys
    from skiff.runtime.exec import ExecOptions, ExecStreams, exec_in
    from skiff.runtime.specgen import env as envmod

    command = list(args.command)
    if args.latest and args.container is not None:
        command.insert(0, args.container)
        args.container = None
    if command and command[0] == "--":
        command = command[1:]
    if args.container is None and not args.latest:
        raise UsageError("exec requires the name or ID of a container or the --latest flag")
    caller_env = dict(os.environ)
    env: dict[str, str] = {}
    for path in args.env_file:
        env.update(envmod.read_env_file(Path(path), caller_env))
    env.update(envmod.parse_env(args.env, caller_env))
    opts = ExecOptions(
        command=command,
        env=env,
        user=args.user,
        workdir=args.workdir or "",
        tty=args.tty,
        interactive=args.interactive,
        privileged=args.privileged,
        detach=args.detach,
        detach_keys=parse_detach_keys(args.detach_keys)
        if args.detach_keys is not None
        else DEFAULT_DETACH_KEYS,
        console_size=_console_size() if args.tty else None,
    )
    rt = open_runtime(args)
    try:
        container = container_or_latest(rt, args.container, args.latest, "exec")
        result = exec_in(
            rt,
            container,
            opts,
            ExecStreams(stdin=sys.stdin.buffer, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer),
        )
        if result.detached:
            if args.detach:
                print(result.session_id)
            return 0
        return result.exit_code if result.exit_code is not None else 0
    finally:
        rt.close()


def _console_size() -> tuple[int, int] | None:
    from skiff.runtime.attach import terminal_size

    return terminal_size(sys.stdin.fileno(), sys.stdout.fileno())
