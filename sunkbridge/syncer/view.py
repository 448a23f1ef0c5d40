"""Side-by-side view of Kubernetes pools and Slurm partitions (pure; `sunk status` prints it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sunkbridge.cluster import NodePool
from sunkbridge.slurm.client import SlurmNode, SlurmPartition
from sunkbridge.syncer.decide import (
    K8sNode,
    choose_pool,
    k8s_cause,
    k8s_marking,
    marking_matches,
    owned,
    slurm_node_name,
)


@dataclass(frozen=True)
class NodeRow:
    """One node as both sides see it; `problem` says where they disagree."""

    pool: str
    k8s_node: str
    k8s_state: str
    partition: str
    slurm_node: str
    slurm_state: str
    reason: str
    problem: str


def _k8s_state(node: K8sNode) -> str:
    parts = ["Ready" if node.ready else ("NotReady" if node.ready is False else "Unknown")]
    if node.unschedulable:
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def compare(items: Sequence[Mapping[str, Any]], slurm: Mapping[str, SlurmNode],
            partitions: Mapping[str, SlurmPartition], pools: Sequence[NodePool]) -> list[NodeRow]:
    """Rows for every node of a pool (or in a pool's partition), flagging disagreements."""
    rows: list[NodeRow] = []
    seen: set[str] = set()
    for node in sorted((K8sNode.from_json(i) for i in items), key=lambda n: n.name):
        choice = choose_pool(node, pools)
        if choice.pool is None and not choice.problem:
            continue
        sname = slurm_node_name(node.name)
        seen.add(sname)
        snode = slurm.get(sname)
        pool = choice.pool
        part = pool.partition_name if pool else ""
        problem = choice.problem
        if pool and not problem:
            cause = k8s_cause(node, True)
            if snode is None:
                problem = "missing in Slurm"
            elif part not in partitions or sname not in partitions[part].nodes:
                problem = f"not in partition {part}"
            elif cause and not (snode.drained or snode.down):
                problem = f"Slurm schedules it: {cause.reason}"
            elif not cause and (snode.drained or snode.down) and owned(snode.reason):
                problem = "Slurm still holds a sunk: drain the cause of which is gone"
            elif not marking_matches(node, k8s_marking(snode)):
                problem = "Slurm drain not shown in Kubernetes"
        rows.append(NodeRow(pool.name if pool else "?", node.name, _k8s_state(node), part, sname if snode else "",
                            snode.display_state if snode else "", snode.reason if snode else "", problem))
    for pool in pools:
        members = partitions[pool.partition_name].nodes if pool.partition_name in partitions else ()
        for sname in members:
            if sname not in seen and sname in slurm:
                snode = slurm[sname]
                rows.append(NodeRow(pool.name, "", "", pool.partition_name, sname, snode.display_state,
                                    snode.reason, "" if not snode.dynamic else "no Kubernetes node"))
    return rows
