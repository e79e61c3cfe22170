"""Spec generation: user options → ``SpecGenerator`` → OCI runtime config.json.

    generator.py     SpecGenerator (basic, storage, security, network,
                     resources) + validate(); parse helpers for namespaces,
                     signals, --entrypoint, --security-opt
    spec.py          generate_spec(): SpecGenerator + image config + rootfs
    user.py          --user/--group-add resolved in the image's passwd/group
    rootfs.py        reading/creating paths inside an untrusted rootfs
    env.py           --env/--env-file parsing, merge with the image's Env
    mounts.py        -v/--mount/--tmpfs parsing, default mounts, ordering
    devices.py       --device, privileged host devices
    capabilities.py  default caps, --cap-add/--cap-drop, the five sets
    seccomp.py       containers seccomp.json → OCI linux.seccomp
    limits.py        --ulimit and sizes; rlimit defaults capped at what we hold
    etcfiles.py      /etc/hosts, resolv.conf, hostname, .containerenv
    record.py        SpecGenerator <-> JSON for the container record
    host.py          HostInfo: cgroup layout, caps, rlimits, kernel

The names below are the API the lifecycle code, the CLI and the CRI use.
"""

from skiff.runtime.specgen.devices import DeviceRequest, parse_device
from skiff.runtime.specgen.env import parse_env, read_env_file
from skiff.runtime.specgen.etcfiles import (
    ContainerFiles,
    HostEntry,
    parse_add_host,
    render_containerenv,
    render_hostname,
    render_hosts,
    render_resolv_conf,
    resolve_host_gateway,
    write_container_files,
)
from skiff.runtime.specgen.generator import (
    BasicOptions,
    Namespace,
    NamespaceMode,
    NetworkOptions,
    ResourceOptions,
    SecurityOptions,
    SpecGenerator,
    StorageOptions,
    parse_entrypoint,
    parse_namespace,
    parse_signal,
)
from skiff.runtime.specgen.host import CgroupLayout, HostInfo, detect_cgroup_layout
from skiff.runtime.specgen.limits import Ulimit, parse_cpus, parse_size, parse_ulimit
from skiff.runtime.specgen.mounts import (
    BindMount,
    Mount,
    TmpfsMount,
    VolumeMount,
    parse_mount,
    parse_tmpfs,
    parse_volume,
    resolve_host_sources,
)
from skiff.runtime.specgen.record import from_json as spec_generator_from_json
from skiff.runtime.specgen.record import to_json as spec_generator_to_json
from skiff.runtime.specgen.spec import (
    effective_hostname,
    generate_spec,
    stop_signal,
    stop_timeout,
)
from skiff.runtime.specgen.user import ExecUser, resolve_user

__all__ = [
    "BasicOptions",
    "BindMount",
    "CgroupLayout",
    "ContainerFiles",
    "DeviceRequest",
    "ExecUser",
    "HostEntry",
    "HostInfo",
    "Mount",
    "Namespace",
    "NamespaceMode",
    "NetworkOptions",
    "ResourceOptions",
    "SecurityOptions",
    "SpecGenerator",
    "StorageOptions",
    "TmpfsMount",
    "Ulimit",
    "VolumeMount",
    "detect_cgroup_layout",
    "effective_hostname",
    "generate_spec",
    "parse_add_host",
    "parse_cpus",
    "parse_device",
    "parse_entrypoint",
    "parse_env",
    "parse_mount",
    "parse_namespace",
    "parse_signal",
    "parse_size",
    "parse_tmpfs",
    "parse_ulimit",
    "parse_volume",
    "read_env_file",
    "render_containerenv",
    "render_hostname",
    "render_hosts",
    "render_resolv_conf",
    "resolve_host_gateway",
    "resolve_host_sources",
    "resolve_user",
    "spec_generator_from_json",
    "spec_generator_to_json",
    "stop_signal",
    "stop_timeout",
    "write_container_files",
]
