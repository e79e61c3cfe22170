"""A Kubernetes API server stand-in, so that real ``kubectl`` can reach a CRI
streaming server in tests.

``kubectl exec/attach/port-forward`` talk to the API server, which has the
kubelet call the runtime's Exec/Attach/PortForward and relay the upgraded
connection to the URL the runtime returned (the kubelet's "proxy" mode).
This stand-in plays both parts: it answers the discovery and pod reads
kubectl makes (pods are named by the test and map to container or
sandbox IDs), registers the request with the ``StreamingServer`` from the
subresource's query (``command``, ``stdin``, ``stdout``, ``stderr``,
``tty``), and relays the raw connection — request headers and all — so
that kubectl's own SPDY or WebSocket handshake reaches the streaming
server untouched.

A test fixture: no authentication, plain HTTP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from skiff.cri.streaming.backend import StreamingServer


def _resource(name: str, kind: str, verbs: list[str]) -> dict[str, Any]:
    return {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": verbs}


_API_V1 = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {**_resource("pods", "Pod", ["get", "list"]), "singularName": "pod"},
        _resource("pods/exec", "PodExecOptions", ["create", "get"]),
        _resource("pods/attach", "PodAttachOptions", ["create", "get"]),
        _resource("pods/portforward", "PodPortForwardOptions", ["create", "get"]),
    ],
}


class KubeAPIStandIn:
    """``pods`` maps pod names to the container (exec, attach) or sandbox
    (port-forward) IDs the streaming server is asked about."""

    def __init__(self, streaming: StreamingServer, pods: Mapping[str, str]) -> None:
        self.streaming = streaming
        self.pods = dict(pods)
        self.requests: list[str] = []
        """Method and path of every request, in order."""
        self.upgrades: list[tuple[str, str, str]] = []
        """(subresource, Upgrade header, offered protocols) of every relayed request."""
        handler = type("Handler", (_Handler,), {"api": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def __enter__(self) -> KubeAPIStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[0].lower() in ("true", "1")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: KubeAPIStandIn

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are recorded in ``api.requests``."""

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _json(self, value: Any, status: int = 200) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self) -> None:
        self._json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
            },
            404,
        )

    def _route(self) -> None:
        self.api.requests.append(f"{self.command} {self.path}")
        url = urlsplit(self.path)
        if url.path == "/api":
            self._json(
                {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
            return
        if url.path == "/apis":
            self._json({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            return
        if url.path == "/api/v1":
            self._json(_API_V1)
            return
        parts = url.path.strip("/").split("/")
        if len(parts) < 6 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "pods":
            self._not_found()
            return
        name, namespace = parts[5], parts[3]
        target_id = self.api.pods.get(name)
        if target_id is None:
            self._not_found()
            return
        if len(parts) == 6:
            self._json(_pod(name, namespace))
            return
        register = self._registration(parts[6], target_id, parse_qs(url.query))
        if register is None:
            self._not_found()
            return
        offered = self.headers.get_all("Sec-WebSocket-Protocol") or self.headers.get_all(
            "X-Stream-Protocol-Version"
        )
        self.api.upgrades.append(
            (parts[6], self.headers.get("Upgrade", ""), ", ".join(offered or []))
        )
        self._relay(register())

    def _registration(
        self, subresource: str, target_id: str, query: Mapping[str, list[str]]
    ) -> Callable[[], str] | None:
        streaming = self.api.streaming
        streams = {k: _flag(query, k) for k in ("tty", "stdin", "stdout", "stderr")}
        if subresource == "exec":
            return lambda: streaming.register_exec(target_id, query.get("command", []), **streams)
        if subresource == "attach":
            return lambda: streaming.register_attach(target_id, **streams)
        if subresource == "portforward":
            return lambda: streaming.register_portforward(target_id)
        return None

    def _relay(self, target: str) -> None:
        """Send the client's request on to ``target`` and splice the connections."""
        parts = urlsplit(target)
        upstream = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
        lines = [f"{self.command} {parts.path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.close_connection = True

        def pump(read: Callable[[], bytes], out: socket.socket) -> None:
            with contextlib.suppress(OSError, ValueError):
                while data := read():
                    out.sendall(data)
            with contextlib.suppress(OSError):
                out.shutdown(socket.SHUT_WR)

        rfile = self.rfile
        to_upstream = threading.Thread(
            target=pump, args=(lambda: rfile.read1(65536), upstream), daemon=True
        )
        to_upstream.start()
        pump(lambda: upstream.recv(65536), self.connection)
        to_upstream.join(10)
        upstream.close()


def _pod(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox", "stdin": True, "tty": True}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "c", "ready": True, "state": {"running": {}}}],
        },
    }
