"""`sunk status` rows: disagreements between Kubernetes and Slurm are flagged."""

from __future__ import annotations

from sunkbridge.cluster import NodePool
from sunkbridge.slurm.client import SlurmNode, SlurmPartition
from sunkbridge.syncer.view import compare

POOL = NodePool("h100", {"sunkbridge.io/pool": "h100"})


def _item(name: str, unschedulable: bool = False) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": {"sunkbridge.io/pool": "h100"}},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def test_rows_flag_disagreements() -> None:
    slurm = {"a": SlurmNode("a", "idle", frozenset({"CLOUD", "DYNAMIC_NORM"})),
             "b": SlurmNode("b", "idle", frozenset({"CLOUD", "DYNAMIC_NORM"})),
             "d": SlurmNode("d", "idle", frozenset({"DRAIN", "DYNAMIC_NORM"}), "bad DIMM")}
    parts = {"h100": SlurmPartition("h100", ("a", "b", "d"))}
    rows = {r.k8s_node or r.slurm_node: r for r in
            compare([_item("a"), _item("b", unschedulable=True), _item("c"), _item("d")], slurm, parts, [POOL])}
    assert rows["a"].problem == ""
    assert rows["b"].problem.startswith("Slurm schedules it: sunk: node cordoned")
    assert rows["c"].problem == "missing in Slurm"
    assert rows["d"].problem == "Slurm drain not shown in Kubernetes" and rows["d"].slurm_state == "drain"
