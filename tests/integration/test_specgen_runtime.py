"""Generated specs run by the real runc (and crun, where it can be made to work).

Each test builds a SpecGenerator, generates config.json for a private copy
of a busybox rootfs (``skiff.testing.ocibundle``), runs it with ``runc run``
through ``OCIRuntime``'s argv builders, and checks from inside the
container what the options promised: ids and groups, capability sets,
seccomp mode and a filtered syscall, env, cwd, hostname, the /etc files,
read-only rootfs, tmpfs and /dev/shm sizes, devices and the device cgroup,
masked and read-only paths, rlimits, cgroup v1 limits, the init process.
Container commands that check process-level state exec a real binary
(busybox as argv[0]); busybox's sh runs applets in-process.

The last tests drive the OCIRuntime wrapper through a container's life
(create, start, state, pause, resume, update, kill, delete), check how
runtime failures surface, and compare the generated spec with the one
podman 4 writes for the same options.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from skiff.errors import ContainerError, ContainerStateError, UsageError
from skiff.runtime.oci import OCIRuntime, select_runtime
from skiff.runtime.specgen import (
    ContainerFiles,
    HostInfo,
    SpecGenerator,
    effective_hostname,
    generate_spec,
    parse_add_host,
    parse_device,
    parse_namespace,
    parse_tmpfs,
    parse_ulimit,
    parse_volume,
    render_hostname,
    render_hosts,
    render_resolv_conf,
    resolve_host_sources,
    write_container_files,
)
from skiff.runtime.specgen.capabilities import CAPABILITIES
from skiff.testing.busybox import GROUP, build_busybox_layout
from skiff.testing.ocibundle import (
    HIDE_CGROUP2_PREFIX,
    Bundle,
    BundleFactory,
    RunResult,
    run_bundle,
    unique_id,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed"),
]

BB = "/bin/busybox"
EXTRA_GROUPS = b"extra:x:2000:www\nother:x:3000:root,www\n"


@pytest.fixture(scope="module")
def workdir(session_shm: Path) -> Path:
    path = session_shm / "specgen-runtime"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def factory(workdir: Path) -> BundleFactory:
    layout = workdir / "layout"
    build_busybox_layout(layout, extra_files={"etc/group": GROUP + EXTRA_GROUPS})
    return BundleFactory(layout, workdir / "bundles")


@pytest.fixture(scope="module")
def wd_factory(workdir: Path) -> BundleFactory:
    """An image with WorkingDir /srv/app (missing) and User www."""
    layout = workdir / "layout"
    build_busybox_layout(
        layout,
        tag="wd",
        extra_files={"etc/group": GROUP + EXTRA_GROUPS},
        config_overrides={"config": {"WorkingDir": "/srv/app", "User": "www"}},
    )
    return BundleFactory(layout, workdir / "bundles-wd", tag="wd")


@pytest.fixture(scope="module")
def run_root(workdir: Path) -> Path:
    return workdir / "run"


@pytest.fixture(scope="module")
def runc(run_root: Path) -> OCIRuntime:
    return OCIRuntime(select_runtime(run_root, "runc"), run_root)


@pytest.fixture(scope="module")
def host() -> HostInfo:
    return HostInfo.detect()


def _files(bundle: Bundle, hostname: str, **hosts_kw: Any) -> ContainerFiles:
    return write_container_files(
        bundle.userdata,
        hosts=render_hosts(hostname=hostname, **hosts_kw),
        resolv_conf=render_resolv_conf(host_resolv_conf="nameserver 192.0.2.53\n"),
        hostname=render_hostname(hostname),
    )


def prepare(
    factory: BundleFactory, sg: SpecGenerator, *, add_hosts: list[str] | None = None
) -> tuple[Bundle, str, dict[str, Any]]:
    bundle = factory.make()
    cid = unique_id("specgen")
    hostname = sg.basic.hostname or cid[:12]
    entries = [parse_add_host(h) for h in add_hosts or []]
    files = _files(bundle, hostname, add_hosts=entries)
    spec = generate_spec(
        sg, factory.image_config, bundle.rootfs, container_id=cid, container_files=files
    )
    bundle.write_config(spec)
    return bundle, cid, spec


def run(
    factory: BundleFactory,
    runtime: OCIRuntime,
    sg: SpecGenerator,
    *,
    prefix: tuple[str, ...] = (),
    add_hosts: list[str] | None = None,
) -> RunResult:
    bundle, cid, _ = prepare(factory, sg, add_hosts=add_hosts)
    return run_bundle(runtime, bundle, cid, argv_prefix=prefix)


def sh(script: str) -> SpecGenerator:
    sg = SpecGenerator()
    sg.basic.command = [BB, "sh", "-c", script]
    return sg


def ok(result: RunResult) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}{result.stdout}"
    return result.stdout


def status_field(out: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(\S+)", out, re.MULTILINE)
    assert match, f"{name} not in {out!r}"
    return match.group(1)


def caps_of(mask: str) -> set[str]:
    value = int(mask, 16)
    return {name for bit, name in enumerate(CAPABILITIES) if value >> bit & 1}


DEFAULT_CAPS = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
}


# --- process: identity, capabilities, seccomp ---------------------------------------


def test_defaults_root_with_podman_caps_and_seccomp(
    factory: BundleFactory, runc: OCIRuntime
) -> None:
    out = ok(run(factory, runc, sh("id; cat /proc/self/status")))
    assert out.startswith("uid=0(root) gid=0(root)")
    assert caps_of(status_field(out, "CapBnd")) == DEFAULT_CAPS
    assert caps_of(status_field(out, "CapEff")) == DEFAULT_CAPS
    assert caps_of(status_field(out, "CapPrm")) == DEFAULT_CAPS
    assert int(status_field(out, "CapInh"), 16) == 0
    assert int(status_field(out, "CapAmb"), 16) == 0
    assert status_field(out, "Seccomp") == "2"
    assert status_field(out, "NoNewPrivs") == "0"


def test_user_by_name_gets_supplementary_groups_and_group_add(
    factory: BundleFactory, runc: OCIRuntime
) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "id"]
    sg.security.user = "www"
    sg.security.group_add = ["nobody", "4321"]
    out = ok(run(factory, runc, sg))
    # what podman 4.3 shows for the same image and options
    assert out.strip() == (
        "uid=1000(www) gid=1000(www) groups=1000(www),2000(extra),3000(other),4321,65534(nobody)"
    )


def test_user_with_explicit_group_has_only_that_group(
    factory: BundleFactory, runc: OCIRuntime
) -> None:
    sg = sh("id; echo HOME=$HOME")
    sg.security.user = "www:nobody"
    out = ok(run(factory, runc, sg))
    assert "uid=1000(www) gid=65534(nobody) groups=65534(nobody)" in out
    assert "HOME=/var/www" in out


def test_numeric_user_missing_from_passwd(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh("id -u; id -g; echo HOME=$HOME")
    sg.security.user = "4242:4243"
    assert ok(run(factory, runc, sg)).split() == ["4242", "4243", "HOME=/"]


def test_non_root_user_has_no_capabilities_but_bounding(
    factory: BundleFactory, runc: OCIRuntime
) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "cat", "/proc/self/status"]
    sg.security.user = "www"
    out = ok(run(factory, runc, sg))
    for name in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status_field(out, name), 16) == 0, name
    assert caps_of(status_field(out, "CapBnd")) == DEFAULT_CAPS


def test_cap_drop_all_cap_add_one(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "cat", "/proc/self/status"]
    sg.security.cap_drop = ["all"]
    sg.security.cap_add = ["net_admin"]
    out = ok(run(factory, runc, sg))
    assert caps_of(status_field(out, "CapEff")) == {"CAP_NET_ADMIN"}
    assert caps_of(status_field(out, "CapBnd")) == {"CAP_NET_ADMIN"}


def test_non_root_cap_add_is_ambient_like_podman(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "cat", "/proc/self/status"]
    sg.security.user = "www"
    sg.security.cap_add = ["CAP_NET_ADMIN"]
    out = ok(run(factory, runc, sg))
    for name in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert caps_of(status_field(out, name)) == {"CAP_NET_ADMIN"}, name


def test_unshare_denied_without_sys_admin(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "unshare", "-m", BB, "true"]
    result = run(factory, runc, sg)
    assert result.returncode != 0
    assert "Operation not permitted" in result.stderr


def test_seccomp_filters_what_capabilities_would_allow(
    factory: BundleFactory, runc: OCIRuntime
) -> None:
    """swapoff is refused by the profile (EPERM) even with CAP_SYS_ADMIN;
    without the profile the same call reaches the kernel (EINVAL: not an
    active swap area)."""
    sg = SpecGenerator()
    sg.basic.command = [BB, "swapoff", "/etc/passwd"]
    sg.security.cap_add = ["SYS_ADMIN"]
    filtered = run(factory, runc, sg)
    assert filtered.returncode != 0
    assert "Operation not permitted" in filtered.stderr
    sg.security.seccomp_profile = "unconfined"
    unfiltered = run(factory, runc, sg)
    assert unfiltered.returncode != 0
    assert "Invalid argument" in unfiltered.stderr
    sg.basic.command = [BB, "grep", "Seccomp:", "/proc/self/status"]
    assert ok(run(factory, runc, sg)).split() == ["Seccomp:", "0"]


def test_no_new_privileges(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "grep", "NoNewPrivs", "/proc/self/status"]
    sg.security.add_security_opt("no-new-privileges")
    assert ok(run(factory, runc, sg)).split() == ["NoNewPrivs:", "1"]


def test_privileged(factory: BundleFactory, runc: OCIRuntime, host: HostInfo) -> None:
    sg = sh(
        "cat /proc/self/status; grep ' /sys ' /proc/self/mountinfo; "
        "wc -c < /proc/kcore 2>&1 | head -c 20; echo; ls /dev | wc -l"
    )
    sg.security.privileged = True
    out = ok(run(factory, runc, sg))
    assert caps_of(status_field(out, "CapEff")) == set(host.bounding_caps)
    assert status_field(out, "Seccomp") == "0"
    sys_line = next(line for line in out.splitlines() if " /sys " in line)
    assert " rw," in sys_line
    dev_count = int(out.strip().splitlines()[-1])
    assert dev_count > 20  # host devices are there


# --- env, cwd, hostname, /etc files -------------------------------------------------


def test_env_cwd_and_hostname(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh("env; echo CWD=$(pwd); echo HN=$(hostname); cat /etc/hostname")
    sg.basic.env = {"FOO": "bar baz", "PATH": "/bin"}
    sg.basic.workdir = "/var/www"
    sg.basic.hostname = "box1"
    out = ok(run(factory, runc, sg))
    lines = out.splitlines()
    assert "FOO=bar baz" in lines
    assert "PATH=/bin" in lines
    assert "container=skiff" in lines
    assert "HOSTNAME=box1" in lines
    assert "HOME=/root" in lines
    assert "TERM=xterm" in lines
    assert "CWD=/var/www" in lines
    assert "HN=box1" in lines
    assert lines[-1] == "box1"


def test_image_workdir_is_created_for_the_user(wd_factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh("pwd; id -u; stat -c '%U %a' .")
    out = ok(run(wd_factory, runc, sg))
    assert out.split("\n")[:3] == ["/srv/app", "1000", "www 755"]


def test_missing_user_workdir_is_an_error(factory: BundleFactory) -> None:
    sg = sh("true")
    sg.basic.workdir = "/does/not/exist"
    with pytest.raises(ContainerError, match="does not exist"):
        prepare(factory, sg)


def test_hosts_resolv_conf_and_add_host(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh("cat /etc/hosts; echo ---; cat /etc/resolv.conf")
    sg.basic.hostname = "web"
    out = ok(run(factory, runc, sg, add_hosts=["db:10.1.2.3"]))
    hosts, resolv = out.split("---\n")
    assert hosts.splitlines()[0] == "10.1.2.3\tdb"
    assert "127.0.0.1\tweb" in hosts.splitlines()
    assert resolv.strip() == "nameserver 192.0.2.53"


# --- file systems ------------------------------------------------------------------


def test_read_only_rootfs_with_tmpfs_dirs(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh(
        "touch /probe 2>&1; echo rc=$?; for d in /tmp /var/tmp /run; do touch $d/x && echo $d ok; done"
    )
    sg.storage.read_only = True
    out = ok(run(factory, runc, sg))
    assert "Read-only file system" in out
    assert "rc=1" in out
    assert "/tmp ok" in out and "/var/tmp ok" in out and "/run ok" in out


def test_read_only_without_tmpfs(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh("touch /tmp/x 2>&1; echo rc=$?")
    sg.storage.read_only = True
    sg.storage.read_only_tmpfs = False
    out = ok(run(factory, runc, sg))
    assert "Read-only file system" in out and "rc=1" in out


def test_tmpfs_mount_and_shm_size(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh("grep -E ' /(mnt|dev/shm) ' /proc/self/mountinfo")
    sg.storage.mounts = [parse_tmpfs("/mnt:size=1m,mode=700")]
    sg.storage.shm_size = 10 << 20
    out = ok(run(factory, runc, sg))
    mnt = next(line for line in out.splitlines() if " /mnt " in line)
    shm = next(line for line in out.splitlines() if " /dev/shm " in line)
    assert "size=1024k" in mnt and "mode=700" in mnt and "nosuid" in mnt
    assert "size=10240k" in shm and "noexec" in shm


def test_default_shm_is_64m(factory: BundleFactory, runc: OCIRuntime) -> None:
    out = ok(run(factory, runc, sh("grep ' /dev/shm ' /proc/self/mountinfo")))
    assert "size=65536k" in out


def test_bind_mount_read_only(factory: BundleFactory, runc: OCIRuntime, workdir: Path) -> None:
    data = workdir / f"data-{unique_id()}"
    data.mkdir()
    (data / "hello").write_text("from host\n")
    sg = sh("cat /data/hello; touch /data/new 2>&1; echo rc=$?")
    sg.storage.mounts = resolve_host_sources([parse_volume(f"{data}:/data:ro")])
    out = ok(run(factory, runc, sg))
    assert "from host" in out and "Read-only file system" in out
    assert not (data / "new").exists()


def test_default_devices_and_device_cgroup(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh(
        "for d in null zero full tty random urandom; do test -c /dev/$d && echo $d; done; "
        "for l in fd ptmx stdin; do readlink /dev/$l; done; test -c /dev/fuse && echo fuse; "
        "mknod /tmp/mem c 1 1 && head -c1 /tmp/mem >/dev/null 2>/tmp/err; cat /tmp/err"
    )
    sg.security.cap_add = ["MKNOD"]
    sg.storage.devices = [parse_device("/dev/fuse")]
    out = ok(run(factory, runc, sg))
    lines = out.splitlines()
    assert lines[:6] == ["null", "zero", "full", "tty", "random", "urandom"]
    assert lines[6:9] == ["/proc/self/fd", "pts/ptmx", "/proc/self/fd/0"]
    assert "fuse" in lines
    assert "Operation not permitted" in out  # /dev/mem's node exists but the cgroup denies it


def _masked_file_with_content() -> str:
    """A default-masked /proc file this kernel has and that reads non-empty."""
    for path in ("/proc/timer_list", "/proc/keys", "/proc/sched_debug", "/proc/latency_stats"):
        try:
            if Path(path).read_bytes():
                return path
        except OSError:
            continue
    pytest.skip("no default-masked /proc file with content on this kernel")


def test_masked_and_read_only_paths(factory: BundleFactory, runc: OCIRuntime) -> None:
    masked = _masked_file_with_content()
    sg = sh(
        f"wc -c < {masked}; ls /sys/firmware | wc -l; "
        "{ echo x > /proc/sys/kernel/domainname; } 2>&1; echo rc=$?"
    )
    out = ok(run(factory, runc, sg))
    lines = out.splitlines()
    assert lines[0].strip() == "0"
    assert lines[1].strip() == "0"
    assert "Read-only file system" in out
    assert lines[-1] == "rc=1"


def test_unmask(factory: BundleFactory, runc: OCIRuntime) -> None:
    masked = _masked_file_with_content()
    sg = sh(f"wc -c < {masked}")
    sg.security.add_security_opt(f"unmask={masked}")
    assert int(ok(run(factory, runc, sg))) > 0


# --- limits -------------------------------------------------------------------------


def test_default_ulimits_are_what_skiff_holds(
    factory: BundleFactory, runc: OCIRuntime, host: HostInfo
) -> None:
    out = ok(run(factory, runc, sh("ulimit -n; ulimit -Hn; ulimit -u")))
    nofile = min(1_048_576, host.held("RLIMIT_NOFILE")[1])
    nproc = min(1_048_576, host.held("RLIMIT_NPROC")[1])
    assert out.split() == [str(nofile), str(nofile), str(nproc)]


def test_ulimit_option(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh("ulimit -n; ulimit -Hn")
    sg.resources.ulimits = [parse_ulimit("nofile=100:200")]
    assert ok(run(factory, runc, sg)).split() == ["100", "200"]


def test_ulimit_above_held_is_refused_before_the_runtime(
    factory: BundleFactory, host: HostInfo
) -> None:
    if host.can_raise_rlimits:
        pytest.skip("this process may raise hard limits")
    held = host.held("RLIMIT_NOFILE")[1]
    sg = sh("true")
    sg.resources.ulimits = [parse_ulimit(f"nofile={held + 1}")]
    with pytest.raises(UsageError, match=f"use at most nofile={held}"):
        prepare(factory, sg)


def test_cgroup_v1_limits(factory: BundleFactory, runc: OCIRuntime, host: HostInfo) -> None:
    if host.cgroup.version != 1:
        pytest.skip("checks cgroup v1 files")
    sg = sh(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes "
        "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares"
    )
    sg.resources.memory = 64 << 20
    sg.resources.pids_limit = 100
    sg.resources.cpus = 0.5
    sg.resources.cpu_shares = 512
    out = ok(run(factory, runc, sg))
    assert out.split() == [str(64 << 20), str(128 << 20), "100", "50000", "512"]


def test_default_pids_limit(factory: BundleFactory, runc: OCIRuntime, host: HostInfo) -> None:
    if host.cgroup.version != 1:
        pytest.skip("checks cgroup v1 files")
    assert ok(run(factory, runc, sh("cat /sys/fs/cgroup/pids/pids.max"))).strip() == "2048"


def test_oom_score_adj(factory: BundleFactory, runc: OCIRuntime, host: HostInfo) -> None:
    sg = sh("cat /proc/self/oom_score_adj")
    sg.resources.oom_score_adj = max(500, host.oom_score_adj)
    assert ok(run(factory, runc, sg)).strip() == str(max(500, host.oom_score_adj))
    sg.resources.oom_score_adj = -1
    with pytest.raises(UsageError, match="below"):
        prepare(factory, sg)


# --- namespaces and init --------------------------------------------------------------


def test_init_is_pid_1(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = SpecGenerator()
    sg.basic.command = [
        BB,
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/comm; echo $$",
    ]
    sg.basic.init = True
    out = ok(run(factory, runc, sg))
    cmdline, comm, pid = out.splitlines()
    assert cmdline.startswith("/run/podman-init -- /bin/busybox sh -c")
    assert comm == "podman-init"
    assert pid != "1"


def test_pid_and_network_namespaces(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = sh("echo $$; ls /proc | grep -c '^[0-9]'; cat /proc/net/dev | tail -n +3 | cut -d: -f1")
    sg.network.network = parse_namespace("none", "network")
    out = ok(run(factory, runc, sg)).split()
    assert out[0] == "1"
    assert int(out[1]) <= 3
    assert out[2:] == ["lo"]


def test_host_uts_namespace(factory: BundleFactory, runc: OCIRuntime, host: HostInfo) -> None:
    sg = sh("hostname; echo $HOSTNAME")
    sg.network.uts = parse_namespace("host", "uts")
    bundle, cid, spec = prepare(factory, sg)
    assert "hostname" not in spec
    out = ok(run_bundle(runc, bundle, cid))
    assert out.split() == [host.hostname, host.hostname]
    assert effective_hostname(sg, cid, host) == host.hostname


# --- crun ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crun(run_root: Path) -> OCIRuntime:
    if shutil.which("crun") is None or shutil.which("unshare") is None:
        pytest.skip("crun is not installed")
    from skiff.runtime.oci import RuntimeChoice, find_runtime

    path = find_runtime("crun")
    assert path is not None
    return OCIRuntime(RuntimeChoice("crun", path, "", "test"), run_root)


def test_crun_runs_the_same_spec(factory: BundleFactory, crun: OCIRuntime, host: HostInfo) -> None:
    """crun with the cgroup2 mount hidden when the host is hybrid (tests only)."""
    prefix = HIDE_CGROUP2_PREFIX if host.cgroup.is_hybrid else ()
    sg = sh("id; cat /proc/self/status; ulimit -n; cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
    sg.security.user = "www"
    sg.resources.memory = 32 << 20
    sg.resources.ulimits = [parse_ulimit("nofile=321")]
    out = ok(run(factory, crun, sg, prefix=prefix))
    assert "uid=1000(www) gid=1000(www) groups=1000(www),2000(extra),3000(other)" in out
    assert status_field(out, "Seccomp") == "2"
    assert int(status_field(out, "CapEff"), 16) == 0
    assert caps_of(status_field(out, "CapBnd")) == DEFAULT_CAPS
    tail = out.strip().splitlines()[-2:]
    assert tail[0] == "321"
    if host.cgroup.version == 1:
        assert tail[1] == str(32 << 20)


# --- the OCIRuntime wrapper ---------------------------------------------------------------


def _wait_status(runtime: OCIRuntime, cid: str, wanted: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = runtime.state(cid)
        assert state is not None
        if state["status"] == wanted or time.monotonic() > deadline:
            assert state["status"] == wanted
            return state
        time.sleep(0.02)


def test_wrapper_lifecycle(factory: BundleFactory, runc: OCIRuntime, host: HostInfo) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "sleep", "60"]
    sg.resources.memory = 64 << 20
    bundle, cid, _ = prepare(factory, sg)
    pid_file = bundle.path / "pid"
    try:
        assert runc.state(cid) is None
        runc.create(cid, bundle.path, pid_file=pid_file)
        state = _wait_status(runc, cid, "created")
        assert state["pid"] == int(pid_file.read_text())
        assert cid in runc.list_ids()
        runc.start(cid)
        _wait_status(runc, cid, "running")
        runc.pause(cid)
        _wait_status(runc, cid, "paused")
        runc.resume(cid)
        _wait_status(runc, cid, "running")
        runc.update(cid, {"memory": {"limit": 96 << 20, "swap": 192 << 20}})
        if host.cgroup.version == 1:
            cgroup = Path("/sys/fs/cgroup/memory/skiff") / cid / "memory.limit_in_bytes"
            assert cgroup.read_text().strip() == str(96 << 20)
        runc.kill(cid, 9)
        _wait_status(runc, cid, "stopped")
        with pytest.raises(ContainerStateError, match="not running"):
            runc.kill(cid, 15)
        runc.delete(cid)
        assert runc.state(cid) is None
        runc.delete(cid)  # nothing left: no error
    finally:
        runc.delete(cid, force=True)


def test_runtime_errors_carry_the_runtime_reason(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = SpecGenerator()
    sg.basic.command = ["/no/such/binary"]
    bundle, cid, _ = prepare(factory, sg)
    try:
        with pytest.raises(ContainerError, match=r"no such file or directory|not found"):
            runc.create(cid, bundle.path)
    finally:
        runc.delete(cid, force=True)
    with pytest.raises(ContainerError, match=f"start {cid}.*does not exist"):
        runc.start(cid)


def test_runtime_selection_here(run_root: Path, host: HostInfo) -> None:
    choice = select_runtime(run_root)
    if host.cgroup.is_hybrid and shutil.which("crun"):
        assert choice.name == "runc"
        assert "hybrid cgroups" in choice.reason
        with pytest.raises(ContainerError, match="hybrid"):
            select_runtime(run_root, "crun")
    assert choice.version
    cache = json.loads((run_root / "runtime" / "probe.json").read_text())
    assert str(choice.path) in cache["runtimes"]


# --- parity with podman -------------------------------------------------------------------


def _podman_config(tmp: Path, layout: Path, args: list[str]) -> dict[str, Any]:
    """config.json podman 4 generates for ``podman create ARGS IMAGE``."""
    # CONTAINERS_CONF replaces Debian's /usr/share/containers/containers.conf:
    # carry over its defaults that shape the spec.
    system = tomllib.loads(Path("/usr/share/containers/containers.conf").read_text())
    defaults = system.get("containers", {})
    conf = tmp / "containers.conf"
    conf.write_text(
        "[containers]\n"
        f"default_capabilities = {json.dumps(defaults.get('default_capabilities', []))}\n"
        f"default_sysctls = {json.dumps(defaults.get('default_sysctls', []))}\n"
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        "[engine]\n"
        'runtime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    )
    storage = tmp / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp}/root"\nrunroot = "{tmp}/run"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}
    name = unique_id("parity")

    def podman(*a: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["podman", *a], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0 or not check, proc.stderr
        return proc.stdout.strip()

    try:
        podman("create", "--name", name, "--network", "none", *args, f"oci:{layout}:latest", "true")
        podman("init", name, check=False)  # writes config.json even if the runtime fails
        cid = podman("inspect", "--format", "{{.Id}}", name)
        path = next((tmp / "root").glob(f"vfs-containers/{cid}/userdata/config.json"))
        return dict(json.loads(path.read_text()))
    finally:
        podman("rm", "-f", name, check=False)
        subprocess.run(
            ["podman", "system", "reset", "--force"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
@pytest.mark.parametrize(
    ("podman_args", "configure"),
    [
        ([], lambda sg: None),
        (
            ["--user", "www", "--cap-add", "net_admin", "--cap-drop", "chown", "--read-only"],
            lambda sg: (
                setattr(sg.security, "user", "www"),
                setattr(sg.security, "cap_add", ["net_admin"]),
                setattr(sg.security, "cap_drop", ["chown"]),
                setattr(sg.storage, "read_only", True),
            ),
        ),
        (
            [
                "--cap-add",
                "sys_admin",
                "--security-opt",
                "unmask=/proc/k*",
                "--security-opt",
                "mask=/etc/x",
            ],
            lambda sg: (
                setattr(sg.security, "cap_add", ["sys_admin"]),
                sg.security.add_security_opt("unmask=/proc/k*"),
                sg.security.add_security_opt("mask=/etc/x"),
            ),
        ),
    ],
)
def test_spec_matches_podman(
    factory: BundleFactory, tmp_shm: Path, podman_args: list[str], configure: Any
) -> None:
    theirs = _podman_config(tmp_shm, factory.layout, podman_args)
    sg = SpecGenerator()
    sg.basic.command = ["true"]
    sg.network.network = parse_namespace("none", "network")
    configure(sg)
    bundle = factory.make()
    ours = generate_spec(
        sg,
        factory.image_config,
        bundle.rootfs,
        container_id="x" * 64,
        container_files=ContainerFiles(),
    )
    assert ours["process"]["capabilities"] == theirs["process"]["capabilities"]
    assert ours["process"]["user"] == theirs["process"]["user"]
    assert ours["linux"]["seccomp"] == theirs["linux"]["seccomp"]
    assert ours["linux"].get("maskedPaths") == theirs["linux"].get("maskedPaths")
    assert ours["linux"].get("readonlyPaths") == theirs["linux"].get("readonlyPaths")
    assert ours["linux"]["sysctl"] == theirs["linux"]["sysctl"]
    assert ours["linux"]["resources"]["devices"] == theirs["linux"]["resources"]["devices"]
    assert ours["linux"]["resources"]["pids"] == theirs["linux"]["resources"]["pids"]
    assert ours.get("root", {}).get("readonly") == theirs["root"].get("readonly")

    def kernel_mounts(spec: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
        return {
            m["destination"]: (m["type"], m["options"])
            for m in spec["mounts"]
            if m["type"] != "bind" and m["destination"] != "/dev/shm"
        }

    assert kernel_mounts(ours) == kernel_mounts(theirs)
    assert [n["type"] for n in ours["linux"]["namespaces"]] == [
        n["type"] for n in theirs["linux"]["namespaces"]
    ]
