"""Registry authentication: challenges, bearer tokens, basic credentials.

A registry announces how it wants to be authenticated in the
``WWW-Authenticate`` header of a 401 (RFC 7235), usually to the ``GET /v2/``
ping:

    Bearer realm="https://auth.example.com/token",service="registry",scope="..."
    Basic realm="Registry Realm"

``Basic`` means: send ``Authorization: Basic base64(user:password)`` with
every request. ``Bearer`` means: ask the token service at ``realm`` for a
token granting the scopes a request needs (``repository:NAME:pull`` for
reads, ``pull,push`` for writes; Docker token authentication spec), then send
``Authorization: Bearer TOKEN``. Tokens are cached per set of scopes until
they expire, because a pull makes many requests with the same scope and a
push needs a different one.

This module is pure logic (parsing, request shapes, the cache); the HTTP
exchange itself is done by ``client.RegistryClient`` so that token requests
share its TLS settings, retries and error translation.

The realm URL comes from the registry, i.e. from the network: it is
validated before anything, credentials included, is sent to it. Only https
is accepted, or http when the registry itself is spoken to over http.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.errors import AuthenticationError, RegistryError

if TYPE_CHECKING:
    from skiff.image.auth import Credentials

TOKEN_MIN_LIFETIME = 60
"""Seconds; the token spec says a missing or shorter ``expires_in`` means 60."""

TOKEN_EXPIRY_MARGIN = 10.0
"""Seconds before expiry at which a cached token is no longer handed out,
so that a token does not expire between our check and the registry's."""

OAUTH_CLIENT_ID = "skiff"

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_SEPARATORS_RE = re.compile(r"[ \t,]*")
_PARAM_RE = re.compile(rf"({_TCHARS})[ \t]*=[ \t]*({_QUOTED}|[^,\s=\"][^,\s]*)")
_SCHEME_RE = re.compile(rf"({_TCHARS})(?=[ \t,]|$)")
_TOKEN68_RE = re.compile(r"[ \t]+[A-Za-z0-9._~+/-]+=*[ \t]*(?=,|$)")
_UNESCAPE_RE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header.

    ``scheme`` is lower-cased (``bearer``, ``basic``); parameter names are
    lower-cased too, values are kept as sent.
    """

    scheme: str
    params: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_www_authenticate(values: Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values into challenges, in order.

    A value may hold several challenges (``Basic realm="a", Bearer
    realm="b"``): ``name=value`` is a parameter of the current challenge,
    any other token starts a new one. A token68 credential after a scheme
    (``Negotiate abc==``) is skipped: no registry scheme uses one. A
    malformed value raises RegistryError: the registry asked for something
    we cannot understand.
    """
    challenges: list[Challenge] = []
    for value in values:
        current: Challenge | None = None
        pos = 0
        while True:
            sep = _SEPARATORS_RE.match(value, pos)
            pos = sep.end() if sep else pos
            if pos >= len(value):
                break
            param = _PARAM_RE.match(value, pos) if current is not None else None
            if current is not None and param is not None:
                raw = param.group(2)
                if raw.startswith('"'):
                    raw = _UNESCAPE_RE.sub(r"\1", raw[1:-1])
                current.params[param.group(1).lower()] = raw
                pos = param.end()
                continue
            scheme = _SCHEME_RE.match(value, pos)
            if scheme is None:
                raise RegistryError(
                    f"cannot parse the registry's WWW-Authenticate header {value!r} "
                    f"at offset {pos}",
                    "the registry (or a proxy in front of it) sent a malformed challenge",
                )
            current = Challenge(scheme.group(1).lower(), {})
            challenges.append(current)
            pos = scheme.end()
            token68 = _TOKEN68_RE.match(value, pos)
            if token68 is not None:
                pos = token68.end()
    return challenges


def pick_challenge(challenges: Sequence[Challenge]) -> Challenge | None:
    """The challenge we answer: bearer preferred over basic; others ignored."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


def repository_scope(repository: str, actions: str) -> str:
    """``repository:library/busybox:pull,push`` (token spec resource scope)."""
    return f"repository:{repository}:{actions}"


def basic_authorization(creds: Credentials) -> str:
    """The ``Authorization`` value for HTTP basic authentication."""
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def validate_realm(realm: str, registry_scheme: str, registry: str) -> str:
    """Check a bearer realm URL before anything is sent to it.

    The realm is chosen by whoever answered the ping, so it must not be
    able to point us at a local file or a non-HTTP scheme, nor downgrade an
    https registry's credentials to plain http.
    """
    allowed = {"https", "http"} if registry_scheme == "http" else {"https"}
    parsed = urllib.parse.urlsplit(realm)
    if parsed.scheme.lower() not in allowed or not parsed.netloc:
        shown = " or ".join(sorted(allowed))
        raise RegistryError(
            f"registry {registry} announced token realm {realm!r}, which is not an {shown} URL",
            "refusing to send credentials there; check the registry's auth configuration "
            "or the proxy in front of it",
        )
    return realm


@dataclass(frozen=True)
class TokenRequest:
    """One HTTP request to a token service, ready to send."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


