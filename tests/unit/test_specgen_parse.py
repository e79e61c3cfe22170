"""Option parsing of skiff.runtime.specgen: the strings podman's flags take."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from skiff.errors import UsageError
from skiff.runtime.specgen import (
    BindMount,
    NamespaceMode,
    SecurityOptions,
    TmpfsMount,
    VolumeMount,
    parse_add_host,
    parse_cpus,
    parse_device,
    parse_entrypoint,
    parse_env,
    parse_mount,
    parse_namespace,
    parse_signal,
    parse_size,
    parse_tmpfs,
    parse_ulimit,
    parse_volume,
    read_env_file,
    resolve_host_sources,
)
from skiff.runtime.specgen.host import RLIM_INFINITY

# --- -v ---------------------------------------------------------------------------------


def test_volume_bind_with_options() -> None:
    m = parse_volume("/srv/data:/data:ro,Z,rshared,noexec")
    assert m == BindMount(
        source="/srv/data",
        destination="/data",
        read_only=True,
        propagation="rshared",
        flags=("noexec",),
        relabel="Z",
        given_source="/srv/data",
    )


def test_volume_relative_source_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    m = parse_volume("./d:/d")
    assert isinstance(m, BindMount)
    assert m.source == str(tmp_path / "d")
    assert m.given_source == "./d"


def test_volume_named_and_anonymous() -> None:
    assert parse_volume("cache:/var/cache:nocopy,U") == VolumeMount(
        "cache", "/var/cache", chown=True, copy_up=False
    )
    assert parse_volume("/scratch") == VolumeMount("", "/scratch")


def test_volume_destination_is_cleaned() -> None:
    assert parse_volume("/a:/x/../y//z/").destination == "/y/z"


def test_volume_bind_nonrecursive() -> None:
    m = parse_volume("/a:/b:bind")
    assert isinstance(m, BindMount) and not m.recursive


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/a:b", "must be an absolute path"),
        ("/a:/b:ro,rw", "more than once"),
        ("/a:/b:z,Z", "more than once"),
        ("/a:/b:shared,slave", "propagation"),
        ("/a:/b:nosuid,suid", "opposite"),
        ("/a:/b:bogus", "unknown option 'bogus'"),
        ("/a:/b:O", "overlay volumes"),
        ("/a:/b:c:d", "invalid volume"),
        ("bad name:/b", "invalid volume name"),
        ("vol:/b:bind", "unknown option 'bind'"),
        ("", "invalid volume"),
    ],
)
def test_volume_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_volume(spec)


# --- --mount and --tmpfs -------------------------------------------------------------------


def test_mount_bind() -> None:
    m = parse_mount(
        "type=bind,src=/etc/os-release,dst=/osr,readonly,bind-propagation=rslave,relabel=private"
    )
    assert m == BindMount(
        source="/etc/os-release",
        destination="/osr",
        read_only=True,
        propagation="rslave",
        relabel="Z",
        given_source="/etc/os-release",
    )


def test_mount_ro_values() -> None:
    assert parse_mount("type=bind,source=/a,target=/b,ro=false").read_only is False  # type: ignore[union-attr]
    assert parse_mount("type=bind,source=/a,target=/b,ro=true").read_only is True  # type: ignore[union-attr]
    assert parse_mount("type=bind,source=/a,target=/b,rw=false").read_only is True  # type: ignore[union-attr]


def test_mount_volume_and_tmpfs() -> None:
    assert parse_mount("type=volume,src=v,dst=/v,volume-nocopy") == VolumeMount(
        "v", "/v", copy_up=False
    )
    assert parse_mount("type=volume,dst=/anon") == VolumeMount("", "/anon")
    t = parse_mount("type=tmpfs,dst=/t,tmpfs-size=10m,tmpfs-mode=1777,noexec")
    assert t == TmpfsMount(
        "/t", ("size=10m", "mode=1777", "noexec", "rw", "rprivate", "nosuid", "nodev", "tmpcopyup")
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("src=/a,dst=/b", "type must be"),
        ("type=bind,dst=/b", "needs src"),
        ("type=bind,src=/a", "no destination"),
        ("type=tmpfs,src=/a,dst=/b", "takes no source"),
        ("type=bind,src=/a,dst=/b,frobnicate=1", "unknown option 'frobnicate'"),
        ("type=bind,src=/a,dst=/b,ro=maybe", "not a boolean"),
        ("type=bind,src=/a,dst=/b,dst=/c", "given twice"),
    ],
)
def test_mount_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_mount(spec)


def test_tmpfs_defaults_and_user_choices() -> None:
    assert parse_tmpfs("/run") == TmpfsMount(
        "/run", ("rw", "rprivate", "nosuid", "nodev", "tmpcopyup")
    )
    t = parse_tmpfs("/mnt:size=1m,mode=700,ro,exec,notmpcopyup,shared")
    assert t.options == (
        "size=1m",
        "mode=700",
        "ro",
        "exec",
        "notmpcopyup",
        "shared",
        "nosuid",
        "nodev",
    )


@pytest.mark.parametrize("spec", ["/mnt:size=lots", "/mnt:mode=999", "/mnt:uid=x", "relative"])
def test_tmpfs_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_tmpfs(spec)


def test_resolve_host_sources(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    mounts = resolve_host_sources(
        [parse_volume(f"{tmp_path}/link:/a"), parse_tmpfs("/t"), parse_volume("v:/v")]
    )
    assert mounts[0].source == str(real)  # type: ignore[union-attr]
    assert mounts[1:] == [parse_tmpfs("/t"), parse_volume("v:/v")]
    from skiff.errors import ContainerError

    with pytest.raises(ContainerError, match="No such file"):
        resolve_host_sources([parse_volume(f"{tmp_path}/missing:/a")])


# --- devices, sizes, ulimits, cpus ---------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "host", "container", "perms"),
    [
        ("/dev/fuse", "/dev/fuse", "/dev/fuse", "rwm"),
        ("/dev/fuse:rw", "/dev/fuse", "/dev/fuse", "rw"),
        ("/dev/sda:/dev/xvda", "/dev/sda", "/dev/xvda", "rwm"),
        ("/dev/sda:/dev/xvda:r", "/dev/sda", "/dev/xvda", "r"),
    ],
)
def test_parse_device(spec: str, host: str, container: str, perms: str) -> None:
    d = parse_device(spec)
    assert (d.host_path, d.container_path, d.permissions) == (host, container, perms)


@pytest.mark.parametrize(
    "spec", ["dev/fuse", "/dev/a:/dev/b:rwx", "/dev/a:/dev/b:rr", "/dev/a:rel", "/a:/b:r:x"]
)
def test_parse_device_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_device(spec)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64m", 64 << 20),
        ("1g", 1 << 30),
        ("512k", 512 << 10),
        ("1024", 1024),
        ("1.5g", 3 << 29),
        ("10MB", 10 << 20),
        ("2GiB", 2 << 30),
        ("7b", 7),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text, "--memory") == value


@pytest.mark.parametrize("text", ["", "m", "-1m", "1x", "1.2.3g"])
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--shm-size"):
        parse_size(text, "--shm-size")


def test_parse_ulimit() -> None:
    u = parse_ulimit("nofile=1024:2048")
    assert (u.name, u.soft, u.hard) == ("RLIMIT_NOFILE", 1024, 2048)
    assert parse_ulimit("nproc=50").to_json() == {"type": "RLIMIT_NPROC", "hard": 50, "soft": 50}
    core = parse_ulimit("core=-1")
    assert core.soft == core.hard == RLIM_INFINITY
    assert parse_ulimit("MEMLOCK=1:-1").hard == RLIM_INFINITY


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nofile", "NAME=SOFT"),
        ("bogus=1", "invalid ulimit type"),
        ("nofile=2:1", "above the hard limit"),
        ("nofile=x", "not a number"),
        ("nofile=1:", "not a number"),
    ],
)
def test_parse_ulimit_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_ulimit(spec)


def test_parse_cpus() -> None:
    assert parse_cpus("0.5") == 0.5
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(UsageError):
            parse_cpus(bad)


# --- signals, entrypoint, namespaces ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("SIGTERM", 15),
        ("term", 15),
        ("KILL", 9),
        ("2", 2),
        ("SIGRTMIN", int(signal.SIGRTMIN)),
        ("RTMIN+3", int(signal.SIGRTMIN) + 3),
        ("SIGRTMAX-1", int(signal.SIGRTMAX) - 1),
    ],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["SIGNOPE", "0", "65", "RTMAX+1", ""])
def test_parse_signal_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_signal(text)


def test_parse_entrypoint() -> None:
    assert parse_entrypoint("/bin/sh") == ["/bin/sh"]
    assert parse_entrypoint("") == []
    assert parse_entrypoint('["/bin/sh", "-c"]') == ["/bin/sh", "-c"]
    with pytest.raises(UsageError, match="JSON array"):
        parse_entrypoint("[1, 2]")


def test_parse_namespace() -> None:
    assert parse_namespace("host", "pid").mode == NamespaceMode.HOST
    assert parse_namespace("private", "ipc").mode == NamespaceMode.PRIVATE
    assert parse_namespace("bridge", "network").mode == NamespaceMode.PRIVATE
    assert parse_namespace("none", "network").mode == NamespaceMode.NONE
    ns = parse_namespace("ns:/run/netns/x/../y", "network")
    assert (ns.mode, ns.value) == (NamespaceMode.PATH, "/run/netns/y")
    c = parse_namespace("container:abc", "ipc")
    assert (c.mode, c.value) == (NamespaceMode.CONTAINER, "abc")
    for bad, kind in (
        ("none", "pid"),
        ("ns:relative", "uts"),
        ("container:", "pid"),
        ("slirp4netns", "network"),
    ):
        with pytest.raises(UsageError, match=f"--{kind}"):
            parse_namespace(bad, kind)


# --- env ------------------------------------------------------------------------------------


def test_parse_env() -> None:
    caller = {"HOME": "/home/me", "FOO_A": "1", "FOO_B": "2", "BAR": "3"}
    assert parse_env(["A=1", "B=", "HOME", "MISSING", "FOO*", "C=x=y"], caller) == {
        "A": "1",
        "B": "",
        "HOME": "/home/me",
        "FOO_A": "1",
        "FOO_B": "2",
        "C": "x=y",
    }


@pytest.mark.parametrize("entry", ["=x", "A B=1", "F*O*", "A\0=1"])
def test_parse_env_errors(entry: str) -> None:
    with pytest.raises(UsageError):
        parse_env([entry], {})


def test_read_env_file(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text('# comment\n\nA=1\n  B=two words\nUSER\nQ="quoted"\n')
    assert read_env_file(path, {"USER": "me"}) == {
        "A": "1",
        "B": "two words",
        "USER": "me",
        "Q": '"quoted"',
    }
    with pytest.raises(UsageError, match="cannot read env file"):
        read_env_file(tmp_path / "missing", {})
    (tmp_path / "bad").write_text("A B=1\n")
    with pytest.raises(UsageError, match="env file"):
        read_env_file(tmp_path / "bad", {})


# --- add-host, security-opt ----------------------------------------------------------------


def test_parse_add_host() -> None:
    assert parse_add_host("db:10.0.0.5").names == ("db",)
    h = parse_add_host("a;b:2001:db8::1")
    assert (h.names, h.address) == (("a", "b"), "2001:db8::1")
    assert parse_add_host("x:[::1]").address == "::1"
    assert parse_add_host("gw:host-gateway").address == "host-gateway"
    for bad in ("db", "db:", ":1.2.3.4", "db:notanip", "d b:1.2.3.4"):
        with pytest.raises(UsageError, match="--add-host"):
            parse_add_host(bad)


def test_security_opts() -> None:
    sec = SecurityOptions()
    for opt in (
        "no-new-privileges",
        "seccomp=unconfined",
        "mask=/a:/b",
        "unmask=ALL",
        "label=disable",
        "label=type:spc_t",
        "apparmor=unconfined",
    ):
        sec.add_security_opt(opt)
    assert sec.no_new_privileges and sec.label_disable
    assert sec.seccomp_profile == "unconfined"
    assert sec.mask == ["/a", "/b"] and sec.unmask == ["ALL"]
    sec.add_security_opt("no-new-privileges=false")
    assert not sec.no_new_privileges
    for bad in ("mask=relative", "label=bogus", "frob=1", "seccomp"):
        with pytest.raises(UsageError):
            sec.add_security_opt(bad)
