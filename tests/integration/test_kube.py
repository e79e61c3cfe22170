"""``kube play`` and ``kube generate`` against the real runtime, and bad YAML.

- Bad input (not YAML, unknown kind, missing image, invalid port, a
  ConfigMap key that does not exist, an image not in the store...) is
  refused with the YAML path of the problem, and creates nothing: no pod,
  no container, no volume.
- A pod with an init container, env from a ConfigMap, emptyDir, configMap,
  hostPath and PVC volumes, a published port and a security context runs
  as the YAML says.
- ``kube generate``'s YAML is valid Kubernetes — checked field by field
  against the ``kubernetes`` client's models (unknown fields, wrong types)
  and deserialized by it (required fields) — and playing it back gives a
  pod of the same shape.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from skiff.runtime.kube.model import KubeError
from skiff.runtime.kube.parse import parse_yaml
from skiff.runtime.kube.quantity import format_cpu, format_memory
from skiff.testing.busybox import BusyboxImage
from skiff.testing.containers import PodContainerEnv, wait_for, wait_output
from skiff.testing.network import fetch, free_port

needs_runtime = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]

IMAGE = "localhost/busybox:latest"


# --- validating against the Kubernetes API models ------------------------------------------


def k8s_problems(value: Any, type_name: str = "V1Pod", path: str = "$") -> list[str]:
    """Fields the Kubernetes API does not have, or of the wrong type (empty: valid)."""
    from kubernetes.client import models

    problems: list[str] = []
    if value is None:
        return problems
    listed = re.fullmatch(r"List\[(.+)\]", type_name)
    mapped = re.fullmatch(r"Dict\[str, (.+)\]", type_name)
    if listed:
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        for i, item in enumerate(value):
            problems += k8s_problems(item, listed.group(1), f"{path}[{i}]")
        return problems
    if mapped:
        if not isinstance(value, dict):
            return [f"{path}: not a mapping"]
        for key, item in value.items():
            problems += k8s_problems(item, mapped.group(1), f"{path}.{key}")
        return problems
    simple: dict[str, Any] = {
        "str": str,
        "int": int,
        "bool": bool,
        "datetime": str,
        "object": object,
    }
    if type_name in simple:
        if type_name == "int" and isinstance(value, bool):
            return [f"{path}: a boolean where an int belongs"]
        if not isinstance(value, simple[type_name]):
            return [f"{path}: {type(value).__name__} is not {type_name}"]
        return problems
    cls = getattr(models, type_name)
    if not isinstance(value, dict):
        return [f"{path}: not an object ({type_name})"]
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in by_key:
            problems.append(f"{path}.{key}: {type_name} has no such field")
            continue
        problems += k8s_problems(item, cls.openapi_types[by_key[key]], f"{path}.{key}")
    return problems


def assert_valid_pod(document: dict[str, Any]) -> None:
    from kubernetes.client import ApiClient

    assert k8s_problems(document) == []
    pod = ApiClient()._ApiClient__deserialize(document, "V1Pod")  # required fields
    assert pod.kind == "Pod" and pod.spec.containers


def test_the_model_check_catches_what_kubernetes_refuses() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80", "bogus": 1}]}]},
    }
    assert k8s_problems(bad) == [
        "$.spec.containers[0].ports[0].containerPort: str is not int",
        "$.spec.containers[0].ports[0].bogus: V1ContainerPort has no such field",
    ]
    from kubernetes.client import ApiClient

    with pytest.raises(ValueError, match="name"):
        ApiClient()._ApiClient__deserialize({"spec": {"containers": [{"image": "x"}]}}, "V1Pod")


# --- parsing: problems named by their YAML path --------------------------------------------

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
  - name: a
    image: localhost/busybox:latest
    ports:
    - containerPort: 80
    - containerPort: 81
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Pod\n  bad: [", "f.yaml: not valid YAML: line 2, column"),
        ("- a\n- b\n", "f.yaml: must be a mapping (a Kubernetes object), not a list"),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
            "f.yaml: kind: unsupported kind 'Service'",
        ),
        ("apiVersion: v1\nmetadata: {name: s}\n", "f.yaml: kind: is required"),
        (POD.replace("    image: localhost/busybox:latest\n", ""), "spec.containers[0].image: is required"),
        (POD.replace("containerPort: 81", "containerPort: 70000"),
         "spec.containers[0].ports[1].containerPort: 70000 is not a valid port (1-65535)"),
        (POD.replace("containerPort: 81", "containerPort: http"),
         "spec.containers[0].ports[1].containerPort: must be an integer, not a string ('http')"),
        (POD.replace("containerPort: 81", "containerPort: 81\n      hostIP: nowhere"),
         "spec.containers[0].ports[1].hostIP: 'nowhere' is not an IP address"),
        (POD + "    command: [httpd, -p, 80]\n",
         "spec.containers[0].command[2]: must be a string, not a number (80)"),
        (POD + "    resources: {limits: {memory: lots}}\n",
         "spec.containers[0].resources.limits.memory: 'lots' is not a quantity"),
        (POD + "    volumeMounts: [{name: nope, mountPath: /x}]\n",
         "spec.containers[0].volumeMounts[0].name: no volume named 'nope' in spec.volumes"),
        (POD + "  volumes: [{name: s, secret: {secretName: x}}]\n",
         "spec.volumes[0].secret: volume source secret is not supported"),
        (POD + "  volumes: [{name: s}]\n",
         "spec.volumes[0]: volume 's' must have exactly one source, not 0"),
        (POD + "  restartPolicy: Sometimes\n", "spec.restartPolicy: unknown restart policy 'Sometimes'"),
        (POD.replace("name: a", "name: a\n    env: [{name: X, valueFrom: {secretKeyRef: {name: s, key: k}}}]"),
         "spec.containers[0].env[0].valueFrom: unsupported env source 'secretKeyRef'"),
        (POD.replace("  containers:", "  containers: []\n  x:"), "spec.containers: must list at least one container"),
        (POD + "---\n" + POD, "document 2: metadata.name: pod 'p' is defined twice"),
        (textwrap.dedent("""
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: d}
            spec:
              template:
                spec:
                  containers:
                  - name: a
                    image: x
                    ports: [{containerPort: 0}]
            """), "spec.template.spec.containers[0].ports[0].containerPort: 0 is not a valid port"),
    ],
)  # fmt: skip
def test_bad_yaml_is_reported_at_its_path(text: str, expected: str) -> None:
    with pytest.raises(KubeError) as caught:
        parse_yaml(text, "f.yaml")
    assert expected in str(caught.value)


def test_a_deployment_is_one_pod_named_after_it() -> None:
    text = textwrap.dedent("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, labels: {tier: front}}
        spec:
          replicas: 3
          template:
            metadata: {labels: {app: web}}
            spec:
              containers: [{name: srv, image: x, command: [httpd], args: ["-f"]}]
        """)
    parsed = parse_yaml(text, "d.yaml")
    (pod,) = parsed.pods
    assert (pod.name, pod.kind, pod.replicas) == ("web-pod", "Deployment", 3)
    assert pod.labels == {"tier": "front", "app": "web"}
    assert pod.containers[0].command == ["httpd"] and pod.containers[0].args == ["-f"]


