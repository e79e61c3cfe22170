"""Running real containers through the ``skiff`` CLI in tests, and proving
that nothing is left behind.

``ContainerEnv`` is a ``CliEnv`` (private store, HOME, TMPDIR under one
tmpfs directory) with the busybox image copied into its store as
``localhost/busybox:latest``, the overlay driver, and the checks the
runtime tests share:

- ``leftovers()`` lists what of this store is still on the host: mounts
  under the test directory, network namespaces in RUNROOT/netns, processes
  started for this store (conmon, exit commands: found by the store paths
  on their command lines), containers the OCI runtime still knows,
  container records, storage containers, bridges of the networks the test
  made;
- ``network()`` creates a user network on a subnet and bridge of its own
  (test networks never share the default ``skiff0`` bridge with other
  stores on the host);
- ``close()`` removes every container and network through skiff, waits
  for the host to be clean, cleans up by hand what is still there (so one
  failing test does not poison the next) and raises if it had to.

Waiting is done on conditions with deadlines (``wait_for``), never with
fixed sleeps.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.testing.busybox import BusyboxImage
from skiff.testing.cli import CliEnv, Result
from skiff.testing.network import free_subnet, interface_exists, mounts_under, wait_for

if TYPE_CHECKING:
    from skiff.config import SystemContext

IMAGE = "localhost/busybox:latest"
_bridges = itertools.count()

__all__ = ["IMAGE", "ContainerEnv", "PodContainerEnv", "wait_for"]


class ContainerEnv(CliEnv):
    """A private skiff store with the busybox image, for container tests."""

    def __init__(self, base: Path, layout: BusyboxImage, driver: str = "overlay") -> None:
        super().__init__(base)
        self.driver = driver
        self.networks: list[tuple[str, str]] = []
        """(name, bridge) of the networks made with ``network()``."""
        self.image = IMAGE
        self.skiff(
            "image",
            "copy",
            "-q",
            layout.reference,
            f"containers-storage:[{driver}@{self.root}+{self.runroot}]{IMAGE}",
        )

    def skiff_argv(self, *args: str | Path) -> list[str]:
        argv = super().skiff_argv()
        return [*argv, "--storage-driver", self.driver, *(str(a) for a in args)]

    # --- containers ---------------------------------------------------------------

    def run_detached(self, *args: str | Path) -> str:
        """``skiff run -d ARGS...``; returns the container ID."""
        return self.skiff("run", "-d", *args).stdout.strip().splitlines()[-1]

    def popen(self, *args: str | Path, **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``skiff ARGS...`` without waiting (stdout/stderr piped)."""
        return subprocess.Popen(
            self.skiff_argv(*args),
            stdin=kwargs.pop("stdin", subprocess.DEVNULL),
            stdout=kwargs.pop("stdout", subprocess.PIPE),
            stderr=kwargs.pop("stderr", subprocess.PIPE),
            text=True,
            env=self.environ(kwargs.pop("env", None)),
            cwd=self.base,
            **kwargs,
        )

    def ps(self, *args: str) -> list[dict[str, Any]]:
        rows = self.skiff("ps", "-a", "--format", "json", *args).json()
        return list(rows or [])

    def container(self, ref: str) -> dict[str, Any] | None:
        for row in self.ps():
            if ref in (row["Id"], *row["Names"]) or row["Id"].startswith(ref):
                return row
        return None

    def state(self, ref: str) -> str:
        row = self.container(ref)
        assert row is not None, f"no container {ref}"
        return str(row["State"])

    def pid(self, ref: str) -> int:
        row = self.container(ref)
        assert row is not None, f"no container {ref}"
        return int(row["Pid"])

    def wait_state(self, ref: str, state: str, timeout: float = 20.0) -> None:
        wait_for(lambda: self.state(ref) == state, f"{ref} to be {state}", timeout)

    def rootfs(self, ref: str) -> Path:
        """The running container's root as its processes see it."""
        return Path(f"/proc/{self.pid(ref)}/root")

    # --- networks -------------------------------------------------------------------

    def network(self, name: str | None = None) -> str:
        """A user network on its own subnet and bridge; returns its name."""
        number = next(_bridges)
        name = name or f"r2net{os.getpid() % 10000}x{number}"
        bridge = f"skt{os.getpid() % 100000}x{number}"[:15]
        self.skiff(
            "network",
            "create",
            "--subnet",
            free_subnet(),
            "--interface-name",
            bridge,
            name,
        )
        self.networks.append((name, bridge))
        return name

    # --- what is left --------------------------------------------------------------

    def store_processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of processes whose command line names this store
        (conmon, exit commands, skiff clients)."""
        needles = (str(self.root), str(self.runroot))
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
            if any(n in cmdline for n in needles):
                found.append((int(entry.name), cmdline.strip()))
        return found

    def conmon_pids(self) -> list[int]:
        return [
            pid for pid, cmd in self.store_processes() if cmd.split(" ", 1)[0].endswith("conmon")
        ]

    def netns_entries(self) -> list[str]:
        netns = self.runroot / "netns"
        return sorted(p.name for p in netns.iterdir()) if netns.is_dir() else []

    def runtime_states(self) -> list[str]:
        """Containers the OCI runtimes still know (their state directories)."""
        found = []
        runtime_dir = self.runroot / "runtime"
        if runtime_dir.is_dir():
            for state_root in runtime_dir.iterdir():
                if state_root.is_dir() and not state_root.name.endswith(".logs"):
                    found += [
                        f"{state_root.name} state {p.name[:12]}" for p in state_root.iterdir()
                    ]
        return found

    @contextmanager
    def mounted(self, ref: str) -> Iterator[Path]:
        """A stopped container's storage, mounted through the library (and unmounted)."""
        from skiff.runtime.engine import Runtime

        rt = Runtime(self.context())
        try:
            container_id = rt.records.get(ref).id
            path = rt.store.mount_container(container_id)
            try:
                yield path
            finally:
                rt.store.unmount_container(container_id)
        finally:
            rt.close()

    def context(self) -> SystemContext:
        from skiff.config import SystemContext

        return SystemContext(
            storage_root=self.root, run_root=self.runroot, storage_driver=self.driver
        )

    def records(self) -> list[str]:
        """IDs of container records and storage containers (through the library)."""
        from skiff.runtime.records import ContainerRecords
        from skiff.storage.store import Store

        store = Store.open(self.context())
        try:
            ids = [f"record {c.id[:12]}" for c in ContainerRecords(store.db).all()]
            ids += [f"storage container {c.id[:12]}" for c in store.containers.all()]
            return ids
        finally:
            store.close()

    def leftovers(self, *, networks: bool = True) -> list[str]:
        found = [f"mount {m}" for m in mounts_under(self.base)]
        found += [f"netns {n}" for n in self.netns_entries()]
        found += [f"process {pid}: {cmd[:160]}" for pid, cmd in self.store_processes()]
        found += self.runtime_states()
        found += self.records()
        if networks:
            found += [f"bridge {b}" for _, b in self.networks if interface_exists(b)]
        return found

    def wait_clean(self, timeout: float = 20.0, *, networks: bool = False) -> None:
        """Wait until no mount, netns, process or record of this store is left."""
        try:
            wait_for(lambda: not self.leftovers(networks=networks), "a clean host", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.leftovers(networks=networks)}") from None

    def close(self) -> None:
        """Remove everything through skiff; clean up by hand and fail if that was needed."""
        self.skiff("rm", "-a", "-f", "-t", "0", expect=None, timeout=120)
        for name, _ in self.networks:
            self.skiff("network", "rm", "-f", name, expect=None)
        try:
            self.wait_clean(timeout=15, networks=True)
        except AssertionError:
            leftovers = self.leftovers()
            self._force_cleanup()
            raise AssertionError(f"skiff left these behind: {leftovers}") from None

    def _force_cleanup(self) -> None:
        for pid, _ in self.store_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for mount in sorted(mounts_under(self.base), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        for _, bridge in self.networks:
            if interface_exists(bridge):
                subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


class PodContainerEnv(ContainerEnv):
    """A ContainerEnv for tests that make pods: ``close()`` removes the pods
    first (``rm -a`` leaves the pods' infra containers to their pods)."""

    def close(self) -> None:
        self.skiff("pod", "rm", "-a", "-f", "-t", "0", expect=None, timeout=120)
        super().close()


def wait_output(result_of: Callable[[], Result], needle: str, timeout: float = 20.0) -> Result:
    """Run ``result_of`` until its stdout contains ``needle``; returns that result."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        result = result_of()
        if needle in result.stdout:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {needle!r}\n{result.describe()}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
