"""The OCI config of a system container: skiff's specgen, or the image's template.

Without ``config.json.template`` the config comes from skiff's own spec
generation (``skiff.runtime.specgen``) and the image config, with the
choices atomic made for system containers — they are host services, often
the ones that set the host up:

- the host's network and UTS namespaces (a service listens on the host's
  addresses and sees its hostname); the host's /etc/hosts and
  /etc/resolv.conf bound read-only, so name resolution follows the host;
- a read-only root file system (required: its files are objects shared
  with other deployments, see ``objects``), with tmpfs on /tmp, /var/tmp
  and /run;
- catatonit as PID 1 (``--init``): a daemon image is rarely written to be
  PID 1, which ignores signals it has no handler for, so without it the
  unit's stop signal would be lost; it also reaps zombies;
- no ``process.rlimits``: the service's limits are systemd's (the unit's
  ``Limit*=``), which the runtime inherits; copying those of the shell
  that ran ``install`` would be wrong at boot;
- cgroup ``/skiff-system/NAME``, and ``root.path`` relative (``rootfs``) so
  the bundle is the deployment directory itself.

A template config is the image author's: skiff only points ``root`` at
the deployment (or ``--rootfs``) and keeps the root read-only when it is
the shared checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skiff.oci.config import ImageConfig
from skiff.system.templates import TemplateError

CGROUP_PARENT = "/skiff-system"
ROOTFS_DIR = "rootfs"
HOST_FILES = (Path("/etc/hosts"), Path("/etc/resolv.conf"))


def default_config(
    image_config: ImageConfig, rootfs: Path, name: str, *, external_rootfs: bool
) -> dict[str, Any]:
    """The config.json of a system container made from the image config.

    ``rootfs``: where the root file system is now (the staging checkout,
    or ``--rootfs``); ``external_rootfs``: True for ``--rootfs``, whose
    path goes into the config as it is (else the relative ``rootfs``).
    """
    from skiff.runtime.specgen import (
        ContainerFiles,
        Namespace,
        NamespaceMode,
        SpecGenerator,
        generate_spec,
    )

    sg = SpecGenerator()
    sg.basic.name = name
    sg.basic.init = True
    if external_rootfs:
        # a host directory: its working directory must exist, skiff creates nothing in it
        sg.basic.workdir = image_config.working_dir or "/"
    sg.storage.read_only = True
    sg.network.network = Namespace(NamespaceMode.HOST)
    sg.network.uts = Namespace(NamespaceMode.HOST)
    sg.resources.cgroup_parent = CGROUP_PARENT
    hosts, resolv = (p if p.exists() else None for p in HOST_FILES)
    spec = generate_spec(
        sg,
        image_config,
        rootfs,
        container_id=name,
        container_files=ContainerFiles(hosts=hosts, resolv_conf=resolv),
    )
    spec["process"].pop("rlimits", None)
    spec["process"]["terminal"] = False
    spec["root"] = {"path": str(rootfs) if external_rootfs else ROOTFS_DIR, "readonly": True}
    return spec


def adapt_template_config(
    config: dict[str, Any], rootfs: Path, *, external_rootfs: bool
) -> tuple[dict[str, Any], list[str]]:
    """Point a template config's root at the deployment; return it and notes."""
    notes: list[str] = []
    root = config.get("root")
    if root is None:
        root = {}
    if not isinstance(root, dict):
        raise TemplateError("the image's config.json.template: 'root' is not an object")
    wanted = str(rootfs) if external_rootfs else ROOTFS_DIR
    if root.get("path") not in (None, wanted, ROOTFS_DIR, str(rootfs)):
        notes.append(f"config.json.template's root.path {root.get('path')!r} replaced by {wanted}")
    root["path"] = wanted
    if not external_rootfs and root.get("readonly") is not True:
        notes.append(
            "config.json.template asks for a writable root: made read-only, its files are "
            "shared with other deployments"
        )
        root["readonly"] = True
    config["root"] = root
    process = config.get("process")
    if isinstance(process, dict) and process.get("terminal"):
        notes.append("config.json.template asks for a terminal: turned off, a service has none")
        process["terminal"] = False
    return config, notes