def test_quantities_both_ways() -> None:
    from skiff.runtime.kube.model import Where
    from skiff.runtime.kube.quantity import parse_cpu, parse_memory

    where = Where("q", 1, "x")
    assert parse_cpu("500m", where) == 0.5 and parse_cpu(2, where) == 2.0
    assert parse_memory("64Mi", where) == 64 << 20 and parse_memory("1G", where) == 10**9
    assert parse_memory("1e8", where) == 10**8
    assert (format_cpu(0.5), format_cpu(2.0), format_cpu(1.25)) == ("500m", "2", "1250m")
    assert (format_memory(64 << 20), format_memory(1 << 30), format_memory(10**8)) == (
        "64Mi",
        "1Gi",
        "100000000",
    )
    with pytest.raises(KubeError, match="x: '5Q' is not a quantity"):
        parse_memory("5Q", where)


# --- playing for real ------------------------------------------------------------------------


class KubeEnv(PodContainerEnv):
    def pods(self) -> list[str]:
        return self.skiff("pod", "ps", "--format", "{{.Name}}").stdout.split()

    def volumes(self) -> list[str]:
        return self.skiff("volume", "ls", "-q").stdout.split()

    def nothing_created(self) -> None:
        assert self.pods() == []
        assert self.skiff("ps", "-a", "-q").stdout == ""
        assert self.volumes() == []
        self.wait_clean()

    def shape(self, pod_name: str) -> dict[str, Any]:
        """What a played pod is, independent of IDs and times."""
        from skiff.runtime.create import spec_of
        from skiff.runtime.engine import Runtime
        from skiff.runtime.pods.records import PodRecords

        rt = Runtime(self.context())
        try:
            pod = PodRecords(rt.store.db).get(pod_name)
            members = {}
            for c in rt.records.by_pod(pod.id):
                if c.config.infra:
                    continue
                sg = spec_of(c)
                members[c.name] = {
                    "image": c.config.image_name,
                    "command": c.config.command,
                    "env": sg.basic.env,
                    "user": sg.security.user,
                    "caps": (sg.security.cap_add, sg.security.cap_drop),
                    "read_only": sg.storage.read_only,
                    "limits": (sg.resources.cpus, sg.resources.memory),
                    "mounts": sorted(
                        (m.destination, type(m).__name__, bool(getattr(m, "read_only", False)))
                        for m in sg.storage.mounts
                    ),
                    "restart": c.config.restart.name,
                    "workdir": sg.basic.workdir,
                    "state": c.state.status.value,
                }
            return {
                "members": members,
                "ports": pod.config.ports,
                "hostname": pod.config.hostname or pod.name,
                "share": pod.config.share,
            }
        finally:
            rt.close()


