"""skiff: a daemonless container toolchain.

Images (registry client, transports, copy engine), a layered local store,
OCI runtime containers under conmon, builds, trust policy, system
containers and a Kubernetes CRI server, over one on-disk store.
"""

__version__ = "0.1.0"
