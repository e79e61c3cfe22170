"""Version, Status, RuntimeConfig and UpdateRuntimeConfig: the runtime as a whole.

Status has the two conditions kubelet waits for: ``RuntimeReady`` (an OCI
runtime that works here was found: runc, or crun where it can run) and
``NetworkReady`` (a CNI network configuration with all its plugins,
reason ``NetworkPluginNotReady`` otherwise). The runtime handlers it lists
say what skiff does not do (recursive read-only mounts, user namespaces),
so kubelet and the validation suite do not ask for them.

RuntimeConfig answers the cgroupfs driver: skiff manages cgroups itself
(``/kubepods/...`` parents, no systemd slices). UpdateRuntimeConfig keeps
the pod CIDR kubelet sends in the store (``cri_settings``); the CNI
configuration itself decides the pod addresses, as with CRI-O.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from cri_api.v1 import api_pb2

from skiff import __version__
from skiff.cri.service import CRIService
from skiff.errors import SkiffError

API_VERSION = "v1"
RUNTIME_NAME = "skiff"
POD_CIDR = "pod_cidr"


def version(svc: CRIService, req: Any) -> Any:
    return api_pb2.VersionResponse(
        version="0.1.0",
        runtime_name=RUNTIME_NAME,
        runtime_version=__version__,
        runtime_api_version=API_VERSION,
    )


def _runtime_condition(svc: CRIService) -> Any:
    try:
        runtime = svc.rt.oci(svc.config.default_runtime)
    except SkiffError as exc:
        return api_pb2.RuntimeCondition(
            type="RuntimeReady", status=False, reason="RuntimeNotFound", message=str(exc)
        ), ""
    return api_pb2.RuntimeCondition(type="RuntimeReady", status=True), runtime.name


def status(svc: CRIService, req: Any) -> Any:
    runtime_condition, runtime_name = _runtime_condition(svc)
    ready, why = svc.cni.status()
    network_condition = api_pb2.RuntimeCondition(
        type="NetworkReady",
        status=ready,
        reason="" if ready else "NetworkPluginNotReady",
        message="" if ready else f"Network plugin returns error: {why}",
    )
    features = api_pb2.RuntimeHandlerFeatures(
        recursive_read_only_mounts=False, user_namespaces=False
    )
    handlers = [api_pb2.RuntimeHandler(name="", features=features)]
    handlers += [api_pb2.RuntimeHandler(name=name, features=features) for name in ("runc", "crun")]
    info: dict[str, str] = {}
    if req.verbose:
        config = {k: str(v) for k, v in asdict(svc.config).items()}
        network = svc.cni.network()
        info["config"] = json.dumps(config)
        info["runtime"] = runtime_name
        info["cniNetwork"] = json.dumps(network.to_json() if network is not None else None)
        info["podCIDR"] = svc.sandboxes.setting(POD_CIDR) or ""
        if svc.streaming is not None:
            info["streamingURL"] = svc.streaming.base_url
    return api_pb2.StatusResponse(
        status=api_pb2.RuntimeStatus(conditions=[runtime_condition, network_condition]),
        info=info,
        runtime_handlers=handlers,
        features=api_pb2.RuntimeFeatures(supplemental_groups_policy=False),
    )


def runtime_config(svc: CRIService, req: Any) -> Any:
    return api_pb2.RuntimeConfigResponse(
        linux=api_pb2.LinuxRuntimeConfiguration(cgroup_driver=api_pb2.CGROUPFS)
    )


def update_runtime_config(svc: CRIService, req: Any) -> Any:
    if req.HasField("runtime_config") and req.runtime_config.HasField("network_config"):
        cidr = req.runtime_config.network_config.pod_cidr
        if cidr:
            import ipaddress

            from skiff.cri.errors import InvalidArgument

            for part in cidr.split(","):  # dual stack: "10.0.0.0/24,fd00::/64"
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError as exc:
                    raise InvalidArgument(f"invalid pod CIDR {part!r}") from exc
            svc.sandboxes.set_setting(POD_CIDR, cidr)
    return api_pb2.UpdateRuntimeConfigResponse()
