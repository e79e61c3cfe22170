"""Pure logic of the registry client: challenges, tokens, errors, retry headers."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from skiff.errors import (
    AuthenticationError,
    BlobUnknown,
    ImageNotFound,
    RegistryError,
    RegistryUnavailable,
    TooManyRequests,
)
from skiff.image.auth import Credentials
from skiff.image.transports.docker.auth import (
    TOKEN_MIN_LIFETIME,
    Challenge,
    Token,
    TokenCache,
    basic_authorization,
    build_token_request,
    parse_token_response,
    parse_www_authenticate,
    pick_challenge,
    repository_scope,
    validate_realm,
)
from skiff.image.transports.docker.client import origin, parse_retry_after
from skiff.image.transports.docker.errors import (
    Target,
    describe_body,
    error_from_status,
    parse_error_body,
)
from skiff.image.transports.docker.stream import content_range_start

# --- WWW-Authenticate ------------------------------------------------------------


def test_bearer_challenge_as_distribution_sends_it() -> None:
    [challenge] = parse_www_authenticate(
        [
            'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
            'scope="repository:library/busybox:pull,push"'
        ]
    )
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:library/busybox:pull,push",
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        ("BASIC REALM=x", [("basic", {"realm": "x"})]),
        ("Basic", [("basic", {})]),
        (
            'Basic realm="a", Bearer realm="https://t/x", service=s',
            [("basic", {"realm": "a"}), ("bearer", {"realm": "https://t/x", "service": "s"})],
        ),
        (
            'Bearer realm = "spaced" ,  service="s"',
            [("bearer", {"realm": "spaced", "service": "s"})],
        ),
        (r'Bearer realm="a \"quoted\" \\ realm"', [("bearer", {"realm": 'a "quoted" \\ realm'})]),
        ('Bearer realm="has,comma"', [("bearer", {"realm": "has,comma"})]),
        ("Bearer scope=repository:a/b:pull", [("bearer", {"scope": "repository:a/b:pull"})]),
        (
            'Negotiate abc/+d==, Bearer realm="r"',
            [("negotiate", {}), ("bearer", {"realm": "r"})],
        ),
        ("", []),
    ],
)
def test_challenge_forms(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    got = [(c.scheme, c.params) for c in parse_www_authenticate([header])]
    assert got == expected


def test_several_header_values_keep_their_order() -> None:
    got = parse_www_authenticate(['Basic realm="a"', 'Bearer realm="b"'])
    assert [c.scheme for c in got] == ["basic", "bearer"]


@pytest.mark.parametrize("header", ['Bearer realm="unterminated', "Bearer @", '"quoted-first"'])
def test_malformed_challenges_are_errors(header: str) -> None:
    with pytest.raises(RegistryError, match="WWW-Authenticate"):
        parse_www_authenticate([header])


def test_pick_prefers_bearer_and_ignores_unknown_schemes() -> None:
    basic = Challenge("basic", {"realm": "a"})
    bearer = Challenge("bearer", {"realm": "b"})
    assert pick_challenge([basic, bearer]) is bearer
    assert pick_challenge([Challenge("negotiate"), basic]) is basic
    assert pick_challenge([Challenge("negotiate")]) is None


# --- realm validation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("realm", "registry_scheme"),
    [("https://auth.example.com/token", "https"), ("https://a/t", "http"), ("http://a/t", "http")],
)
def test_acceptable_realms(realm: str, registry_scheme: str) -> None:
    assert validate_realm(realm, registry_scheme, "reg.example") == realm


@pytest.mark.parametrize(
    ("realm", "registry_scheme"),
    [
        ("file:///etc/passwd", "https"),
        ("file:///etc/passwd", "http"),
        ("http://auth.example.com/token", "https"),  # no downgrade for an https registry
        ("ftp://auth.example.com/token", "http"),
        ("gopher://x", "https"),
        ("/relative/token", "https"),
        ("https:///no-host", "https"),
        ("", "https"),
    ],
)
def test_rejected_realms(realm: str, registry_scheme: str) -> None:
    with pytest.raises(RegistryError, match=r"reg\.example announced token realm") as info:
        validate_realm(realm, registry_scheme, "reg.example")
    assert "refusing to send credentials" in str(info.value)


# --- token requests and answers --------------------------------------------------------


def test_token_request_with_credentials() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth/token", "service": "reg"})
    request = build_token_request(
        challenge,
        ["repository:a/b:pull,push", "repository:c/d:pull"],
        Credentials("alice", "s3cret"),
        "https://auth/token",
    )
    assert request.method == "GET"
    url = urllib.parse.urlsplit(request.url)
    assert (url.scheme, url.netloc, url.path) == ("https", "auth", "/token")
    query = urllib.parse.parse_qs(url.query)
    assert query == {
        "service": ["reg"],
        "scope": ["repository:a/b:pull,push", "repository:c/d:pull"],
        "account": ["alice"],
        "offline_token": ["true"],
    }
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()


def test_anonymous_token_request_keeps_realm_query() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth/token?x=1"})
    request = build_token_request(challenge, ["repository:a:pull"], None, "https://auth/token?x=1")
    assert "Authorization" not in request.headers
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
    assert query == {"x": ["1"], "scope": ["repository:a:pull"]}


def test_identity_token_uses_the_oauth2_refresh_grant() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth/token", "service": "reg"})
    creds = Credentials("<token>", "", identity_token="refresh-me")
    request = build_token_request(
        challenge, ["repository:a:pull", "repository:b:pull"], creds, "https://auth/token"
    )
    assert request.method == "POST"
    assert request.url == "https://auth/token"
    assert request.headers == {"Content-Type": "application/x-www-form-urlencoded"}
    assert request.body is not None
    form = urllib.parse.parse_qs(request.body.decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == ["refresh-me"]
    assert form["service"] == ["reg"]
    assert form["scope"] == ["repository:a:pull repository:b:pull"]


def test_token_answer_forms() -> None:
    assert parse_token_response(b'{"token": "t1", "expires_in": 300}', "r", 1000.0) == Token(
        "t1", 1300.0
    )
    # OAuth2 naming, and a lifetime below the spec's minimum
    got = parse_token_response(b'{"access_token": "t2", "expires_in": 5}', "r", 0.0)
    assert got == Token("t2", float(TOKEN_MIN_LIFETIME))
    got = parse_token_response(b'{"token": "t3", "expires_in": true}', "r", 0.0)
    assert got.expires_at == TOKEN_MIN_LIFETIME


@pytest.mark.parametrize("body", [b"not json", b"[]", b"{}", b'{"token": ""}', b'{"token": 5}'])
def test_bad_token_answers(body: bytes) -> None:
    with pytest.raises(AuthenticationError, match="token service https://r"):
        parse_token_response(body, "https://r")


def test_token_usability_has_a_margin() -> None:
    token = Token("t", 100.0)
    assert token.usable(now=80.0)
    assert not token.usable(now=95.0)


def test_token_cache_keys_on_scope_set() -> None:
    cache = TokenCache()
    challenge = Challenge("bearer", {"realm": "https://r", "service": "s"})
    pull = TokenCache.key(challenge, ["repository:a:pull"])
    both = TokenCache.key(challenge, ["repository:a:pull,push"])
    assert pull != both
    assert TokenCache.key(challenge, ["x", "y"]) == TokenCache.key(challenge, ["y", "x"])
    far = 1e12
    cache.put(pull, Token("p", far))
    assert cache.get(pull) == Token("p", far)
    assert cache.get(both) is None
    cache.invalidate(pull, "other-value")  # a stale value does not evict a newer token
    assert cache.get(pull) is not None
    cache.invalidate(pull, "p")
    assert cache.get(pull) is None
    cache.put(pull, Token("expired", 0.0))
    assert cache.get(pull) is None


def test_token_cache_lock_serialises_one_key() -> None:
    cache = TokenCache()
    key = TokenCache.key(Challenge("bearer", {"realm": "https://r"}), ["s"])
    fetched = []

    def fetch() -> None:
        with cache.lock_for(key):
            if cache.get(key) is None:
                fetched.append(1)
                cache.put(key, Token("t", 1e12))

    threads = [threading.Thread(target=fetch) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetched == [1]


def test_basic_and_scope_helpers() -> None:
    assert (
        basic_authorization(Credentials("u", "p:w"))
        == "Basic " + base64.b64encode(b"u:p:w").decode()
    )
    assert (
        repository_scope("library/busybox", "pull,push") == "repository:library/busybox:pull,push"
    )


# --- registry errors --------------------------------------------------------------------


def test_error_bodies() -> None:
    body = json.dumps(
        {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}]}
    ).encode()
    assert [(d.code, d.message) for d in parse_error_body(body)] == [
        ("MANIFEST_UNKNOWN", "manifest unknown")
    ]
    assert describe_body(404, "Not Found", body) == "manifest unknown"
    two = json.dumps(
        {"errors": [{"code": "DENIED", "message": "requested access is denied"}, {"code": "X"}]}
    ).encode()
    assert describe_body(403, "Forbidden", two) == "requested access is denied (DENIED); x"
    assert describe_body(502, "Bad Gateway", b"<html>proxy</html>") == "HTTP 502 Bad Gateway"
    assert describe_body(500, "Internal Server Error", b"boom\nmore") == (
        "HTTP 500 Internal Server Error: boom"
    )
    assert parse_error_body(b"[1]") == [] and parse_error_body(b'{"errors": "x"}') == []


@pytest.mark.parametrize(
    ("status", "target", "cls"),
    [
        (401, Target.MANIFEST, AuthenticationError),
        (403, Target.BLOB, AuthenticationError),
        (404, Target.MANIFEST, ImageNotFound),
        (404, Target.REPOSITORY, ImageNotFound),
        (404, Target.BLOB, BlobUnknown),
        (429, Target.BLOB, TooManyRequests),
        (500, Target.MANIFEST, RegistryUnavailable),
        (503, Target.REGISTRY, RegistryUnavailable),
        (400, Target.UPLOAD, RegistryError),
    ],
)
def test_status_classes(status: int, target: Target, cls: type[Exception]) -> None:
    error = error_from_status(status, "R", b"", context="doing X", target=target, registry="h:1")
    assert type(error) is cls
    assert str(error).startswith(f"doing X: HTTP {status} R")


def test_auth_errors_hint_at_login() -> None:
    error = error_from_status(
        401,
        "Unauthorized",
        b"",
        context="reading manifest v1 in h:1/a",
        target=Target.MANIFEST,
        registry="h:1",
    )
    assert error.hint is not None and "skiff login h:1" in error.hint


# --- small header parsers ----------------------------------------------------------------


def test_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = datetime.now(UTC) + timedelta(seconds=30)
    got = parse_retry_after(format_datetime(later, usegmt=True))
    assert got is not None and 25 <= got <= 31
    past = datetime.now(UTC) - timedelta(seconds=30)
    assert parse_retry_after(format_datetime(past, usegmt=True)) == 0.0


def test_origin_fills_default_ports() -> None:
    assert origin("https://Reg.Example/v2/") == ("https", "reg.example", 443)
    assert origin("http://reg:5000/x") == ("http", "reg", 5000)
    assert origin("https://reg:443/") == origin("https://reg/")
    assert origin("https://reg:5000/") != origin("https://reg:5001/")


def test_content_range() -> None:
    assert content_range_start("bytes 100-199/200") == 100
    assert content_range_start("bytes 0-0/*") == 0
    assert content_range_start("items 1-2/3") is None
    assert content_range_start(None) is None