def build_token_request(
    challenge: Challenge,
    scopes: Sequence[str],
    creds: Credentials | None,
    realm: str,
) -> TokenRequest:
    """The request that asks ``realm`` for a token for ``scopes``.

    With an identity token (what ``docker login`` got from an OAuth2 flow)
    the OAuth2 refresh-token grant is used (POST, form-encoded); otherwise a
    GET with the scopes as query parameters, and basic credentials when we
    have them (anonymous otherwise, which public repositories accept).
    """
    service = challenge.params.get("service", "")
    if creds is not None and creds.identity_token:
        form: list[tuple[str, str]] = [
            ("grant_type", "refresh_token"),
            ("refresh_token", creds.identity_token),
            ("client_id", OAUTH_CLIENT_ID),
            ("access_type", "offline"),
        ]
        if service:
            form.append(("service", service))
        if scopes:
            form.append(("scope", " ".join(scopes)))
        return TokenRequest(
            "POST",
            realm,
            {"Content-Type": "application/x-www-form-urlencoded"},
            urllib.parse.urlencode(form).encode(),
        )
    query: list[tuple[str, str]] = []
    if service:
        query.append(("service", service))
    query.extend(("scope", scope) for scope in scopes)
    headers: dict[str, str] = {}
    if creds is not None and creds.username:
        query.append(("account", creds.username))
        query.append(("offline_token", "true"))
        headers["Authorization"] = basic_authorization(creds)
    parts = urllib.parse.urlsplit(realm)
    merged = "&".join(filter(None, [parts.query, urllib.parse.urlencode(query)]))
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, merged, ""))
    return TokenRequest("GET", url, headers)


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    """``time.monotonic()`` value after which the token is not used."""

    def usable(self, now: float | None = None) -> bool:
        moment = time.monotonic() if now is None else now
        return moment < self.expires_at - TOKEN_EXPIRY_MARGIN


def parse_token_response(body: bytes, realm: str, received_at: float | None = None) -> Token:
    """The token in a token service's JSON answer.

    ``token`` is the spec's name, ``access_token`` the OAuth2 one; either
    will do. Expiry counts from when we received the answer rather than
    from ``issued_at``: the token server's clock may disagree with ours, and
    the spec allows this reading.
    """
    start = time.monotonic() if received_at is None else received_at
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuthenticationError(
            f"token service {realm} answered with invalid JSON",
            "the realm does not look like a Docker token service",
        ) from exc
    if not isinstance(obj, dict):
        raise AuthenticationError(f"token service {realm} answered with a non-object JSON value")
    value = obj.get("token") or obj.get("access_token")
    if not isinstance(value, str) or not value:
        raise AuthenticationError(
            f"token service {realm} returned no token",
            "the credentials may lack access to this repository",
        )
    lifetime = obj.get("expires_in")
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime < TOKEN_MIN_LIFETIME:
        lifetime = TOKEN_MIN_LIFETIME
    return Token(value, start + lifetime)


class TokenCache:
    """Bearer tokens by (realm, service, scope set); safe across threads.

    Parallel blob transfers ask for the same token at the same moment: the
    per-key lock lets exactly one of them fetch it while the others wait
    and then reuse it.
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, frozenset[str]], Token] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str, frozenset[str]], threading.Lock] = {}

    @staticmethod
    def key(challenge: Challenge, scopes: Iterable[str]) -> tuple[str, str, frozenset[str]]:
        return (challenge.realm, challenge.params.get("service", ""), frozenset(scopes))

    def get(self, key: tuple[str, str, frozenset[str]]) -> Token | None:
        with self._lock:
            token = self._tokens.get(key)
        if token is not None and token.usable():
            return token
        return None

    def put(self, key: tuple[str, str, frozenset[str]], token: Token) -> None:
        with self._lock:
            self._tokens[key] = token

    def invalidate(self, key: tuple[str, str, frozenset[str]], value: str) -> None:
        """Forget ``value`` if it is still the cached token for ``key``."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.value == value:
                del self._tokens[key]

    def lock_for(self, key: tuple[str, str, frozenset[str]]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())
