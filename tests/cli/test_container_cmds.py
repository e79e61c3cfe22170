"""The container commands beyond run/ps/logs/rm end to end: exec, attach,
inspect, port, rename, container exists, container prune, update, top,
stats and create — with real runc, conmon and overlay on a private store.

The expected outputs, messages and exit codes are podman 4.3.1's on this
machine (a private store, the same busybox image), except where skiff's
docs say otherwise (exec on a stopped container exits 125, not podman 4.3's
255; attach passes the container's exit code through). Every container is
removed in teardown, and ``ContainerEnv.close`` fails the test if anything
(a mount, a conmon, a runtime state) was left behind.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.testing.cli import assert_clean_failure
from skiff.testing.containers import ContainerEnv, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def sleeper(env: ContainerEnv) -> str:
    """A running container whose process is a real ``busybox sleep`` (pid 1)."""
    env.run_detached(
        "--name", "sleeper", "--network", "none", env.image, "busybox", "sleep", "1000"
    )
    return "sleeper"


def kill_in(env: ContainerEnv, container: str, args: str, sig: str = "TERM") -> None:
    """Kill the container's process whose command line is ``args`` (busybox has no pkill)."""
    rows = [
        line.split(None, 1)
        for line in env.skiff("top", container, "pid", "args").stdout.splitlines()[1:]
    ]
    pids = [pid for pid, command in rows if command.strip() == args]
    assert pids, f"no process {args!r} in {rows}"
    env.skiff("exec", container, "kill", f"-{sig}", *pids)


def inspect(env: ContainerEnv, ref: str) -> dict:
    data = env.skiff("container", "inspect", ref).json()
    assert isinstance(data, list) and len(data) == 1
    return data[0]


# --- terminals --------------------------------------------------------------------------


