"""One HTTP session with one registry: scheme detection, auth, retries, redirects.

Every request to a registry goes through ``RegistryClient.perform``, which
owns the policies that must hold for all of them:

- **Scheme.** The first request pings ``/v2/`` over https; plain http is
  tried only when TLS verification is off for this registry (``--tls-verify
  =false`` or ``insecure = true`` in registries.conf), as containers/image
  does. The ping's 401 tells which authentication the registry wants.
- **Auth.** ``Authorization`` is attached per hop and only when the hop's
  origin (scheme, host, port) is the registry's own: a redirect to blob
  storage or an upload ``Location`` on another host never sees our
  credentials or tokens. Token-service credentials likewise go only to the
  realm's origin.
- **Retries.** Connection failures, 5xx and 429 are retried up to
  ``ctx.retry_times`` times per request with exponential backoff (1 s, 2 s,
  4 s...) or ``ctx.retry_delay``; a 429's ``Retry-After`` wins. A request
  whose body is a one-shot stream is not retried (it cannot be replayed).
- **Errors.** urllib3 and ssl exceptions and error statuses become skiff
  errors at this boundary (``errors.error_from_status``, ``TLSError`` with a
  hint) and carry the URL or repository they concern.

urllib3 2.x is used for throughput (see the package docstring); one
``PoolManager`` per client keeps connections alive and is safe to share
between the copy engine's blob threads.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
import urllib.parse
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import SSLError as Urllib3SSLError

from skiff.errors import (
    AuthenticationError,
    ManifestError,
    RegistryError,
    RegistryUnavailable,
    SkiffError,
    TLSError,
)
from skiff.image.transports.docker.auth import (
    Challenge,
    Token,
    TokenCache,
    basic_authorization,
    build_token_request,
    parse_token_response,
    parse_www_authenticate,
    pick_challenge,
    validate_realm,
)
from skiff.image.transports.docker.errors import LOGIN_HINT, Target, error_from_status

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.auth import Credentials

log = logging.getLogger(__name__)

# Verification is off only when the user said so (--tls-verify=false or
# `insecure` in registries.conf); urllib3 would then print a warning on
# every request. The choice is logged once per client instead.
warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)

MAX_REDIRECTS = 10
ERROR_BODY_LIMIT = 64 * 1024
DEFAULT_BODY_LIMIT = 4 * 1024 * 1024
MAX_RETRY_AFTER = 120.0
"""Seconds; a longer Retry-After is capped rather than hanging a pull for hours."""
MAX_BACKOFF = 30.0
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 300.0
"""Generous: a registry may take minutes to finish a large upload's PUT."""

Body = bytes | Iterable[bytes] | None


def tls_verify_for(ctx: SystemContext, conf_insecure: bool) -> bool:
    """Whether to verify TLS: ``--tls-verify`` if given, else registries.conf."""
    if ctx.tls_verify is not None:
        return ctx.tls_verify
    return not conf_insecure


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with default ports filled in, for origin checks."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def read_limited(resp: urllib3.BaseHTTPResponse, limit: int) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes of a body; (data, whether more remained).

    The connection goes back to the pool only when the body was read to
    its end; otherwise it is closed, since unread bytes would corrupt the
    next request on it.
    """
    chunks = []
    total = 0
    truncated = False
    try:
        while True:
            chunk = resp.read(min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                truncated = True
                break
    finally:
        release(resp, complete=not truncated)
    data = b"".join(chunks)
    return data[:limit], truncated


def release(resp: urllib3.BaseHTTPResponse, complete: bool) -> None:
    """Give a response's connection back: reusable only if its body was consumed."""
    if not complete:
        resp.close()
    resp.release_conn()


@dataclass(frozen=True)
class HopAuth:
    """An ``Authorization`` value and the one origin it may be sent to."""

    value: str
    origin: tuple[str, str, int]


@dataclass(frozen=True)
class Reply:
    """A response whose (bounded) body was read completely."""

    status: int
    headers: urllib3.HTTPHeaderDict
    body: bytes
    url: str
    """The URL that answered, after redirects (relative Locations resolve against it)."""


