"""Typed models shared by the operator and the syncer: node pools and the Slurm partitions they feed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

PoolMode = Literal["slurmd", "podgroup"]

#: Label and annotation prefix of everything sunkbridge owns.
DOMAIN = "sunkbridge.io"
#: Drain reasons set by sunkbridge start with this; it never clears reasons that do not.
REASON_PREFIX = "sunk:"

_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")


@dataclass(frozen=True)
class NodePool:
    """A set of Kubernetes nodes (chosen by labels) that forms one Slurm partition.

    `selector` is a matchLabels-style map; `feature_labels` are node labels whose values become Slurm
    features; `topology_label` groups nodes into topology.conf switches (e.g. a rack or NVLink domain).
    """

    name: str
    selector: dict[str, str]
    mode: PoolMode = "podgroup"
    partition: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    gpu_product_label: str = "nvidia.com/gpu.product"
    feature_labels: tuple[str, ...] = ()
    topology_label: str | None = None
    default_image: str | None = None
    partition_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"pool name {self.name!r} must be 1-32 lowercase letters, digits or '-', starting with a letter")
        if not self.selector:
            raise ValueError(f"pool {self.name!r} needs a non-empty node selector (matchLabels)")

    @property
    def partition_name(self) -> str:
        """The Slurm partition of this pool (the pool's name unless set)."""
        return self.partition or self.name

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when a node with `labels` belongs to this pool."""
        return all(labels.get(key) == value for key, value in self.selector.items())
