"""The CRI server process: runtime RPCs, its config, its socket, stopping.

Covered: Version, Status (conditions, handlers, verbose info),
RuntimeConfig (cgroupfs), UpdateRuntimeConfig (pod CIDR kept across a
restart, a bad one refused); a config file with an unknown key and a
listen address that is not a unix socket fail at start with one error
line and exit 125; a socket another server answers on is refused, a dead
server's socket is replaced; SIGTERM stops the server (exit 0, socket
removed) while a container keeps running.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import grpc
import pytest
from cri_api.v1 import api_pb2
from cri_fixtures import code_of, requirements

from skiff.testing import shm_tempdir
from skiff.testing.busybox import BusyboxImage
from skiff.testing.cli import assert_clean_failure
from skiff.testing.criserver import CRIEnv

pytestmark = requirements


@pytest.fixture
def env(busybox_layout: BusyboxImage) -> Iterator[CRIEnv]:
    with shm_tempdir("skiff-cri-srv-") as base:
        environment = CRIEnv(base / "env", busybox_layout)
        try:
            yield environment
        finally:
            environment.close()


def test_runtime_rpcs_and_the_pod_cidr_across_a_restart(env: CRIEnv) -> None:
    env.start()
    version = env.runtime.Version(api_pb2.VersionRequest(version="v1"))
    assert (version.runtime_name, version.runtime_api_version) == ("skiff", "v1")
    status = env.runtime.Status(api_pb2.StatusRequest(verbose=True))
    conditions = {c.type: c.status for c in status.status.conditions}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}
    assert [h.name for h in status.runtime_handlers] == ["", "runc", "crun"]
    assert not status.runtime_handlers[0].features.recursive_read_only_mounts
    assert json.loads(status.info["cniNetwork"])["name"] == env.network_name
    assert status.info["streamingURL"].startswith("http://127.0.0.1:")
    config = env.runtime.RuntimeConfig(api_pb2.RuntimeConfigRequest())
    assert config.linux.cgroup_driver == api_pb2.CGROUPFS
    update = api_pb2.UpdateRuntimeConfigRequest(
        runtime_config=api_pb2.RuntimeConfig(
            network_config=api_pb2.NetworkConfig(pod_cidr="10.244.0.0/24,fd00:10::/64")
        )
    )
    env.runtime.UpdateRuntimeConfig(update)
    bad = api_pb2.UpdateRuntimeConfigRequest(
        runtime_config=api_pb2.RuntimeConfig(network_config=api_pb2.NetworkConfig(pod_cidr="x"))
    )
    assert code_of(env.runtime.UpdateRuntimeConfig, bad) == grpc.StatusCode.INVALID_ARGUMENT
    env.restart()
    status = env.runtime.Status(api_pb2.StatusRequest(verbose=True))
    assert status.info["podCIDR"] == "10.244.0.0/24,fd00:10::/64"


def test_bad_configuration_fails_at_start_with_one_line(env: CRIEnv) -> None:
    config = env.base / "cri.toml"
    config.write_text('listen = "unix:///tmp/x.sock"\nworkerz = 4\n')
    result = env.skiff("cri", "serve", "--config", config, expect=125)
    assert_clean_failure(result)
    assert "unknown key 'workerz'" in result.stderr
    result = env.skiff("cri", "serve", "--listen", "tcp://127.0.0.1:1234", expect=125)
    assert_clean_failure(result)
    assert "unix socket" in result.stderr


def test_sockets_of_live_and_dead_servers(env: CRIEnv) -> None:
    # a dead server's socket file: replaced
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(env.socket))
    dead.close()
    env.start()
    # a live server's: refused
    second = env.skiff("cri", "serve", "--listen", f"unix://{env.socket}", expect=125)
    assert "another server is listening" in second.stderr
    assert env.runtime.Version(api_pb2.VersionRequest()).runtime_name == "skiff"


def test_sigterm_stops_the_server_and_containers_keep_running(env: CRIEnv) -> None:
    env.start()
    sid, config = env.run_sandbox()
    cid = env.create_container(sid, config, env.container_config("c", ["busybox", "sleep", "1000"]))
    env.start_container(cid)
    assert env.stop() == 0
    assert not env.socket.exists()
    assert env.state(cid) == "running"
    env.start()
    assert env.container_status(cid).status.state == api_pb2.CONTAINER_RUNNING
