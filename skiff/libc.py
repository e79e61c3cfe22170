"""Opening the C library for the few calls Python's ``os`` lacks.

By its soname first: ``ctypes.util.find_library`` runs ``ldconfig -p`` (a
process, ~0.3 s here) and importing ``ctypes.util`` pulls in ``tempfile``
and ``random``; a short command must pay neither.
"""

from __future__ import annotations

import ctypes


def open_libc() -> ctypes.CDLL:
    """A new handle to libc with errno kept, so callers' argtypes stay their own."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("c") or "libc.so.6", use_errno=True)