class Pty:
    """``skiff ARGS`` on the slave side of a pseudo-terminal, as a user types it."""

    def __init__(self, env: ContainerEnv, *args: str) -> None:
        argv = env.skiff_argv(*args)
        environ = env.environ({"TERM": "xterm"})
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            os.execve(argv[0], argv, environ)
        self.output = b""
        self.status: int | None = None

    def read_until(self, needle: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {needle!r}; got {self.output!r}")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"output ended before {needle!r}; got {self.output!r}")
                self.output += chunk
        return self.output

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 20.0) -> int:
        """The exit code, draining the terminal meanwhile (a full pty would block it)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError(f"skiff did not exit; output {self.output!r}")
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:
                    pass
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        os.close(self.fd)


@pytest.fixture
def terminals() -> Iterator[list[Pty]]:
    opened: list[Pty] = []
    yield opened
    for term in opened:
        term.close()


# --- exec ---------------------------------------------------------------------------------


def test_exec_passes_output_and_exit_codes_through(env: ContainerEnv, sleeper: str) -> None:
    result = env.skiff("exec", sleeper, "echo", "hi")
    assert result.stdout == "hi\n"
    assert (
        env.skiff("exec", sleeper, "sh", "-c", "echo out; echo err >&2; exit 7", expect=7).stderr
        == "err\n"
    )
    assert env.skiff("exec", sleeper, "true").returncode == 0


def test_exec_command_not_found_is_127_not_executable_is_126(
    env: ContainerEnv, sleeper: str
) -> None:
    missing = env.fails("exec", sleeper, "nosuchcommand", code=127)
    assert "nosuchcommand" in missing and "not found" in missing
    for path in ("/etc/passwd", "/tmp"):
        refused = env.fails("exec", sleeper, path, code=126)
        # runc says "permission denied", crun "Permission denied"
        assert "permission denied" in refused.lower()
    # the container itself is not disturbed by failed sessions
    assert env.state(sleeper) == "running"
    assert inspect(env, sleeper)["ExecIDs"] == []


def test_exec_refuses_containers_that_do_not_run(env: ContainerEnv) -> None:
    env.skiff("create", "--name", "made", "--network", "none", env.image, "true")
    assert env.fails("exec", "made", "echo", "hi") == (
        "Error: can only create exec sessions on running containers: container state improper"
    )
    env.skiff("start", "made")
    env.wait_state("made", "exited")
    env.fails("exec", "made", "echo", "hi")
    assert "no such container" in env.fails("exec", "nosuch", "echo", "hi")


def test_exec_needs_a_command(env: ContainerEnv, sleeper: str) -> None:
    assert "non-empty command" in env.fails("exec", sleeper)
    assert "--latest" in env.fails("exec")


def test_latest_is_the_container_created_last(env: ContainerEnv) -> None:
    """``exec -l``, ``top -l`` and ``attach -l`` (podman's --latest) take the
    container created last; without any container each says so."""
    for command in (["exec", "-l", "true"], ["top", "-l"], ["attach", "-l"]):
        assert env.fails(*command) == f"Error: {command[0]} --latest: there are no containers"
    for name, seconds in (("first", "1000"), ("last", "1001")):
        env.run_detached(
            "--name", name, "--network", "none", "-e", f"NAME={name}", env.image, "sleep", seconds
        )
    assert env.skiff("exec", "-l", "sh", "-c", "echo $NAME").stdout == "last\n"
    processes = env.skiff("top", "-l").stdout
    assert "sleep 1001" in processes
    assert "sleep 1000" not in processes


def test_exec_user_workdir_and_environment(env: ContainerEnv, sleeper: str, tmp_shm: Path) -> None:
    assert env.skiff("exec", "-u", "www", sleeper, "id").stdout == "uid=1000(www) gid=1000(www)\n"
    assert env.skiff("exec", "--user", "1234:55", sleeper, "id").stdout == "uid=1234 gid=55\n"
    assert env.skiff("exec", "-u", "www", sleeper, "sh", "-c", "echo $HOME").stdout == "/var/www\n"
    assert "unable to find user nouser" in env.fails("exec", "-u", "nouser", sleeper, "id")
    assert env.skiff("exec", "-w", "/tmp", sleeper, "pwd").stdout == "/tmp\n"
    assert "/nonexistent" in env.fails("exec", "-w", "/nonexistent", sleeper, "pwd")
    env_file = tmp_shm / "env.list"
    env_file.write_text("# comment\nFROM_FILE=file\nBOTH=file\n")
    out = env.skiff(
        "exec",
        "--env-file",
        env_file,
        "-e",
        "BOTH=flag",
        "-e",
        "PATH=/bin",
        sleeper,
        "sh",
        "-c",
        "echo $FROM_FILE $BOTH $PATH $container",
    ).stdout
    assert out == "file flag /bin skiff\n"
    assert "cannot read env file" in env.fails(
        "exec", "--env-file", tmp_shm / "nope", sleeper, "true"
    )


def test_exec_interactive_feeds_stdin(env: ContainerEnv, sleeper: str) -> None:
    result = env.skiff("exec", "-i", sleeper, "sh", "-c", "read x; echo got $x", input_text="yo\n")
    assert result.stdout == "got yo\n"
    # without -i the process gets no input at all (an immediate end of file)
    assert env.skiff("exec", sleeper, "cat", input_text="ignored\n").stdout == ""


def _caps(text: str) -> dict[str, int]:
    return {
        line.split(":")[0]: int(line.split()[1], 16)
        for line in text.splitlines()
        if line.startswith("Cap")
    }


def test_exec_privileged_gets_every_capability_skiff_holds(env: ContainerEnv, sleeper: str) -> None:
    plain = _caps(env.skiff("exec", sleeper, "cat", "/proc/self/status").stdout)
    privileged = _caps(
        env.skiff("exec", "--privileged", sleeper, "cat", "/proc/self/status").stdout
    )
    ours = _caps(Path("/proc/self/status").read_text())
    assert privileged["CapEff"] == privileged["CapBnd"] == ours["CapBnd"]
    assert plain["CapEff"] == plain["CapBnd"] != ours["CapBnd"]
    assert plain["CapEff"] & ~privileged["CapEff"] == 0
    # a non-root user gets no effective capabilities, privileged or not
    www = _caps(
        env.skiff("exec", "--privileged", "-u", "www", sleeper, "cat", "/proc/self/status").stdout
    )
    assert www["CapEff"] == 0 and www["CapBnd"] == ours["CapBnd"]


def test_exec_detached_prints_the_session_and_lists_it_until_it_ends(
    env: ContainerEnv, sleeper: str
) -> None:
    session = env.skiff("exec", "-d", sleeper, "busybox", "sleep", "999").stdout.strip()
    assert HEX64.match(session), session
    assert inspect(env, sleeper)["ExecIDs"] == [session]
    top = env.skiff("top", sleeper, "pid", "args").stdout
    assert "busybox sleep 999" in top
    kill_in(env, sleeper, "busybox sleep 999")
    wait_for(lambda: inspect(env, sleeper)["ExecIDs"] == [], "the session to end")
    assert env.state(sleeper) == "running"


def test_exec_with_a_terminal(env: ContainerEnv, sleeper: str, terminals: list[Pty]) -> None:
    term = Pty(env, "exec", "-it", sleeper, "sh")
    terminals.append(term)
    term.read_until(b"# ")
    term.write(b"tty; echo hello-$((1+2))\r")
    out = term.read_until(b"hello-3")
    assert b"/dev/pts/" in out
    term.write(b"exit 5\r")
    assert term.wait() == 5


def test_exec_detach_keys_leave_the_session_running(
    env: ContainerEnv, sleeper: str, terminals: list[Pty]
) -> None:
    term = Pty(env, "exec", "-it", "--detach-keys", "ctrl-x", sleeper, "sh")
    terminals.append(term)
    term.read_until(b"# ")
    term.write(b"echo still-$((2*3))\r")
    term.read_until(b"still-6")
    term.write(b"\x18")
    assert term.wait() == 0
    sessions = inspect(env, sleeper)["ExecIDs"]
    assert len(sessions) == 1  # the shell runs on, detached
    kill_in(env, sleeper, "sh", "KILL")  # an interactive shell ignores SIGTERM
    wait_for(lambda: inspect(env, sleeper)["ExecIDs"] == [], "the detached shell to end")


# --- attach ---------------------------------------------------------------------------------


def test_attach_relays_streams_and_passes_the_exit_code(env: ContainerEnv) -> None:
    env.run_detached(
        "-i",
        "--name",
        "reader",
        "--network",
        "none",
        env.image,
        "sh",
        "-c",
        "read x; echo got $x; echo to-stderr >&2; exit 3",
    )
    result = env.skiff("attach", "reader", input_text="hello\n", expect=3)
    assert result.stdout == "got hello\n"
    assert result.stderr == "to-stderr\n"
    assert env.state("reader") == "exited"
    assert "you can only attach to running containers" in env.fails("attach", "reader")
    assert "no such container" in env.fails("attach", "nosuch")


def test_attach_detaches_with_ctrl_p_ctrl_q(env: ContainerEnv, terminals: list[Pty]) -> None:
    env.run_detached("-it", "--name", "shell", "--network", "none", env.image, "sh")
    term = Pty(env, "attach", "shell")
    terminals.append(term)
    term.write(b"echo hello-$((1+2))\r")
    term.read_until(b"hello-3")
    term.write(b"\x10\x11")
    assert term.wait() == 0
    assert env.state("shell") == "running"
    # attach again: the shell (and its stdin) is still there
    again = Pty(env, "attach", "shell")
    terminals.append(again)
    again.write(b"exit 4\r")
    assert again.wait() == 4
    assert env.state("shell") == "exited"


# --- inspect ----------------------------------------------------------------------------------

PODMAN_TOP_KEYS = [
    "Id", "Created", "Path", "Args", "State", "Image", "ImageDigest", "ImageName", "Rootfs",
    "Pod", "ResolvConfPath", "HostnamePath", "HostsPath", "StaticDir", "OCIConfigPath",
    "OCIRuntime", "ConmonPidFile", "PidFile", "Name", "RestartCount", "Driver", "MountLabel",
    "ProcessLabel", "AppArmorProfile", "EffectiveCaps", "BoundingCaps", "ExecIDs", "GraphDriver",
    "Mounts", "Dependencies", "NetworkSettings", "Namespace", "IsInfra", "IsService", "Config",
    "HostConfig",
]  # fmt: skip
PODMAN_STATE_KEYS = [
    "OciVersion", "Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid",
    "ConmonPid", "ExitCode", "Error", "StartedAt", "FinishedAt", "Health", "CgroupPath",
    "CheckpointedAt", "RestoredAt",
]  # fmt: skip


def test_inspect_has_podmans_shape_and_values(env: ContainerEnv) -> None:
    env.run_detached(
        "--name", "shaped", "--network", "none", "-l", "app=web", "-m", "64m", "--cpus", "0.5",
        "--pids-limit", "77", "-e", "GREETING=hi", "-w", "/tmp", "--cap-drop", "CHOWN",
        env.image, "busybox", "sleep", "1000",
    )  # fmt: skip
    raw = env.skiff("container", "inspect", "shaped").stdout
    assert raw.startswith('[\n     {\n          "Id": ')  # podman's five-space indent
    data = json.loads(raw)[0]
    assert list(data) == PODMAN_TOP_KEYS
    assert list(data["State"]) == PODMAN_STATE_KEYS
    state = data["State"]
    assert state["Status"] == "running" and state["Running"] is True
    assert Path(f"/proc/{state['Pid']}").is_dir()
    assert Path(f"/proc/{state['ConmonPid']}").is_dir()
    assert data["Name"] == "shaped" and HEX64.match(data["Id"])
    assert data["Path"] == "busybox" and data["Args"] == ["sleep", "1000"]
    assert data["Driver"] == "overlay" and data["OCIRuntime"] in ("runc", "crun")
    assert Path(data["OCIConfigPath"]).is_file()
    assert Path(data["GraphDriver"]["Data"]["MergedDir"]).is_dir()
    config = data["Config"]
    assert config["Labels"] == {"app": "web"}
    assert "GREETING=hi" in config["Env"] and config["WorkingDir"] == "/tmp"
    assert config["Cmd"] == ["busybox", "sleep", "1000"]
    assert config["StopSignal"] == 15 and config["Umask"] == "0022"
    assert config["CreateCommand"][0] == "skiff" and "shaped" in config["CreateCommand"]
    host = data["HostConfig"]
    assert host["Memory"] == 64 << 20 and host["MemorySwap"] == 128 << 20
    assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 77
    assert host["NetworkMode"] == "none" and host["CapDrop"] == ["CAP_CHOWN"]
    assert "CAP_CHOWN" not in data["EffectiveCaps"]
    assert {u["Name"] for u in host["Ulimits"]} >= {"RLIMIT_NOFILE", "RLIMIT_NPROC"}


def test_inspect_format_templates(env: ContainerEnv, sleeper: str) -> None:
    pid = env.skiff("inspect", "--format", "{{.State.Pid}}", sleeper).stdout
    assert pid == f"{env.pid(sleeper)}\n"
    out = env.skiff(
        "container", "inspect", "-f", "{{.Name}} {{.State.Status}} {{json .Config.Cmd}}", sleeper
    ).stdout
    assert out == 'sleeper running ["busybox","sleep","1000"]\n'
    env.skiff(
        "run", "--name", "done", "--network", "none", env.image, "sh", "-c", "exit 9", expect=9
    )
    both = env.skiff("inspect", "--format", "{{.Name}}={{.State.ExitCode}}", sleeper, "done").stdout
    assert both == "sleeper=0\ndone=9\n"
    bad = env.fails("container", "inspect", "--format", "{{.Bogus}}", sleeper)
    assert "Bogus" in bad


def test_inspect_unknown_names_fail_after_printing_the_others(
    env: ContainerEnv, sleeper: str
) -> None:
    missing = env.skiff("container", "inspect", "nosuch", expect=125)
    assert missing.stdout == "[]\n"
    assert missing.stderr == "Error: inspecting object: no such container nosuch\n"
    partial = env.skiff(
        "container", "inspect", "--format", "{{.Name}}", sleeper, "nosuch", expect=125
    )
    assert partial.stdout == "sleeper\n"
    assert env.fails("inspect", "nosuch") == 'Error: inspecting object: no such object: "nosuch"'
    assert "invalid type" in env.fails("inspect", "--type", "bogus", sleeper)
    assert "image not known" in env.fails("inspect", "--type", "image", sleeper)


def test_inspect_dispatches_between_object_types(env: ContainerEnv, sleeper: str) -> None:
    image_id = env.skiff("inspect", "--format", "{{.Id}}", env.image).stdout.strip()
    container_image = env.skiff("inspect", "--format", "{{.Image}}", sleeper).stdout.strip()
    assert image_id == container_image and HEX64.match(image_id)
    env.skiff("volume", "create", "vol1")
    assert env.skiff("inspect", "--format", "{{.Name}}", "vol1").stdout == "vol1\n"
    assert env.skiff("inspect", "--type", "volume", "vol1").json()[0]["Name"] == "vol1"
    network = env.network()
    assert env.skiff("inspect", "--type", "network", network).json()[0]["name"] == network
    # a name that is a container and an image is the container (podman's order)
    kinds = env.skiff("inspect", "--format", "{{.Id}}", sleeper, env.image).stdout.split()
    assert kinds[0] == inspect(env, sleeper)["Id"] and kinds[1] == image_id
    env.skiff("volume", "rm", "vol1")


def test_inspect_of_a_stopped_container(env: ContainerEnv) -> None:
    env.skiff(
        "run", "--name", "ended", "--network", "none", env.image, "sh", "-c", "exit 3", expect=3
    )
    state = inspect(env, "ended")["State"]
    assert state["Status"] == "exited" and state["Running"] is False
    assert state["ExitCode"] == 3 and state["Pid"] == 0
    assert state["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert state["StartedAt"] != "0001-01-01T00:00:00Z"


# --- port, rename, exists --------------------------------------------------------------------


def test_port_lists_published_ports(env: ContainerEnv) -> None:
    network = env.network()
    env.run_detached(
        "--name", "web", "--network", network, "-p", "127.0.0.1::80", "-p", "127.0.0.1::53/udp",
        env.image, "busybox", "sleep", "1000",
    )  # fmt: skip
    lines = env.skiff("port", "web").stdout.splitlines()
    assert len(lines) == 2
    tcp = next(line for line in lines if line.startswith("80/tcp -> 127.0.0.1:"))
    host_port = int(tcp.rsplit(":", 1)[1])
    assert any(line.startswith("53/udp -> 127.0.0.1:") for line in lines)
    assert env.skiff("port", "web", "80").stdout == f"127.0.0.1:{host_port}\n"
    assert env.skiff("port", "web", "80/tcp").stdout == f"127.0.0.1:{host_port}\n"
    assert env.fails("port", "web", "81").startswith('Error: failed to find published port "81"')
    assert "port formats are port/protocol" in env.fails("port", "web", "x/tcp")
    data = inspect(env, "web")
    assert data["NetworkSettings"]["Ports"]["80/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(host_port)}
    ]
    assert data["NetworkSettings"]["Networks"][network]["IPAddress"]
    short = data["Id"][:12]
    everything = env.skiff("port", "-a").stdout.splitlines()
    assert f"{short}\t80/tcp -> 127.0.0.1:{host_port}" in everything
    assert env.fails("port") == "Error: you must supply a running container name or id"


def test_rename(env: ContainerEnv, sleeper: str) -> None:
    env.skiff("create", "--name", "other", "--network", "none", env.image, "true")
    assert env.skiff("rename", sleeper, "renamed").stdout == ""
    assert inspect(env, "renamed")["Name"] == "renamed"
    assert env.state("renamed") == "running"
    assert "no such container" in env.fails("rename", sleeper, "x")
    taken = env.fails("container", "rename", "renamed", "other")
    assert "name other already in use" in taken
    assert "names must match" in env.fails("rename", "renamed", "bad name")
    # the storage container follows: mount finds it by the new name
    with env.mounted("other"):
        pass
    env.skiff("rename", "other", "other2")
    mounted = env.skiff("mount", "other2").stdout.strip()
    assert Path(mounted, "bin", "busybox").exists()
    env.skiff("umount", "other2")


def test_container_exists(env: ContainerEnv, sleeper: str) -> None:
    assert env.skiff("container", "exists", sleeper).stdout == ""
    env.skiff("container", "exists", inspect(env, sleeper)["Id"][:12])
    result = env.skiff("container", "exists", "nosuch", expect=1)
    assert result.stdout == "" and result.stderr == ""


# --- prune --------------------------------------------------------------------------------------


def test_container_prune_removes_what_does_not_run(env: ContainerEnv, sleeper: str) -> None:
    env.skiff("run", "--name", "a", "-l", "keep=no", "--network", "none", env.image, "true")
    env.skiff("run", "--name", "b", "--network", "none", env.image, "true")
    made = env.skiff("create", "--name", "c", "--network", "none", env.image, "true").stdout.strip()
    ids = {n: inspect(env, n)["Id"] for n in ("a", "b")}
    refused = env.skiff("container", "prune", input_text="n\n")
    assert refused.stdout.startswith("WARNING! This will remove all non running containers.")
    assert {c["Names"][0] for c in env.ps()} == {sleeper, "a", "b", "c"}
    labelled = env.skiff("container", "prune", "-f", "--filter", "label=keep=no").stdout
    assert labelled == ids["a"] + "\n"
    assert env.skiff("container", "prune", "-f", "--filter", "until=1h").stdout == ""
    rest = env.skiff("container", "prune", "-f", "--filter", "label!=keep").stdout.split()
    assert sorted(rest) == sorted([ids["b"], made])
    assert [c["Names"][0] for c in env.ps()] == [sleeper]
    assert "bogus is an invalid filter" in env.fails(
        "container", "prune", "-f", "--filter", "bogus=1"
    )


# --- update -------------------------------------------------------------------------------------


def _cgroup(controller: str, container_id: str, name: str) -> str:
    return Path(f"/sys/fs/cgroup/{controller}/skiff/{container_id}/{name}").read_text().strip()


@pytest.mark.skipif(not Path("/sys/fs/cgroup/memory").is_dir(), reason="reads cgroup v1 files")
def test_update_changes_limits_now_and_after_a_restart(env: ContainerEnv, sleeper: str) -> None:
    cid = inspect(env, sleeper)["Id"]
    out = env.skiff("update", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "100", sleeper)
    assert out.stdout == cid + "\n"
    assert _cgroup("memory", cid, "memory.limit_in_bytes") == str(64 << 20)
    assert _cgroup("cpu", cid, "cpu.cfs_quota_us") == "50000"
    assert _cgroup("pids", cid, "pids.max") == "100"
    host = inspect(env, sleeper)["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (64 << 20, 500_000_000, 100)
    env.skiff("restart", "-t", "0", sleeper)
    assert _cgroup("memory", cid, "memory.limit_in_bytes") == str(64 << 20)
    assert _cgroup("pids", cid, "pids.max") == "100"
    env.skiff("update", "--pids-limit", "-1", "--memory", "-1", "--cpus", "0", sleeper)
    assert _cgroup("pids", cid, "pids.max") == "max"
    assert int(_cgroup("memory", cid, "memory.limit_in_bytes")) > 1 << 40
    assert _cgroup("cpu", cid, "cpu.cfs_quota_us") == "-1"


def test_update_of_a_created_container_applies_at_start(env: ContainerEnv) -> None:
    cid = env.skiff(
        "create", "--name", "later", "--network", "none", env.image, "busybox", "sleep", "1000"
    ).stdout.strip()
    env.skiff("update", "--cpu-shares", "512", "--pids-limit", "33", "later")
    env.skiff("start", "later")
    assert _cgroup("pids", cid, "pids.max") == "33"
    assert _cgroup("cpu", cid, "cpu.shares") == "512"


def test_update_errors(env: ContainerEnv, sleeper: str) -> None:
    assert "no such container" in env.fails("update", "--memory", "64m", "nosuch")
    assert "no limits to change" in env.fails("update", sleeper)
    assert "--cpu-shares" in env.fails("update", "--cpu-shares", "1", sleeper)
    assert "minimum memory limit" in env.fails("update", "--memory", "1k", sleeper)
    # a refused update changes nothing
    assert inspect(env, sleeper)["HostConfig"]["CpuShares"] == 0


# --- top and stats ---------------------------------------------------------------------------------


def test_top_lists_the_processes_with_their_users(env: ContainerEnv) -> None:
    env.run_detached(
        "--name", "www", "-u", "www", "--network", "none", env.image, "busybox", "sleep", "1000"
    )
    lines = env.skiff("top", "www").stdout.splitlines()
    assert lines[0].split() == ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"]
    assert lines[1].split()[:3] == ["www", "1", "0"]
    assert lines[1].rstrip().endswith("busybox sleep 1000")
    chosen = env.skiff("top", "www", "user,pid", "comm").stdout.splitlines()
    assert [line.split() for line in chosen] == [
        ["USER", "PID", "COMMAND"],
        ["www", "1", "busybox"],
    ]
    assert "unknown top descriptor" in env.fails("top", "www", "nosuchfield")
    env.skiff("create", "--name", "idle", "--network", "none", env.image, "true")
    assert env.fails("top", "idle").startswith("Error: top can only be used on running containers")


def test_stats_of_a_busy_container(env: ContainerEnv) -> None:
    env.run_detached(
        "--name", "busy", "--network", "none", env.image, "sh", "-c", "while :; do :; done"
    )
    env.skiff("create", "--name", "idle", "--network", "none", env.image, "true")
    table = env.skiff("stats", "--no-stream").stdout.splitlines()
    assert re.split(r"\s{2,}", table[0].strip()) == [
        "ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET IO", "BLOCK IO", "PIDS",
        "CPU TIME", "AVG CPU %",
    ]  # fmt: skip
    assert [line.split()[1] for line in table[1:]] == ["busy"]

    def cpu() -> float:
        row = env.skiff("stats", "--no-stream", "--format", "json", "busy").json()[0]
        return float(row["cpu_percent"].rstrip("%"))

    wait_for(lambda: cpu() > 10.0, "the busy loop to show in CPU %")
    row = env.skiff("stats", "--no-stream", "--format", "json", "busy").json()[0]
    assert row["name"] == "busy" and row["pids"] == "1"
    assert not row["mem_usage"].startswith("0B")
    fields = env.skiff(
        "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.CPUNano}}", "busy"
    ).stdout.split()
    assert fields[:2] == ["busy", "1"] and int(fields[2]) > 0
    everything = env.skiff("stats", "--no-stream", "-a", "--format", "{{.Name}} {{.PIDs}}").stdout
    assert sorted(everything.splitlines()) == ["busy 1", "idle 0"]


# --- create ---------------------------------------------------------------------------------------


def test_create_makes_a_container_that_start_runs(env: ContainerEnv) -> None:
    cid = env.skiff(
        "create",
        "--name",
        "made",
        "--network",
        "none",
        "-e",
        "X=1",
        env.image,
        "sh",
        "-c",
        "echo $X",
    ).stdout.strip()
    assert HEX64.match(cid)
    assert env.state("made") == "created"
    command = inspect(env, "made")["Config"]["CreateCommand"]
    assert command[-4:] == [env.image, "sh", "-c", "echo $X"]
    env.skiff("start", "made")
    env.wait_state("made", "exited")
    assert env.skiff("logs", "made").stdout == "1\n"
    assert "already in use" in env.fails("create", "--name", "made", env.image, "true")
    failure = env.skiff("create", "--pull", "never", "localhost/nosuchimage", expect=125)
    assert_clean_failure(failure)