@pytest.fixture
def env(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[KubeEnv]:
    environment = KubeEnv(tmp_shm / "env", busybox_layout)
    try:
        yield environment
    finally:
        environment.skiff("pod", "rm", "-a", "-f", "-t", "0", expect=None, timeout=120)
        environment.skiff("rm", "-a", "-f", "-t", "0", expect=None, timeout=120)
        for volume in environment.volumes():
            environment.skiff("volume", "rm", "-f", volume, expect=None)
        environment.close()


SHOP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  greeting: hello-from-configmap
  app.conf: "listen 80"
---
apiVersion: v1
kind: Pod
metadata:
  name: shop
  labels: {app: shop}
spec:
  restartPolicy: OnFailure
  initContainers:
  - name: prepare
    image: localhost/busybox:latest
    command: [sh, -c, "echo from-init > /shared/init.txt"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: web
    image: localhost/busybox:latest
    command: [httpd]
    args: [-f, -p, "8080", -h, /shared]
    workingDir: /tmp
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
    - {name: PLAIN, value: plain}
    ports:
    - {containerPort: 8080, hostPort: PORT, hostIP: 127.0.0.1}
    resources: {limits: {cpu: 500m, memory: 64Mi}}
    securityContext:
      runAsUser: 1000
      runAsGroup: 1000
      capabilities: {drop: [MKNOD]}
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: conf, mountPath: /etc/app, readOnly: true}
    - {name: host, mountPath: /host}
    - {name: data, mountPath: /data}
  - name: client
    image: localhost/busybox:latest
    command:
    - sh
    - -c
    - "until wget -q -O /tmp/page http://localhost:8080/init.txt; do sleep 0.2; done;
       cat /tmp/page; echo $GREETING; exec busybox sleep 1000"
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
    securityContext: {readOnlyRootFilesystem: true}
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: conf, configMap: {name: settings}}
  - {name: host, hostPath: {path: HOSTDIR, type: Directory}}
  - {name: data, persistentVolumeClaim: {claimName: CLAIM}}
