"""A Docker token-authentication service for the bearer-token test registry.

Distribution in ``auth.token`` mode answers an unauthenticated request with
``401`` and ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``;
the client fetches a token from the realm and retries with it. This module
is that realm, small enough to read in one sitting, so registry-client tests
exercise the real exchange against the real registry:

``GET /token?service=S&scope=repository:NAME:pull,push&account=U[&offline_token=true]``
    Basic credentials (optional: anonymous requests get anonymous grants)
    are checked against the user table. Answer:
    ``{"token", "access_token", "expires_in", "issued_at"[, "refresh_token"]}``.
``POST /token`` (OAuth2, form-encoded)
    ``grant_type=password`` with ``username``/``password``, or
    ``grant_type=refresh_token`` with ``refresh_token``; ``service``,
    ``scope`` (space separated), ``client_id``, ``access_type=offline``
    for a refresh token. Answer: ``{"access_token", "expires_in",
    "issued_at", "scope"[, "refresh_token"]}``.

The token is a JWS (ES256) whose header carries the signing certificate
chain in ``x5c``; Distribution verifies it against ``rootcertbundle`` (the
test CA), then checks ``iss``, ``aud`` (one string: Distribution 2.8 reads
a string), ``exp``/``nbf`` (with 60 s leeway) and grants what ``access``
lists. A user receives the intersection of what it asked for and what it
may do; what it may not do is silently left out (the spec's behaviour:
the registry then answers 401 ``insufficient_scope``). Wrong credentials
are a 401 from this service.

Every request is recorded (``requests``) so tests can assert which scopes
a client asked for.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from skiff.testing.tlsutil import IssuedCert, LoopbackServer

ALL_REPOSITORY_ACTIONS = frozenset({"pull", "push", "delete", "*"})
"""Everything Distribution checks on a repository ("*" is its wildcard)."""


@dataclass(frozen=True)
class TokenUser:
    """One account: its password and what it may do.

    ``actions`` apply to every repository (``{"pull"}`` for a read-only
    user, ``ALL_REPOSITORY_ACTIONS`` for a push user); ``catalog`` grants
    ``registry:catalog:*`` (listing repositories).
    """

    password: str
    actions: frozenset[str]
    catalog: bool = False


@dataclass(frozen=True)
class Access:
    """One entry of a token's ``access`` claim."""

    type: str
    name: str
    actions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class TokenRequest:
    """What the service received and how it answered (one per request).

    ``account`` is the authenticated user (None: anonymous or refused),
    ``offered_account`` the ``account``/``username`` parameter as sent,
    ``scopes`` the raw scope strings, ``granted`` what the token carries,
    ``status`` the HTTP status of the answer.
    """

    method: str
    path: str
    account: str | None
    offered_account: str | None
    service: str
    scopes: tuple[str, ...]
    granted: tuple[Access, ...]
    status: int
    grant_type: str | None = None
    client_id: str | None = None