class RegistryClient:
    """HTTP session with one registry for one repository.

    ``repository`` (path without host) selects repository-specific
    credentials from auth.json and is what ``actions`` (``pull``,
    ``pull,push``, ``*``) apply to in bearer token scopes.
    """

    def __init__(
        self,
        ctx: SystemContext,
        registry: str,
        repository: str,
        *,
        actions: str = "pull",
        insecure: bool = False,
    ) -> None:
        self.ctx = ctx
        self.registry = registry
        self.repository = repository
        self.actions = actions
        self.verify = tls_verify_for(ctx, insecure)
        self._pool: urllib3.PoolManager | None = None
        self._lock = threading.Lock()
        self._ping_lock = threading.Lock()
        self._scheme: str | None = None
        self._challenge: Challenge | None = None
        self._creds: Credentials | None = None
        self._creds_loaded = False
        self._tokens = TokenCache()

    # --- setup ----------------------------------------------------------

    @property
    def pool(self) -> urllib3.PoolManager:
        with self._lock:
            if self._pool is None:
                from skiff.image.certs import ssl_context_for

                context = ssl_context_for(self.ctx, self.registry, self.verify)
                if not self.verify:
                    log.info("TLS verification is off for %s (plain http allowed)", self.registry)
                self._pool = urllib3.PoolManager(
                    num_pools=8,
                    maxsize=8,
                    block=False,
                    ssl_context=context,
                    cert_reqs="CERT_REQUIRED" if self.verify else "CERT_NONE",
                    assert_hostname=None if self.verify else False,
                    timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                    retries=False,
                )
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.clear()
                self._pool = None

    @property
    def base_url(self) -> str:
        """``https://host:port`` (or http) once the registry answered a ping."""
        self.ping()
        assert self._scheme is not None
        return f"{self._scheme}://{self.registry}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def scope(self, repository: str | None = None, actions: str | None = None) -> str:
        return f"repository:{repository or self.repository}:{actions or self.actions}"

    def credentials(self) -> Credentials | None:
        """Credentials for this registry/repository, looked up once.

        ``--creds`` wins, then auth.json (most specific key first, see
        ``skiff.image.auth``); ``--no-creds`` means anonymous.
        """
        with self._lock:
            if not self._creds_loaded:
                self._creds = self._lookup_credentials()
                self._creds_loaded = True
            return self._creds

    def _lookup_credentials(self) -> Credentials | None:
        from skiff.image.auth import get_credentials

        return get_credentials(self.ctx, self.registry, self.repository or None)

    def use_credentials(self, creds: Credentials | None) -> None:
        """Replace the looked-up credentials (``skiff login`` checks new ones)."""
        with self._lock:
            self._creds = creds
            self._creds_loaded = True

    # --- ping -----------------------------------------------------------

    def ping(self) -> None:
        """Learn the scheme and the auth challenge; once per client."""
        if self._scheme is None:
            with self._ping_lock:
                if self._scheme is None:
                    self._ping()

    def _ping(self) -> None:
        schemes = ("https",) if self.verify else ("https", "http")
        failures: list[SkiffError] = []
        for scheme in schemes:
            url = f"{scheme}://{self.registry}/v2/"
            try:
                resp, _ = self.perform(
                    "GET",
                    url,
                    context=f"pinging registry {self.registry}",
                    target=Target.REGISTRY,
                    ok=(200, 401),
                    registry_auth=False,
                    ping=False,
                )
            except (TLSError, RegistryError) as exc:
                log.debug("ping %s failed: %s", url, exc)
                failures.append(exc)
                continue
            challenges = parse_www_authenticate(resp.headers.getlist("WWW-Authenticate"))
            read_limited(resp, ERROR_BODY_LIMIT)
            self._challenge = pick_challenge(challenges)
            self._scheme = scheme
            log.debug("registry %s speaks %s, auth %s", self.registry, scheme, self._challenge)
            return
        first = failures[0]
        if len(failures) > 1:
            first.message += f" (over http: {failures[1].message})"
        raise first

    # --- authorization ----------------------------------------------------

    def authorization(self, scopes: Sequence[str]) -> str | None:
        """The ``Authorization`` value for a registry request needing ``scopes``."""
        if self.ctx.registry_token:
            return f"Bearer {self.ctx.registry_token}"
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials()
            return basic_authorization(creds) if creds is not None else None
        return "Bearer " + self.bearer_token(challenge, scopes)

    def bearer_token(self, challenge: Challenge, scopes: Sequence[str]) -> str:
        key = TokenCache.key(challenge, scopes)
        token = self._tokens.get(key)
        if token is not None:
            return token.value
        with self._tokens.lock_for(key):
            token = self._tokens.get(key)
            if token is None:
                token = self._fetch_token(challenge, scopes)
                self._tokens.put(key, token)
        return token.value

    def _fetch_token(self, challenge: Challenge, scopes: Sequence[str]) -> Token:
        assert self._scheme is not None
        realm = validate_realm(challenge.realm, self._scheme, self.registry)
        creds = self.credentials()
        request = build_token_request(challenge, scopes, creds, realm)
        authorization = request.headers.pop("Authorization", None)
        what = f"{self.registry}/{self.repository}" if scopes else self.registry
        context = f"requesting a bearer token from {realm} for {what}"
        received = time.monotonic()
        resp, _ = self.perform(
            request.method,
            request.url,
            context=context,
            target=Target.REGISTRY,
            headers=request.headers,
            body=request.body,
            registry_auth=False,
            other_auth=HopAuth(authorization, origin(realm)) if authorization else None,
            ping=False,
        )
        body, truncated = read_limited(resp, DEFAULT_BODY_LIMIT)
        if truncated:
            raise AuthenticationError(f"{context}: the token response is too large")
        return parse_token_response(body, realm, received)

    def _should_reauthenticate(
        self, resp: urllib3.BaseHTTPResponse, sent: str | None, scopes: Sequence[str]
    ) -> bool:
        """After a 401: learn a new challenge or drop a stale token, once.

        A 401 to a request sent without credentials teaches us the
        challenge (a registry whose ping did not ask for auth); a 401 to a
        bearer token means the token expired or lacks a scope, so it is
        dropped from the cache and fetched again. Basic credentials that
        were refused are refused: no retry.
        """
        if self.ctx.registry_token:
            return False
        challenge = pick_challenge(parse_www_authenticate(resp.headers.getlist("WWW-Authenticate")))
        if challenge is None:
            return False
        current = self._challenge
        with self._lock:
            self._challenge = challenge
        if sent is None:
            # We did not know auth was needed: now we do, if we can answer it.
            return challenge.scheme == "bearer" or self.credentials() is not None
        if sent.startswith("Bearer ") and current is not None and current.scheme == "bearer":
            self._tokens.invalidate(TokenCache.key(current, scopes), sent[len("Bearer ") :])
            return True
        # Basic credentials (or a --registry-token) were refused.
        return False

    # --- requests -----------------------------------------------------------

    def call(
        self,
        method: str,
        target_url: str,
        *,
        context: str,
        target: Target,
        scopes: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        ok: Collection[int] = (200,),
        limit: int = DEFAULT_BODY_LIMIT,
    ) -> Reply:
        """A registry request whose answer body is read (bounded by ``limit``).

        A body cut off by a broken connection is a network failure like a
        refused connection: the request (its body is bytes, so replayable)
        is sent again up to ``retry_times`` times.
        """
        attempt = 0
        while True:
            resp, url = self.perform(
                method,
                target_url,
                context=context,
                target=target,
                scopes=scopes,
                headers=headers,
                body=body,
                ok=ok,
            )
            # Read even a HEAD's empty body: http.client only considers the
            # exchange finished (and the pooled connection reusable) after that.
            try:
                data, truncated = read_limited(resp, limit)
                break
            except (Urllib3Error, OSError) as exc:
                error = RegistryUnavailable(
                    f"{context}: connection broken while reading the answer from {url}: {exc}",
                    "check that the registry is reachable, or raise --retry-times",
                )
                if attempt >= self.ctx.retry_times:
                    raise error from exc
                self._wait(attempt, None, error.message)
                attempt += 1
        if truncated:
            if target is Target.MANIFEST:
                raise ManifestError(
                    f"{context}: manifest is larger than the {limit}-byte limit",
                    "refusing to read it; the registry may be serving something else",
                )
            raise RegistryError(f"{context}: the registry's answer is larger than {limit} bytes")
        return Reply(resp.status, resp.headers, data, url)

    def perform(
        self,
        method: str,
        target_url: str,
        *,
        context: str,
        target: Target,
        scopes: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ok: Collection[int] = (200,),
        registry_auth: bool = True,
        other_auth: HopAuth | None = None,
        ping: bool = True,
    ) -> tuple[urllib3.BaseHTTPResponse, str]:
        """Send a request with retries; return the response (body unread) and final URL.

        ``target_url`` is a path (``/v2/...``, resolved against the
        registry) or an absolute URL (an upload Location). A status outside
        ``ok`` becomes a skiff error. The caller must read or ``release``
        the returned response. ``registry_auth`` attaches this registry's
        credentials or token for ``scopes`` (default: this client's
        repository and actions); ``other_auth`` is for token services.
        """
        if ping:
            self.ping()
        url = target_url if "://" in target_url else self.url(target_url)
        needed = list(scopes) if scopes is not None else [self.scope()]
        registry_origin = origin(self.base_url) if registry_auth else None
        replayable = body is None or isinstance(body, bytes)
        attempt = 0
        reauthenticated = False
        while True:
            auth = other_auth
            sent = self.authorization(needed) if registry_auth else None
            if sent is not None and registry_origin is not None:
                auth = HopAuth(sent, registry_origin)
            try:
                resp, final_url = self._exchange(method, url, headers or {}, body=body, auth=auth)
            except Urllib3Error as exc:
                error = self._network_error(exc, url, context)
                if isinstance(error, TLSError) or not replayable or attempt >= self.ctx.retry_times:
                    raise error from exc
                self._wait(attempt, None, error.message)
                attempt += 1
                continue
            status = resp.status
            if status in ok:
                return resp, final_url
            if (
                status == 401
                and registry_auth
                and not reauthenticated
                and replayable
                and self._should_reauthenticate(resp, sent, needed)
            ):
                read_limited(resp, ERROR_BODY_LIMIT)
                reauthenticated = True
                continue
            error_body, _ = read_limited(resp, ERROR_BODY_LIMIT)
            error = error_from_status(
                status,
                resp.reason or "",
                error_body,
                context=context,
                target=target,
                registry=self.registry,
            )
            retry = status == 429 or status >= 500
            if retry and replayable and attempt < self.ctx.retry_times:
                self._wait(
                    attempt, parse_retry_after(resp.headers.get("Retry-After")), error.message
                )
                attempt += 1
                continue
            raise error

    def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        body: Body,
        auth: HopAuth | None,
    ) -> tuple[urllib3.BaseHTTPResponse, str]:
        """One attempt: send, following redirects ourselves.

        urllib3's own redirect handling is off so that we decide, per hop,
        whether ``Authorization`` goes along (same origin only) and refuse
        schemes other than http(s) and downgrades from https.
        """
        chunked = body is not None and not isinstance(body, bytes)
        for _ in range(MAX_REDIRECTS + 1):
            # Per request: urllib3 drops PoolManager default headers whenever
            # a request brings its own.
            hop_headers = {"User-Agent": self.ctx.user_agent, **headers}
            if auth is not None and origin(url) == auth.origin:
                hop_headers["Authorization"] = auth.value
            resp = self.pool.request(
                method,
                url,
                headers=hop_headers,
                body=body,
                chunked=chunked,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
            )
            location = resp.headers.get("Location")
            if resp.status not in (301, 302, 303, 307, 308) or not location:
                return resp, url
            read_limited(resp, ERROR_BODY_LIMIT)
            next_url = urllib.parse.urljoin(url, location)
            next_scheme = urllib.parse.urlsplit(next_url).scheme.lower()
            if next_scheme not in ("http", "https") or (
                next_scheme == "http" and url.lower().startswith("https:") and self.verify
            ):
                raise RegistryError(
                    f"refusing redirect from {url} to {next_url}",
                    "only redirects to https (or http for an insecure registry) are followed",
                )
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, body, chunked = "GET", None, False
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            elif chunked:
                raise RegistryError(
                    f"{url} redirected a streamed upload to {next_url}",
                    "the upload cannot be replayed; the registry should not redirect uploads",
                )
            log.debug("redirect %s -> %s", url, next_url)
            url = next_url
        raise RegistryError(f"too many redirects starting at {url}")

    def _network_error(self, exc: Urllib3Error, url: str, context: str) -> SkiffError:
        if isinstance(exc, Urllib3SSLError):
            return TLSError(
                f"{context}: TLS failure talking to {url}: {exc}",
                f"if you trust {self.registry}, pass --tls-verify=false or mark it insecure in "
                f"registries.conf; or add its CA as /etc/containers/certs.d/{self.registry}/ca.crt",
            )
        return RegistryUnavailable(
            f"{context}: cannot reach {url}: {exc}",
            "check that the registry is running and reachable, or raise --retry-times",
        )

    def wait(self, attempt: int, why: str) -> None:
        """Back off before retry ``attempt`` (0-based) of something else (a broken body)."""
        self._wait(attempt, None, why)

    def _wait(self, attempt: int, retry_after: float | None, why: str) -> None:
        if retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER)
        elif self.ctx.retry_delay > 0:
            delay = self.ctx.retry_delay
        else:
            delay = min(2.0**attempt, MAX_BACKOFF)
        log.warning(
            "%s; retrying in %.2g s (attempt %d of %d)",
            why,
            delay,
            attempt + 2,
            self.ctx.retry_times + 1,
        )
        time.sleep(delay)

    # --- helpers for callers ----------------------------------------------------

    def check_authenticated(self) -> None:
        """Raise AuthenticationError unless the registry accepts our credentials.

        ``skiff login``: after the ping, a basic registry gets ``/v2/`` with
        the credentials; a bearer registry must hand out a token (no scope)
        and accept it on ``/v2/``.
        """
        self.ping()
        if self._challenge is None and not self.ctx.registry_token:
            return
        creds = self.credentials()
        if creds is None and not self.ctx.registry_token:
            raise AuthenticationError(
                f"registry {self.registry} requires authentication and no credentials were given",
                LOGIN_HINT.format(registry=self.registry),
            )
        self.call(
            "GET",
            "/v2/",
            context=f"checking credentials with {self.registry}",
            target=Target.REGISTRY,
            scopes=[],
        )
