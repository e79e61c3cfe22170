"""Copy a directory tree with everything a layer holds: owners, modes,
xattrs, hardlinks, device nodes, symlinks, timestamps.

Used by the vfs driver (a child layer starts as a copy of its parent) and by
commit paths that duplicate a layer. ``shutil.copytree`` loses hardlinks,
device nodes and ownership, hence this module.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _copy_xattrs(src: str, dst: str, follow: bool) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=follow)
    except OSError:
        return
    for name in names:
        try:
            os.setxattr(
                dst, name, os.getxattr(src, name, follow_symlinks=follow), follow_symlinks=follow
            )
        except OSError:
            if name.startswith("security.") or name.startswith("trusted."):
                raise
            # user.* on file systems that do not take them: not layer content we promise


def _copy_file(src: str, dst: str, size: int) -> None:
    in_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        out_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            remaining = size
            while remaining > 0:
                try:
                    copied = os.copy_file_range(in_fd, out_fd, min(remaining, 1 << 30))
                except OSError:
                    copied = os.sendfile(out_fd, in_fd, None, min(remaining, 1 << 30))
                if copied == 0:
                    break
                remaining -= copied
        finally:
            os.close(out_fd)
    finally:
        os.close(in_fd)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` to the new directory ``dst`` (which must not exist)."""
    inodes: dict[tuple[int, int], str] = {}
    dir_times: list[tuple[str, os.stat_result]] = []

    def copy_entry(s: str, d: str, st: os.stat_result) -> None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            with os.scandir(s) as it:
                entries = list(it)
            for entry in entries:
                copy_entry(
                    entry.path, os.path.join(d, entry.name), entry.stat(follow_symlinks=False)
                )
            os.chown(d, st.st_uid, st.st_gid)
            os.chmod(d, stat.S_IMODE(mode))
            _copy_xattrs(s, d, True)
            dir_times.append((d, st))
            return
        if st.st_nlink > 1 and not stat.S_ISDIR(mode):
            key = (st.st_dev, st.st_ino)
            first = inodes.get(key)
            if first is not None:
                os.link(first, d, follow_symlinks=False)
                return
            inodes[key] = d
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
            os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
            _copy_xattrs(s, d, False)
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            return
        if stat.S_ISREG(mode):
            _copy_file(s, d, st.st_size)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            os.mknod(d, mode, st.st_rdev)
        os.chown(d, st.st_uid, st.st_gid)
        os.chmod(d, stat.S_IMODE(mode))
        _copy_xattrs(s, d, True)
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))

    copy_entry(str(src), str(dst), os.lstat(src))
    for d, st in reversed(dir_times):
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
