"""The syncer on real lanes: pools to partitions, K8s causes to Slurm drains, Slurm drains to K8s, ownership."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest
from kubernetes import client
from synclane import pool, wait_for

from sunkbridge.k8s.pools import KWOK_ANNOTATION, POOL_LABEL, PoolSpec, node_manifest
from sunkbridge.lanes.k8s import KubeLane
from sunkbridge.lanes.slurm import SlurmLane
from sunkbridge.slurm.client import CliSlurmClient, SlurmNode
from sunkbridge.syncer.decide import CONDITION_TYPE, REASON_ANNOTATION, STATE_ANNOTATION, TAINT_KEY
from sunkbridge.syncer.loop import Syncer

pytestmark = [pytest.mark.k8s, pytest.mark.slurm]


def _node(slurm: CliSlurmClient, name: str) -> SlurmNode | None:
    return slurm.nodes().get(name)


def _members(slurm: CliSlurmClient, partition: str) -> set[str]:
    part = slurm.partitions().get(partition)
    return set(part.nodes) if part else set()


def _cordon(core: client.CoreV1Api, name: str, on: bool = True) -> None:
    core.patch_node(name, {"spec": {"unschedulable": on or None}})


def _k8s(core: client.CoreV1Api, name: str) -> dict[str, object]:
    return dict(core.api_client.sanitize_for_serialization(core.read_node(name)))


def _marked(core: client.CoreV1Api, name: str) -> bool:
    node = core.read_node(name)
    taints = [t.key for t in node.spec.taints or []]
    conds = [c.type for c in node.status.conditions or [] if c.status == "True"]
    return TAINT_KEY in taints and CONDITION_TYPE in conds and STATE_ANNOTATION in (node.metadata.annotations or {})


def _unmarked(core: client.CoreV1Api, name: str) -> bool:
    node = core.read_node(name)
    return TAINT_KEY not in [t.key for t in node.spec.taints or []] and \
        CONDITION_TYPE not in [c.type for c in node.status.conditions or []] and \
        STATE_ANNOTATION not in (node.metadata.annotations or {})


def _events(core: client.CoreV1Api, node: str) -> list[str]:
    return [f"{e.reason}: {e.message}" for e in core.list_namespaced_event("default").items
            if e.involved_object.name == node and e.source.component == "sunkbridge-syncer"]


def test_pool_nodes_join_their_partition_with_shape_and_topology(
        kube: KubeLane, slurm: CliSlurmClient, run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("sa", 3, gpus=8, gpu_product="NVIDIA-H100-80GB-HBM3", cpus=96, memory_gib=1024,
                             nodes_per_rack=2)])
    syncer = run_syncer([pool("sa")])
    wait_for(lambda: _members(slurm, "sa") == {"sa-0001", "sa-0002", "sa-0003"}, what="partition sa")
    node = _node(slurm, "sa-0001")
    assert node is not None
    assert (node.cpus, node.memory_mb, node.gres) == (96, 1024 * 1024, "gpu:h100:8")
    assert node.features == ("sunkpool_sa", "h100", "sa_rack_001")
    topology = syncer.config.topology_path
    assert topology is not None
    wait_for(lambda: "SwitchName=sa_rack_002 Nodes=sa-0003" in topology.read_text(), what="topology.conf")
    assert "SwitchName=sa_rack_001 Nodes=sa-[0001-0002]" in topology.read_text()


def test_cordon_drains_with_sunk_reason_and_uncordon_resumes(
        kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient, run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("sb", 2, gpu_product="NVIDIA-A100-SXM4-80GB")])
    run_syncer([pool("sb")])
    wait_for(lambda: _members(slurm, "sb") == {"sb-0001", "sb-0002"}, what="partition sb")
    _cordon(core, "sb-0001")
    drained = wait_for(lambda: (n := _node(slurm, "sb-0001")) and n.drained and n, what="drain of sb-0001")
    assert isinstance(drained, SlurmNode) and drained.reason == "sunk: node cordoned in Kubernetes"
    assert not _node(slurm, "sb-0002").drained  # type: ignore[union-attr]
    _cordon(core, "sb-0001", on=False)
    wait_for(lambda: not _node(slurm, "sb-0001").drained, what="resume of sb-0001")  # type: ignore[union-attr]
    # a Slurm-side drain the syncer set itself never shows up as a taint in Kubernetes
    assert _unmarked(core, "sb-0001")


def test_gpu_condition_and_notready_and_deletion(
        kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient, run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("sc", 3, gpu_product="NVIDIA-H100-80GB-HBM3")])
    # sc-0004 is not managed by KWOK, so its Ready condition is whatever this test writes
    manual = node_manifest(PoolSpec("sc", 4, gpu_product="NVIDIA-H100-80GB-HBM3"), 4)
    del manual["metadata"]["annotations"][KWOK_ANNOTATION]
    core.create_node(manual)
    run_syncer([pool("sc")])
    wait_for(lambda: len(_members(slurm, "sc")) == 4, what="partition sc")
    core.patch_node_status("sc-0001", {"status": {"conditions": [
        {"type": "GPUProblem", "status": "True", "reason": "XidError79", "message": "GPU fell off the bus"}]}})
    n1 = wait_for(lambda: (n := _node(slurm, "sc-0001")) and n.drained and n, what="GPU drain")
    assert isinstance(n1, SlurmNode) and n1.reason == "sunk: condition GPUProblem=True: XidError79"
    core.patch_node_status("sc-0004", {"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "PLEG is not healthy"}]}})
    n4 = wait_for(lambda: (n := _node(slurm, "sc-0004")) and n.down and n, what="NotReady down")
    assert isinstance(n4, SlurmNode) and n4.reason == "sunk: node NotReady in Kubernetes (KubeletNotReady)"
    core.patch_node_status("sc-0001", {"status": {"conditions": [{"type": "GPUProblem", "status": "False"}]}})
    wait_for(lambda: not _node(slurm, "sc-0001").drained, what="resume after GPU fix")  # type: ignore[union-attr]
    # deletion: DOWN, then out of the partition and out of Slurm
    core.delete_node("sc-0002")
    wait_for(lambda: "sc-0002" not in _members(slurm, "sc") and _node(slurm, "sc-0002") is None,
             what="sc-0002 removed from Slurm")
    assert {"sc-0001", "sc-0003", "sc-0004"} == _members(slurm, "sc")


def test_admin_drain_is_never_cleared_and_shows_in_kubernetes(
        kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient, run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("sd", 2, gpu_product="NVIDIA-H100-80GB-HBM3")])
    run_syncer([pool("sd")])
    wait_for(lambda: _members(slurm, "sd") == {"sd-0001", "sd-0002"}, what="partition sd")
    slurm.drain(["sd-0001"], "bad DIMM, ticket 42")
    wait_for(lambda: _marked(core, "sd-0001"), what="Kubernetes marking of the admin drain")
    node = core.read_node("sd-0001")
    assert node.metadata.annotations[REASON_ANNOTATION] == "bad DIMM, ticket 42"
    assert [t.effect for t in node.spec.taints if t.key == TAINT_KEY] == ["NoSchedule"]
    # a cordon cycle neither replaces nor clears the admin's drain
    _cordon(core, "sd-0001")
    _cordon(core, "sd-0002")
    wait_for(lambda: _node(slurm, "sd-0002").drained, what="drain sd-0002")  # type: ignore[union-attr]
    _cordon(core, "sd-0001", on=False)
    _cordon(core, "sd-0002", on=False)
    wait_for(lambda: not _node(slurm, "sd-0002").drained, what="resume sd-0002")  # type: ignore[union-attr]
    admin = _node(slurm, "sd-0001")
    assert admin is not None and admin.drained and admin.reason == "bad DIMM, ticket 42"
    slurm.resume(["sd-0001"])
    wait_for(lambda: _unmarked(core, "sd-0001"), what="marking removed after resume")


def test_sunk_reason_removed_by_hand_is_put_back(
        kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient, run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("se", 1, gpu_product="NVIDIA-H100-80GB-HBM3")])
    run_syncer([pool("se")])
    wait_for(lambda: _members(slurm, "se") == {"se-0001"}, what="partition se")
    _cordon(core, "se-0001")
    wait_for(lambda: _node(slurm, "se-0001").drained, what="drain")  # type: ignore[union-attr]
    slurm.resume(["se-0001"])
    again = wait_for(lambda: (n := _node(slurm, "se-0001")) and n.drained and n, what="drain put back")
    assert isinstance(again, SlurmNode) and again.reason == "sunk: node cordoned in Kubernetes"
    assert _unmarked(core, "se-0001")


def test_node_leaving_its_pool_is_drained_then_removed(
        kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient, run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("sf", 2, gpu_product="NVIDIA-H100-80GB-HBM3")])
    run_syncer([pool("sf"), pool("sg")])
    wait_for(lambda: _members(slurm, "sf") == {"sf-0001", "sf-0002"}, what="partition sf")
    core.patch_node("sf-0002", {"metadata": {"labels": {POOL_LABEL: "sg"}}})
    wait_for(lambda: _members(slurm, "sf") == {"sf-0001"} and _members(slurm, "sg") == {"sf-0002"},
             what="sf-0002 moved to sg")
    core.patch_node("sf-0002", {"metadata": {"labels": {POOL_LABEL: "none"}}})
    wait_for(lambda: _node(slurm, "sf-0002") is None and not _members(slurm, "sg"), what="sf-0002 removed")


def test_bad_input_is_reported_and_the_pool_keeps_working(
        kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient, slurm_lane: SlurmLane,
        run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("sh", 3, gpu_product="NVIDIA-H100-80GB-HBM3")])
    core.patch_node("sh-0002", {"metadata": {"labels": {"nvidia.com/gpu.product": "Broken-Label"}}})
    core.patch_node("sh-0003", {"metadata": {"labels": {"team": "x"}}})
    other = pool("si")
    claimer = type(other)("sj", {"team": "x"})
    syncer = run_syncer([pool("sh"), claimer, pool("nomatch")])
    wait_for(lambda: _members(slurm, "sh") == {"sh-0001", "sh-0002"}, what="partition sh")
    assert _node(slurm, "sh-0002").gres == "gpu:8"  # type: ignore[union-attr]
    assert _node(slurm, "sh-0003") is None
    wait_for(lambda: any("names no GPU model" in e for e in _events(core, "sh-0002")), what="GPU label event")
    wait_for(lambda: any("claimed by pools sh, sj" in e for e in _events(core, "sh-0003")), what="conflict event")
    slurm.drain(["odd_001"], "admin: cabling")
    try:
        def status() -> dict[str, object]:
            cm = core.read_namespaced_config_map("sunkbridge-syncer", "default")
            return dict(json.loads(cm.data["status.json"]))
        wait_for(lambda: any("odd_001" in w for w in status()["warnings"]),  # type: ignore[attr-defined]
                 what="status warning for odd_001")
        warnings = status()["warnings"]
        assert any("pool nomatch: selector" in w and "matches no Kubernetes node" in w
                   for w in warnings)  # type: ignore[attr-defined]
        assert any("not a valid Kubernetes node name" in w for w in warnings)  # type: ignore[attr-defined]
        assert syncer.status().pools["sh"]["slurm_nodes"] == 2
    finally:
        slurm.resume(["odd_001"])


def test_syncer_killed_midway_and_restarted_converges(
        kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient, slurm_lane: SlurmLane) -> None:
    kube.add_pools([PoolSpec("sk", 6, gpu_product="NVIDIA-H100-80GB-HBM3")])
    argv = [sys.executable, "-m", "sunkbridge.syncer", f"--kubeconfig={kube.kubeconfig}",
            f"--slurm-conf={slurm_lane.paths.slurm_conf}", "--pools=sk", "--poll=0.3",
            f"--restd-url={slurm_lane.restd_url}", "--node-addr=127.0.0.1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(_members(slurm, "sk")) == 6, what="partition sk")
        for name in ("sk-0001", "sk-0002"):
            _cordon(core, name)
        wait_for(lambda: _node(slurm, "sk-0001").drained, what="first drain")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # while it is gone: more cordons, an uncordon, an admin drain, a new node
        _cordon(core, "sk-0003")
        _cordon(core, "sk-0001", on=False)
        slurm.drain(["sk-0004"], "admin hold")
        kube.add_pools([PoolSpec("sk", 7, gpu_product="NVIDIA-H100-80GB-HBM3")])
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)

        def converged() -> bool:
            nodes = slurm.nodes()
            return (not nodes["sk-0001"].drained and nodes["sk-0002"].drained and nodes["sk-0003"].drained
                    and nodes["sk-0004"].reason == "admin hold" and "sk-0007" in _members(slurm, "sk")
                    and _marked(core, "sk-0004"))
        wait_for(converged, timeout=40, what="convergence after restart")
    finally:
        proc.kill()
        proc.wait()


def test_slurmctld_restart_and_reconfigure_lose_nothing(
        kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient, slurm_lane: SlurmLane,
        run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("sl", 3, gpu_product="NVIDIA-H100-80GB-HBM3")])
    run_syncer([pool("sl")])
    wait_for(lambda: _members(slurm, "sl") == {"sl-0001", "sl-0002", "sl-0003"}, what="partition sl")
    # reconfigure drops partitions created at run time; the syncer puts them back
    slurm_lane.run("scontrol", "reconfigure")
    wait_for(lambda: _members(slurm, "sl") == {"sl-0001", "sl-0002", "sl-0003"}, what="partition sl again")
    pid = int(slurm_lane.paths.slurmctld_pid.read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not slurm.ping(), what="slurmctld gone")
    _cordon(core, "sl-0002")
    slurm_lane.restart_slurmctld()
    drained = wait_for(lambda: (n := _node(slurm, "sl-0002")) and n.drained and n, timeout=40,
                       what="drain after slurmctld restart")
    assert isinstance(drained, SlurmNode) and drained.reason.startswith("sunk:")
    wait_for(lambda: _members(slurm, "sl") == {"sl-0001", "sl-0002", "sl-0003"}, what="partition after restart")


def test_apiserver_restart_loses_nothing(kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient,
                                        run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("ar", 2, gpu_product="NVIDIA-H100-80GB-HBM3")])
    run_syncer([pool("ar")])
    wait_for(lambda: _members(slurm, "ar") == {"ar-0001", "ar-0002"}, what="partition ar")
    kube.restart_apiserver()
    _cordon(core, "ar-0001")
    drained = wait_for(lambda: (n := _node(slurm, "ar-0001")) and n.drained and n, timeout=60,
                       what="drain after the apiserver restart")
    assert isinstance(drained, SlurmNode) and drained.reason.startswith("sunk:")
    _cordon(core, "ar-0001", on=False)
    wait_for(lambda: (n := _node(slurm, "ar-0001")) is not None and not n.drained, timeout=60,
             what="resume after the apiserver restart")


def test_thousand_node_pool(kube: KubeLane, core: client.CoreV1Api, slurm: CliSlurmClient,
                            run_syncer: Callable[..., Syncer]) -> None:
    kube.add_pools([PoolSpec("big", 1000, gpu_product="NVIDIA-H100-80GB-HBM3")])
    run_syncer([pool("big")])
    wait_for(lambda: len(_members(slurm, "big")) == 1000, timeout=90, what="1000 nodes in partition big")
    for name in ("big-0001", "big-0500", "big-1000"):
        _cordon(core, name)
    wait_for(lambda: sum(n.drained for n in slurm.nodes().values() if n.name.startswith("big-")) == 3,
             what="3 drains among 1000")
    for name in ("big-0001", "big-0500", "big-1000"):
        _cordon(core, name, on=False)
    wait_for(lambda: not any(n.drained for n in slurm.nodes().values() if n.name.startswith("big-")),
             what="resumes")
