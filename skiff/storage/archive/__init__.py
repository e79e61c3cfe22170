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
- ``tarsplit``: a tar's framing kept at extraction, to rebuild the same tar

Note: the package attribute ``apply`` is the function (``from
skiff.storage.archive import apply; apply(stream, layer_dir)``), which
shadows the submodule of the same name; import types from the submodule by
its full name (``from skiff.storage.archive.apply import ApplyResult``).
"""

from __future__ import annotations

from skiff.storage.archive.apply import ApplyResult, WhiteoutFormat, apply
from skiff.storage.archive.decompress import detect_compression
from skiff.storage.archive.diff import Change, changes, diff, tar_directory, write_tar
from skiff.storage.archive.tarsplit import LayerTarReader, iter_layer_tar, open_layer_tar

__all__ = [
    "ApplyResult",
    "Change",
    "LayerTarReader",
    "WhiteoutFormat",
    "apply",
    "changes",
    "detect_compression",
    "diff",
    "iter_layer_tar",
    "open_layer_tar",
    "tar_directory",
    "write_tar",
]
