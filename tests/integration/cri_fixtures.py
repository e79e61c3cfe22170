"""Fixtures shared by the CRI server tests (test_cri_*.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2

from skiff.testing import shm_tempdir
from skiff.testing.busybox import BusyboxImage
from skiff.testing.criserver import CRIEnv

requirements = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="CNI plugins missing"),
    pytest.mark.skipif(not Path("/usr/bin/catatonit").exists(), reason="catatonit is missing"),
    pytest.mark.timeout(240),
]


@contextmanager
def serving_cri(layout: BusyboxImage, prefix: str) -> Iterator[CRIEnv]:
    """A started CRI server with its store in a new tmpfs directory (named
    ``prefix``...); stopped and everything removed on exit."""
    with shm_tempdir(prefix) as base:
        env = CRIEnv(base / "env", layout)
        try:
            env.start()
            yield env
        finally:
            env.close()


@pytest.fixture(scope="module")
def cri(busybox_layout: BusyboxImage) -> Iterator[CRIEnv]:
    """One server for the module; every test removes its sandboxes (``clean``)."""
    with serving_cri(busybox_layout, "skiff-cri-") as env:
        yield env


@pytest.fixture
def clean(cri: CRIEnv) -> Iterator[CRIEnv]:
    yield cri
    if cri.process is not None:
        cri.remove_all_sandboxes()


def code_of(call: object, *args: object) -> grpc.StatusCode:
    """The status code a failing RPC answers (AssertionError if it succeeds)."""
    try:
        call(*args)  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    raise AssertionError("the RPC succeeded")


def list_sandboxes(env: CRIEnv, **filter_fields: object) -> list[object]:
    request = api_pb2.ListPodSandboxRequest()
    if filter_fields:
        request.filter.CopyFrom(api_pb2.PodSandboxFilter(**filter_fields))  # type: ignore[arg-type]
    return list(env.runtime.ListPodSandbox(request).items)


def list_containers(env: CRIEnv, **filter_fields: object) -> list[object]:
    request = api_pb2.ListContainersRequest()
    if filter_fields:
        request.filter.CopyFrom(api_pb2.ContainerFilter(**filter_fields))  # type: ignore[arg-type]
    return list(env.runtime.ListContainers(request).containers)
