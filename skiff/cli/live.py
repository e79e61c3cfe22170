"""Reports printed again every interval: ``stats`` and ``pod stats``.

Both follow podman: ``--no-stream`` prints one report; otherwise a new one
comes every ``--interval`` seconds, the screen cleared before each unless
``--no-reset``, until ctrl-c ends it with exit 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from skiff.errors import UsageError

CLEAR_SCREEN = "\x1b[2J\x1b[H"


def check_interval(args: argparse.Namespace) -> None:
    if args.interval < 1:
        raise UsageError(f"invalid --interval {args.interval}", "give at least 1 second")


def print_reports(args: argparse.Namespace, report: Callable[[], str]) -> int:
    """Print ``report()`` as ``--no-stream``, ``--no-reset`` and ``--interval`` say."""
    try:
        while True:
            text = report()
            if not args.no_stream and not args.no_reset:
                sys.stdout.write(CLEAR_SCREEN)
            sys.stdout.write(text)
            sys.stdout.flush()
            if args.no_stream:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
