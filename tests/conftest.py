"""Shared fixtures: real registries, the fault proxy, busybox images, tmpfs dirs.

Session-scoped (started on first use, stopped at the end of the run):
  ``test_ca``         the session's CertificateAuthority (skiff.testing.tlsutil).
  ``registry``        plain HTTP registry          } each a RunningRegistry
  ``tls_registry``    HTTPS, trusted via certs.d   } (skiff.testing.registry;
  ``auth_registry``   HTTPS + basic auth           }  its docstring lists the
  ``token_registry``  HTTPS + bearer tokens        }  fields)
  ``busybox_layout``  a BusyboxImage (tag "latest") in an OCI layout on
                      /dev/shm. Shared: do not modify it; build your own with
                      ``skiff.testing.busybox.build_busybox_layout(tmp_shm / ...)``.

Function-scoped:
  ``tmp_shm``              a fresh directory on /dev/shm, removed afterwards.
  ``env``                  a ContainerEnv (skiff.testing.containers: a private
                           store with the busybox image) in ``tmp_shm``; closing
                           it after the test fails the test if skiff left a
                           container, mount, process or network behind. A module
                           whose tests need another environment defines its own
                           ``env`` fixture, which pytest uses instead of this one.
  ``registry_factory``     ``start(Variant.PLAIN|TLS|BASIC|TOKEN) -> RunningRegistry``:
                           a private registry (corrupt its storage freely),
                           stopped and removed after the test.
  ``fault_proxy_factory``  ``make(upstream: RunningRegistry, tls=False) -> FaultProxy``
                           in front of any registry; with ``tls`` the proxy serves
                           the test CA's certificate and its host is added to the
                           upstream's certs.d. Stopped after the test.
  ``fault_proxy``          a FaultProxy in front of ``registry`` (plain HTTP).
  ``unique_repo``          a repository name unique to the test (``t/<test>-<n>``),
                           so tests sharing a session registry do not collide.

The session registries are shared: name repositories with ``unique_repo``
and clear or filter ``token_registry.token_server.requests`` yourself.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skiff.testing import shm_tempdir
from skiff.testing.busybox import BusyboxImage, build_busybox_layout
from skiff.testing.containers import ContainerEnv
from skiff.testing.faultproxy import FaultProxy
from skiff.testing.registry import RegistryFactory, RunningRegistry, Variant
from skiff.testing.tlsutil import CertificateAuthority

_repo_counter = itertools.count()


@pytest.fixture(scope="session")
def session_shm() -> Iterator[Path]:
    with shm_tempdir("skiff-session-") as path:
        yield path


@pytest.fixture
def tmp_shm() -> Iterator[Path]:
    with shm_tempdir("skiff-test-") as path:
        yield path


@pytest.fixture(scope="session")
def test_ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="session")
def session_registries(
    session_shm: Path, test_ca: CertificateAuthority
) -> Iterator[RegistryFactory]:
    with RegistryFactory(session_shm / "registries", test_ca) as factory:
        yield factory


@pytest.fixture(scope="session")
def registry(session_registries: RegistryFactory) -> RunningRegistry:
    return session_registries.start(Variant.PLAIN)


@pytest.fixture(scope="session")
def tls_registry(session_registries: RegistryFactory) -> RunningRegistry:
    return session_registries.start(Variant.TLS)


@pytest.fixture(scope="session")
def auth_registry(session_registries: RegistryFactory) -> RunningRegistry:
    return session_registries.start(Variant.BASIC)


@pytest.fixture(scope="session")
def token_registry(session_registries: RegistryFactory) -> RunningRegistry:
    return session_registries.start(Variant.TOKEN)


@pytest.fixture
def registry_factory(
    tmp_shm: Path, test_ca: CertificateAuthority
) -> Iterator[Callable[..., RunningRegistry]]:
    with RegistryFactory(tmp_shm / "registries", test_ca) as factory:
        yield factory.start


@pytest.fixture
def fault_proxy_factory(
    tmp_shm: Path, test_ca: CertificateAuthority
) -> Iterator[Callable[..., FaultProxy]]:
    started: list[FaultProxy] = []

    def make(upstream: RunningRegistry, tls: bool = False) -> FaultProxy:
        server_tls = test_ca.issue_server() if tls else None
        proxy = FaultProxy(
            upstream.url,
            upstream_ca_pem=test_ca.cert_pem if upstream.variant.uses_tls else None,
            server_tls=server_tls,
            tls_dir=tmp_shm / f"proxy-tls-{len(started)}",
        ).start()
        started.append(proxy)
        if tls and upstream.certs_dir is not None:
            test_ca.install_certs_d(upstream.certs_dir, (proxy.host,))
        return proxy

    try:
        yield make
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture
def fault_proxy(
    registry: RunningRegistry, fault_proxy_factory: Callable[..., FaultProxy]
) -> FaultProxy:
    return fault_proxy_factory(registry)


@pytest.fixture(scope="session")
def busybox_layout(session_shm: Path) -> BusyboxImage:
    return build_busybox_layout(session_shm / "busybox-layout")


@pytest.fixture
def env(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[ContainerEnv]:
    """The container tests' environment; see the module docstring."""
    environment = ContainerEnv(tmp_shm / "env", busybox_layout)
    try:
        yield environment
    finally:
        environment.close()


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60] or "test"
    return f"t/{name}-{next(_repo_counter)}"
