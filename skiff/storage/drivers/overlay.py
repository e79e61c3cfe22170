"""The overlay driver: kernel overlayfs over per-layer diff directories.

Layout under ``home`` (containers/storage's):

    <id>/diff      the layer's own changes (whiteouts as char 0/0 devices,
                   opaque directories marked trusted.overlay.opaque=y)
    <id>/link      the layer's short link name
    <id>/lower     its parents' links, nearest first: "l/AB…:l/CD…"
    <id>/work      overlayfs work dir (writable layers)
    <id>/merged    mount point
    l/<LINK>       symlink → ../<id>/diff
    empty/         an empty lower for images with a single layer

Mount options name lower dirs through the short ``l/`` links, relative to
``home`` (the mount call runs with ``home`` as working directory), so that a
100-layer image stays well under the kernel's one-page limit on options.
"""

from __future__ import annotations

import base64
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import StorageError
from skiff.storage import mount as mnt

if TYPE_CHECKING:
    # the type only: importing the archive package costs every command ~10 ms
    from skiff.storage.archive.apply import WhiteoutFormat

LINK_DIR = "l"
MAX_OPTIONS = 4000
_cwd_lock = threading.Lock()


def new_link_name() -> str:
    return base64.b32encode(os.urandom(16)).decode().rstrip("=")[:26]


def overlay_supported(root: Path) -> bool:
    """Try a real overlay mount under ``root`` (the only reliable test)."""
    # per thread too: threads of one process may open stores at once
    probe = root / f".overlay-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        for sub in ("lower1", "lower2", "upper", "work", "merged"):
            (probe / sub).mkdir(parents=True, exist_ok=True)
        mnt.mount(
            "overlay",
            probe / "merged",
            "overlay",
            0,
            f"lowerdir={probe}/lower1:{probe}/lower2,upperdir={probe}/upper,workdir={probe}/work",
        )
    except (StorageError, OSError):
        return False
    else:
        mnt.unmount(probe / "merged")
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


class OverlayDriver:
    name = "overlay"

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / LINK_DIR).mkdir(parents=True, exist_ok=True)
        (home / "empty").mkdir(exist_ok=True)

    @property
    def whiteout_format(self) -> WhiteoutFormat:
        return "overlay"

    @property
    def apply_needs_parent(self) -> bool:
        return False

    def layer_dir(self, layer_id: str) -> Path:
        return self.home / layer_id / "diff"

    def mount_point(self, layer_id: str) -> Path:
        return self.home / layer_id / "merged"

    def prepare_staging(self, staging: Path, parent_id: str | None) -> Path:
        target = staging / "diff"
        target.mkdir(mode=0o755)
        return target

    def _install(self, layer_id: str, built: Path, parent_chain: list[str]) -> str:
        """Finish a layer dir in ``built`` (diff already there) and move it into place."""
        link = new_link_name()
        (built / "work").mkdir(exist_ok=True)
        (built / "merged").mkdir(exist_ok=True)
        (built / "link").write_text(link)
        if parent_chain:
            (built / "lower").write_text(":".join(f"{LINK_DIR}/{p}" for p in parent_chain))
        final = self.home / layer_id
        os.rename(built, final)
        link_path = self.home / LINK_DIR / link
        tmp_link = link_path.with_name(link + ".tmp")
        os.symlink(f"../{layer_id}/diff", tmp_link)
        os.rename(tmp_link, link_path)
        return link

    def adopt(
        self, layer_id: str, staging: Path, parent_id: str | None, parent_chain: list[str]
    ) -> str:
        return self._install(layer_id, staging, parent_chain)

    def create_empty(self, layer_id: str, parent_id: str | None, parent_chain: list[str]) -> str:
        built = self.home / f"{layer_id}.creating"
        shutil.rmtree(built, ignore_errors=True)
        (built / "diff").mkdir(parents=True, mode=0o755)
        return self._install(layer_id, built, parent_chain)

    def remove(self, layer_id: str) -> None:
        layer = self.home / layer_id
        try:
            link = (layer / "link").read_text().strip()
        except OSError:
            link = ""
        if link:
            try:
                (self.home / LINK_DIR / link).unlink()
            except FileNotFoundError:
                pass
        if layer.exists():
            if mnt.is_mounted(layer / "merged"):
                mnt.unmount(layer / "merged", detach=True)
            trash = self.home / f"{layer_id}.removing"
            os.rename(layer, trash)
            shutil.rmtree(trash)

    def link_of(self, layer_id: str) -> str:
        try:
            return (self.home / layer_id / "link").read_text().strip()
        except OSError as exc:
            raise StorageError(
                f"layer {layer_id} has no link file in {self.home}",
                "run 'skiff system check --repair'",
            ) from exc

    def mount(
        self, layer_id: str, chain: list[str], writable: bool, options: list[str] | None = None
    ) -> Path:
        """Mount ``layer_id`` over ``chain`` (parents' link names, nearest first).

        Writable: the layer's diff is the upper dir. Read-only: the layer is
        the top lower dir (with ``empty/`` as a second lower when it is alone).
        """
        target = self.mount_point(layer_id)
        target.mkdir(exist_ok=True)
        if writable:
            lowers = [f"{LINK_DIR}/{link}" for link in chain] or ["empty"]
            data = f"lowerdir={':'.join(lowers)},upperdir={layer_id}/diff,workdir={layer_id}/work"
        else:
            lowers = [f"{LINK_DIR}/{self.link_of(layer_id)}"] + [
                f"{LINK_DIR}/{link}" for link in chain
            ]
            if len(lowers) == 1:
                lowers.append("empty")
            data = f"lowerdir={':'.join(lowers)}"
        extra = ["index=off", *(options or [])]
        data = ",".join([data, *extra])
        if len(data) > MAX_OPTIONS:
            raise StorageError(
                f"overlay mount options for layer {layer_id} are {len(data)} bytes, above the kernel limit",
                "the image has too many layers for a single overlay mount; squash it",
            )
        with _cwd_lock:
            saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.chdir(self.home)
                mnt.mount(
                    "overlay",
                    f"{layer_id}/merged",
                    "overlay",
                    0 if writable else mnt.MS_RDONLY,
                    data,
                )
            finally:
                os.fchdir(saved)
                os.close(saved)
        return target

    def unmount(self, layer_id: str) -> None:
        target = self.mount_point(layer_id)
        if mnt.is_mounted(target):
            mnt.unmount(target)