def parse_scope(scope: str) -> tuple[str, str, tuple[str, ...]] | None:
    """``repository:a/b:pull,push`` → ("repository", "a/b", ("pull", "push")).

    The name sits between the first and the last colon (a type may carry a
    class, ``repository(plugin)``, which is dropped). None if malformed.
    """
    first = scope.find(":")
    last = scope.rfind(":")
    if first <= 0 or last == first:
        return None
    kind = scope[:first].split("(", 1)[0]
    name = scope[first + 1 : last]
    actions = tuple(a for a in scope[last + 1 :].split(",") if a)
    if not name:
        return None
    return kind, name, actions


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rfc3339(when: float) -> str:
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _State:
    lifetime: int
    requests: list[TokenRequest] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    injected: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class TokenServer:
    """The token service; start with ``start()`` or as a context manager.

    Fields: ``url`` (``https://127.0.0.1:PORT``), ``realm`` (``URL/token``,
    what the registry config names), ``issuer``, ``service``, ``users``,
    ``public_repositories`` (anonymous pull allowed), ``signing`` (the
    certificate whose chain goes in ``x5c``), ``lifetime`` (``expires_in``
    seconds; settable), ``requests`` (a copy of the request log).
    """

    def __init__(
        self,
        *,
        signing: IssuedCert,
        users: Mapping[str, TokenUser],
        issuer: str = "skiff-test-token-issuer",
        service: str = "skiff-test-registry",
        public_repositories: Iterable[str] = (),
        lifetime: int = 300,
        server_tls: IssuedCert | None = None,
        tls_dir: Path | None = None,
    ) -> None:
        """``server_tls``/``tls_dir``: serve HTTPS with this certificate
        (written to ``tls_dir``); without them the service is plain HTTP."""
        self.signing = signing
        self.users = dict(users)
        self.issuer = issuer
        self.service = service
        self.public_repositories = frozenset(public_repositories)
        self._state = _State(lifetime=lifetime)
        context = None
        if server_tls is not None:
            if tls_dir is None:
                raise ValueError("tls_dir is required with server_tls")
            context = server_tls.server_context(tls_dir, "tokenserver")
        self._server = LoopbackServer(_TokenHandler, context)
        self._server.token_service = self  # type: ignore[attr-defined]

    # --- lifecycle -------------------------------------------------------
    def start(self) -> TokenServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    # --- test controls ---------------------------------------------------
    @property
    def lifetime(self) -> int:
        return self._state.lifetime

    @lifetime.setter
    def lifetime(self, seconds: int) -> None:
        with self._state.lock:
            self._state.lifetime = seconds

    @property
    def requests(self) -> list[TokenRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def clear_requests(self) -> None:
        with self._state.lock:
            self._state.requests.clear()

    def inject_failures(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` token requests with ``status`` (e.g. 500)."""
        with self._state.lock:
            self._state.injected.extend([status] * times)

    # --- the grant logic -------------------------------------------------
    def grant(self, account: str | None, scopes: Iterable[str]) -> tuple[Access, ...]:
        """What ``account`` (None: anonymous) receives for ``scopes``."""
        granted: list[Access] = []
        user = self.users.get(account) if account is not None else None
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, wanted = parsed
            if kind == "repository":
                allowed: frozenset[str] = frozenset()
                if user is not None:
                    allowed = user.actions
                elif name in self.public_repositories:
                    allowed = frozenset({"pull"})
                actions = tuple(a for a in wanted if a in allowed)
            elif kind == "registry" and name == "catalog":
                actions = tuple(a for a in wanted if a == "*") if user and user.catalog else ()
            else:
                actions = ()
            granted.append(Access(kind, name, actions))
        return tuple(granted)

    def issue(
        self, account: str | None, granted: Iterable[Access], now: float | None = None
    ) -> str:
        """A signed JWT for ``account`` carrying ``granted``."""
        issued = int(now if now is not None else time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.signing.cert_der).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": account or "",
            "aud": self.service,
            "exp": issued + self.lifetime,
            "nbf": issued - 1,
            "iat": issued,
            "jti": secrets.token_hex(16),
            "access": [a.to_json() for a in granted],
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self.signing.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        # JWS carries ECDSA signatures as fixed-width r || s, not DER.
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(raw)}"

    def check_password(self, username: str, password: str) -> bool:
        user = self.users.get(username)
        return user is not None and secrets.compare_digest(user.password, password)

    def _new_refresh_token(self, account: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._state.lock:
            self._state.refresh_tokens[token] = account
        return token

    def _account_for_refresh_token(self, token: str) -> str | None:
        with self._state.lock:
            return self._state.refresh_tokens.get(token)

    def _take_injected(self) -> int | None:
        with self._state.lock:
            return self._state.injected.pop(0) if self._state.injected else None

    def _record(self, entry: TokenRequest) -> None:
        with self._state.lock:
            self._state.requests.append(entry)


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server_version = "skiff-test-tokenserver"

    @property
    def service(self) -> TokenServer:
        return self.server.token_service  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are recorded in ``TokenServer.requests``, not printed."""

    def _send_json(
        self, status: int, body: dict[str, Any], extra: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _basic_credentials(self) -> tuple[str, str] | bool | None:
        """(user, password); None when absent; False when malformed."""
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        return user, password

    def _unauthorized(self, entry: TokenRequest, message: str) -> None:
        self.service._record(entry)
        self._send_json(
            401,
            {"errors": [{"code": "UNAUTHORIZED", "message": message}], "error": "invalid_grant"},
            {"WWW-Authenticate": 'Basic realm="skiff-test-tokenserver"'},
        )

    def _injected(self, path: str) -> bool:
        status = self.service._take_injected()
        if status is None:
            return False
        self.service._record(TokenRequest(self.command, path, None, None, "", (), (), status))
        self._send_json(status, {"errors": [{"code": "UNKNOWN", "message": "injected failure"}]})
        return True

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            return
        if self._injected(url.path):
            return
        query = urllib.parse.parse_qs(url.query)
        service = _first(query, "service") or ""
        offered = _first(query, "account")
        scopes = tuple(s for value in query.get("scope", []) for s in value.split(" ") if s)
        offline = _first(query, "offline_token") == "true"
        client_id = _first(query, "client_id")
        base = TokenRequest("GET", url.path, None, offered, service, scopes, (), 0, None, client_id)

        credentials = self._basic_credentials()
        account: str | None = None
        if credentials is False:
            self._unauthorized(_with(base, status=401), "malformed Authorization header")
            return
        if isinstance(credentials, tuple):
            username, password = credentials
            if not self.service.check_password(username, password):
                self._unauthorized(_with(base, status=401), f"incorrect password for {username!r}")
                return
            account = username
        if service and service != self.service.service:
            self.service._record(_with(base, account=account, status=400))
            self._send_json(
                400, {"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]}
            )
            return
        granted = self.service.grant(account, scopes)
        token = self.service.issue(account, granted)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.service.lifetime,
            "issued_at": _rfc3339(time.time()),
        }
        if offline and account is not None:
            body["refresh_token"] = self.service._new_refresh_token(account)
        self.service._record(_with(base, account=account, granted=granted, status=200))
        self._send_json(200, body)

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode(errors="replace"))
        if self._injected(url.path):
            return

        def one(key: str) -> str | None:
            return _first(form, key)

        grant_type = one("grant_type")
        service = one("service") or ""
        scopes = tuple(s for value in form.get("scope", []) for s in value.split(" ") if s)
        username = one("username")
        base = TokenRequest(
            "POST", url.path, None, username, service, scopes, (), 0, grant_type, one("client_id")
        )
        if one("client_id") is None:
            self.service._record(_with(base, status=400))
            self._send_json(400, {"error": "invalid_request", "error_description": "no client_id"})
            return
        account: str | None = None
        if grant_type == "password":
            if username is None or not self.service.check_password(username, one("password") or ""):
                self._unauthorized(_with(base, status=401), f"incorrect password for {username!r}")
                return
            account = username
        elif grant_type == "refresh_token":
            account = self.service._account_for_refresh_token(one("refresh_token") or "")
            if account is None:
                self._unauthorized(_with(base, status=401), "unknown refresh token")
                return
        else:
            self.service._record(_with(base, status=400))
            self._send_json(400, {"error": "unsupported_grant_type"})
            return
        granted = self.service.grant(account, scopes)
        token = self.service.issue(account, granted)
        body: dict[str, Any] = {
            "access_token": token,
            "expires_in": self.service.lifetime,
            "issued_at": _rfc3339(time.time()),
            "scope": " ".join(scopes),
        }
        if grant_type == "refresh_token":
            body["refresh_token"] = one("refresh_token")
        elif one("access_type") == "offline":
            body["refresh_token"] = self.service._new_refresh_token(account)
        self.service._record(_with(base, account=account, granted=granted, status=200))
        self._send_json(200, body)


def _first(values: Mapping[str, list[str]], key: str) -> str | None:
    found = values.get(key)
    return found[0] if found else None


def _with(entry: TokenRequest, **changes: Any) -> TokenRequest:
    from dataclasses import replace

    return replace(entry, **changes)


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """(header, claims, signature) of a compact JWS, unverified — for tests."""

    def part(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    header, claims, signature = token.split(".")
    return json.loads(part(header)), json.loads(part(claims)), part(signature)
