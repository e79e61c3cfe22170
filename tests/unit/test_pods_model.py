"""Pod rules without a runtime: podman's pod status, --share, the pod record round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.errors import UsageError
from skiff.runtime.pods.model import (
    PodConfig,
    PodResources,
    PodStatus,
    check_pod_name,
    parse_share,
    pod_status,
)
from skiff.runtime.pods.records import PodRecords
from skiff.runtime.records import Container, ContainerConfig, ContainerState, Status
from skiff.storage.db import Database


def _container(status: Status, infra: bool = False) -> Container:
    return Container(
        id="0" * 64,
        name="c",
        created=0.0,
        config=ContainerConfig(image_id=None, image_name="i", infra=infra),
        state=ContainerState(status=status),
    )


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], PodStatus.CREATED),
        ([Status.CREATED], PodStatus.CREATED),
        ([Status.RUNNING, Status.RUNNING], PodStatus.RUNNING),
        ([Status.RUNNING, Status.EXITED], PodStatus.DEGRADED),
        ([Status.RUNNING, Status.CREATED], PodStatus.DEGRADED),
        ([Status.RUNNING, Status.PAUSED], PodStatus.DEGRADED),
        ([Status.PAUSED, Status.PAUSED], PodStatus.PAUSED),
        ([Status.EXITED, Status.STOPPED], PodStatus.EXITED),
        ([Status.EXITED, Status.CREATED], PodStatus.STOPPED),
        ([Status.INITIALIZED], PodStatus.CREATED),
        ([Status.REMOVING], PodStatus.ERROR),
    ],
)
def test_pod_status_follows_podman(statuses: list[Status], expected: PodStatus) -> None:
    assert pod_status([_container(s) for s in statuses]) == expected


def test_share() -> None:
    assert parse_share("none") == []
    assert parse_share("net,uts") == ["net", "uts"]
    assert parse_share("+pid") == ["ipc", "net", "pid", "uts"]
    with pytest.raises(UsageError, match="invalid kernel namespace to share: user"):
        parse_share("net,user")


def test_pod_names() -> None:
    assert check_pod_name("web.1_a-b") == "web.1_a-b"
    with pytest.raises(UsageError, match="is not valid"):
        check_pod_name("-x")


def test_a_pod_record_keeps_its_config(tmp_path: Path) -> None:
    records = PodRecords(Database(tmp_path / "db.sqlite"))
    config = PodConfig(
        labels={"a": "b"},
        share=["ipc", "net"],
        ports=[
            {"container_port": 80, "host_port": 8080, "range": 1, "protocol": "tcp", "host_ip": ""}
        ],
        resources=PodResources(cpus=0.5, memory=64 << 20),
        add_hosts=["db:10.0.0.5"],
    )
    pod = records.add("ab" * 32, "p", config)
    again = records.get("p")
    assert again.config == config and again.id == pod.id
    assert records.get("abab").name == "p"  # an ID prefix
    assert records.names() == {pod.id: "p"}
    with pytest.raises(Exception, match="is in use: pod already exists"):
        records.add("cd" * 32, "p", PodConfig())
    records.delete(pod.id)
    assert records.find("p") is None
