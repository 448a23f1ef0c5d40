"""Pure decisions of the syncer: node shape, causes, reason ownership, Slurm -> Kubernetes marking."""

from __future__ import annotations

from typing import Any

import pytest

from sunkbridge.cluster import NodePool
from sunkbridge.slurm.client import SlurmNode
from sunkbridge.syncer.decide import (
    CONDITION_TYPE,
    REASON_ANNOTATION,
    STATE_ANNOTATION,
    TAINT_KEY,
    Cause,
    K8sNode,
    choose_pool,
    cpu_count,
    desired_node,
    gpu_type,
    k8s_cause,
    k8s_marking,
    marking_matches,
    memory_mb,
    node_pool_of,
    render_topology,
    slurm_action,
    slurm_node_name,
    valid_k8s_node_name,
)

H100 = NodePool("h100", {"sunkbridge.io/pool": "h100"}, feature_labels=("sunkbridge.io/rack",),
                topology_label="sunkbridge.io/rack")


def node(name: str = "h100-0001", *, labels: dict[str, str] | None = None, gpus: str = "8",
         product: str | None = "NVIDIA-H100-80GB-HBM3", ready: str = "True", unschedulable: bool = False,
         conditions: dict[str, str] | None = None, deleting: bool = False) -> K8sNode:
    lab = {"sunkbridge.io/pool": "h100", "sunkbridge.io/rack": "h100-rack-001", **(labels or {})}
    if product is not None:
        lab["nvidia.com/gpu.product"] = product
    conds: list[dict[str, Any]] = [{"type": "Ready", "status": ready, "reason": "KubeletReady"}]
    conds += [{"type": t, "status": s, "reason": "Check"} for t, s in (conditions or {}).items()]
    meta: dict[str, Any] = {"name": name, "uid": "u1", "labels": lab}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return K8sNode.from_json({
        "metadata": meta, "spec": {"unschedulable": unschedulable},
        "status": {"conditions": conds, "allocatable": {"cpu": "96", "memory": "1024Gi", "nvidia.com/gpu": gpus}},
    })


def snode(state: str = "idle", flags: tuple[str, ...] = ("CLOUD",), reason: str = "") -> SlurmNode:
    return SlurmNode("h100-0001", state, frozenset(flags), reason, "root" if reason else "")


@pytest.mark.parametrize(("product", "kind"), [
    ("NVIDIA-H100-80GB-HBM3", "h100"), ("NVIDIA-A100-SXM4-80GB", "a100"), ("Tesla-V100-SXM2-16GB", "v100"),
    ("NVIDIA-L40S", "l40s"), ("NVIDIA-GH200-480GB", "gh200"), ("Tesla-T4", "t4"), ("NVIDIA-B200", "b200"),
    ("NVIDIA-A10G", "a10g"), ("NVIDIA-RTX-A6000", "a6000"), ("NVIDIA H100 80GB HBM3", "h100"),
])
def test_gpu_type_from_product_label(product: str, kind: str) -> None:
    assert gpu_type(product) == kind


@pytest.mark.parametrize("product", ["", "NVIDIA", "???", "80GB-HBM3", "NVIDIA-SXM4"])
def test_malformed_gpu_label_is_rejected_with_the_value(product: str) -> None:
    with pytest.raises(ValueError, match="names no GPU model"):
        gpu_type(product)


def test_quantities() -> None:
    assert cpu_count("96") == 96 and cpu_count("95500m") == 95 and cpu_count("100m") == 1
    assert memory_mb("1024Gi") == 1024 * 1024 and memory_mb("16G") == 15258 and memory_mb("1048576Ki") == 1024
    with pytest.raises(ValueError):
        memory_mb("lots")


def test_names() -> None:
    assert slurm_node_name("h100-0001") == "h100-0001"
    assert slurm_node_name("ip-10-0-0-1.ec2.internal") == "ip-10-0-0-1-ec2-internal"
    long = "n" * 80
    assert len(slurm_node_name(long)) <= 63 and slurm_node_name(long) != slurm_node_name(long + "x")
    assert valid_k8s_node_name("gpu-001") and not valid_k8s_node_name("gpu_001")
    assert not valid_k8s_node_name("GPU-001")


def test_desired_node_shape() -> None:
    want = desired_node(node(), H100)
    assert (want.slurm_name, want.partition, want.cpus, want.memory_mb, want.gres) == \
        ("h100-0001", "h100", 96, 1024 * 1024, "gpu:h100:8")
    assert want.features == ("sunkpool_h100", "h100", "h100_rack_001") and want.switch == "h100_rack_001"
    assert not want.problems
    new = want.new_node()
    assert node_pool_of(SlurmNode(new.name, "idle", features=new.features)) == "h100"


