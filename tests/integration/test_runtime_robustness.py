"""The runtime when things go wrong or pile up, end to end through the CLI.

- ``kill -9`` of the ``skiff run -d`` client at several points of a start
  (storage made, bundle written, network namespace made, conmon started)
  leaves records a later ``ps -a`` reads and ``rm -f`` removes completely;
- 50 containers started and removed in a row leave no mount, network
  namespace, conmon or runtime state behind;
- after a (simulated) reboot — processes gone, mounts gone, the run root
  emptied, the record's boot ID another one — containers show as exited
  or created, start again and are removed cleanly;
- ``stop`` and ``rm -f`` of one container at the same time serialize on
  its lock: both end cleanly and nothing is left.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time

import pytest

from skiff.testing.cli import Result, assert_clean_failure
from skiff.testing.containers import ContainerEnv
from skiff.testing.network import mounts_under

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]


# --- the client killed half-way ---------------------------------------------------------------

POINTS = {
    "storage": "root/containers/*/userdata",
    "bundle": "root/containers/*/userdata/config.json",
    "netns": "runroot/netns/*",
    "conmon": "runroot/containers/*/conmon.pid",
    "running": "runroot/exits",  # made when conmon starts; the start is nearly done
}


def kill_when(env: ContainerEnv, pattern: str, timeout: float = 30.0) -> bool:
    """Start ``run -d`` and SIGKILL it as soon as ``pattern`` exists under the
    env's directory; False if the client finished first."""
    client = env.popen(
        "run", "-d", "--network", env.networks[0][0], env.image, "busybox", "sleep", "1000"
    )
    deadline = time.monotonic() + timeout
    try:
        while client.poll() is None:
            if glob.glob(str(env.base / pattern)):
                client.send_signal(signal.SIGKILL)
                client.wait()
                return True
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern} never appeared")
            time.sleep(0.0005)
        return False
    finally:
        if client.poll() is None:
            client.kill()
        client.wait()


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(POINTS))
def test_client_killed_during_run_leaves_a_consistent_record(env: ContainerEnv, point: str) -> None:
    env.network()
    assert kill_when(env, POINTS[point]), "the client finished before the point was reached"
    listed = env.skiff("ps", "-a", "--format", "json")
    assert listed.returncode == 0
    assert len(listed.json() or []) <= 1
    env.skiff("rm", "-a", "-f", "-t", "0")
    env.wait_clean(timeout=30)
    # the store still works: a new container runs and goes
    out = env.skiff("run", "--rm", "--network", env.networks[0][0], env.image, "echo", "ok")
    assert out.stdout == "ok\n"
    env.wait_clean(timeout=30)


# --- many containers ------------------------------------------------------------------------


@pytest.mark.slow
def test_fifty_containers_leave_nothing_behind(env: ContainerEnv) -> None:
    net = env.network()
    base_mounts = len(mounts_under(env.base))
    for n in range(50):
        cid = env.run_detached("--network", net, env.image, "busybox", "sleep", "1000")
        if n % 2:
            env.skiff("stop", "-t", "0", cid)
        env.skiff("rm", "-f", "-t", "0", cid)
        if n % 10 == 9:  # nothing accumulates along the way
            assert len(mounts_under(env.base)) == base_mounts
            assert not env.netns_entries()
            assert not env.conmon_pids()
    env.wait_clean(timeout=30)


# --- a reboot --------------------------------------------------------------------------------


def simulate_reboot(env: ContainerEnv) -> None:
    """What a reboot does to a store: every process and mount gone, the run
    root (tmpfs) empty — and the records naming another boot."""
    from skiff.runtime.engine import Runtime

    for pid in env.conmon_pids():  # the monitors first: no exit file, no exit command
        os.kill(pid, signal.SIGKILL)
    rt = Runtime(env.context())
    try:
        for container in rt.records.all():
            if container.state.pid:
                try:
                    os.kill(container.state.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    finally:
        rt.close()
    deadline = time.monotonic() + 10
    while env.conmon_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    for state in (env.runroot / "runtime" / "runc").glob("*"):
        subprocess.run(
            ["runc", "--root", str(env.runroot / "runtime" / "runc"), "delete", "-f", state.name],
            check=False,
            capture_output=True,
        )
    for mount in sorted(mounts_under(env.base), key=len, reverse=True):
        subprocess.run(["umount", mount], check=True)
    shutil.rmtree(env.runroot)
    rt = Runtime(env.context())
    try:
        for container in rt.records.all():
            container.state.boot_id = "a-previous-boot"
            rt.records.save_state(container)
    finally:
        rt.close()


def test_state_after_a_reboot(env: ContainerEnv) -> None:
    env.run_detached(
        "--name", "was-running", "--network", "none", env.image, "busybox", "sleep", "1000"
    )
    env.skiff(
        "run",
        "--name",
        "was-exited",
        "--network",
        "none",
        env.image,
        "sh",
        "-c",
        "exit 4",
        expect=4,
    )
    env.skiff("create", "--name", "was-initialized", "--network", "none", env.image, "true")
    env.skiff("init", "was-initialized")
    assert env.state("was-initialized") == "initialized"
    simulate_reboot(env)
    states = {row["Names"][0]: row["State"] for row in env.ps()}
    assert states == {
        "was-running": "exited",
        "was-exited": "exited",
        "was-initialized": "created",
    }
    assert env.container("was-exited")["ExitCode"] == 4  # type: ignore[index]
    # it starts again after the reboot, and everything goes cleanly
    env.skiff("start", "was-running")
    env.wait_state("was-running", "running")
    env.skiff("rm", "-a", "-f", "-t", "0")
    env.wait_clean(timeout=30)


# --- two commands at once ------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_stop_and_rm_serialize(env: ContainerEnv, round_: int) -> None:
    net = env.network() if round_ == 0 else "none"
    env.run_detached("--name", "contended", "--network", net, env.image, "busybox", "sleep", "1000")
    stop = env.popen("stop", "-t", "2", "contended")
    remove = env.popen("rm", "-f", "-t", "2", "contended")
    results = []
    for proc, argv in ((stop, ["stop"]), (remove, ["rm"])):
        out, err = proc.communicate(timeout=60)
        results.append(Result(argv, proc.returncode, out, err))
    stop_result, rm_result = results
    assert rm_result.returncode == 0, rm_result.describe()
    if stop_result.returncode != 0:  # rm won the race: stop met no container
        assert_clean_failure(stop_result)
        assert "no such container" in stop_result.stderr or "was removed" in stop_result.stderr, (
            stop_result.describe()
        )
    assert "Traceback" not in stop_result.stderr + rm_result.stderr
    env.wait_clean(timeout=30)
