"""crun's compiled seccomp filters, reused from one container to the next.

Every container gets the same seccomp profile unless told otherwise, and
turning the profile's ~400 rules into a BPF program is most of what an OCI
runtime's ``create`` costs (15-30 ms of CPU here, for runc and crun alike).
crun 1.8 has no cache of its own, but it keeps the program it loaded in its
state directory (STATE/ID/seccomp.bpf, for ``exec``) and it takes a
program instead of the profile through the ``run.oci.seccomp_bpf_data``
annotation (base64 of the BPF; it then ignores ``linux.seccomp``).

So after crun created a container (``remember``), skiff keeps that program
in RUNROOT/seccomp-bpf/crun/, keyed by the exact ``linux.seccomp``
object it was made from and by what made it — crun's binary, the
libseccomp it links, the kernel (identity: path, size, mtime; release).
A later container whose ``linux.seccomp`` is the same object gets the
program through the annotation (``apply``). An entry is only ever used for
a byte-identical profile: the file name is a checksum, the entry holds the
profile text and is compared in full.

Left alone (crun compiles, as without the cache): profiles with ``flags``,
a notification listener or the SCMP_ACT_NOTIFY action (crun treats those
beside the filter), containers whose annotations already say anything
about seccomp, and every runtime but crun. Failing to read or write the
cache only costs the compile.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.runtime.files import replace_file

if TYPE_CHECKING:
    from skiff.runtime.oci import OCIRuntime

log = logging.getLogger(__name__)

ANNOTATION = "run.oci.seccomp_bpf_data"
_FORMAT = 1
_LIB_DIRS = ("/usr/lib/{multiarch}", "/lib/{multiarch}", "/usr/lib64", "/lib64", "/usr/lib", "/lib")
_LIB = "libseccomp.so.2"
"""The soname crun links; stat() follows it to the library file itself."""
_MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}


def cache_dir(runtime: OCIRuntime) -> Path:
    """RUNROOT/seccomp-bpf/NAME: not under RUNROOT/runtime, whose directories
    are the runtimes' state roots (one entry per container)."""
    return runtime.state_root.parent.parent / "seccomp-bpf" / runtime.name


def _cacheable(seccomp: Any) -> bool:
    if not isinstance(seccomp, dict) or seccomp.get("flags"):
        return False
    if seccomp.get("listenerPath") or seccomp.get("listenerMetadata"):
        return False
    if seccomp.get("defaultAction") == "SCMP_ACT_NOTIFY":
        return False
    rules = seccomp.get("syscalls") or []
    return all(isinstance(r, dict) and r.get("action") != "SCMP_ACT_NOTIFY" for r in rules)


def _stat(path: str) -> list[Any]:
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


def _libseccomp(machine: str) -> list[list[Any]]:
    """The libseccomp files where the dynamic linker looks (stat only: no
    directory listing, no ``ldconfig``)."""
    multiarch = _MULTIARCH.get(machine, f"{machine}-linux-gnu")
    found: dict[str, list[Any]] = {}
    for directory in _LIB_DIRS:
        candidate = os.path.join(directory.format(multiarch=multiarch), _LIB)
        with contextlib.suppress(OSError):
            real = os.path.realpath(candidate)
            found.setdefault(real, _stat(real))
    return [found[k] for k in sorted(found)]


def _identity(runtime: OCIRuntime) -> dict[str, Any]:
    """What the compiled program depends on besides the profile."""
    uname = os.uname()
    return {
        "runtime": _stat(str(runtime.choice.path)),
        "libseccomp": _libseccomp(uname.machine),
        "kernel": [uname.release, uname.version, uname.machine],
    }


def _profile_text(seccomp: dict[str, Any]) -> str:
    return json.dumps(seccomp, sort_keys=True, separators=(",", ":"))


def _entry_path(runtime: OCIRuntime, text: str) -> Path:
    data = text.encode()
    return cache_dir(runtime) / f"{zlib.crc32(data):08x}-{len(data)}.json"


def _seccomp_of(spec: dict[str, Any]) -> dict[str, Any] | None:
    linux = spec.get("linux")
    seccomp = linux.get("seccomp") if isinstance(linux, dict) else None
    if not _cacheable(seccomp):
        return None
    annotations = spec.get("annotations") or {}
    if any(str(key).startswith("run.oci.seccomp") for key in annotations):
        return None
    assert isinstance(seccomp, dict)
    return seccomp


def apply(spec: dict[str, Any], runtime: OCIRuntime) -> bool:
    """Give ``spec`` the cached program for its profile, if there is one
    (sets the annotation; ``linux.seccomp`` stays for inspection)."""
    if runtime.name != "crun":
        return False
    seccomp = _seccomp_of(spec)
    if seccomp is None:
        return False
    text = _profile_text(seccomp)
    try:
        entry = json.loads(_entry_path(runtime, text).read_bytes())
        if not (
            isinstance(entry, dict)
            and entry.get("format") == _FORMAT
            and entry.get("profile") == text
            and entry.get("identity") == _identity(runtime)
            and isinstance(entry.get("bpf"), str)
        ):
            return False
    except (OSError, ValueError):
        return False
    spec.setdefault("annotations", {})[ANNOTATION] = entry["bpf"]
    return True


def remember(spec: dict[str, Any], runtime: OCIRuntime, container_id: str) -> None:
    """After crun created the container of ``spec`` from its profile: keep
    the program crun compiled for the next container with that profile."""
    if runtime.name != "crun":
        return
    seccomp = _seccomp_of(spec)
    if seccomp is None:
        return
    try:
        bpf = (runtime.state_root / container_id / "seccomp.bpf").read_bytes()
        if not bpf or len(bpf) % 8:  # struct sock_filter: 8 bytes per instruction
            return
        text = _profile_text(seccomp)
        entry = {
            "format": _FORMAT,
            "identity": _identity(runtime),
            "profile": text,
            "bpf": base64.b64encode(bpf).decode(),
        }
        _write(_entry_path(runtime, text), json.dumps(entry).encode())
    except OSError as exc:
        log.debug("cannot keep the seccomp program of %s: %s", container_id, exc)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    replace_file(path, data, 0o600)
