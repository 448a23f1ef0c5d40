"""Simulated GPU node pools: pure builders of KWOK-managed Node objects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

POOL_LABEL = "sunkbridge.io/pool"
RACK_LABEL = "sunkbridge.io/rack"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_RESOURCE = "nvidia.com/gpu"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"

_POOL_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")


@dataclass(frozen=True)
class PoolSpec:
    """A pool of identical simulated nodes named `<name>-0001`, `<name>-0002`, …"""

    name: str
    count: int
    gpus: int = 8
    gpu_product: str | None = None
    cpus: int = 96
    memory_gib: int = 1024
    nodes_per_rack: int = 8

    def __post_init__(self) -> None:
        if not _POOL_NAME.match(self.name):
            raise ValueError(
                f"pool name {self.name!r} is not usable in Kubernetes and Slurm node names: "
                "use 1-32 lowercase letters, digits and '-', starting with a letter")
        if self.count < 0 or self.gpus < 0 or self.cpus < 1 or self.memory_gib < 1:
            raise ValueError(f"pool {self.name!r}: count and gpus must be >= 0, cpus and memory >= 1")

    def node_name(self, index: int) -> str:
        """The name of the pool's node number `index` (counting from 1)."""
        return f"{self.name}-{index:04d}"


DEFAULT_PRODUCTS = {"h100": "NVIDIA-H100-80GB-HBM3", "a100": "NVIDIA-A100-SXM4-80GB"}


def default_pools(h100: int = 4, a100: int = 4, cpu: int = 2) -> list[PoolSpec]:
    """The sandbox's default pools: H100 and A100 nodes with 8 GPUs each, plus CPU-only nodes."""
    return [
        PoolSpec("h100", h100, gpus=8, gpu_product=DEFAULT_PRODUCTS["h100"]),
        PoolSpec("a100", a100, gpus=8, gpu_product=DEFAULT_PRODUCTS["a100"]),
        PoolSpec("cpu", cpu, gpus=0, cpus=64, memory_gib=256),
    ]


def parse_pools(text: str) -> list[PoolSpec]:
    """Read `h100=4,a100=4,cpu=2` (name=count; names h100/a100 get GPUs, others are CPU-only)."""
    pools: list[PoolSpec] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            raise ValueError(f"pool {item!r} is not NAME=COUNT (for example h100=4)")
        gpu_pool = name in DEFAULT_PRODUCTS or name.startswith("gpu")
        pools.append(PoolSpec(name, int(count), gpus=8 if gpu_pool else 0,
                              gpu_product=DEFAULT_PRODUCTS.get(name, "NVIDIA-H100-80GB-HBM3" if gpu_pool else None)))
    return pools


def node_manifest(pool: PoolSpec, index: int) -> dict[str, Any]:
    """The Node object for node number `index` of `pool`, managed by KWOK."""
    name = pool.node_name(index)
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        POOL_LABEL: pool.name,
        RACK_LABEL: f"{pool.name}-rack-{(index - 1) // pool.nodes_per_rack + 1:03d}",
    }
    resources = {"cpu": str(pool.cpus), "memory": f"{pool.memory_gib}Gi", "pods": "110",
                 "ephemeral-storage": "1Ti"}
    if pool.gpus:
        resources[GPU_RESOURCE] = str(pool.gpus)
        labels[GPU_COUNT_LABEL] = str(pool.gpus)
        if pool.gpu_product:
            labels[GPU_PRODUCT_LABEL] = pool.gpu_product
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake",
                         "kubeProxyVersion": "fake", "bootID": "", "containerRuntimeVersion": "",
                         "kernelVersion": "", "machineID": "", "osImage": "", "systemUUID": ""},
        },
    }


def pool_manifests(pool: PoolSpec) -> list[dict[str, Any]]:
    """Every Node object of `pool`."""
    return [node_manifest(pool, i) for i in range(1, pool.count + 1)]
