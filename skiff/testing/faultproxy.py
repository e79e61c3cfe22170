"""A reverse proxy on 127.0.0.1 that misbehaves on request.

Put in front of a real registry, it forwards everything unchanged until a
test installs faults: per method and request-target regex, answer a status
N times (500 twice, 429 with ``Retry-After``), serve a body cut after K
bytes, flip bytes of a body (a blob that does not match its digest), delay
the answer, redirect to another host, or drop the connection unanswered.
Registry-client and copy-engine tests use it to prove every recovery path
against the real protocol rather than against mocks.

Forwarding streams in both directions (64 KiB at a time, never a whole
blob in memory): request bodies with ``Content-Length`` or chunked
encoding, response bodies with ``Content-Length`` or re-chunked. Headers
pass through, ``Range`` included, so 206 answers come back as the registry
made them. ``Host`` stays the proxy's, with ``X-Forwarded-Proto`` set, so
the ``Location`` of an upload session points back through the proxy.

Rules are tried in the order added; the first that matches and has
applications left applies (a rule with ``times=None`` applies forever).
Every request is logged (``requests``) with the rule it met.
"""

from __future__ import annotations

import http.client
import itertools
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from skiff.testing.tlsutil import IssuedCert, LoopbackServer

CHUNK = 64 * 1024
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NOT_FOUND",
    429: "TOOMANYREQUESTS",
}


