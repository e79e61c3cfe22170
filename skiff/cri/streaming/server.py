"""The streaming server's HTTP side: routes, tokens, protocol upgrades.

    GET|POST /exec/TOKEN         exec         (SPDY/3.1 or WebSocket)
    GET|POST /attach/TOKEN       attach       (SPDY/3.1 or WebSocket)
    GET|POST /portforward/TOKEN  port-forward (SPDY/3.1 or WebSocket)

A token is consumed by the first request that names it, whatever happens
next; unknown, expired, already used or misrouted tokens get 404. The
request must upgrade: ``Connection: Upgrade`` with ``Upgrade: SPDY/3.1``
and ``X-Stream-Protocol-Version`` (the client's list, in order of
preference; 403 with ``X-Accepted-Stream-Protocol-Versions`` when none
fits, as the Kubernetes servers answer), or a WebSocket handshake (see
``websocket``). Anything else is 400. After the 101 the handler thread
serves the session on the raw connection and the connection is closed.

Each connection has its own thread (``ThreadingHTTPServer``); ``stop``
shuts every open connection down, which cancels its session (an exec's
process is killed, an attach relay ends, forwarded connections close),
and waits a bounded time for the threads.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from skiff.cri.streaming import portforward, remotecommand
from skiff.cri.streaming import websocket as ws
from skiff.cri.streaming.model import (
    AttachRequest,
    ExecRequest,
    PortForwardRequest,
    RuntimeHooks,
    StreamRequest,
)
from skiff.cri.streaming.remotecommand import SessionOptions
from skiff.cri.streaming.tokens import RequestCache
from skiff.errors import SkiffError

log = logging.getLogger(__name__)

KINDS: dict[str, type[ExecRequest] | type[AttachRequest] | type[PortForwardRequest]] = {
    "exec": ExecRequest,
    "attach": AttachRequest,
    "portforward": PortForwardRequest,
}
SPDY_UPGRADE = "spdy/3.1"
PROTOCOL_HEADER = "X-Stream-Protocol-Version"
ACCEPTED_PROTOCOLS_HEADER = "X-Accepted-Stream-Protocol-Versions"
REQUEST_TIMEOUT = 30.0
"""How long a client may take to send its request line and headers."""
STOP_TIMEOUT = 10.0


class StreamingHTTPServer(ThreadingHTTPServer):
    """The listening server, its token cache and its open connections."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        cache: RequestCache,
        hooks: RuntimeHooks,
        options: SessionOptions,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.cache = cache
        self.hooks = hooks
        self.options = options
        self._open: dict[threading.Thread, socket.socket] = {}
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open[threading.current_thread()] = conn

    def untrack(self) -> None:
        with self._open_lock:
            self._open.pop(threading.current_thread(), None)

    def close_connections(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut every open connection down and wait (bounded) for their threads."""
        with self._open_lock:
            open_now = dict(self._open)
        for conn in open_now.values():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))
        still = [t.name for t in open_now if t.is_alive()]
        if still:
            log.warning("streaming sessions still running after stop: %s", ", ".join(still))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    server: StreamingHTTPServer
    server_version = "skiff-streaming"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self.close_connection = True
        try:
            self._route()
        finally:
            self.server.untrack()

    def do_POST(self) -> None:
        self.do_GET()

    # --- answers --------------------------------------------------------------------------

    def _plain(self, status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        body = (text.rstrip("\n") + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def _switch(self, headers: Sequence[tuple[str, str]]) -> None:
        self.send_response(101)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.connection.settimeout(None)
        self.server.track(self.connection)

    def _headers(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            out.setdefault(name.lower(), []).append(value)
        return out

    # --- routing --------------------------------------------------------------------------

    def _route(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.split("/")
        kind = parts[1] if len(parts) == 3 else ""
        if kind not in KINDS or not parts[2]:
            self._plain(404, f"no streaming endpoint at {url.path}")
            return
        request = self.server.cache.consume(parts[2])
        if request is None or not isinstance(request, KINDS[kind]):
            self._plain(404, f"{kind} token is unknown, expired or already used")
            return
        headers = self._headers()
        if ws.is_websocket_request(headers):
            self._websocket(kind, request, headers, parse_qs(url.query))
            return
        upgrade = [t.lower() for t in ws.header_tokens(headers.get("upgrade", ()))]
        connection = [t.lower() for t in ws.header_tokens(headers.get("connection", ()))]
        if upgrade == [SPDY_UPGRADE] and "upgrade" in connection:
            self._spdy(kind, request, headers)
            return
        self._plain(400, f"{kind}: the request must upgrade to SPDY/3.1 or WebSocket")

    def _spdy(self, kind: str, request: StreamRequest, headers: dict[str, list[str]]) -> None:
        supported = (
            (portforward.PROTOCOL,)
            if isinstance(request, PortForwardRequest)
            else remotecommand.PROTOCOLS
        )
        offered = ws.header_tokens(headers.get(PROTOCOL_HEADER.lower(), ()))
        chosen = remotecommand.negotiate(offered, supported)
        if chosen is None:
            self._plain(
                403,
                f"unable to upgrade: unable to negotiate protocol: client supports "
                f"[{' '.join(offered)}], server accepts [{' '.join(supported)}]",
                [(ACCEPTED_PROTOCOLS_HEADER, ", ".join(supported))],
            )
            return
        self._switch(
            [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"), (PROTOCOL_HEADER, chosen)]
        )
        log.debug("%s over SPDY (%s) from %s", kind, chosen, self.address_string())
        if isinstance(request, PortForwardRequest):
            portforward.serve_spdy_portforward(
                self.rfile,
                self.connection,
                request,
                self.server.hooks.dial,
                self.server.options.stream_creation_timeout,
            )
        else:
            remotecommand.serve_spdy(
                self.rfile, self.connection, request, self.server.hooks, self.server.options
            )

    def _websocket(
        self,
        kind: str,
        request: StreamRequest,
        headers: dict[str, list[str]],
        query: dict[str, list[str]],
    ) -> None:
        ports: tuple[int, ...] = ()
        if isinstance(request, PortForwardRequest):
            supported: Sequence[str] = portforward.WEBSOCKET_PROTOCOLS
            try:
                ports = request.ports or portforward.query_ports(query.get("port", []))
            except SkiffError as exc:
                self._plain(400, f"port forward: {exc}")
                return
            if not ports:
                self._plain(400, 'port forward: query parameter "port" is required')
                return
        else:
            supported = remotecommand.PROTOCOLS
        try:
            accept, chosen = ws.check_handshake(self.command, headers, supported)
        except ws.HandshakeRefused as refused:
            self._plain(refused.status, refused.message, refused.headers)
            return
        answer = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept),
        ]
        if chosen:
            answer.append(("Sec-WebSocket-Protocol", chosen))
        self._switch(answer)
        log.debug("%s over WebSocket (%s) from %s", kind, chosen or "-", self.address_string())
        conn = ws.WebSocketConnection(self.rfile, self.connection)
        if isinstance(request, PortForwardRequest):
            portforward.serve_websocket_portforward(conn, request, ports, self.server.hooks.dial)
        else:
            remotecommand.serve_websocket(
                conn, chosen or "", request, self.server.hooks, self.server.options
            )
