"""Pods: containers sharing namespaces behind an infra container (podman's pods).

    model.py      PodCreateOptions, PodConfig/PodState/Pod, PodResources,
                  PodStatus and podman's status rules, --share parsing
    records.py    PodRecords: the ``pods`` table
    infra.py      skiff's pause image (catatonit -P), built into the store
    cgroup.py     the pod's cgroup PARENT/POD_ID and its limits
    create.py     create_pod, join_pod (a new container becomes a member)
    lifecycle.py  start/stop/restart/kill/pause/unpause/remove/prune, and the
                  hooks the container lifecycle calls (ready_infra, member_exited)
    report.py     inspect_pod (podman's JSON), PodReport (``pod ps`` rows)
    usage.py      pod_stats, pod_processes (``pod top``), pod_usage (the pod cgroup)

The CLI (``skiff pod``, ``run --pod``), ``kube play`` and the CRI server
all create and manage pods through these functions; docs/pods.md describes
the behaviour. Modules are imported by their full names.
"""
