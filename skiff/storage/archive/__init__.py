"""Layer tars: extract (``apply``), produce (``diff``, ``tar_directory``),
and list changes (``changes``), with overlay or vfs whiteouts.

The public API is re-exported here; the modules are:

- ``decompress``: gzip/zstd/plain detection and the reader thread
- ``tarheader``: header parsing (ustar, GNU, PAX) and the member iterator
- ``tarwriter``: header encoding (ustar + PAX)
- ``dirfds``: symlink-proof directory resolution with an fd cache
- ``whiteouts``: whiteout names and overlay on-disk primitives
- ``apply``: the extractor
- ``diff``: the differ and the directory tar writer
"""

from __future__ import annotations

from skiff.storage.archive.apply import ApplyResult, WhiteoutFormat, apply
from skiff.storage.archive.decompress import detect_compression
from skiff.storage.archive.diff import Change, changes, diff, tar_directory, write_tar

__all__ = [
    "ApplyResult",
    "Change",
    "WhiteoutFormat",
    "apply",
    "changes",
    "detect_compression",
    "diff",
    "tar_directory",
    "write_tar",
]
