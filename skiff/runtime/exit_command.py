"""conmon's exit command, in front of ``skiff container cleanup``.

conmon runs its exit command once the container's process ended, as a new
process: a second Python start-up, importing the store and the lifecycle
code (~100 ms of CPU) only to learn, most of the time, that there is
nothing left to do — a foreground ``skiff run`` cleans up (and with
``--rm`` removes) the container itself. So the exit command is this file,
run as a script with nothing but the standard library (``python -I -S``
starts in ~8 ms)::

    python -I -S exit_command.py CONTAINER_DIR PROGRAM [ARG...]

If ``CONTAINER_DIR`` (the container's directory in the store,
ROOT/containers/ID) is gone, the container was removed — nothing to record,
nothing to release: exit at once. That is also what keeps a late exit
command from creating a store again under a root that was deleted. Else it
execs ``PROGRAM ARG...`` (``skiff ... container cleanup ID``), which does
the work under the container's lock.

Keep this file free of imports from skiff: it runs without site-packages.
"""

from __future__ import annotations

import os
import sys

USAGE = "usage: exit_command.py CONTAINER_DIR PROGRAM [ARG...]"


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(USAGE, file=sys.stderr)
        return 2
    container_dir, program = argv[1], argv[2]
    if not os.path.isdir(container_dir):
        return 0
    try:
        os.execv(program, argv[2:])  # noqa: S606 - a fixed argv from skiff, no shell
    except OSError as exc:
        print(f"skiff exit command: cannot run {program}: {exc.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
