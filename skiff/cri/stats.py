"""ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.

Counters come from the cgroups (``skiff.runtime.stats.sample_stats``, the
same samples as ``skiff stats``): CPU time, memory usage (working set =
usage minus page cache, as cAdvisor and CRI-O compute it), pids, network
bytes of the sandbox's namespace; the writable layer's size is what the
container's read-write layer holds (``libimage.df.rw_size``).

``usage_nano_cores`` is a rate: the CPU time since the previous sample of
the same container or sandbox taken by this server, divided by the wall
time between the two; the first sample has none (CRI-O does the same).
A container that is not running has no cpu or memory section.
"""

from __future__ import annotations

import contextlib
from typing import Any

from cri_api.v1 import api_pb2

from skiff.cri.container import _annotations, _labels, _metadata, matches_filter, synced
from skiff.cri.records import Sandbox
from skiff.cri.sandbox import infra_of, labels_match, metadata
from skiff.cri.service import CRIService
from skiff.errors import SkiffError
from skiff.runtime.records import Container
from skiff.runtime.stats import StatsSample


def _u64(value: int) -> Any:
    return api_pb2.UInt64Value(value=max(0, int(value)))


def _nano_cores(svc: CRIService, key: str, sample: StatsSample) -> int | None:
    with svc.samples_lock:
        previous = svc.cpu_samples.get(key)
        svc.cpu_samples[key] = (sample.cpu_ns, sample.mono_ns)
    if previous is None:
        return None
    cpu_before, mono_before = previous
    elapsed = sample.mono_ns - mono_before
    if elapsed <= 0 or sample.cpu_ns < cpu_before:
        return None
    return (sample.cpu_ns - cpu_before) * 1_000_000_000 // elapsed


def _cpu(svc: CRIService, key: str, sample: StatsSample) -> Any:
    cpu = api_pb2.CpuUsage(timestamp=sample.wall_ns, usage_core_nano_seconds=_u64(sample.cpu_ns))
    rate = _nano_cores(svc, key, sample)
    if rate is not None:
        cpu.usage_nano_cores.CopyFrom(_u64(rate))
    return cpu


def _memory(sample: StatsSample) -> Any:
    working_set = max(0, sample.mem_usage - sample.mem_cache)
    memory = api_pb2.MemoryUsage(
        timestamp=sample.wall_ns,
        working_set_bytes=_u64(working_set),
        usage_bytes=_u64(sample.mem_usage),
        rss_bytes=_u64(working_set),
    )
    if sample.mem_limit is not None:
        memory.available_bytes.CopyFrom(_u64(max(0, sample.mem_limit - working_set)))
    return memory


def _writable_layer(svc: CRIService, container: Container, now: int) -> Any:
    from skiff.libimage.df import rw_size

    store = svc.rt.store
    used = 0
    mountpoint = str(store.root)
    with contextlib.suppress(SkiffError, OSError):
        storage = store.containers.get(container.id)
        used = rw_size(store, storage.layer_id)
        mountpoint = str(store.driver.layer_dir(storage.layer_id))
    return api_pb2.FilesystemUsage(
        timestamp=now,
        fs_id=api_pb2.FilesystemIdentifier(mountpoint=mountpoint),
        used_bytes=_u64(used),
    )


def container_stats_of(svc: CRIService, container: Container) -> Any:
    from skiff.runtime.usage import sample_containers

    container = synced(svc, container)
    sample = sample_containers(svc.rt, [container])[0]
    stats = api_pb2.ContainerStats(
        attributes=api_pb2.ContainerAttributes(
            id=container.id,
            metadata=_metadata(container),
            labels=_labels(container),
            annotations=_annotations(container),
        ),
        writable_layer=_writable_layer(svc, container, sample.wall_ns),
    )
    if sample.running:
        stats.cpu.CopyFrom(_cpu(svc, container.id, sample))
        stats.memory.CopyFrom(_memory(sample))
    return stats


def container_stats(svc: CRIService, req: Any) -> Any:
    container = svc.get_container(req.container_id)
    return api_pb2.ContainerStatsResponse(stats=container_stats_of(svc, container))


def list_container_stats(svc: CRIService, req: Any) -> Any:
    f = req.filter if req.HasField("filter") else None
    out = []
    for container in svc.cri_containers():
        if not matches_filter(container, f):
            continue
        try:
            out.append(container_stats_of(svc, container))
        except SkiffError:
            continue  # removed while listing
    return api_pb2.ListContainerStatsResponse(stats=out)


# --- sandboxes -------------------------------------------------------------------------------


def sandbox_stats_of(svc: CRIService, sandbox: Sandbox) -> Any:
    from skiff.runtime.pods.usage import pod_usage

    pod = svc.pod_of(sandbox)
    stats = api_pb2.PodSandboxStats(
        attributes=api_pb2.PodSandboxAttributes(
            id=sandbox.id,
            metadata=metadata(sandbox),
            labels=sandbox.config.labels,
            annotations=sandbox.config.annotations,
        )
    )
    if pod is None:
        return stats
    linux = api_pb2.LinuxPodSandboxStats()
    sample = pod_usage(svc.rt, pod)
    if sample.running:
        linux.cpu.CopyFrom(_cpu(svc, sandbox.id, sample))
        linux.memory.CopyFrom(_memory(sample))
        linux.process.CopyFrom(
            api_pb2.ProcessUsage(timestamp=sample.wall_ns, process_count=_u64(sample.pids))
        )
        infra = infra_of(svc, pod)
        if infra is not None and not sandbox.state.stopped and sandbox.state.netns:
            interface = api_pb2.NetworkInterfaceUsage(
                name="eth0", rx_bytes=_u64(sample.net_rx), tx_bytes=_u64(sample.net_tx)
            )
            linux.network.CopyFrom(
                api_pb2.NetworkUsage(
                    timestamp=sample.wall_ns,
                    default_interface=interface,
                    interfaces=[interface],
                )
            )
    for container in svc.cri_containers():
        if container.config.cri.get("sandbox_id") != sandbox.id:
            continue
        with contextlib.suppress(SkiffError):
            linux.containers.append(container_stats_of(svc, container))
    stats.linux.CopyFrom(linux)
    return stats


def pod_sandbox_stats(svc: CRIService, req: Any) -> Any:
    sandbox = svc.get_sandbox(req.pod_sandbox_id)
    return api_pb2.PodSandboxStatsResponse(stats=sandbox_stats_of(svc, sandbox))


def list_pod_sandbox_stats(svc: CRIService, req: Any) -> Any:
    f = req.filter if req.HasField("filter") else None
    out = []
    for sandbox in svc.sandboxes.all():
        if f is not None:
            if f.id and not sandbox.id.startswith(f.id):
                continue
            if not labels_match(sandbox.config.labels, f.label_selector):
                continue
        if svc.pod_of(sandbox) is None:
            continue
        try:
            out.append(sandbox_stats_of(svc, sandbox))
        except SkiffError:
            continue
    return api_pb2.ListPodSandboxStatsResponse(stats=out)
