"""``StreamingServer``: what the CRI gRPC server (and tests) use.

    server = StreamingServer(runtime_hooks(ctx))
    base = server.start("127.0.0.1:0")          # "http://127.0.0.1:40123"
    url = server.register_exec(cid, ["sh"], tty=True, stdin=True, stdout=True, stderr=False)
    ...                                         # ExecResponse(url=url)
    server.stop()

The ``register_*`` calls validate the request as the CRI asks (a command,
at least one stream, no stderr with a terminal) and return a single-use
URL that expires after ``token_ttl`` seconds. They do not check that the
container or sandbox exists or runs: the RPC handler does that before
registering (the answer is the RPC's error), and the hooks check again
when the client connects (the answer is the session's error status).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Iterable, Sequence

from skiff.cri.streaming.model import (
    AttachRequest,
    ExecRequest,
    PortForwardRequest,
    RuntimeHooks,
    StreamRequest,
)
from skiff.cri.streaming.remotecommand import SessionOptions
from skiff.cri.streaming.server import StreamingHTTPServer
from skiff.cri.streaming.tokens import DEFAULT_MAX_IN_FLIGHT, DEFAULT_TTL, RequestCache
from skiff.errors import ContainerError, UsageError

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:0"


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``HOST`` (port 0: any free port)."""
    text = address.strip()
    host, port_text = text, "0"
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"invalid streaming address {address!r}", "use [IPV6]:PORT")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"invalid streaming address {address!r}", "use [IPV6]:PORT")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise UsageError(f"invalid streaming address {address!r}: no host", "use HOST:PORT")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"invalid port in streaming address {address!r}", "ports are 0-65535")
    return host, int(port_text)


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


class StreamingServer:
    """The CRI streaming server (see the module docstring)."""

    def __init__(
        self,
        hooks: RuntimeHooks,
        *,
        token_ttl: float = DEFAULT_TTL,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        options: SessionOptions | None = None,
    ) -> None:
        self.hooks = hooks
        self.cache = RequestCache(token_ttl, max_in_flight)
        self.options = options or SessionOptions()
        self._http: StreamingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise ContainerError("the streaming server is not running", "call start() first")
        return self._base_url

    def start(self, address: str = DEFAULT_ADDRESS) -> str:
        """Listen on ``address`` and serve in a background thread; the base URL."""
        if self._http is not None:
            raise ContainerError(f"the streaming server already listens at {self._base_url}")
        host, port = parse_address(address)
        try:
            http = StreamingHTTPServer((host, port), self.cache, self.hooks, self.options)
        except OSError as exc:
            raise ContainerError(
                f"cannot listen on streaming address {address}: {exc.strerror or exc}",
                "choose a free port, or port 0 for any",
            ) from exc
        bound_host, bound_port = http.server_address[:2]
        self._base_url = f"http://{_url_host(str(bound_host))}:{bound_port}"
        self._http = http
        self._thread = threading.Thread(
            target=http.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="cri-streaming",
            daemon=True,
        )
        self._thread.start()
        log.info("CRI streaming server listening at %s", self._base_url)
        return self._base_url

    def _register(self, kind: str, request: StreamRequest) -> str:
        request.validate()
        base = self.base_url
        return f"{base}/{kind}/{self.cache.insert(request)}"

    def register_exec(  # noqa: PLR0917 - the CRI ExecRequest's fields, in its order
        self,
        container_id: str,
        cmd: Sequence[str],
        tty: bool = False,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
    ) -> str:
        """The URL a client connects to to run ``cmd`` in the container."""
        request = ExecRequest(container_id, tuple(cmd), tty, stdin, stdout, stderr)
        return self._register("exec", request)

    def register_attach(
        self,
        container_id: str,
        tty: bool = False,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
    ) -> str:
        """The URL a client connects to to attach to the container."""
        return self._register("attach", AttachRequest(container_id, tty, stdin, stdout, stderr))

    def register_portforward(self, sandbox_id: str, ports: Iterable[int] = ()) -> str:
        """The URL a client connects to to forward ports of the sandbox (all
        ports when ``ports`` is empty)."""
        return self._register("portforward", PortForwardRequest(sandbox_id, tuple(ports)))

    def stop(self) -> None:
        """Stop listening, end every open session, wait (bounded) for them."""
        http, self._http = self._http, None
        if http is None:
            return
        http.shutdown()
        http.server_close()
        http.close_connections()
        if self._thread is not None:
            self._thread.join()
        self._base_url = ""
        log.info("CRI streaming server stopped")

    def __enter__(self) -> StreamingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
