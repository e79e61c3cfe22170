"""Replacing a small file so that no reader ever sees half of it.

The runtime writes many files that another process reads at any moment:
a container's config.json (the OCI runtime), its /etc/hosts and friends
(bind-mounted into the container), conmon's exec process file, caches,
address leases. Each is written under a temporary name in the same
directory and renamed over the old one. No fsync: these files are written
again whenever they are needed, so nothing depends on them surviving a
crash, and an fsync on every ``run`` costs more than the file is worth.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def replace_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Put ``data`` at ``path`` atomically (``mode`` before the umask)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
