"""Kubernetes YAML: ``kube play`` and ``kube generate`` over skiff pods.

    model.py     the supported subset, typed (Pod, Deployment, ConfigMap,
                 PersistentVolumeClaim), KubeError and Where (YAML paths)
    parse.py     YAML → model, every problem named by its YAML path
    quantity.py  resource quantities (500m, 64Mi) both ways
    play.py      play (plan, then apply; nothing left behind on failure), down
    generate.py  pods and containers → v1 Pod YAML that play reads back

docs/kube.md describes what is supported and where skiff differs from
podman. Modules are imported by their full names.
"""
