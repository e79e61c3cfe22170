"""The gRPC wiring of ``skiff cri serve``: servicers, the unix socket, stopping.

Only wiring lives here. Every RPC is one function of sandbox, container,
stats, image or runtime_info, called with the shared ``CRIService`` and
the request; a SkiffError it raises becomes the gRPC status of
``errors.status_code`` with skiff's one-line message, anything else is
logged with its traceback and answered INTERNAL. RPCs skiff does not
implement (CheckpointContainer, container events, metrics, in-place pod
resizing) answer UNIMPLEMENTED, which kubelet and crictl handle.

Socket: the parent directory is created; a socket file left by a server
that died is replaced, one another server still answers on is refused.
Stopping: SIGTERM or SIGINT stops accepting RPCs, lets the ones under way
finish (up to ``GRACE`` seconds), stops the streaming server, closes the
store and removes the socket. Containers and sandboxes keep running (their
conmon holds them); a server started again picks them up from the store.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.cri import container, image, runtime_info, sandbox, stats
from skiff.cri.config import CRIConfig
from skiff.cri.errors import status_code
from skiff.errors import ConfigError, SkiffError

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.cri.service import CRIService

log = logging.getLogger(__name__)

GRACE = 10.0
"""Seconds RPCs under way may take to finish once the server is asked to stop."""
MAX_MESSAGE = 32 << 20
"""ExecSync answers up to 16 MiB per stream."""

Handler = Callable[["CRIService", Any], Any]

RUNTIME_RPCS: dict[str, Handler] = {
    "Version": runtime_info.version,
    "Status": runtime_info.status,
    "RuntimeConfig": runtime_info.runtime_config,
    "UpdateRuntimeConfig": runtime_info.update_runtime_config,
    "RunPodSandbox": sandbox.run_pod_sandbox,
    "StopPodSandbox": sandbox.stop_pod_sandbox,
    "RemovePodSandbox": sandbox.remove_pod_sandbox,
    "PodSandboxStatus": sandbox.pod_sandbox_status,
    "ListPodSandbox": sandbox.list_pod_sandbox,
    "CreateContainer": container.create_container,
    "StartContainer": container.start_container,
    "StopContainer": container.stop_container,
    "RemoveContainer": container.remove_container,
    "ListContainers": container.list_containers,
    "ContainerStatus": container.container_status,
    "UpdateContainerResources": container.update_container_resources,
    "ReopenContainerLog": container.reopen_container_log,
    "ExecSync": container.exec_sync,
    "Exec": container.exec_,
    "Attach": container.attach,
    "PortForward": container.port_forward,
    "ContainerStats": stats.container_stats,
    "ListContainerStats": stats.list_container_stats,
    "PodSandboxStats": stats.pod_sandbox_stats,
    "ListPodSandboxStats": stats.list_pod_sandbox_stats,
}
IMAGE_RPCS: dict[str, Handler] = {
    "ListImages": image.list_images,
    "ImageStatus": image.image_status,
    "PullImage": image.pull_image,
    "RemoveImage": image.remove_image,
    "ImageFsInfo": image.image_fs_info,
}
UNIMPLEMENTED = (
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "UpdatePodSandboxResources",
)


def _method(svc: CRIService, name: str, fn: Handler) -> Callable[..., Any]:
    import grpc

    def handle(self: object, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(svc, request)
        except SkiffError as exc:
            code = status_code(exc)
            log.info("%s: %s: %s", name, code.name, exc)
            context.abort(code, str(exc))
        except Exception as exc:
            log.exception("%s failed", name)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error in {name}: {exc!r}")

    handle.__name__ = name
    return handle


def _unimplemented(name: str) -> Callable[..., Any]:
    import grpc

    def handle(self: object, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not implemented by skiff")

    handle.__name__ = name
    return handle


def servicers(svc: CRIService) -> tuple[object, object]:
    """The RuntimeService and ImageService servicers over ``svc``."""
    from cri_api.v1 import api_pb2_grpc

    runtime_methods: dict[str, Any] = {n: _method(svc, n, f) for n, f in RUNTIME_RPCS.items()}
    runtime_methods.update({n: _unimplemented(n) for n in UNIMPLEMENTED})
    image_methods: dict[str, Any] = {n: _method(svc, n, f) for n, f in IMAGE_RPCS.items()}
    runtime_cls = type(
        "SkiffRuntimeService", (api_pb2_grpc.RuntimeServiceServicer,), runtime_methods
    )
    image_cls = type("SkiffImageService", (api_pb2_grpc.ImageServiceServicer,), image_methods)
    return runtime_cls(), image_cls()


def prepare_socket(path: Path) -> None:
    """Make the socket's directory; remove a dead server's socket, refuse a live one's."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot prepare the CRI socket {path}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} exists and is not a socket", "choose another --listen path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ConfigError(
        f"another server is listening on {path}", "stop it first, or choose another --listen path"
    )


