"""``CRIService``: what every RPC of the server shares.

One runtime handle over the store (its database connection is per thread,
its locks exclude threads as they exclude processes), the server's
configuration, CNI, the streaming server, and the previous CPU sample of
each container and sandbox (``usage_nano_cores`` is a rate: kubelet asks
for it without a previous sample of its own, as with CRI-O).

Lookups by ID accept the full ID or a unique prefix of it (crictl's short
IDs), and see only what the CRI made (``created_by == "cri"``): the CLI's
containers and pods share the store but are not kubelet's to manage.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from skiff.cri.cni import CNI
from skiff.cri.config import CRIConfig
from skiff.cri.errors import InvalidArgument, NotFound
from skiff.cri.records import Sandbox, SandboxRecords
from skiff.runtime.engine import Runtime

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.cri.streaming.backend import StreamingServer
    from skiff.runtime.pods.model import Pod
    from skiff.runtime.records import Container

log = logging.getLogger(__name__)


class CRIService:
    def __init__(
        self,
        ctx: SystemContext,
        config: CRIConfig,
        streaming: StreamingServer | None = None,
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.rt = Runtime(ctx)
        self.sandboxes = SandboxRecords(self.rt.store.db)
        self.cni = CNI(self.rt.store.db, config.cni_config_dir, config.cni_plugin_dirs)
        self.streaming = streaming
        self.cpu_samples: dict[str, tuple[int, int]] = {}
        """ID → (cpu ns, monotonic ns) of the last sample, for usage_nano_cores."""
        self.samples_lock = threading.Lock()

    def close(self) -> None:
        self.rt.close()

    # --- runtime handlers ------------------------------------------------------------

    def runtime_name(self, handler: str) -> str:
        """The OCI runtime of a runtime handler: "" is the default; "runc" and
        "crun" name themselves."""
        if handler in ("", self.config.default_runtime):
            return self.config.default_runtime
        if handler in ("runc", "crun"):
            return handler
        raise InvalidArgument(
            f"unknown runtime handler {handler!r}", "use the default handler, runc or crun"
        )

    # --- lookups -------------------------------------------------------------------------

    def find_sandbox(self, ref: str) -> Sandbox | None:
        if not ref:
            raise InvalidArgument("a pod sandbox ID is required")
        found = self.sandboxes.find(ref)
        if found is not None:
            return found
        candidates = self.sandboxes.by_prefix(ref)
        if len(candidates) > 1:
            raise InvalidArgument(f"pod sandbox ID prefix {ref!r} is ambiguous", "give more of it")
        return candidates[0] if candidates else None

    def get_sandbox(self, ref: str) -> Sandbox:
        found = self.find_sandbox(ref)
        if found is None:
            raise NotFound(f'could not find pod "{ref}": no such pod sandbox')
        return found

    def pod_of(self, sandbox: Sandbox) -> Pod | None:
        from skiff.runtime.pods.create import pods_of

        return pods_of(self.rt).find(sandbox.id)

    def find_container(self, ref: str) -> Container | None:
        """A container the CRI made (not an infra container), by ID or unique prefix."""
        if not ref:
            raise InvalidArgument("a container ID is required")
        row = self.rt.records.db.read_one("SELECT id FROM runtime_containers WHERE id=?", (ref,))
        if row is None:
            rows = self.rt.records.db.read(
                "SELECT id FROM runtime_containers WHERE id >= ? AND id < ?", (ref, ref + "g")
            )
            if len(rows) > 1:
                raise InvalidArgument(f"container ID prefix {ref!r} is ambiguous", "give more")
            row = rows[0] if rows else None
        if row is None:
            return None
        container = self.rt.records.find(str(row["id"]))
        if container is None or not is_cri_container(container):
            return None
        return container

    def get_container(self, ref: str) -> Container:
        found = self.find_container(ref)
        if found is None:
            raise NotFound(f'could not find container "{ref}": no such container')
        return found

    def cri_containers(self) -> list[Container]:
        return [c for c in self.rt.records.all() if is_cri_container(c)]


def is_cri_container(container: Container) -> bool:
    return container.config.created_by == "cri" and not container.config.infra