"""


def shop_yaml(env: KubeEnv, port: int) -> Path:
    host_dir = env.base / "hostdir"
    host_dir.mkdir(exist_ok=True)
    (host_dir / "from-host").write_text("host file\n")
    text = SHOP.replace("PORT", str(port)).replace("HOSTDIR", str(host_dir))
    text = text.replace("CLAIM", f"claim{os.getpid()}")
    path = env.base / "shop.yaml"
    path.write_text(text)
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root")
@pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed")
def test_play_runs_the_pod_as_the_yaml_says(env: KubeEnv) -> None:
    port = free_port()
    out = env.skiff("kube", "play", "--network", env.network(), shop_yaml(env, port)).stdout
    assert re.fullmatch(r"Pod:\n[0-9a-f]{64}\nContainers:\n([0-9a-f]{64}\n){2}\n", out), out
    logs = wait_output(lambda: env.skiff("logs", "shop-client"), "hello-from-configmap", 30)
    assert "from-init" in logs.stdout
    assert fetch(f"http://127.0.0.1:{port}/init.txt") == b"from-init\n"
    # the init container ran and is gone; the others run as the YAML says
    names = {row["Names"][0] for row in env.ps() if not row["IsInfra"]}
    assert names == {"shop-web", "shop-client"}
    assert env.skiff("exec", "shop-web", "id", "-u").stdout == "1000\n"
    assert env.skiff("exec", "shop-web", "pwd").stdout == "/tmp\n"
    assert (
        env.skiff("exec", "shop-web", "cat", "/etc/app/greeting").stdout == "hello-from-configmap"
    )
    assert env.skiff("exec", "shop-web", "cat", "/host/from-host").stdout == "host file\n"
    assert (
        env.skiff("exec", "shop-web", "sh", "-c", "echo $PLAIN $GREETING").stdout
        == "plain hello-from-configmap\n"
    )
    env.skiff("exec", "shop-web", "sh", "-c", "touch /etc/app/x", expect=1)
    env.skiff("exec", "shop-client", "touch", "/etc/x", expect=1)  # readOnlyRootFilesystem
    inspect = json.loads(env.skiff("inspect", "shop-web").stdout)[0]
    assert inspect["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    assert inspect["HostConfig"]["Memory"] == 64 << 20
    claim = f"claim{os.getpid()}"
    assert set(env.volumes()) == {"shop-shared", "shop-conf", claim}
    # down: the pod, its containers and its own volumes go; the claim's volume stays
    out = env.skiff("kube", "down", env.base / "shop.yaml").stdout
    assert re.fullmatch(r"Pods stopped:\n[0-9a-f]{64}\nPods removed:\n[0-9a-f]{64}\n", out), out
    assert env.volumes() == [claim]
    assert env.pods() == []
    env.wait_clean()


@pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root")
@pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed")
def test_generate_is_valid_kubernetes_and_plays_back_the_same_pod(env: KubeEnv) -> None:
    port = free_port()
    net = env.network()
    env.skiff("kube", "play", "--network", net, shop_yaml(env, port))
    wait_output(lambda: env.skiff("logs", "shop-client"), "hello-from-configmap", 30)
    before = env.shape("shop")
    generated = env.skiff("kube", "generate", "shop").stdout
    assert generated.startswith("# Save the output of this file")
    (document,) = list(yaml.safe_load_all(generated))
    assert_valid_pod(document)
    containers = {c["name"]: c for c in document["spec"]["containers"]}
    assert set(containers) == {"web", "client"}
    assert containers["web"]["ports"] == [
        {"containerPort": 8080, "hostPort": port, "hostIP": "127.0.0.1"}
    ]
    assert containers["web"]["resources"] == {"limits": {"cpu": "500m", "memory": "64Mi"}}
    volumes = {v["name"]: v for v in document["spec"]["volumes"]}
    assert volumes["shared"] == {"name": "shared", "emptyDir": {}}
    assert volumes["conf"] == {"name": "conf", "configMap": {"name": "settings"}}
    path = env.base / "generated.yaml"
    path.write_text(generated)
    config_maps = env.base / "settings.yaml"
    config_maps.write_text(SHOP.split("---", maxsplit=1)[0])
    env.skiff("kube", "down", env.base / "shop.yaml")
    env.skiff("kube", "play", "--network", net, "--configmap", config_maps, path)
    # (the init container ran in the first play and is no part of the pod after it:
    # the client now waits for a file nobody writes, but runs)
    wait_for(lambda: env.state("shop-client") == "running", "the played pod", 20)
    after = env.shape("shop")
    assert before == after
    assert (
        env.skiff("kube", "generate", "shop").stdout.split("creationTimestamp")[1].split("\n", 1)[1]
        == generated.split("creationTimestamp")[1].split("\n", 1)[1]
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root")
@pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed")
def test_generate_a_lone_container_as_a_pod(env: KubeEnv) -> None:
    port = free_port()
    net = env.network()
    env.run_detached(
        "--name", "solo", "--network", net, "-p", f"127.0.0.1:{port}:8080", "-e", "A=b",
        "-v", "solodata:/data", "--memory", "100m", "-u", "1000:1000",
        env.image, "httpd", "-f", "-p", "8080", "-h", "/var/www",
    )  # fmt: skip
    (document,) = list(yaml.safe_load_all(env.skiff("kube", "generate", "solo").stdout))
    assert_valid_pod(document)
    assert document["metadata"]["name"] == "solo-pod"
    (container,) = document["spec"]["containers"]
    assert container["name"] == "solo"
    assert container["command"] == ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
    assert container["env"] == [{"name": "A", "value": "b"}]
    assert container["ports"] == [{"containerPort": 8080, "hostPort": port, "hostIP": "127.0.0.1"}]
    assert container["securityContext"] == {"runAsGroup": 1000, "runAsUser": 1000}
    assert document["spec"]["volumes"] == [
        {"name": "solodata-pvc", "persistentVolumeClaim": {"claimName": "solodata"}}
    ]
    env.skiff("rm", "-f", "-t", "0", "solo")
    path = env.base / "solo.yaml"
    path.write_text(yaml.safe_dump(document))
    assert fetch(f"http://127.0.0.1:{port}/") is None
    env.skiff("kube", "play", "--network", net, path)
    wait_for(lambda: fetch(f"http://127.0.0.1:{port}/") is not None, "the played pod", 20)
    assert env.skiff("exec", "solo-pod-solo", "id", "-u").stdout == "1000\n"
    env.skiff("kube", "down", path)
    env.skiff("volume", "rm", "solodata")


@pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root")
@pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed")
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("key: greeting", "key: nokey"),
         "spec.containers[0].env[0].valueFrom.configMapKeyRef.key: ConfigMap 'settings' has no key 'nokey'"),
        (("image: localhost/busybox:latest\n    command: [sh", "image: localhost/nosuch:1\n    imagePullPolicy: Never\n    command: [sh"),
         "spec.initContainers[0].image: localhost/nosuch:1: image not known"),
        (("type: Directory", "type: File"), "spec.volumes[2].hostPath.type: "),
        (("hostIP: 127.0.0.1}", "hostIP: 127.0.0.1}\n    - {containerPort: 8081, hostPort: PORT}"),
         "spec.containers[0].ports[1].hostPort: host port"),
        (("{name: conf, configMap: {name: settings}}", "{name: conf, configMap: {name: other}}"),
         "spec.volumes[1].configMap.name: no ConfigMap named 'other'"),
        (("runAsUser: 1000", "runAsUser: -1"), "spec.containers[0].securityContext.runAsUser: -1 is not a valid"),
        (("drop: [MKNOD]", "drop: [NOT_A_CAP]"), "spec.containers[0].securityContext.capabilities.drop[0]"),
    ],
)  # fmt: skip
def test_bad_yaml_creates_nothing(env: KubeEnv, change: tuple[str, str], expected: str) -> None:
    port = free_port()
    path = shop_yaml(env, port)
    text = SHOP.replace(*change).replace("PORT", str(port))
    text = text.replace("HOSTDIR", str(env.base / "hostdir")).replace("CLAIM", "claimx")
    # a good pod before the bad one must not be created either
    path.write_text(POD.replace("name: p\n", "name: first\n") + "---\n" + text)
    message = env.fails("kube", "play", path)
    assert expected in message, message
    assert "document 3" in message or "document" not in expected
    env.nothing_created()


@pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root")
@pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed")
def test_not_yaml_and_unknown_kinds_through_the_cli(env: KubeEnv) -> None:
    path = env.base / "bad.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x\n")
    assert "not valid YAML: line" in env.fails("kube", "play", path)
    path.write_text("apiVersion: v1\nkind: CronJob\nmetadata: {name: x}\n")
    assert "kind: unsupported kind 'CronJob'" in env.fails("kube", "play", path)
    env.nothing_created()


@pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root")
@pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed")
def test_deployment_replace_and_a_failed_start_rolls_back(env: KubeEnv) -> None:
    deployment = textwrap.dedent("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 2
          template:
            spec:
              restartPolicy: Always
              containers:
              - name: srv
                image: localhost/busybox:latest
                command: [busybox, sleep, "1000"]
        """)
    path = env.base / "dep.yaml"
    path.write_text(deployment)
    result = env.skiff("kube", "play", "--network", "none", path)
    assert "2 replicas asked for; skiff plays one pod" in result.stderr
    assert env.pods() == ["web-pod"]
    first = env.skiff("pod", "inspect", "--format", "{{.Id}}", "web-pod").stdout
    assert "already exists" in env.fails("kube", "play", "--network", "none", path)
    env.skiff("kube", "play", "--network", "none", "--replace", path)
    assert env.skiff("pod", "inspect", "--format", "{{.Id}}", "web-pod").stdout != first
    assert env.state("web-pod-srv") == "running"
    env.skiff("kube", "down", path)
    # a container that cannot start (its command does not exist) fails the play: nothing stays
    path.write_text(
        deployment.replace("command: [busybox, sleep", "command: [/no/such/binary, sleep")
    )
    message = env.fails("kube", "play", "--network", "none", path)
    assert "starting container" in message
    env.nothing_created()