@dataclass
class Fault:
    """One misbehaviour, matched on method and request target.

    ``path`` is searched (``re.search``) in the request target, query
    included. Effects, in the order they happen:
      ``delay``           seconds to wait before anything else;
      ``drop``            close the connection without an answer;
      ``status``/``headers``/``body``  answer this instead of forwarding
                          (``body`` None: a registry-style JSON error; a
                          ``body`` without ``status`` is served as 200);
      ``redirect_to``     answer ``redirect_status`` with ``Location:
                          redirect_to + target`` (another host's base URL);
      ``truncate_after``  forward, but stop the body after K bytes and close
                          (the announced Content-Length is kept);
      ``flip_at``         forward, XOR 0xFF into the body bytes at these offsets.
    ``hits`` counts the requests the fault was applied to.
    """

    path: re.Pattern[str]
    method: str | None = None
    times: int | None = 1
    delay: float = 0.0
    drop: bool = False
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    redirect_to: str | None = None
    redirect_status: int = 307
    truncate_after: int | None = None
    flip_at: tuple[int, ...] = ()
    hits: int = 0

    def matches(self, method: str, target: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path.search(target) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass
class ProxiedRequest:
    """One request the proxy saw: what came in and what went out.

    ``headers`` are the request headers (lower-cased names); ``status`` the
    status sent (0 for a dropped connection); ``fault`` the rule applied
    (None: forwarded untouched). An entry is logged just before its status
    line is sent, so these are final once the client has its answer;
    ``body_bytes`` (response body bytes sent) and ``client_aborted`` (either
    side went away mid-exchange) keep changing until the body is done.
    """

    method: str
    target: str
    headers: Mapping[str, str]
    status: int
    fault: Fault | None
    body_bytes: int = 0
    client_aborted: bool = False
    arrival: int = 0
    """Order in which the requests came in (``requests`` is sorted by it)."""


class FaultProxy:
    """The proxy; ``start()`` or use as a context manager.

    ``upstream``: base URL of what to proxy (``http://127.0.0.1:5000``).
    ``upstream_ca_pem``: CA to trust when ``upstream`` is https.
    ``server_tls``/``tls_dir``: serve HTTPS with this certificate (written
    into ``tls_dir``) instead of plain HTTP.

    Fields: ``host`` (``127.0.0.1:PORT``), ``url``, ``upstream``,
    ``requests`` (a copy of the log), ``faults`` (a copy of the rules).
    """

    def __init__(
        self,
        upstream: str,
        *,
        upstream_ca_pem: bytes | None = None,
        server_tls: IssuedCert | None = None,
        tls_dir: Path | None = None,
        upstream_timeout: float = 60.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"upstream must be an http(s) base URL, not {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_scheme = parsed.scheme
        self._upstream_host = parsed.hostname
        self._upstream_port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._upstream_context: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            self._upstream_context = ssl.create_default_context(
                cadata=upstream_ca_pem.decode() if upstream_ca_pem else None
            )
        self.upstream_timeout = upstream_timeout
        context = None
        if server_tls is not None:
            if tls_dir is None:
                raise ValueError("tls_dir is required with server_tls")
            context = server_tls.server_context(tls_dir, "faultproxy")
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._requests: list[ProxiedRequest] = []
        self._arrivals = itertools.count()
        self._server = LoopbackServer(_ProxyHandler, context)
        self._server.fault_proxy = self  # type: ignore[attr-defined]

    # --- lifecycle -------------------------------------------------------
    def start(self) -> FaultProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def scheme(self) -> str:
        return self._server.scheme

    # --- rules -----------------------------------------------------------
    def add(
        self, path: str, *, method: str | None = None, times: int | None = 1, **effects: Any
    ) -> Fault:
        """Install a rule (see ``Fault`` for ``effects``); returns it (``hits``)."""
        fault = Fault(path=re.compile(path), method=method, times=times, **effects)
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(
        self,
        path: str,
        status: int,
        *,
        times: int | None = 1,
        method: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Fault:
        """Answer ``status`` (with ``headers``, e.g. Retry-After) ``times`` times."""
        return self.add(
            path, method=method, times=times, status=status, headers=dict(headers or {}), body=body
        )

    def truncate(
        self, path: str, after: int, *, times: int | None = 1, method: str | None = "GET"
    ) -> Fault:
        """Cut response bodies after ``after`` bytes, then close the connection."""
        return self.add(path, method=method, times=times, truncate_after=after)

    def corrupt(
        self,
        path: str,
        offsets: tuple[int, ...] = (0,),
        *,
        times: int | None = 1,
        method: str | None = "GET",
    ) -> Fault:
        """Flip the body bytes at ``offsets`` (same length, wrong content)."""
        return self.add(path, method=method, times=times, flip_at=tuple(offsets))

    def delay(
        self, path: str, seconds: float, *, times: int | None = 1, method: str | None = None
    ) -> Fault:
        """Wait ``seconds`` before forwarding."""
        return self.add(path, method=method, times=times, delay=seconds)

    def redirect(
        self,
        path: str,
        to: str,
        *,
        status: int = 307,
        times: int | None = 1,
        method: str | None = "GET",
    ) -> Fault:
        """Redirect to ``to`` (a base URL; the request target is appended)."""
        return self.add(
            path, method=method, times=times, redirect_to=to.rstrip("/"), redirect_status=status
        )

    def drop(self, path: str, *, times: int | None = 1, method: str | None = None) -> Fault:
        """Close the connection without answering."""
        return self.add(path, method=method, times=times, drop=True)

    def clear(self) -> None:
        """Remove all rules and forget the request log."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    @property
    def requests(self) -> list[ProxiedRequest]:
        """The requests logged so far, in the order they came in.

        A request whose client went away mid-body is logged when the proxy
        notices, which can be after a later request on another connection
        (the client's cancelling DELETE) was answered.
        """
        with self._lock:
            return sorted(self._requests, key=lambda r: r.arrival)

    def _take(self, method: str, target: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, target):
                    fault.hits += 1
                    return fault
        return None

    def _record(self, entry: ProxiedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def _upstream_connection(self) -> http.client.HTTPConnection:
        if self._upstream_context is not None:
            return http.client.HTTPSConnection(
                self._upstream_host,
                self._upstream_port,
                timeout=self.upstream_timeout,
                context=self._upstream_context,
            )
        return http.client.HTTPConnection(
            self._upstream_host, self._upstream_port, timeout=self.upstream_timeout
        )


class _ClientGone(Exception):
    """The downstream client closed its connection mid-exchange."""


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120
    server_version = "skiff-test-faultproxy"
    _entry: ProxiedRequest
    _recorded: bool = False

    @property
    def proxy(self) -> FaultProxy:
        return self.server.fault_proxy  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are recorded in ``FaultProxy.requests``, not printed."""

    # every method is proxied the same way
    def do_GET(self) -> None:
        self._proxy()

    def do_HEAD(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PATCH(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    # --- request body ------------------------------------------------------
    def _request_body(self) -> Iterator[bytes] | None:
        """The client's body as a stream of chunks (None: no body)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        return self._read_exact(int(length))

    def _read_exact(self, remaining: int) -> Iterator[bytes]:
        while remaining > 0:
            data = self.rfile.read(min(CHUNK, remaining))
            if not data:
                raise _ClientGone
            remaining -= len(data)
            yield data

    def _read_chunked(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _ClientGone
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # trailers until an empty line
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield from self._read_exact(size)
            self.rfile.readline(16)  # the CRLF after the chunk

    def _drain_request(self) -> None:
        body = self._request_body()
        if body is not None:
            for _ in body:
                pass

    # --- answers -----------------------------------------------------------
    def _respond(self, status: int, reason: str | None = None) -> None:
        """Log the exchange, then send the status line.

        The log entry is appended *before* the client can see an answer, so
        a test that got its response finds the request in ``requests``.
        """
        self._entry.status = status
        self.proxy._record(self._entry)
        self._recorded = True
        self.send_response_only(status, reason)

    def _canned(self, fault: Fault) -> None:
        status = fault.status if fault.status is not None else 200
        body = fault.body
        if body is None:
            code = _ERROR_CODES.get(status, "UNKNOWN")
            body = (
                b'{"errors":[{"code":"'
                + code.encode()
                + b'","message":"injected by the fault proxy","detail":null}]}'
            )
        self._respond(status)
        headers = {"Content-Type": "application/json", **fault.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self._write(body, chunked=False)

    def _proxy(self) -> None:
        proxy = self.proxy
        method, target = self.command, self.path
        headers = {k.lower(): v for k, v in self.headers.items()}
        fault = proxy._take(method, target)
        self._entry = ProxiedRequest(
            method, target, headers, 0, fault, arrival=next(proxy._arrivals)
        )
        self._recorded = False
        try:
            if fault is not None and fault.delay:
                time.sleep(fault.delay)  # the fault *is* the delay
            if fault is not None and fault.drop:
                proxy._record(self._entry)
                self._recorded = True
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif fault is not None and (fault.status is not None or fault.body is not None):
                self._drain_request()
                self._canned(fault)
            elif fault is not None and fault.redirect_to is not None:
                self._drain_request()
                self._respond(fault.redirect_status)
                self.send_header("Location", fault.redirect_to + target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._forward(fault)
        except (_ClientGone, ConnectionError, TimeoutError, http.client.HTTPException):
            # Either side went away mid-exchange: recorded, and the
            # connection is closed (the client sees what it would see).
            self._entry.client_aborted = True
            self.close_connection = True
        finally:
            if not self._recorded:
                proxy._record(self._entry)

    def _forward(self, fault: Fault | None) -> None:
        proxy = self.proxy
        upstream = proxy._upstream_connection()
        try:
            out_headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            out_headers["Host"] = proxy.host
            out_headers["X-Forwarded-Proto"] = proxy.scheme
            out_headers["X-Forwarded-Host"] = proxy.host
            body = self._request_body()
            length = self.headers.get("Content-Length")
            chunked_in = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            if body is not None and length is not None and not chunked_in:
                out_headers["Content-Length"] = length
            try:
                upstream.request(self.command, self.path, body=body, headers=out_headers)
                response = upstream.getresponse()
            except _ClientGone:
                raise
            except (OSError, http.client.HTTPException) as exc:
                self._bad_gateway(exc)
                return
            self._relay(response, fault)
        finally:
            upstream.close()

    def _bad_gateway(self, exc: Exception) -> None:
        message = f"fault proxy: upstream {self.proxy.upstream} failed: {exc}".encode()
        self._respond(502)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        self._write(message, chunked=False)

    def _relay(self, response: http.client.HTTPResponse, fault: Fault | None) -> None:
        """Send the upstream answer on, applying truncate/flip."""
        self._respond(response.status, response.reason)
        length = response.getheader("Content-Length")
        has_body = (
            self.command != "HEAD"
            and response.status not in (204, 304)
            and not (100 <= response.status < 200)
        )
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        chunked_out = has_body and length is None
        if length is not None:
            self.send_header("Content-Length", length)
        elif chunked_out:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not has_body:
            return

        limit = fault.truncate_after if fault is not None else None
        flips = sorted(fault.flip_at) if fault is not None else []
        offset = 0
        while True:
            data = response.read(CHUNK)
            if not data:
                break
            if flips:
                data = _flip(data, offset, flips)
            if limit is not None and offset + len(data) >= limit:
                self._write(data[: limit - offset], chunked_out)
                # The cut: close without completing the body.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._write(data, chunked_out)
            offset += len(data)
        if chunked_out:
            self.wfile.write(b"0\r\n\r\n")

    def _write(self, data: bytes, chunked: bool) -> None:
        if not data:
            return
        self._entry.body_bytes += len(data)
        if chunked:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.wfile.write(data)


def _flip(data: bytes, offset: int, flips: list[int]) -> bytes:
    """XOR 0xFF into ``data`` (which starts at body ``offset``) at ``flips``."""
    inside = [f - offset for f in flips if offset <= f < offset + len(data)]
    if not inside:
        return data
    buf = bytearray(data)
    for i in inside:
        buf[i] ^= 0xFF
    return bytes(buf)
