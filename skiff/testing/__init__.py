"""Fixtures and helpers for skiff's tests and benchmarks — never for skiff itself.

Non-test code must not import this package: it starts servers, writes
throw-away keys and trusts a test CA.

    registry     real Distribution registries (plain, TLS, basic auth, token auth)
    tokenserver  the Docker token service the token-auth registry trusts
    tlsutil      the per-session test CA, certificates, loopback HTTP(S) servers
    faultproxy   a reverse proxy that injects errors, truncation, corruption, delays
    busybox      deterministic busybox OCI layouts built from /bin/busybox

``shm_tempdir`` is here because every fixture wants its files on tmpfs.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SHM = Path("/dev/shm")


def shm_base() -> Path | None:
    """/dev/shm when it is a writable directory, else None (the system temp dir)."""
    return SHM if SHM.is_dir() and _writable(SHM) else None


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK | os.X_OK)


@contextmanager
def shm_tempdir(prefix: str = "skiff-test-") -> Iterator[Path]:
    """A fresh directory on tmpfs, removed (with everything in it) on exit.

    Unpacking images and registry storage are I/O heavy; tmpfs keeps tests
    fast and leaves nothing on disk if a run is killed before teardown
    (tmpfs is emptied at reboot).
    """
    path = _make_dir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _make_dir(prefix: str) -> Path:
    """A new directory named ``prefix`` + 8 hex digits, mode 0700.

    Not ``tempfile.mkdtemp``: its names may end in ``_`` (``skiff-test-ab_``),
    and tools that name an image after its path (podman's ``oci:DIR``) refuse
    such a path as a reference, which made tests fail by the luck of the name.
    """
    import secrets

    base = shm_base() or Path(tempfile.gettempdir())
    while True:
        path = base / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir(0o700)
        except FileExistsError:
            continue
        return path
