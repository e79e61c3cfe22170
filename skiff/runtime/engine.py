"""The runtime handle one skiff process uses: store, records, OCI runtime.

There is no daemon: every command builds a ``Runtime`` over the store,
acts on container records under their locks, and exits. Lifecycle steps
live in their own modules (create, start, stop/cleanup, remove, exec,
sync); this module only ties together what they share.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.config import SystemContext
from skiff.runtime.locks import container_lock
from skiff.runtime.paths import ContainerPaths
from skiff.runtime.records import ContainerRecords
from skiff.storage.store import Store

if TYPE_CHECKING:
    # imported when a runtime is first needed: the OCI wrapper pulls in all of
    # spec generation, which read-only commands (ps, logs, inspect) never use
    from skiff.runtime.oci import OCIRuntime


EXIT_COMMAND_SCRIPT = Path(__file__).resolve().with_name("exit_command.py")
"""Run by conmon in front of ``container cleanup`` (see exit_command.py)."""


def skiff_command() -> list[str]:
    """How to run skiff again (conmon's exit command): this interpreter, -m skiff."""
    return [sys.executable, "-m", "skiff"]


class Runtime:
    def __init__(self, ctx: SystemContext, store: Store | None = None) -> None:
        self.ctx = ctx
        self.store = store or Store.open(ctx)
        self.records = ContainerRecords(self.store.db)
        self._oci: dict[str, OCIRuntime] = {}

    @property
    def run_root(self) -> Path:
        return self.store.run_root

    def oci(self, requested: str = "") -> OCIRuntime:
        """The OCI runtime by name or path ("" = the default choice), cached per process."""
        runtime = self._oci.get(requested)
        if runtime is None:
            from skiff.runtime.oci import OCIRuntime

            default = os.environ.get("SKIFF_RUNTIME") or None
            runtime = OCIRuntime.for_store(self.run_root, requested or None, default=default)
            self._oci[requested] = runtime
            self._oci.setdefault(runtime.name, runtime)
        return runtime

    def paths(self, container_id: str) -> ContainerPaths:
        return ContainerPaths.of(self.store, container_id)

    def lock(self, container_id: str) -> contextlib.AbstractContextManager[None]:
        return container_lock(self.run_root, container_id)

    def global_args(self) -> list[str]:
        """The global flags that make another skiff process use this store."""
        args = [
            "--root",
            str(self.store.root),
            "--runroot",
            str(self.store.run_root),
            "--storage-driver",
            self.store.driver_name,
        ]
        if self.ctx.registries_conf is not None:
            args += ["--registries-conf", str(self.ctx.registries_conf)]
        return args

    def exit_command(self, container_id: str) -> list[str]:
        """conmon's exit command: ``skiff container cleanup ID``, behind a
        check that the container still exists (``exit_command.py``)."""
        cleanup = [
            *skiff_command(),
            *self.global_args(),
            "--log-level",
            "error",
            "container",
            "cleanup",
            container_id,
        ]
        if not EXIT_COMMAND_SCRIPT.is_file():
            return cleanup
        container_dir = os.path.abspath(self.store.container_dir(container_id).parent)
        return [sys.executable, "-I", "-S", str(EXIT_COMMAND_SCRIPT), container_dir, *cleanup]

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