def test_malformed_gpu_label_joins_untyped_with_a_problem() -> None:
    want = desired_node(node(product="garbage!!"), H100)
    assert want.gres == "gpu:8" and "names no GPU model" in want.problems[0]
    missing = desired_node(node(product=None), H100)
    assert missing.gres == "gpu:8" and "missing" in missing.problems[0]
    assert desired_node(node(gpus="0"), H100).gres == ""


def test_choose_pool_conflict_and_nothing() -> None:
    other = NodePool("fast", {"sunkbridge.io/rack": "h100-rack-001"})
    choice = choose_pool(node(), [H100, other])
    assert choice.pool is None and "claimed by pools h100, fast" in choice.problem
    assert choose_pool(node(), [H100]).pool == H100
    assert choose_pool(node(labels={"sunkbridge.io/pool": "x"}), [H100]).pool is None


def test_causes_most_severe_first() -> None:
    assert k8s_cause(node(), True) is None
    assert k8s_cause(node(unschedulable=True), True) == Cause("drain", "sunk: node cordoned in Kubernetes")
    gpu = k8s_cause(node(unschedulable=True, conditions={"GPUProblem": "True"}), True)
    assert gpu is not None and gpu.state == "drain" and gpu.reason.startswith("sunk: condition GPUProblem=True")
    assert k8s_cause(node(conditions={"GPUProblem": "False"}), True) is None
    down = k8s_cause(node(ready="False", unschedulable=True), True)
    assert down is not None and down.state == "down" and "NotReady" in down.reason
    assert k8s_cause(None, True) == Cause("down", "sunk: node deleted from Kubernetes")
    assert k8s_cause(node(deleting=True), True) == Cause("down", "sunk: node deleted from Kubernetes")
    assert k8s_cause(node(), False, left_pool="h100") == Cause("drain", "sunk: node left pool h100")
    assert k8s_cause(node(ready="Unknown"), True) is None


def test_reason_ownership() -> None:
    cordon = Cause("drain", "sunk: node cordoned in Kubernetes")
    assert slurm_action(snode(), cordon).action == "drain"
    assert slurm_action(snode(flags=("DRAIN",), reason=cordon.reason), cordon).action == "none"
    # cause gone: resume only our own drain
    assert slurm_action(snode(flags=("DRAIN",), reason=cordon.reason), None).action == "resume"
    admin = snode(flags=("DRAIN",), reason="bad DIMM, ticket 42")
    assert slurm_action(admin, None).action == "none"
    kept = slurm_action(admin, cordon)
    assert kept.action == "none" and "admin reason" in kept.note and "cordoned" in kept.note
    assert slurm_action(snode(state="down", reason="admin says down"), None).action == "none"
    # our reason removed by hand (node resumed) while the cause stays -> put back
    assert slurm_action(snode(), cordon).action == "drain"
    # cause changed: drain -> down
    gone = Cause("down", "sunk: node deleted from Kubernetes")
    assert slurm_action(snode(flags=("DRAIN",), reason=cordon.reason), gone) == \
        slurm_action(snode(), gone)
    assert slurm_action(snode(state="down", reason=gone.reason), gone).action == "none"


def test_marking_only_for_others_reasons() -> None:
    assert k8s_marking(snode()) is None
    assert k8s_marking(snode(flags=("DRAIN",), reason="sunk: node cordoned in Kubernetes")) is None
    mark = k8s_marking(snode(flags=("DRAIN",), reason="bad DIMM"))
    assert mark is not None and mark.state == "drain" and mark.reason == "bad DIMM"
    assert mark.annotations == {STATE_ANNOTATION: "DRAIN", REASON_ANNOTATION: "bad DIMM"}
    assert mark.taint == {"key": TAINT_KEY, "value": "drain", "effect": "NoSchedule"}
    down = k8s_marking(snode(state="down", reason="power"))
    assert down is not None and down.state == "down"
    shown = K8sNode.from_json({
        "metadata": {"name": "n", "annotations": mark.annotations},
        "spec": {"taints": [mark.taint]},
        "status": {"conditions": [{"type": CONDITION_TYPE, "status": "True", "reason": "root"}]}})
    assert marking_matches(shown, mark) and not marking_matches(shown, None)
    assert marking_matches(node(), None) and not marking_matches(node(), mark)


def test_topology() -> None:
    text = render_topology({"rack_1": ["n-0002", "n-0001"], "rack_2": ["n-0003"], "empty": []})
    assert text == ("SwitchName=rack_1 Nodes=n-[0001-0002]\nSwitchName=rack_2 Nodes=n-0003\n"
                    "SwitchName=root Switches=rack_1,rack_2\n")
    assert render_topology({}) == ""
