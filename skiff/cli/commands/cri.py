"""``skiff cri serve``: the Kubernetes CRI server over this store (CRI-O's role)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        metavar="ADDRESS",
        help="unix socket to serve on (default unix:///run/skiff/cri.sock)",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="the server's TOML config")
    parser.add_argument(
        "--streaming-address", metavar="HOST", help="address of the exec/attach/port-forward server"
    )
    parser.add_argument("--streaming-port", type=int, metavar="PORT", help="its port (0: any)")
    parser.add_argument(
        "--cni-config-dir", type=Path, metavar="DIR", help="CNI network configs (/etc/cni/net.d)"
    )
    parser.add_argument(
        "--cni-plugin-dir",
        type=Path,
        action="append",
        metavar="DIR",
        help="where CNI plugins are (repeatable; default /usr/lib/cni, /opt/cni/bin)",
    )
    parser.add_argument(
        "--pod-log-root", type=Path, metavar="DIR", help="logs of sandboxes without a log directory"
    )
    parser.add_argument(
        "--runtime", dest="default_runtime", help="default OCI runtime (runc, crun)"
    )
    parser.add_argument("--pause-image", help="infra image (default: skiff's own catatonit image)")
    parser.add_argument(
        "--certs-dir",
        type=Path,
        action="append",
        metavar="DIR",
        help="certs.d root for registry certificates (repeatable; default the system's)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cri import config as cri_config
    from skiff.cri.server import serve

    config = cri_config.load(args.config).with_overrides(
        listen=args.listen,
        streaming_address=args.streaming_address,
        streaming_port=args.streaming_port,
        cni_config_dir=args.cni_config_dir,
        cni_plugin_dirs=tuple(args.cni_plugin_dir) if args.cni_plugin_dir else None,
        pod_log_root=args.pod_log_root,
        default_runtime=args.default_runtime,
        pause_image=args.pause_image,
        certs_dirs=tuple(args.certs_dir) if args.certs_dir else None,
    )
    serve(system_context(args), config)
    return 0
