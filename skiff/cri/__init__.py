"""The Kubernetes CRI server: ``skiff cri serve`` (CRI-O's role) over skiff's store.

kubelet (or crictl) drives skiff through the Container Runtime Interface,
``runtime.v1`` RuntimeService and ImageService, on a unix socket. A pod
sandbox is a skiff pod with an infra container; a CRI container is a
member of it; images are the store's images. Nothing is kept in the
server's memory that a restart would lose: records live in the store's
database, running containers are held by their conmon, so ``skiff ps -a``,
``skiff pod ps`` and ``skiff images`` show what the CRI runs, and a server
started again carries on.

    server.py     gRPC wiring only: servicers → the functions below, the unix
                  socket, graceful stop on SIGTERM
    service.py    CRIService: what every RPC shares (the runtime, config,
                  CNI, the streaming server, stats samples)
    config.py     the server's TOML config and its defaults
    sandbox.py    Run/Stop/Remove/Status/ListPodSandbox
    container.py  Create/Start/Stop/Remove/List/Status/Update containers,
                  ReopenContainerLog, ExecSync, Exec/Attach/PortForward URLs
    stats.py      ContainerStats, PodSandboxStats and their lists
    image.py      ImageService: List/Status/Pull/Remove, ImageFsInfo
    cni.py        CNI: config loading, ADD/CHECK/DEL, results in the database
    records.py    the CRI's own tables: sandboxes (metadata, network), settings
    translate.py  CRI messages → PodCreateOptions / SpecGenerator
    names.py      CRI names (k8s_..._ATTEMPT) and metadata checks
    errors.py     SkiffError → gRPC status codes
    streaming/    the Exec/Attach/PortForward streaming server

Only ``skiff cri ...`` imports this package (grpc and the generated stubs
are heavy); docs/cri.md describes the behaviour.
"""
