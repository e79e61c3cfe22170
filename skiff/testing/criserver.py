"""A real ``skiff cri serve`` for tests and benchmarks, and a gRPC client for it.

``CRIEnv`` is a ``ContainerEnv`` (private store on tmpfs with the busybox
image as ``localhost/busybox:latest``) plus what the CRI server needs of
its own: a CNI configuration directory holding one network — a bridge of
the test's own (``skcri<N>``) on a free 10.89.x.0/24, host-local IPAM with
its state in the test directory, portmap for hostPorts — and a pod log
root. ``start()`` runs the installed ``skiff`` as a subprocess (as kubelet
would find it), waits until it answers ``Version``, and connects the stubs
of ``cri_api.v1`` (the same generated code the server uses) over the unix
socket; ``stop()`` sends SIGTERM and waits; ``restart()`` does both.
``close()`` removes every sandbox through the API, stops the server, and
then checks, as ContainerEnv does, that nothing of the store is left on the
host (mounts, namespaces, conmon, records), removing the bridge the
plugins made.

Tests use ``sandbox_config()`` / ``container_config()`` to build requests
the way kubelet fills them.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from skiff.testing.busybox import BusyboxImage
from skiff.testing.containers import ContainerEnv
from skiff.testing.network import free_subnet, interface_exists, wait_for

_bridges = itertools.count()
START_TIMEOUT = 60.0


class CRIEnv(ContainerEnv):
    def __init__(
        self,
        base: Path,
        layout: BusyboxImage,
        *,
        registries_conf: Path | None = None,
        plugins: tuple[str, ...] = ("bridge", "portmap"),
    ) -> None:
        super().__init__(base, layout)
        self.registries_conf = registries_conf
        number = next(_bridges)
        self.bridge = f"skcri{os.getpid() % 10000}x{number}"[:15]
        self.network_name = f"skiff-cri-test-{os.getpid()}-{number}"
        self.subnet = free_subnet()
        self.cni_dir = base / "cni"
        self.cni_dir.mkdir(parents=True, exist_ok=True)
        self.ipam_dir = base / "cni-ipam"
        self.log_root = base / "pod-logs"
        self.socket = base / "cri.sock"
        self.server_log = base / "cri-server.log"
        self.write_cni_config(plugins)
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: Any = None
        self.runtime: Any = None
        self.images: Any = None
        self.extra_args: list[str] = []

    # --- configuration ----------------------------------------------------------------

    def cni_config(self, plugins: tuple[str, ...]) -> dict[str, Any]:
        chain: list[dict[str, Any]] = []
        for plugin in plugins:
            if plugin == "bridge":
                chain.append(
                    {
                        "type": "bridge",
                        "bridge": self.bridge,
                        "isGateway": True,
                        "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": self.subnet}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(self.ipam_dir),
                        },
                    }
                )
            elif plugin == "portmap":
                chain.append({"type": "portmap", "capabilities": {"portMappings": True}})
            else:
                chain.append({"type": plugin})
        return {"cniVersion": "1.0.0", "name": self.network_name, "plugins": chain}

    def write_cni_config(self, plugins: tuple[str, ...]) -> None:
        path = self.cni_dir / "10-skiff-test.conflist"
        path.write_text(json.dumps(self.cni_config(plugins), indent=2))

    # --- the server ------------------------------------------------------------------

    def server_argv(self) -> list[str]:
        return self.skiff_argv(
            "--policy",
            self.policy,
            "cri",
            "serve",
            "--listen",
            f"unix://{self.socket}",
            "--cni-config-dir",
            self.cni_dir,
            "--cni-plugin-dir",
            "/usr/lib/cni",
            "--pod-log-root",
            self.log_root,
            *self.extra_args,
        )

    def start(self) -> None:
        import grpc
        from cri_api.v1 import api_pb2_grpc

        assert self.process is None, "the server is running"
        log = open(self.server_log, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(
                self.server_argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.environ(),
                cwd=self.base,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.socket.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"the CRI server exited: {self.server_output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the CRI server did not listen: {self.server_output()}")
            time.sleep(0.02)
        self.channel = grpc.insecure_channel(
            f"unix://{self.socket}",
            options=[("grpc.max_receive_message_length", 32 << 20)],
        )
        grpc.channel_ready_future(self.channel).result(timeout=START_TIMEOUT)
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def server_output(self) -> str:
        try:
            return self.server_log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM the server and wait for it; its exit status."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        process, self.process = self.process, None
        if process is None:
            return 0
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("the CRI server did not stop on SIGTERM") from None

    def restart(self) -> None:
        assert self.stop() == 0, self.server_output()
        self.start()

    # --- requests as kubelet fills them -----------------------------------------------

    def sandbox_config(self, name: str = "", **kwargs: Any) -> Any:
        from cri_api.v1 import api_pb2

        name = name or f"pod-{uuid.uuid4().hex[:8]}"
        uid = kwargs.pop("uid", str(uuid.uuid4()))
        namespace = kwargs.pop("namespace", "default")
        attempt = kwargs.pop("attempt", 0)
        linux = kwargs.pop("linux", None) or api_pb2.LinuxPodSandboxConfig()
        log_directory = kwargs.pop(
            "log_directory", str(self.log_root / f"{namespace}_{name}_{uid}")
        )
        return api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(
                name=name, uid=uid, namespace=namespace, attempt=attempt
            ),
            hostname=kwargs.pop("hostname", name),
            log_directory=log_directory,
            linux=linux,
            **kwargs,
        )

    def container_config(self, name: str, command: list[str], **kwargs: Any) -> Any:
        from cri_api.v1 import api_pb2

        attempt = kwargs.pop("attempt", 0)
        return api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=name, attempt=attempt),
            image=api_pb2.ImageSpec(image=kwargs.pop("image", self.image)),
            command=command,
            log_path=kwargs.pop("log_path", f"{name}/{attempt}.log"),
            **kwargs,
        )

    def run_sandbox(self, config: Any | None = None) -> tuple[str, Any]:
        from cri_api.v1 import api_pb2

        config = config if config is not None else self.sandbox_config()
        response = self.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config))
        return str(response.pod_sandbox_id), config

    def create_container(self, sandbox_id: str, sandbox_config: Any, config: Any) -> str:
        from cri_api.v1 import api_pb2

        response = self.runtime.CreateContainer(
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config
            )
        )
        return str(response.container_id)

    def start_container(self, container_id: str) -> None:
        from cri_api.v1 import api_pb2

        self.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id))

    def container_status(self, container_id: str, verbose: bool = False) -> Any:
        from cri_api.v1 import api_pb2

        return self.runtime.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        )

    def sandbox_status(self, sandbox_id: str, verbose: bool = False) -> Any:
        from cri_api.v1 import api_pb2

        return self.runtime.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        )

    def exec_sync(self, container_id: str, cmd: list[str], timeout: int = 30) -> Any:
        from cri_api.v1 import api_pb2

        return self.runtime.ExecSync(
            api_pb2.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout)
        )

    def wait_container_state(self, container_id: str, state: int, timeout: float = 30.0) -> None:
        wait_for(
            lambda: self.container_status(container_id).status.state == state,
            f"container {container_id[:12]} to reach state {state}",
            timeout,
        )

    def remove_all_sandboxes(self) -> None:
        from cri_api.v1 import api_pb2

        listed = self.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest())
        for item in listed.items:
            self.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=item.id))
            self.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=item.id))

    # --- what is left ----------------------------------------------------------------------

    def store_processes(self) -> list[tuple[int, str]]:
        """As ContainerEnv's, without the server itself."""
        server = self.process.pid if self.process is not None else None
        return [(pid, cmd) for pid, cmd in super().store_processes() if pid != server]

    def close(self) -> None:
        try:
            if self.process is not None and self.channel is not None:
                self.remove_all_sandboxes()
        finally:
            if self.process is not None:
                self.stop()
            self.skiff("pod", "rm", "-a", "-f", "-t", "0", expect=None, timeout=120)
            try:
                super().close()
            finally:
                if interface_exists(self.bridge):
                    subprocess.run(["ip", "link", "del", self.bridge], check=False)
