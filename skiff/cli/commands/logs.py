"""``skiff logs`` (podman logs): a container's output, from its k8s-file log."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="follow log output")
    parser.add_argument(
        "--since", help="show logs since TIMESTAMP (RFC 3339, date, seconds, or 10m)"
    )
    parser.add_argument("--until", help="show logs until TIMESTAMP")
    parser.add_argument("--tail", type=int, default=-1, help="output the last N lines (-1: all)")
    parser.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    parser.add_argument(
        "-n", "--names", action="store_true", help="prefix lines with the container name"
    )
    parser.add_argument("-l", "--latest", action="store_true", help="the latest container")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from skiff.cli.runtimecli import open_runtime
    from skiff.runtime import lifecycle
    from skiff.runtime.logs import parse_time_filter, read_logs
    from skiff.runtime.records import Status

    rt = open_runtime(args)
    try:
        if args.latest:
            everything = rt.records.all()
            targets = everything[-1:]
        elif not args.containers:
            raise UsageError("logs: you must provide at least one container name or ID")
        else:
            targets = [rt.records.get(ref) for ref in args.containers]
        since = parse_time_filter(args.since) if args.since else None
        until = parse_time_filter(args.until) if args.until else None
        out = sys.stdout.buffer
        err = sys.stderr.buffer  # lines the container wrote to stderr go there, as podman's
        for container in targets:
            if container.config.log_driver == "none":
                raise UsageError(
                    f"container {container.name} was created with --log-driver none: no logs"
                )

            def running(c: Any = container) -> bool:
                with rt.lock(c.id):
                    current = lifecycle.sync(rt, rt.records.reload(c))
                return current.state.status in (Status.RUNNING, Status.PAUSED, Status.INITIALIZED)

            prefix = f"{container.name} ".encode() if args.names or len(targets) > 1 else b""
            for line in read_logs(
                Path(container.config.log_path),
                since=since,
                until=until,
                tail=None if args.tail < 0 else args.tail,
                follow=args.follow,
                timestamps=args.timestamps,
                is_running=running,
            ):
                stream = err if line.stream == "stderr" else out
                if stream is err:
                    out.flush()
                stream.write(prefix + line.render())
                if args.follow or stream is err:
                    stream.flush()
        out.flush()
        return 0
    finally:
        rt.close()
