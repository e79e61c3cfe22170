"""A container's user mounts after volume names are resolved: host paths and
the OCI options podman writes for them.

podman 4 gives a volume mount the user's options first, then ``rw`` unless
``ro``, ``rprivate`` unless a propagation was given, ``nosuid`` and
``nodev`` unless their opposites were given, then ``rbind``:

    -v data:/srv           rw, rprivate, nosuid, nodev, rbind
    -v data:/srv:ro        ro, rprivate, nosuid, nodev, rbind
    -v data:/srv:noexec    noexec, rw, rprivate, nosuid, nodev, rbind

An image's ``VOLUME`` gets ``rprivate, rw, nodev, exec, nosuid, rbind``;
a bind mount ``rw, rprivate, rbind``. ``nocopy``/``copy``, ``U`` and
``z``/``Z`` steer skiff, not the runtime, and are left out of the OCI
options. (Compare a podman container's config.json; the integration tests
do.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from skiff.errors import StoreCorrupt

KIND_VOLUME = "volume"
KIND_BIND = "bind"
KIND_TMPFS = "tmpfs"
IMAGE_VOLUME_OPTIONS = ("rprivate", "rw", "nodev", "exec", "nosuid", "rbind")
IMAGE_TMPFS_OPTIONS = ("rprivate", "rw", "nodev", "exec")
_PROPAGATIONS = frozenset(
    {"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"}
)


@dataclass(frozen=True)
class ResolvedMount:
    """One user mount ready for the OCI spec.

    ``kind``: "volume" (``source`` is the volume's ``_data``), "bind" (a
    host path) or "tmpfs" (``source`` "tmpfs"). ``options``: the OCI
    options in podman's order. ``name``/``anonymous``: the volume's.
    ``copy_up``: fill the volume from the image (false for ``nocopy``);
    ``chown``: the ``U`` option.
    """

    kind: str
    destination: str
    source: str
    options: tuple[str, ...]
    name: str = ""
    anonymous: bool = False
    copy_up: bool = True
    chown: bool = False

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    @property
    def propagation(self) -> str:
        return next((o for o in self.options if o in _PROPAGATIONS), "")

    def oci(self) -> dict[str, Any]:
        """The entry of config.json's ``mounts``."""
        return {
            "destination": self.destination,
            "type": KIND_TMPFS if self.kind == KIND_TMPFS else "bind",
            "source": self.source,
            "options": list(self.options),
        }

    def with_access(self, mode: str) -> ResolvedMount:
        """The same mount forced read-only ("ro") or read-write ("rw")."""
        kept = [o for o in self.options if o not in ("ro", "rw")]
        return replace(self, options=(mode, *kept))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "destination": self.destination,
            "source": self.source,
            "options": list(self.options),
            "name": self.name,
            "anonymous": self.anonymous,
            "copy_up": self.copy_up,
            "chown": self.chown,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResolvedMount:
        try:
            return cls(
                kind=str(data["kind"]),
                destination=str(data["destination"]),
                source=str(data["source"]),
                options=tuple(str(o) for o in data["options"]),
                name=str(data.get("name", "")),
                anonymous=bool(data.get("anonymous", False)),
                copy_up=bool(data.get("copy_up", True)),
                chown=bool(data.get("chown", False)),
            )
        except (KeyError, TypeError) as exc:
            raise StoreCorrupt(f"a recorded volume mount is malformed: {data!r}") from exc


def volume_options(
    read_only: bool,
    propagation: str,
    flags: Iterable[str],
    *,
    bind: bool = False,
    recursive: bool = True,
) -> tuple[str, ...]:
    """podman's option list for a volume (or, with ``bind``, a bind) mount;
    ``recursive`` False ends it with ``bind`` instead of ``rbind``."""
    given = list(flags)
    out = [*given]
    if read_only:
        out.append("ro")
    if propagation:
        out.append(propagation)
    if not read_only:
        out.insert(len(given), "rw")
    if not propagation:
        out.insert(len(given) + 1, "rprivate")
    if not bind:
        if not {"nosuid", "suid"} & set(given):
            out.append("nosuid")
        if not {"nodev", "dev"} & set(given):
            out.append("nodev")
    return (*out, "rbind" if recursive else "bind")


def as_spec_mounts(resolved: Sequence[ResolvedMount]) -> tuple[list[Any], dict[str, Path]]:
    """The mounts as ``skiff.runtime.specgen`` takes them: (``StorageOptions.mounts``,
    the ``volumes`` name → path map of ``generate_spec``).

    Volume mounts come back as ``VolumeMount`` with podman's default flags
    (nosuid, nodev, exec) in ``flags``, so the generated options carry them.
    """
    from skiff.runtime.specgen.mounts import BindMount, TmpfsMount, VolumeMount

    mounts: list[Any] = []
    paths: dict[str, Path] = {}
    flag_words = {"nosuid", "suid", "nodev", "dev", "noexec", "exec"}
    for m in resolved:
        flags = tuple(o for o in m.options if o in flag_words)
        if m.kind == KIND_TMPFS:
            mounts.append(TmpfsMount(m.destination, m.options))
        elif m.kind == KIND_BIND:
            mounts.append(
                BindMount(
                    source=m.source,
                    destination=m.destination,
                    read_only=m.read_only,
                    recursive="bind" not in m.options,
                    propagation=m.propagation,
                    flags=flags,
                    chown=m.chown,
                    given_source=m.source,
                )
            )
        else:
            mounts.append(
                VolumeMount(
                    name=m.name,
                    destination=m.destination,
                    read_only=m.read_only,
                    propagation=m.propagation,
                    flags=flags,
                    chown=m.chown,
                    copy_up=m.copy_up,
                )
            )
            paths[m.name] = Path(m.source)
    return mounts, paths
