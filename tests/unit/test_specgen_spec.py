"""generate_spec and validate(): the config.json a SpecGenerator turns into.

The host is described by hand (``HostInfo``) so each test says which
machine it generates for: cgroup v1 or v2, which rlimits and capabilities
skiff holds, the kernel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from skiff.errors import ContainerError, StoreCorrupt, UsageError
from skiff.oci.config import ImageConfig
from skiff.runtime.specgen import (
    CgroupLayout,
    ContainerFiles,
    HostInfo,
    Namespace,
    NamespaceMode,
    SpecGenerator,
    detect_cgroup_layout,
    generate_spec,
    parse_add_host,
    parse_device,
    parse_mount,
    parse_namespace,
    parse_tmpfs,
    parse_ulimit,
    parse_volume,
    render_containerenv,
    render_hosts,
    render_resolv_conf,
    spec_generator_from_json,
    spec_generator_to_json,
    stop_signal,
    write_container_files,
)
from skiff.runtime.specgen.capabilities import CAPABILITIES
from skiff.runtime.specgen.host import RLIM_INFINITY

CID = "0123456789abcdef" * 4
HOST_V1 = HostInfo(
    cgroup=CgroupLayout(1, ("hugetlb",)),
    bounding_caps=frozenset(CAPABILITIES) - {"CAP_SYS_RESOURCE"},
    effective_caps=frozenset(CAPABILITIES) - {"CAP_SYS_RESOURCE"},
    rlimits={"RLIMIT_NOFILE": (1024, 20000), "RLIMIT_NPROC": (5000, 96365)},
    kernel=(6, 1),
    machine="x86_64",
    oom_score_adj=0,
    hostname="buildhost",
)
HOST_V2 = HostInfo(
    cgroup=CgroupLayout(2),
    bounding_caps=frozenset(CAPABILITIES),
    effective_caps=frozenset(CAPABILITIES),
    rlimits={"RLIMIT_NOFILE": (1024, 524288), "RLIMIT_NPROC": (RLIM_INFINITY, RLIM_INFINITY)},
    kernel=(6, 6),
)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nwww:x:1000:1000:www:/var/www:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nwww:x:1000:\n")
    (root / "var" / "www").mkdir(parents=True)
    return root


def image(**config: Any) -> ImageConfig:
    return ImageConfig({"architecture": "amd64", "os": "linux", "config": config})


def gen(
    sg: SpecGenerator,
    rootfs: Path,
    img: ImageConfig | None = None,
    host: HostInfo = HOST_V1,
    **kw: Any,
) -> dict[str, Any]:
    return generate_spec(
        sg,
        img or image(Cmd=["sh"]),
        rootfs,
        container_id=CID,
        container_files=kw.pop("files", ContainerFiles()),
        host=host,
        **kw,
    )


def mount(spec: dict[str, Any], dest: str) -> dict[str, Any]:
    return next(m for m in spec["mounts"] if m["destination"] == dest)


# --- process ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entrypoint", "command", "img", "args"),
    [
        (None, None, {"Entrypoint": ["/ep"], "Cmd": ["a"]}, ["/ep", "a"]),
        (None, ["b"], {"Entrypoint": ["/ep"], "Cmd": ["a"]}, ["/ep", "b"]),
        (["/new"], None, {"Entrypoint": ["/ep"], "Cmd": ["a"]}, ["/new"]),
        (["/new"], ["c"], {"Entrypoint": ["/ep"], "Cmd": ["a"]}, ["/new", "c"]),
        ([], ["/bin/ls"], {"Entrypoint": ["/ep"], "Cmd": ["a"]}, ["/bin/ls"]),
        (None, None, {"Cmd": ["sh"]}, ["sh"]),
    ],
)
def test_entrypoint_and_cmd(
    rootfs: Path,
    entrypoint: list[str] | None,
    command: list[str] | None,
    img: dict[str, Any],
    args: list[str],
) -> None:
    sg = SpecGenerator()
    sg.basic.entrypoint = entrypoint
    sg.basic.command = command
    assert gen(sg, rootfs, image(**img))["process"]["args"] == args


def test_no_command_at_all(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.basic.entrypoint = []
    with pytest.raises(UsageError, match="no command or entrypoint provided"):
        gen(sg, rootfs, image(Entrypoint=["/ep"], Cmd=["x"]))


def test_env_order_and_defaults(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.basic.env = {"FOO": "bar", "TERM": "dumb"}
    img = image(Cmd=["sh"], Env=["LANG=C", "PATH=/opt/bin"])
    assert gen(sg, rootfs, img)["process"]["env"] == [
        "PATH=/opt/bin",
        "TERM=dumb",
        "container=skiff",
        "LANG=C",
        "FOO=bar",
        f"HOSTNAME={CID[:12]}",
        "HOME=/root",
    ]


def test_env_user_home_and_hostname_given(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.security.user = "www"
    sg.basic.hostname = "web"
    sg.basic.env = {"HOME": "/custom"}
    spec = gen(sg, rootfs)
    assert "HOME=/custom" in spec["process"]["env"]
    assert "HOSTNAME=web" in spec["process"]["env"]
    assert spec["hostname"] == "web"
    assert spec["process"]["user"] == {
        "uid": 1000,
        "gid": 1000,
        "umask": 0o22,
        "additionalGids": [1000],
    }


def test_image_user_used_unless_overridden(rootfs: Path) -> None:
    sg = SpecGenerator()
    img = image(Cmd=["sh"], User="www")
    assert gen(sg, rootfs, img)["process"]["user"]["uid"] == 1000
    sg.security.user = "0"
    assert gen(sg, rootfs, img)["process"]["user"]["uid"] == 0


def test_workdir_rules(rootfs: Path) -> None:
    sg = SpecGenerator()
    assert gen(sg, rootfs)["process"]["cwd"] == "/"
    assert gen(sg, rootfs, image(Cmd=["sh"], WorkingDir="/var/www"))["process"]["cwd"] == "/var/www"
    sg.basic.workdir = "/nope"
    with pytest.raises(ContainerError, match='workdir "/nope" does not exist'):
        gen(sg, rootfs)
    sg.basic.workdir = "/etc/passwd"
    with pytest.raises(ContainerError, match="not a directory"):
        gen(sg, rootfs)
    sg.basic.workdir = "/data/sub"
    sg.storage.mounts = [parse_tmpfs("/data")]
    assert gen(sg, rootfs)["process"]["cwd"] == "/data/sub"  # provided by a mount
    sg.basic.workdir = "relative"
    with pytest.raises(UsageError, match="absolute path"):
        gen(sg, rootfs)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_image_workdir_is_created(rootfs: Path) -> None:
    spec = gen(SpecGenerator(), rootfs, image(Cmd=["sh"], WorkingDir="/srv/app", User="www"))
    assert spec["process"]["cwd"] == "/srv/app"
    assert (rootfs / "srv" / "app").stat().st_uid == 1000


@pytest.mark.parametrize("cwd", ["/proc", "/proc/1/root", "/sys/kernel", "/dev/fd/3"])
def test_workdir_in_runtime_mounts_is_refused(rootfs: Path, cwd: str) -> None:
    sg = SpecGenerator()
    sg.basic.workdir = cwd
    with pytest.raises(ContainerError, match="which the runtime mounts"):
        gen(sg, rootfs)


@pytest.mark.parametrize(
    "target",
    ["/proc/self/fd/7", "missing/../../proc/self/fd/7", "../../../dev/fd/3", "a/b/../../../sys/x"],
)
def test_image_workdir_symlinked_into_runtime_mounts(rootfs: Path, target: str) -> None:
    (rootfs / "proc").mkdir()
    (rootfs / "app").symlink_to(target)
    with pytest.raises(ContainerError, match="which the runtime mounts"):
        gen(SpecGenerator(), rootfs, image(Cmd=["sh"], WorkingDir="/app"))
    assert list((rootfs / "proc").iterdir()) == []  # refused before anything was made


def test_init(rootfs: Path, tmp_path: Path) -> None:
    init = tmp_path / "catatonit"
    init.write_text("#!/bin/sh\n")
    init.chmod(0o755)
    sg = SpecGenerator()
    sg.basic.init = True
    sg.basic.init_path = str(init)
    spec = gen(sg, rootfs)
    assert spec["process"]["args"] == ["/run/podman-init", "--", "sh"]
    m = mount(spec, "/run/podman-init")
    assert m["source"] == str(init) and "ro" in m["options"]
    sg.basic.init_path = str(tmp_path / "missing")
    with pytest.raises(ContainerError, match="no init binary"):
        gen(sg, rootfs)


def test_stop_signal_and_annotations(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.basic.annotations = {"a": "b"}
    spec = gen(sg, rootfs, image(Cmd=["sh"], StopSignal="SIGQUIT"))
    assert spec["annotations"] == {
        "a": "b",
        "io.container.manager": "skiff",
        "org.opencontainers.image.stopSignal": "3",
    }
    assert stop_signal(sg, image(StopSignal="SIGQUIT")) == 3
    sg.basic.stop_signal = 2
    assert stop_signal(sg, image(StopSignal="SIGQUIT")) == 2
    assert stop_signal(SpecGenerator(), image()) == 15
    with pytest.raises(ContainerError, match="StopSignal"):
        stop_signal(SpecGenerator(), image(StopSignal="SIGBOGUS"))


# --- rlimits and resources -----------------------------------------------------------------


def test_default_rlimits_capped_at_what_skiff_holds(rootfs: Path) -> None:
    spec = gen(SpecGenerator(), rootfs)
    assert spec["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000},
        {"type": "RLIMIT_NPROC", "hard": 96365, "soft": 96365},
    ]
    spec = gen(SpecGenerator(), rootfs, host=HOST_V2)  # holds more, may raise: podman's values
    assert [r["hard"] for r in spec["process"]["rlimits"]] == [1_048_576, 1_048_576]


def test_ulimits(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.resources.ulimits = [parse_ulimit("nofile=100:200"), parse_ulimit("core=0")]
    assert gen(sg, rootfs)["process"]["rlimits"] == [
        {"type": "RLIMIT_NPROC", "hard": 96365, "soft": 96365},
        {"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100},
        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
    ]
    sg.resources.ulimits = [parse_ulimit("nofile=100:20001")]
    with pytest.raises(UsageError, match="use at most nofile=20000"):
        gen(sg, rootfs)
    sg.resources.ulimits = [parse_ulimit("nproc=-1")]
    with pytest.raises(UsageError, match="unlimited"):
        gen(sg, rootfs)
    sg.resources.ulimits = [parse_ulimit("nofile=1"), parse_ulimit("nofile=2")]
    with pytest.raises(UsageError, match="given twice"):
        gen(sg, rootfs)


def test_resources(rootfs: Path) -> None:
    sg = SpecGenerator()
    r = sg.resources
    r.memory, r.memory_reservation, r.cpus, r.cpu_shares = 64 << 20, 32 << 20, 1.5, 512
    r.cpuset_cpus, r.pids_limit, r.cgroup_parent = "0-1", 100, "/apps/"
    spec = gen(sg, rootfs)
    assert spec["linux"]["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20},
        "cpu": {"shares": 512, "quota": 150000, "period": 100000, "cpus": "0-1"},
        "pids": {"limit": 100},
    }
    assert spec["linux"]["cgroupsPath"] == f"/apps/{CID}"
    assert "oomScoreAdj" not in spec["process"]
    r.pids_limit = -1
    r.memory_swap = -1
    spec = gen(sg, rootfs)
    assert "pids" not in spec["linux"]["resources"]
    assert spec["linux"]["resources"]["memory"]["swap"] == -1


def test_default_cgroup_path_and_pids(rootfs: Path) -> None:
    spec = gen(SpecGenerator(), rootfs)
    assert spec["linux"]["cgroupsPath"] == f"/skiff/{CID}"
    assert spec["linux"]["resources"]["pids"] == {"limit": 2048}


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        ("memory", 1 << 20, "minimum memory limit allowed is 6MB"),
        ("memory_swap", 1 << 30, "must provide a memory limit"),
        ("cpu_shares", 1, "2..262144"),
        ("cpu_period", 10, "1000..1000000"),
        ("cpuset_cpus", "3-1", "reversed"),
        ("cpuset_mems", "a", "invalid --cpuset-mems"),
        ("cgroup_parent", "machine.slice", "systemd"),
        ("cgroup_parent", "rel/path", "absolute"),
        ("oom_score_adj", -5, "below 0"),
        ("oom_score_adj", 2000, "-1000..1000"),
        ("memory_swappiness", 101, "0..100"),
    ],
)
def test_resource_validation(rootfs: Path, attr: str, value: Any, message: str) -> None:
    sg = SpecGenerator()
    setattr(sg.resources, attr, value)
    with pytest.raises(UsageError, match=message):
        sg.validate(HOST_V1)


def test_resource_combinations(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.resources.memory, sg.resources.memory_swap = 64 << 20, 32 << 20
    with pytest.raises(UsageError, match="larger than memory limit"):
        sg.validate()
    sg = SpecGenerator()
    sg.resources.cpus, sg.resources.cpu_quota = 1.0, 50000
    with pytest.raises(UsageError, match="cannot be set together"):
        sg.validate()
    sg = SpecGenerator()
    sg.resources.memory_swappiness = 10
    with pytest.raises(UsageError, match="cgroup v2"):
        sg.validate(HOST_V2)
    sg.resources.oom_score_adj = 100
    with pytest.raises(UsageError, match="below 200"):
        sg.validate(HostInfo(CgroupLayout(1), frozenset(), frozenset(), oom_score_adj=200))


# --- security -------------------------------------------------------------------------------


def test_default_security(rootfs: Path) -> None:
    spec = gen(SpecGenerator(), rootfs)
    assert spec["linux"]["maskedPaths"][:2] == ["/proc/acpi", "/proc/kcore"]
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "noNewPrivileges" not in spec["process"]
    assert mount(spec, "/sys")["options"][-1] == "ro"
    assert "devices" not in spec["linux"]


def test_privileged(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.security.privileged = True
    spec = gen(sg, rootfs)
    assert set(spec["process"]["capabilities"]["bounding"]) == HOST_V1.bounding_caps
    assert "seccomp" not in spec["linux"]
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]
    assert mount(spec, "/sys")["options"][-1] == "rw"
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    paths = {d["path"] for d in spec["linux"].get("devices", [])}
    assert "/dev/console" not in paths and "/dev/ptmx" not in paths
    if Path("/dev/null").exists():
        assert "/dev/null" in paths
    sg.security.seccomp_profile = "/usr/share/containers/seccomp.json"
    if Path(sg.security.seccomp_profile).exists():
        assert "seccomp" in gen(sg, rootfs)["linux"]  # an explicit profile still applies


def test_mask_unmask(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.security.add_security_opt("unmask=/proc/k*")
    sg.security.add_security_opt("mask=/etc/secret:/proc/acpi")
    spec = gen(sg, rootfs)
    masked = spec["linux"]["maskedPaths"]
    assert "/proc/kcore" not in masked and "/proc/keys" not in masked
    assert masked[-1] == "/etc/secret" and masked.count("/proc/acpi") == 1
    sg.security.unmask = ["ALL"]
    spec = gen(sg, rootfs)
    assert spec["linux"]["maskedPaths"] == ["/etc/secret", "/proc/acpi"]
    assert "readonlyPaths" not in spec["linux"]


def test_seccomp_unconfined_and_custom(rootfs: Path, tmp_path: Path) -> None:
    sg = SpecGenerator()
    sg.security.seccomp_profile = "unconfined"
    assert "seccomp" not in gen(sg, rootfs)["linux"]
    custom = tmp_path / "profile.json"
    custom.write_text('{"defaultAction": "SCMP_ACT_LOG"}')
    sg.security.seccomp_profile = str(custom)
    assert gen(sg, rootfs)["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_LOG"}
    sg.security.seccomp_profile = "relative.json"
    with pytest.raises(UsageError, match="absolute path"):
        gen(sg, rootfs)


def test_cap_add_not_held_is_refused(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.security.cap_add = ["sys_resource"]
    with pytest.raises(UsageError, match="does not hold it"):
        gen(sg, rootfs)
    assert (
        "CAP_SYS_RESOURCE" in gen(sg, rootfs, host=HOST_V2)["process"]["capabilities"]["bounding"]
    )


# --- mounts -----------------------------------------------------------------------------------


def test_default_mounts_and_files(rootfs: Path, tmp_path: Path) -> None:
    files = write_container_files(
        tmp_path / "userdata", hosts="h\n", resolv_conf="r\n", hostname="n\n", containerenv=""
    )
    spec = gen(SpecGenerator(), rootfs, files=files)
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests[:2] == ["/proc", "/dev"]
    assert set(dests) == {
        "/proc", "/dev", "/sys", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup",
        "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run/.containerenv",
    }  # fmt: skip
    assert mount(spec, "/etc/hosts") == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": str(tmp_path / "userdata" / "hosts"),
        "options": ["bind", "rprivate"],
    }
    assert mount(spec, "/dev/shm")["options"][-1] == f"size={64 << 20}"
    assert (tmp_path / "userdata" / "hostname").read_text() == "n\n"


def test_read_only_mounts(rootfs: Path, tmp_path: Path) -> None:
    sg = SpecGenerator()
    sg.storage.read_only = True
    files = write_container_files(tmp_path / "u", hosts="", resolv_conf="", hostname="")
    spec = gen(sg, rootfs, files=files)
    assert spec["root"] == {"path": str(rootfs), "readonly": True}
    for dest in ("/tmp", "/var/tmp", "/run"):
        assert mount(spec, dest)["options"] == ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]
    assert mount(spec, "/etc/hosts")["options"] == [
        "bind",
        "rprivate",
        "ro",
        "nosuid",
        "noexec",
        "nodev",
    ]
    sg.storage.read_only_tmpfs = False
    assert all(m["destination"] != "/tmp" for m in gen(sg, rootfs, files=files)["mounts"])


def test_user_mounts_override_defaults_and_sort(rootfs: Path, tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("mine\n")
    sg = SpecGenerator()
    sg.storage.mounts = [
        parse_volume(f"{tmp_path}:/a/b/c:ro"),
        parse_volume(f"{tmp_path}/hosts:/etc/hosts"),
        parse_mount("type=tmpfs,dst=/a"),
        parse_volume("data:/data:rshared"),
    ]
    files = write_container_files(tmp_path / "u", hosts="generated\n")
    spec = gen(sg, rootfs, files=files, volumes={"data": tmp_path / "vol"})
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/a") < dests.index("/a/b/c")
    assert mount(spec, "/etc/hosts")["source"] == f"{tmp_path}/hosts"
    assert dests.count("/etc/hosts") == 1
    assert mount(spec, "/a/b/c")["options"] == ["ro", "rprivate", "rbind"]
    assert mount(spec, "/data") == {
        "destination": "/data",
        "type": "bind",
        "source": str(tmp_path / "vol"),
        "options": ["rshared", "rbind"],
    }
    assert spec["linux"]["rootfsPropagation"] == "shared"


def test_unknown_and_anonymous_volumes(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.storage.mounts = [parse_volume("data:/data")]
    with pytest.raises(ContainerError, match="volume data is not known"):
        gen(sg, rootfs)
    sg.storage.mounts = [parse_volume("/anon")]
    with pytest.raises(ContainerError, match="anonymous volume at /anon"):
        gen(sg, rootfs)
    sg.storage.mounts = [parse_tmpfs("/x"), parse_volume("/y:/x")]
    with pytest.raises(UsageError, match="duplicate mount destination /x"):
        gen(sg, rootfs)


def test_ipc_host_binds_shm_and_mqueue(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.network.ipc = parse_namespace("host", "ipc")
    spec = gen(sg, rootfs)
    assert mount(spec, "/dev/shm")["source"] == "/dev/shm"
    # the host's /dev/mqueue, or where the host has none, a new mqueue in its IPC namespace
    expected = "bind" if Path("/dev/mqueue").is_dir() else "mqueue"
    assert mount(spec, "/dev/mqueue")["type"] == expected
    assert "ipc" not in [n["type"] for n in spec["linux"]["namespaces"]]


def test_shared_shm_dir(rootfs: Path, tmp_path: Path) -> None:
    spec = gen(SpecGenerator(), rootfs, files=ContainerFiles(shm=tmp_path))
    assert mount(spec, "/dev/shm")["source"] == str(tmp_path)


# --- namespaces ---------------------------------------------------------------------------------


def test_namespaces_v1_and_v2(rootfs: Path) -> None:
    v1 = [n["type"] for n in gen(SpecGenerator(), rootfs)["linux"]["namespaces"]]
    assert v1 == ["pid", "network", "ipc", "uts", "mount"]
    v2 = [n["type"] for n in gen(SpecGenerator(), rootfs, host=HOST_V2)["linux"]["namespaces"]]
    assert v2 == ["pid", "network", "ipc", "uts", "mount", "cgroup"]


def test_joined_namespaces(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.network.pid = Namespace(NamespaceMode.CONTAINER, "other")
    sg.network.ipc = Namespace(NamespaceMode.CONTAINER, "other")
    sg.network.uts = Namespace(NamespaceMode.PATH, "/proc/77/ns/uts")
    sg.network.network = parse_namespace("host", "network")
    spec = gen(sg, rootfs, container_pids={"other": 4242})
    assert spec["linux"]["namespaces"] == [
        {"type": "pid", "path": "/proc/4242/ns/pid"},
        {"type": "ipc", "path": "/proc/4242/ns/ipc"},
        {"type": "uts", "path": "/proc/77/ns/uts"},
        {"type": "mount"},
    ]
    assert "hostname" not in spec
    assert not any(e.startswith("HOSTNAME=") for e in spec["process"]["env"])
    assert "sysctl" not in spec["linux"]  # host network: no net.* sysctls
    with pytest.raises(ContainerError, match="other: it is not running"):
        gen(sg, rootfs)


def test_private_network_with_prepared_netns(rootfs: Path) -> None:
    spec = gen(SpecGenerator(), rootfs, netns_path="/run/skiff/netns/n1")
    assert {"type": "network", "path": "/run/skiff/netns/n1"} in spec["linux"]["namespaces"]
    assert spec["linux"]["sysctl"] == {"net.ipv4.ping_group_range": "0 0"}


@pytest.mark.parametrize(
    ("configure", "message"),
    [
        (lambda sg: setattr(sg.basic, "hostname", "bad host"), "invalid hostname"),
        (
            lambda sg: (
                setattr(sg.basic, "hostname", "h"),
                setattr(sg.network, "uts", Namespace(NamespaceMode.HOST)),
            ),
            "cannot set the hostname",
        ),
        (
            lambda sg: (
                setattr(sg.network, "network", Namespace(NamespaceMode.HOST)),
                sg.network.dns_servers.append("1.1.1.1"),
            ),
            "cannot set DNS options",
        ),
        (
            lambda sg: (
                setattr(sg.network, "network", Namespace(NamespaceMode.CONTAINER, "x")),
                sg.network.add_hosts.append(parse_add_host("a:1.2.3.4")),
            ),
            "cannot add hosts",
        ),
        (
            lambda sg: setattr(sg.network, "user", Namespace(NamespaceMode.PRIVATE)),
            "user namespaces",
        ),
        (lambda sg: sg.basic.sysctls.update({"kernel.panic": "1"}), "not namespaced"),
        (lambda sg: sg.basic.sysctls.update({"kernel.hostname": "x"}), "use --hostname"),
        (
            lambda sg: (
                sg.basic.sysctls.update({"net.core.somaxconn": "1"}),
                setattr(sg.network, "network", Namespace(NamespaceMode.HOST)),
            ),
            "--network host",
        ),
        (lambda sg: setattr(sg.storage, "shm_size", 0), "--shm-size"),
        (lambda sg: setattr(sg.basic, "umask", 0o1000), "--umask"),
        (lambda sg: sg.storage.mounts.append(parse_tmpfs("/")), "root directory"),
    ],
)
def test_validation(configure: Any, message: str) -> None:
    sg = SpecGenerator()
    configure(sg)
    with pytest.raises(UsageError, match=message):
        sg.validate()


def test_sysctls(rootfs: Path) -> None:
    sg = SpecGenerator()
    sg.basic.sysctls = {"net.core.somaxconn": "1024", "kernel.shmmax": "1"}
    assert gen(sg, rootfs)["linux"]["sysctl"] == {
        "net.ipv4.ping_group_range": "0 0",
        "net.core.somaxconn": "1024",
        "kernel.shmmax": "1",
    }


def test_spec_generator_round_trips_through_json(rootfs: Path, tmp_path: Path) -> None:
    """Recorded with the container as JSON and regenerated at each start."""
    import json

    sg = SpecGenerator()
    sg.basic.command = ["sh", "-c", "true"]
    sg.basic.env = {"A": "1"}
    sg.network.pid = Namespace(NamespaceMode.HOST)
    sg.network.cgroup = Namespace(NamespaceMode.PRIVATE)
    sg.network.add_hosts = [parse_add_host("a;b:1.2.3.4")]
    sg.resources.ulimits = [parse_ulimit("nofile=5")]
    sg.storage.mounts = [
        parse_volume(f"{tmp_path}:/a:ro,noexec"),
        parse_volume("v:/v"),
        parse_tmpfs("/t:size=1m"),
    ]
    sg.storage.devices = [parse_device("/dev/null:/dev/n:r")]
    text = json.dumps(spec_generator_to_json(sg))
    back = spec_generator_from_json(json.loads(text))
    assert back == sg
    data = json.loads(text)
    data["basic"]["future_option"] = 1
    with pytest.raises(StoreCorrupt, match="future_option"):
        spec_generator_from_json(data)
    data = json.loads(text)
    data["storage"]["mounts"][0]["kind"] = "overlay"
    with pytest.raises(StoreCorrupt, match="kind"):
        spec_generator_from_json(data)


# --- /etc files -----------------------------------------------------------------------------------


def test_render_hosts() -> None:
    text = render_hosts(
        hostname="web",
        name="web-1",
        addresses=["10.89.0.5"],
        add_hosts=[parse_add_host("db:10.0.0.9")],
        base="127.0.0.1 localhost\n# comment\n10.1.1.1 corp\n",
        host_gateway="10.89.0.1",
    )
    assert text.splitlines() == [
        "10.0.0.9\tdb",
        "127.0.0.1\tlocalhost",
        "10.1.1.1\tcorp",
        "::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6",
        "10.89.0.1\thost.containers.internal",
        "10.89.0.5\tweb web-1",
    ]
    assert render_hosts(hostname="h").splitlines()[-1] == "127.0.0.1\th"


def test_render_resolv_conf() -> None:
    host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"
    assert render_resolv_conf(host_resolv_conf=host) == (
        "search corp.example\nnameserver 10.0.0.2\noptions edns0\n"
    )
    assert "nameserver 127.0.0.53" in render_resolv_conf(host_resolv_conf=host, private_netns=False)
    only_local = "nameserver 127.0.0.53\n"
    assert (
        render_resolv_conf(host_resolv_conf=only_local)
        == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    )
    custom = render_resolv_conf(
        host_resolv_conf=host, servers=["9.9.9.9"], search=["."], options=["ndots:2"]
    )
    assert custom == "nameserver 9.9.9.9\noptions ndots:2\n"
    with pytest.raises(UsageError, match="--dns"):
        render_resolv_conf(servers=["dns.example"])


def test_render_containerenv() -> None:
    kw = {
        "engine": "skiff-0.1",
        "name": "c",
        "container_id": "i",
        "image": "busybox",
        "image_id": "x",
    }
    assert render_containerenv(privileged=False, **kw) == ""
    assert 'engine="skiff-0.1"' in render_containerenv(privileged=True, **kw)


def test_detect_cgroup_layout(tmp_path: Path) -> None:
    hybrid = (
        "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    )
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    hybrid = hybrid.replace("/sys/fs/cgroup", str(tmp_path))
    layout = detect_cgroup_layout(hybrid, tmp_path)
    assert layout == CgroupLayout(1, ("hugetlb",)) and layout.is_hybrid
    unified = f"30 25 0:26 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    assert detect_cgroup_layout(unified, tmp_path) == CgroupLayout(2)
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert not detect_cgroup_layout(hybrid, tmp_path).is_hybrid
