"""``start``, ``stop``, ``kill``, ``restart``, ``pause``, ``unpause``, ``init``,
``wait`` and ``container cleanup``: each acts on named containers and prints
their names or IDs as podman does."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from skiff.errors import SkiffError, UsageError


def _command(parser: argparse.ArgumentParser) -> str:
    return parser.prog.split()[-1]


def register(parser: argparse.ArgumentParser) -> None:
    cmd = _command(parser)
    parser.set_defaults(func=run, basic_command=cmd)
    if cmd != "cleanup":
        parser.add_argument("-a", "--all", action="store_true", help="act on all containers")
        parser.add_argument(
            "-l", "--latest", action="store_true", help="act on the latest container"
        )
    if cmd in ("stop", "restart"):
        parser.add_argument("-t", "--time", type=int, help="seconds to wait before killing")
        parser.add_argument("-i", "--ignore", action="store_true", help="ignore unknown containers")
    if cmd == "kill":
        parser.add_argument("-s", "--signal", default="KILL", help="signal to send (default KILL)")
    if cmd == "start":
        parser.add_argument("-a", "--attach", action="store_true", help="attach STDOUT/STDERR")
        parser.add_argument("-i", "--interactive", action="store_true", help="attach STDIN")
        parser.add_argument("--detach-keys", help="key sequence for detaching")
        parser.add_argument("--sig-proxy", action="store_true", default=None, help="proxy signals")
    if cmd == "wait":
        parser.add_argument(
            "--condition",
            action="append",
            default=[],
            help="condition to wait on (stopped, exited, running)",
        )
        parser.add_argument("-i", "--interval", default="250ms", help="poll interval (accepted)")
        parser.add_argument("--ignore", action="store_true", help="ignore unknown containers")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")


def _targets(rt: Any, args: argparse.Namespace) -> list[Any]:
    if getattr(args, "all", False):
        return list(rt.records.all())
    if getattr(args, "latest", False):
        all_containers = list(rt.records.all())
        return all_containers[-1:]
    if not args.containers:
        raise UsageError(
            f"{args.basic_command}: you must provide at least one container name or ID"
        )
    return list(args.containers)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.runtimecli import open_runtime

    cmd = args.basic_command
    rt = open_runtime(args)
    try:
        if cmd == "cleanup":
            # conmon's exit command: after a foreground run the client has
            # usually removed the container already; finding that out must
            # not cost the import of the whole lifecycle
            refs = [ref for ref in args.containers if rt.records.find(ref) is not None]
            if refs:
                from skiff.runtime import lifecycle

                for ref in refs:
                    lifecycle.cleanup(rt, ref)
            return 0
        from skiff.runtime import lifecycle
        from skiff.runtime.specgen.generator import parse_signal

        if cmd == "start" and (args.attach or args.interactive):
            return _start_attached(rt, args)
        if cmd == "wait":
            return _wait(rt, args)
        last: SkiffError | None = None
        for target in _targets(rt, args):
            try:
                container = rt.records.get(target) if isinstance(target, str) else target
                if cmd == "start":
                    lifecycle.start(rt, container)
                elif cmd == "stop":
                    lifecycle.stop(rt, container, args.time)
                elif cmd == "restart":
                    lifecycle.restart(rt, container, args.time)
                elif cmd == "kill":
                    lifecycle.kill(rt, container, parse_signal(args.signal))
                elif cmd == "pause":
                    lifecycle.pause(rt, container)
                elif cmd == "unpause":
                    lifecycle.unpause(rt, container)
                elif cmd == "init":
                    lifecycle.init(rt, container)
                print(target if isinstance(target, str) else container.id)
            except SkiffError as exc:
                if getattr(args, "ignore", False) and "no such container" in str(exc):
                    continue
                last = exc
                print(f"Error: {exc}", file=sys.stderr)
        if last is not None:
            return last.exit_code
        return 0
    finally:
        rt.close()


def _start_attached(rt: Any, args: argparse.Namespace) -> int:
    from skiff.runtime import lifecycle
    from skiff.runtime.attach import DEFAULT_DETACH_KEYS, parse_detach_keys
    from skiff.runtime.run import Streams, attach_and_start, finish_foreground, proxy_signals

    if len(args.containers) != 1:
        raise UsageError("you cannot start and attach multiple containers at once")
    container = rt.records.get(args.containers[0])
    streams = Streams(
        stdin=sys.stdin.buffer if args.interactive else None,
        stdout=sys.stdout.buffer,
        stderr=sys.stderr.buffer,
        detach_keys=parse_detach_keys(args.detach_keys)
        if args.detach_keys
        else DEFAULT_DETACH_KEYS,
    )
    outcome: list[Any] = []

    def attach_cb(start_fn: Any) -> Any:
        result = attach_and_start(rt, container, streams)(start_fn)
        outcome.append(result)
        return result

    with proxy_signals(rt, container.id, args.sig_proxy is not False and not container.config.tty):
        container = lifecycle.start(rt, container, attach=attach_cb)
        if outcome and getattr(outcome[0], "detached", False):
            return 0
        code = lifecycle.wait_for_exit(rt, container, None)
    result = finish_foreground(rt, container, code)
    return result.exit_code or 0


def _wait(rt: Any, args: argparse.Namespace) -> int:
    from skiff.runtime import lifecycle
    from skiff.runtime.records import Status

    conditions = set(args.condition) or {"stopped"}
    for target in _targets(rt, args):
        try:
            container = rt.records.get(target) if isinstance(target, str) else target
        except SkiffError:
            if args.ignore:
                print("-1")
                continue
            raise
        if "running" in conditions:
            with rt.lock(container.id):
                container = lifecycle.sync(rt, container)
            if container.state.status == Status.RUNNING:
                print(-1)
                continue
        with rt.lock(container.id):
            container = lifecycle.sync(rt, container)
        if container.state.status in (Status.RUNNING, Status.PAUSED, Status.INITIALIZED):
            exit_code = lifecycle.wait_for_exit(rt, container, None)
            with rt.lock(container.id):
                container = lifecycle.sync(rt, container)
        else:
            exit_code = container.state.exit_code
        print(exit_code if exit_code is not None else -1)
    return 0