class CRIServer:
    """The running server: start, wait for a stop signal (or ``stop()``), stop."""

    def __init__(self, ctx: SystemContext, config: CRIConfig) -> None:
        if config.certs_dirs:
            from dataclasses import replace

            ctx = replace(ctx, certs_dirs=config.certs_dirs)
        self.ctx = ctx
        self.config = config
        self._stopping = threading.Event()
        self._grpc: Any = None
        self.svc: CRIService | None = None
        self.streaming_url = ""

    def start(self) -> None:
        from concurrent import futures

        import grpc

        from skiff.cri.service import CRIService
        from skiff.cri.streaming.backend import StreamingServer
        from skiff.cri.streaming.runtimehooks import runtime_hooks

        if self.config.default_runtime:
            # the default of every Runtime in this process (and its exit commands)
            os.environ["SKIFF_RUNTIME"] = self.config.default_runtime
        path = self.config.socket_path
        prepare_socket(path)
        streaming = StreamingServer(runtime_hooks(self.ctx))
        svc = CRIService(self.ctx, self.config, streaming)
        self.svc = svc
        try:
            sandbox.recover(svc)
            self.streaming_url = streaming.start(self.config.streaming_bind)
            server = grpc.server(
                futures.ThreadPoolExecutor(
                    max_workers=self.config.workers, thread_name_prefix="cri-rpc"
                ),
                options=[
                    ("grpc.max_send_message_length", MAX_MESSAGE),
                    ("grpc.max_receive_message_length", MAX_MESSAGE),
                ],
            )
            runtime_servicer, image_servicer = servicers(svc)
            from cri_api.v1 import api_pb2_grpc

            api_pb2_grpc.add_RuntimeServiceServicer_to_server(runtime_servicer, server)  # type: ignore[no-untyped-call]
            api_pb2_grpc.add_ImageServiceServicer_to_server(image_servicer, server)  # type: ignore[no-untyped-call]
            if not server.add_insecure_port(f"unix://{path}"):
                raise ConfigError(f"cannot listen on {path}", "check the directory's permissions")
            path.chmod(0o660)
            server.start()
        except BaseException:
            streaming.stop()
            svc.close()
            raise
        self._grpc = server
        log.info("CRI server listening on unix://%s, streaming at %s", path, self.streaming_url)

    def stop(self) -> None:
        self._stopping.set()

    def wait(self) -> None:
        """Block until ``stop()`` (or SIGTERM/SIGINT when installed), then shut down."""
        self._stopping.wait()
        self.shutdown()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: self._stopping.set())

    def shutdown(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(GRACE).wait()
            self._grpc = None
        if self.svc is not None:
            if self.svc.streaming is not None:
                self.svc.streaming.stop()
            self.svc.close()
            self.svc = None
        self.config.socket_path.unlink(missing_ok=True)
        log.info("CRI server stopped")


def serve(ctx: SystemContext, config: CRIConfig) -> None:
    """Run the server until SIGTERM or SIGINT."""
    server = CRIServer(ctx, config)
    server.install_signal_handlers()
    server.start()
    server.wait()
