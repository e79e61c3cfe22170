"""``skiff run`` end to end: exit codes, logs after exit, ``--rm``, signals,
``--sig-proxy`` and restart policies — real runc, conmon, overlay (and
netavark where a network is used), a private store on tmpfs.

Process-level behaviour is checked with real binaries: Debian's static
busybox runs applets inside the shell, so where a test needs a separate
process (a signal to pid 1) the container's argv[0] is ``busybox``, and
traps are set in ``sh`` itself (which does run them).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from skiff.testing.cli import assert_clean_failure
from skiff.testing.containers import ContainerEnv, wait_for, wait_output

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]


def restart_count(env: ContainerEnv, ref: str) -> int:
    from skiff.runtime.engine import Runtime

    rt = Runtime(env.context())
    try:
        return rt.records.get(ref).state.restart_count
    finally:
        rt.close()


# --- exit codes --------------------------------------------------------------------------


def test_exit_codes(env: ContainerEnv) -> None:
    run = ("run", "--rm", "--network", "none")
    assert env.skiff(*run, env.image, "true").returncode == 0
    env.skiff(*run, env.image, "sh", "-c", "exit 7", expect=7)
    for args in (("--bogus-flag",), ("--restart", "sometimes"), ("--memory", "lots")):
        assert_clean_failure(env.skiff(*run, *args, env.image, "true", expect=125))
    failure = env.skiff(*run, "--pull", "never", "localhost/no-such-image", "true", expect=125)
    assert_clean_failure(failure)
    failure = env.skiff(*run, env.image, "/etc/passwd", expect=126)
    assert_clean_failure(failure)
    # runc and crun word the reason alike but capitalise it differently
    assert "permission denied" in failure.stderr.lower()
    failure = env.skiff(*run, env.image, "/no/such/command", expect=127)
    assert_clean_failure(failure)
    assert "no such file or directory" in failure.stderr.lower()
    env.skiff(*run, env.image, "no-such-command-on-path", expect=127)
    # the container's own 126/127 pass through unchanged
    env.skiff(*run, env.image, "sh", "-c", "exit 126", expect=126)
    env.skiff(*run, env.image, "sh", "-c", "exit 127", expect=127)
    env.wait_clean()


def test_failed_start_leaves_a_container_that_can_be_removed(env: ContainerEnv) -> None:
    env.skiff("run", "--name", "broken", "--network", "none", env.image, "/nope", expect=127)
    assert env.state("broken") in ("created", "exited")
    env.skiff("rm", "broken")
    env.wait_clean()


# --- logs ------------------------------------------------------------------------------------


def test_logs_after_the_container_exited(env: ContainerEnv) -> None:
    env.skiff(
        "run",
        "--name",
        "talker",
        "--network",
        "none",
        env.image,
        "sh",
        "-c",
        "echo one; echo two >&2; printf partial",
        expect=0,
    )
    assert env.state("talker") == "exited"
    logs = env.skiff("logs", "talker")
    assert logs.stdout == "one\npartial"
    assert logs.stderr == "two\n"
    assert env.skiff("logs", "--tail", "1", "talker").stdout == "partial"
    # and from a detached container, read after it exited
    env.run_detached("--name", "bg", "--network", "none", env.image, "sh", "-c", "echo bg-out")
    assert env.skiff("wait", "bg").stdout.strip() == "0"
    assert env.skiff("logs", "bg").stdout == "bg-out\n"


# --- --rm ------------------------------------------------------------------------------------


def test_rm_leaves_nothing(env: ContainerEnv) -> None:
    net = env.network()
    out = env.skiff(
        "run", "--rm", "--network", net, "-v", "/data", env.image, "sh", "-c", "echo done"
    )
    assert out.stdout == "done\n"
    env.skiff("run", "--rm", "--network", net, env.image, "sh", "-c", "exit 3", expect=3)
    env.wait_clean()
    assert not env.ps()
    # detached --rm: removed by conmon's exit command once it exits
    env.run_detached("--rm", "--network", net, env.image, "sh", "-c", "true")
    env.wait_clean()
    # stop and rm -f of a running --rm container: it goes, and both say so cleanly
    for command in (("stop", "-t", "0"), ("rm", "-f", "-t", "0")):
        cid = env.run_detached("--rm", "--network", "none", env.image, "busybox", "sleep", "1000")
        assert env.skiff(*command, cid).stdout.strip() == cid
        env.wait_clean()


def test_rm_container_storage_is_mounted_volatile(env: ContainerEnv) -> None:
    """Its layer is deleted when it exits: nothing of it needs syncing to disk."""
    cid = env.run_detached("--rm", "--network", "none", env.image, "busybox", "sleep", "1000")
    options = [
        line.split()[3]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(env.root)) and line.split()[2] == "overlay"
    ]
    assert options and all("volatile" in o for o in options), options
    env.skiff("rm", "-f", "-t", "0", cid)
    kept = env.run_detached("--network", "none", env.image, "busybox", "sleep", "1000")
    options = [
        line.split()[3]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(env.root)) and line.split()[2] == "overlay"
    ]
    assert options and not any("volatile" in o for o in options), options
    env.skiff("rm", "-f", "-t", "0", kept)


# --- signals -----------------------------------------------------------------------------------


TRAP = "trap 'echo got-{sig}; exit {code}' {sig}; echo ready; while true; do sleep 0.1; done"


def test_kill_with_a_signal_the_process_traps(env: ContainerEnv) -> None:
    env.run_detached(
        "--name",
        "trapper",
        "--network",
        "none",
        env.image,
        "sh",
        "-c",
        TRAP.format(sig="USR1", code=5),
    )
    wait_output(lambda: env.skiff("logs", "trapper"), "ready")
    env.skiff("kill", "-s", "USR1", "trapper")
    assert env.skiff("wait", "trapper").stdout.strip() == "5"
    assert "got-USR1" in env.skiff("logs", "trapper").stdout
    # kill of a stopped container is an error
    assert "can only kill running containers" in env.fails("kill", "trapper")


def test_kill_default_is_sigkill_and_stop_escalates(env: ContainerEnv) -> None:
    env.run_detached("--name", "k", "--network", "none", env.image, "busybox", "sleep", "1000")
    env.skiff("kill", "k")
    assert env.skiff("wait", "k").stdout.strip() == "137"
    # pid 1 ignores SIGTERM without a handler: stop escalates to SIGKILL after -t
    env.run_detached("--name", "s", "--network", "none", env.image, "busybox", "sleep", "1000")
    env.skiff("stop", "-t", "1", "s")
    assert env.state("s") == "exited"
    assert env.container("s")["ExitCode"] == 137  # type: ignore[index]


@pytest.mark.parametrize("proxy", [True, False])
def test_sig_proxy(env: ContainerEnv, proxy: bool) -> None:
    flags = [] if proxy else ["--sig-proxy=false"]
    client = env.popen(
        "run",
        "--name",
        "fg",
        "--network",
        "none",
        *flags,
        env.image,
        "sh",
        "-c",
        TRAP.format(sig="TERM", code=9),
    )
    try:
        wait_output(lambda: env.skiff("logs", "fg", expect=None), "ready")
        client.send_signal(signal.SIGTERM)
        out, _ = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if proxy:
        assert client.returncode == 9
        assert "got-TERM" in out
        assert env.state("fg") == "exited"
    else:
        assert client.returncode != 9  # the client died of the signal itself
        assert env.state("fg") == "running"  # and the container never saw it
        assert "got-TERM" not in env.skiff("logs", "fg").stdout


# --- restart policies ------------------------------------------------------------------------


def test_restart_on_failure_retries_then_stops(env: ContainerEnv) -> None:
    env.run_detached(
        "--name",
        "flaky",
        "--network",
        "none",
        "--restart",
        "on-failure:2",
        env.image,
        "sh",
        "-c",
        "echo attempt; exit 3",
    )

    def settled() -> bool:
        return (
            env.skiff("logs", "flaky").stdout.count("attempt") == 3
            and env.state("flaky") == "exited"
        )

    wait_for(settled, "two restarts and a final exit", timeout=30)
    assert restart_count(env, "flaky") == 2
    assert env.container("flaky")["ExitCode"] == 3  # type: ignore[index]


def test_restart_on_failure_does_not_restart_a_success(env: ContainerEnv) -> None:
    env.run_detached(
        "--name",
        "ok",
        "--network",
        "none",
        "--restart",
        "on-failure",
        env.image,
        "sh",
        "-c",
        "echo once",
    )
    assert env.skiff("wait", "ok").stdout.strip() == "0"
    env.wait_state("ok", "exited")
    assert restart_count(env, "ok") == 0
    assert env.skiff("logs", "ok").stdout.count("once") == 1


def test_restart_always_after_an_outside_kill_but_not_after_stop(env: ContainerEnv) -> None:
    env.run_detached(
        "--name",
        "phoenix",
        "--network",
        "none",
        "--restart",
        "always",
        env.image,
        "busybox",
        "sleep",
        "1000",
    )
    first = env.pid("phoenix")
    os.kill(first, signal.SIGKILL)  # from outside skiff: conmon's exit command restarts it

    def restarted() -> bool:
        row = env.container("phoenix")
        return bool(row and row["State"] == "running" and row["Pid"] not in (0, first))

    wait_for(restarted, "the container to be restarted", timeout=30)
    assert restart_count(env, "phoenix") == 1
    env.skiff("stop", "-t", "0", "phoenix")
    assert env.state("phoenix") == "exited"
    # a user's stop is final: nothing restarts it
    assert env.skiff("wait", "phoenix").stdout.strip() == "137"
    assert env.state("phoenix") == "exited"
    assert restart_count(env, "phoenix") == 1


def test_a_name_that_is_an_id_prefix_is_free(env: ContainerEnv) -> None:
    """ "b" or "cafe" can be the start of another container's ID: still a free name."""
    first = env.skiff("create", "--network", "none", env.image, "true").stdout.strip()
    prefix = first[:1]
    env.skiff("run", "--name", prefix, "--network", "none", env.image, "true")
    assert env.container(prefix) is not None
    assert env.skiff("inspect", "--format", "{{.Name}}", prefix).stdout.strip() == prefix
    assert "already in use" in env.fails(
        "run", "--name", prefix, "--network", "none", env.image, "true"
    )
