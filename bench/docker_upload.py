"""Blob upload: one monolithic PUT vs a chunked PATCH stream, by blob size.

Decides ``skiff.image.transports.docker.destination.MONOLITHIC_MAX``. Runs
against a local docker-registry (plain HTTP on loopback, storage on
/dev/shm) with incompressible data; each size is uploaded ``--rounds``
times per method under a fresh digest, and the median wall time is shown.

    .venv/bin/python bench/docker_upload.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

from skiff.image.transports.docker import api
from skiff.image.transports.docker.client import RegistryClient
from skiff.oci.digest import VerifyingReader, sha256_of
from skiff.testing import shm_tempdir
from skiff.testing.registry import RegistryFactory, Variant
from skiff.testing.tlsutil import CertificateAuthority

SIZES = (16 << 10, 256 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 64 << 20)


def monolithic(client: RegistryClient, data: bytes) -> None:
    # What put_blob does for small blobs: read all, then POST + PUT.
    stream = VerifyingReader(io.BytesIO(data), None)
    buffered = stream.read(len(data) + 1)
    stream.read(1)
    url = api.start_upload(client)
    api.put_blob_monolithic(client, url, buffered, stream.digest)


def streaming(client: RegistryClient, data: bytes) -> None:
    stream = VerifyingReader(io.BytesIO(data), None)
    url = api.start_upload(client)
    api.put_blob_streaming(client, url, stream, b"")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with (
        shm_tempdir("skiff-bench-") as tmp,
        RegistryFactory(tmp / "registries", CertificateAuthority()) as factory,
    ):
        registry = factory.start(Variant.PLAIN)
        client = RegistryClient(registry.context, registry.host, "bench/upload")
        client.ping()
        print(
            f"{'size':>10} {'monolithic ms':>14} {'streaming ms':>13} {'MB/s mono':>10} {'MB/s stream':>12}"
        )
        for size in SIZES:
            times: dict[str, list[float]] = {"mono": [], "stream": []}
            for _ in range(args.rounds):
                for name, upload in (("mono", monolithic), ("stream", streaming)):
                    data = os.urandom(size)
                    start = time.perf_counter()
                    upload(client, data)
                    times[name].append(time.perf_counter() - start)
                    assert api.blob_size(client, sha256_of(data)) == size
            mono = statistics.median(times["mono"])
            stream = statistics.median(times["stream"])
            print(
                f"{size:>10} {mono * 1000:>14.2f} {stream * 1000:>13.2f} "
                f"{size / mono / 1e6:>10.0f} {size / stream / 1e6:>12.0f}"
            )
        client.close()


if __name__ == "__main__":
    main()
