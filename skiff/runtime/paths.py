"""Where a container's files are (see runtime-design: userdata vs run dir)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skiff.storage.store import Store


@dataclass(frozen=True)
class ContainerPaths:
    userdata: Path
    """Persists across reboots: config.json (the bundle), etc files, ctr.log."""
    run_dir: Path
    """Per boot: pid files, runtime log."""
    exit_dir: Path
    """RUNROOT/exits: conmon's exit files, named by container id."""
    socket_dir: Path
    """RUNROOT/socket: conmon's links to attach sockets."""

    @classmethod
    def of(cls, store: Store, container_id: str) -> ContainerPaths:
        return cls(
            userdata=store.container_dir(container_id),
            run_dir=store.container_run_dir(container_id),
            exit_dir=store.run_root / "exits",
            socket_dir=store.run_root / "socket",
        )

    @property
    def bundle(self) -> Path:
        return self.userdata

    @property
    def config_json(self) -> Path:
        return self.userdata / "config.json"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "pidfile"

    @property
    def conmon_pid_file(self) -> Path:
        return self.run_dir / "conmon.pid"

    @property
    def runtime_log(self) -> Path:
        return self.run_dir / "oci-log"

    @property
    def log_path(self) -> Path:
        return self.userdata / "ctr.log"

    def exec_dir(self, session_id: str) -> Path:
        return self.run_dir / "exec" / session_id
