"""``skiff info``: the host, the store, the registries and skiff's version, as podman's info.

The keys are podman's (``host.arch``, ``store.graphRoot``, ...) so that
``--format json`` consumers find what they look for; templates use the
Go field names podman's templates use (``{{.Store.GraphRoot}}``; see
``template_view``). What only the container runtime knows (the OCI
runtime in use, conmon, the container states) is merged in from
``skiff.runtime.info``.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff import __version__

if TYPE_CHECKING:
    from skiff.config import SystemContext

GO_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
"""uname machine names → the GOARCH names podman (and image configs) use."""

_SPECIAL_FIELDS = {
    "ociRuntime": "OCIRuntime",
    "idMappings": "IDMappings",
    "APIVersion": "APIVersion",
}


@dataclass(frozen=True)
class InfoOptions:
    pass


def system_info(ctx: SystemContext, options: InfoOptions | None = None) -> dict[str, Any]:
    """podman's info object (JSON keys), with the runtime's part merged in."""
    from skiff.storage.store import Store, store_options

    opts = store_options(ctx)
    store = Store.open(ctx)
    try:
        store_info = _store_info(ctx, store, opts.root, opts.run_root)
    finally:
        store.close()
    from skiff.runtime.info import runtime_info

    extra = runtime_info(ctx)
    host = _host_info()
    for key, value in extra.items():
        if key == "containerStore" and isinstance(value, dict):
            store_info["containerStore"].update(value)
        else:
            host[key] = value
    return {
        "host": dict(sorted(host.items())),
        "registries": _registries_info(ctx),
        "store": store_info,
        "version": _version_info(),
    }


def template_view(data: Any) -> Any:
    """The info object with Go's field names (``graphRoot`` → ``GraphRoot``) for templates."""
    if isinstance(data, dict):
        return {_field_name(str(k)): template_view(v) for k, v in data.items()}
    if isinstance(data, list):
        return [template_view(v) for v in data]
    return data


def _field_name(key: str) -> str:
    return _SPECIAL_FIELDS.get(key) or (key[:1].upper() + key[1:])


# --- parts -------------------------------------------------------------------------------


def _host_info() -> dict[str, Any]:
    uname = os.uname()
    meminfo = _meminfo()
    return {
        "arch": GO_ARCH.get(uname.machine, uname.machine),
        "cgroupVersion": "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1",
        "cpus": os.cpu_count() or 0,
        "distribution": _distribution(),
        "hostname": socket.gethostname(),
        "kernel": uname.release,
        "memFree": meminfo.get("MemAvailable", meminfo.get("MemFree", 0)),
        "memTotal": meminfo.get("MemTotal", 0),
        "os": "linux",
        "security": {
            "rootless": os.geteuid() != 0,
            "seccompEnabled": Path("/proc/self/status").exists() and _seccomp_available(),
        },
        "swapFree": meminfo.get("SwapFree", 0),
        "swapTotal": meminfo.get("SwapTotal", 0),
        "uptime": _uptime(),
    }


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields = rest.split()
                if fields and fields[0].isdigit():
                    factor = 1024 if len(fields) > 1 and fields[1] == "kB" else 1
                    out[key] = int(fields[0]) * factor
    except OSError:
        pass
    return out


def _distribution() -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value.strip().strip('"')
    except OSError:
        return {}
    out = {"distribution": values.get("ID", ""), "version": values.get("VERSION_ID", "")}
    if values.get("VERSION_CODENAME"):
        out = {"codename": values["VERSION_CODENAME"], **out}
    return out


def _seccomp_available() -> bool:
    try:
        return "Seccomp:" in Path("/proc/self/status").read_text()
    except OSError:
        return False


def _uptime() -> str:
    """As podman prints it: ``0h 50m 30.00s``."""
    try:
        seconds = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return ""
    hours = int(seconds // 3600)
    minutes = int(seconds % 3600 // 60)
    return f"{hours}h {minutes}m {seconds % 60:.2f}s"


def _store_info(ctx: SystemContext, store: Any, root: Path, run_root: Path) -> dict[str, Any]:
    from skiff.storage.store import STORAGE_CONF

    conf = Path(os.environ.get("SKIFF_STORAGE_CONF", STORAGE_CONF))
    try:
        fs = os.statvfs(root)
        allocated = fs.f_blocks * fs.f_frsize
        used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
    except OSError:
        allocated = used = 0
    return {
        "configFile": str(conf) if conf.exists() else "",
        "containerStore": {"number": len(store.containers.all())},
        "graphDriverName": store.driver_name,
        "graphOptions": {},
        "graphRoot": str(root),
        "graphRootAllocated": allocated,
        "graphRootUsed": used,
        "imageCopyTmpDir": str(ctx.tmp_dir),
        "imageStore": {"number": len(store.images.all())},
        "runRoot": str(run_root),
        "volumePath": str(root / "volumes"),
    }


def _registries_info(ctx: SystemContext) -> dict[str, Any]:
    from skiff.image.registries import load_registries_conf

    config = load_registries_conf(ctx)
    out: dict[str, Any] = {}
    for registry in sorted(config.registries, key=lambda r: r.prefix):
        out[registry.prefix] = {
            "Blocked": registry.blocked,
            "Insecure": registry.endpoint.insecure,
            "Location": registry.endpoint.location,
            "MirrorByDigestOnly": registry.mirror_by_digest_only,
            "Mirrors": [{"Insecure": m.insecure, "Location": m.location} for m in registry.mirrors]
            or None,
            "Prefix": registry.prefix,
        }
    if config.unqualified_search_registries:
        out["search"] = list(config.unqualified_search_registries)
    return out


def _version_info() -> dict[str, Any]:
    return {
        "OsArch": f"linux/{GO_ARCH.get(platform.machine(), platform.machine())}",
        "PythonVersion": platform.python_version(),
        "Version": __version__,
    }
