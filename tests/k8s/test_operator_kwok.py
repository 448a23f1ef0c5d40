"""The operator against a real control plane with KWOK nodes: pools become slurmd pods and configuration.

KWOK pods cannot run commands, so Slurm itself is not reachable here; what is checked is everything the
operator derives from Kubernetes: membership, pods, rendered files, objects, status and its conditions.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sunkbridge.k8s.pools import PoolSpec
from sunkbridge.lanes.k8s import KubeLane
from sunkbridge.operator.kube import Kube
from sunkbridge.operator.reconcile import reconcile, write_status
from sunkbridge.operator.spec import GROUP, PLURAL, VERSION
from sunkbridge.operator.tools import kubectl

pytestmark = pytest.mark.k8s

BASE = Path(__file__).resolve().parents[2] / "manifests" / "base"
CRDS = BASE / "crds"
NS = "default"


@pytest.fixture(scope="module")
def kube(kube_lane: KubeLane, kube_client: client.ApiClient) -> Kube:
    subprocess.run([str(kubectl()), "--kubeconfig", str(kube_lane.kubeconfig), "apply", "--server-side",
                    "-f", str(CRDS)], check=True, capture_output=True)
    time.sleep(1)
    return Kube(kube_client)


def _cluster(name: str, pools: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SlurmCluster", "metadata": {"name": name, "namespace": NS},
            "spec": {"controller": {"persistence": {"enabled": False}}, "pools": pools, **spec}}


@pytest.fixture
def make_cluster(kube: Kube) -> Iterator[Any]:
    made: list[str] = []

    def create(body: dict[str, Any]) -> dict[str, Any]:
        made.append(body["metadata"]["name"])
        return dict(kube.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body))

    yield create
    for name in made:
        kube.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        for pod in kube.get_json(f"/api/v1/namespaces/{NS}/pods",
                                 {"labelSelector": f"sunkbridge.io/cluster={name}"})["items"]:
            kube.delete(f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}")


def _settle(kube: Kube, name: str, passes: int = 25) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for _ in range(passes):
        body = kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        result = reconcile(kube, body)
        write_status(kube, NS, name, result.status)
        status = result.status
        if status.get("pools") and all(p["ready"] == "True" for p in status["pools"]) and result.requeue >= 5:
            break
        time.sleep(1)
    return status


def _conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions", [])}


def test_pool_nodes_become_slurmd_pods_and_slurm_conf(kube: Kube, make_cluster: Any) -> None:
    make_cluster(_cluster("gpu", [
        {"name": "h100", "default": True, "nodeSelector": {"sunkbridge.io/pool": "h100"},
         "featureLabels": ["nvidia.com/gpu.product"], "topologyLabel": "sunkbridge.io/rack",
         "partitionOptions": {"MaxTime": "4:00:00"}},
        {"name": "cpu", "mode": "podgroup", "nodeSelector": {"sunkbridge.io/pool": "cpu"}}]))
    status = _settle(kube, "gpu")
    pods = kube.get_json(f"/api/v1/namespaces/{NS}/pods", {"labelSelector": "sunkbridge.io/cluster=gpu"})["items"]
    slurmd = sorted(p["metadata"]["name"] for p in pods
                    if p["metadata"]["labels"]["sunkbridge.io/component"] == "slurmd")
    assert slurmd == ["gpu-slurmd-cpu-0001", "gpu-slurmd-h100-0001", "gpu-slurmd-h100-0002"]
    pod = next(p for p in pods if p["metadata"]["name"] == "gpu-slurmd-h100-0001")
    assert pod["spec"]["nodeName"] == "h100-0001" and pod["spec"]["hostname"] == "h100-0001"
    assert pod["spec"]["subdomain"] == "gpu-slurmd"
    conf = kube.get_json(f"/api/v1/namespaces/{NS}/configmaps/gpu-slurm-conf")["data"]
    assert "Gres=gpu:h100:8" in conf["slurm.conf"] and "NodeName=h100-[0001-0002] NodeAddr=" in conf["slurm.conf"]
    assert "PartitionName=h100 Nodes=h100-[0001-0002] Default=YES MaxTime=4:00:00 State=UP" in conf["slurm.conf"]
    assert "Type=h100 File=/dev/nvidia[0-7]" in conf["gres.conf"]
    assert "SwitchName=h100-rack-001 Nodes=h100-[0001-0002]" in conf["topology.conf"]
    assert '["cpu"] = true' in conf["job_submit.lua"]
    conds = _conds(status)
    assert conds["ConfigRendered"]["status"] == "True"
    assert conds["PoolH100Ready"]["status"] == "True" and conds["PoolCpuReady"]["status"] == "True"
    assert conds["ControllerReady"]["status"] == "False"  # KWOK pods do not run slurmctld
    for kind, name in (("statefulsets", "gpu-slurmctld"), ("deployments", "gpu-login")):
        assert kube.get_or_none(f"/apis/apps/v1/namespaces/{NS}/{kind}/{name}") is not None
    assert kube.get_or_none(f"/api/v1/namespaces/{NS}/secrets/gpu-munge") is not None
    assert kube.get_or_none(f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/gpu-busy") is not None


@pytest.fixture(scope="module")
def operator_identity(kube_lane: KubeLane, kube_client: client.ApiClient) -> Kube:
    """The operator as its packaged ServiceAccount sees the API: the manifests' RBAC, a real token."""
    for part in ("operator/namespace.yaml", "rbac/service_account.yaml", "rbac/role.yaml", "rbac/role_binding.yaml",
                 "rbac/bridge_roles.yaml"):
        subprocess.run([str(kubectl()), "--kubeconfig", str(kube_lane.kubeconfig), "apply", "-f", str(BASE / part)],
                       check=True, capture_output=True)
    token = client.CoreV1Api(kube_client).create_namespaced_service_account_token(
        "sunkbridge-operator", "sunkbridge-system", {"spec": {"expirationSeconds": 3600}}).status.token
    cfg = client.Configuration()
    cfg.host, cfg.ssl_ca_cert = kube_client.configuration.host, kube_client.configuration.ssl_ca_cert
    cfg.api_key, cfg.api_key_prefix = {"authorization": token}, {"authorization": "Bearer"}
    return Kube(client.ApiClient(cfg))


def _can(kube_lane: KubeLane, account: str, *request: str) -> bool:
    proc = subprocess.run([str(kubectl()), "--kubeconfig", str(kube_lane.kubeconfig), "auth", "can-i",
                           f"--as=system:serviceaccount:{NS}:{account}", *request], capture_output=True, text=True)
    return proc.stdout.strip() == "yes"


def test_podgroup_pool_gets_the_job_bridge_under_the_operators_own_rbac(
        kube_lane: KubeLane, kube: Kube, operator_identity: Kube, make_cluster: Any) -> None:
    make_cluster(_cluster("pg", [{"name": "cpu", "mode": "podgroup", "image": "local/job:1",
                                  "nodeSelector": {"sunkbridge.io/pool": "cpu"}}]))
    for _ in range(3):  # every write of these passes is made with the operator's own token
        body = operator_identity.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "pg")
        result = reconcile(operator_identity, body)
        write_status(operator_identity, NS, "pg", result.status)
    assert result.status.get("bridge") is True
    assert _conds(result.status)["BridgeReady"]["status"] == "False"  # KWOK pods report no readiness
    deployment = kube.get_json(f"/apis/apps/v1/namespaces/{NS}/deployments/pg-jobs")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "pg-jobs"
    slurmd = kube.get_json(f"/api/v1/namespaces/{NS}/pods/pg-slurmd-cpu-0001")["spec"]
    assert slurmd["serviceAccountName"] == "pg-launcher"
    conf = kube.get_json(f"/api/v1/namespaces/{NS}/configmaps/pg-slurm-conf")["data"]["job_submit.lua"]
    assert "--partition-image cpu=local/job:1 --" in conf

    assert _can(kube_lane, "pg-launcher", "create", "slurmjobs.sunkbridge.io")
    assert _can(kube_lane, "pg-launcher", "get", "pods", "--subresource=log")
    assert not _can(kube_lane, "pg-launcher", "create", "pods")
    assert not _can(kube_lane, "pg-launcher", "get", "secrets")
    assert _can(kube_lane, "pg-jobs", "create", "pods")
    assert _can(kube_lane, "pg-jobs", "patch", "slurmjobs.sunkbridge.io", "--subresource=status")
    assert _can(kube_lane, "pg-jobs", "list", "nodes")
    assert not _can(kube_lane, "pg-jobs", "delete", "nodes")
    assert not _can(kube_lane, "pg-jobs", "create", "pods", "-n", "kube-system")
    assert not _can(kube_lane, "pg-jobs", "create", "slurmjobs.sunkbridge.io")

    uid = body["metadata"]["uid"]
    binding = f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/sunkbridge-jobs-nodes-{uid}"
    assert kube.get_or_none(binding) is not None

    # A second podgroup cluster in the namespace would share its SlurmJobs: refused, named in status.
    make_cluster(_cluster("pg-two", [{"name": "cpu", "mode": "podgroup",
                                      "nodeSelector": {"sunkbridge.io/pool": "cpu"}}]))
    second = reconcile(operator_identity, kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL,
                                                                                   "pg-two"))
    assert _conds(second.status)["Ready"]["reason"] == "BridgeConflict"
    assert "'pg' already runs the job bridge" in _conds(second.status)["Ready"]["message"]
    assert kube.get_or_none(f"/api/v1/namespaces/{NS}/serviceaccounts/pg-two-launcher") is None

    # Back to slurmd (with a shared volume job pods could not mount): the bridge stays while its agents and
    # SlurmJobs exist, then goes, and the status says so.
    kube.merge_patch(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/pg", {"spec": {
        "sharedVolumes": [{"name": "scratch", "mountPath": "/scratch", "source": {"emptyDir": {}}}],
        "pools": [{"name": "cpu", "mode": "slurmd", "nodeSelector": {"sunkbridge.io/pool": "cpu"}}]}})
    job = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SlurmJob",
           "metadata": {"name": "pg-7", "namespace": NS, "labels": {f"{GROUP}/cluster": "pg"}},
           "spec": {"cluster": "pg", "jobId": 7, "image": "local/job:1", "script": "true",
                    "user": {"name": "root", "uid": 0, "gid": 0}, "workingDir": "/",
                    "nodes": [{"name": "cpu-0001", "kubernetesNode": "cpu-0001", "cpus": 1}]}}
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "slurmjobs", job)
    try:
        for _ in range(3):
            body = operator_identity.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "pg")
            result = reconcile(operator_identity, body)
            write_status(operator_identity, NS, "pg", result.status)
        assert _conds(result.status)["BridgeReady"]["reason"] == "Retiring"
        assert kube.get_or_none(binding) is not None
    finally:
        kube.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "slurmjobs", "pg-7")
    for pod in kube.get_json(f"/api/v1/namespaces/{NS}/pods", {"labelSelector": "sunkbridge.io/cluster=pg"})["items"]:
        # KWOK runs no Slurm to drain them for the roll: delete the agents at once instead.
        kube.core.delete_namespaced_pod(pod["metadata"]["name"], NS, grace_period_seconds=0)
    for _ in range(30):  # until KWOK has finished the deleted agents and their slurmd-mode pods replace them
        body = operator_identity.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "pg")
        result = reconcile(operator_identity, body)
        write_status(operator_identity, NS, "pg", result.status)
        if result.status["bridge"] is False:
            break
        time.sleep(0.5)
    assert result.status["bridge"] is False, _conds(result.status).get("BridgeReady")
    assert kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "pg")["status"]["bridge"] is False
    assert kube.get_or_none(f"/apis/apps/v1/namespaces/{NS}/deployments/pg-jobs") is None
    assert kube.get_or_none(binding) is None
    assert not _can(kube_lane, "pg-jobs", "list", "nodes")


def test_kubectl_get_shows_ready_and_counts(kube_lane: KubeLane, kube: Kube, make_cluster: Any) -> None:
    make_cluster(_cluster("cols", [{"name": "a100", "nodeSelector": {"sunkbridge.io/pool": "a100"}}]))
    write_status(kube, NS, "cols", {"nodes": 2, "idle": 1, "allocated": 1, "drained": 0,
                                    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]})
    shown = subprocess.run([str(kubectl()), "--kubeconfig", str(kube_lane.kubeconfig), "get", "slurmclusters",
                            "cols"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert shown[0].split() == ["NAME", "READY", "NODES", "IDLE", "ALLOC", "DRAINED", "AGE"]
    assert shown[1].split()[:6] == ["cols", "True", "2", "1", "1", "0"]


def test_node_leaving_the_pool_is_kept_until_slurm_confirms_the_drain(kube: Kube, make_cluster: Any) -> None:
    """Without an answering slurmctld (KWOK) the operator cannot see the node's jobs, so it keeps the pod."""
    make_cluster(_cluster("leave", [{"name": "a100", "nodeSelector": {"sunkbridge.io/pool": "a100"}}]))
    _settle(kube, "leave")
    kube.merge_patch("/api/v1/nodes/a100-0002", {"metadata": {"labels": {"sunkbridge.io/pool": "gone"}}})
    try:
        status = _settle(kube, "leave", passes=2)
        pods = kube.get_json(f"/api/v1/namespaces/{NS}/pods",
                             {"labelSelector": "sunkbridge.io/cluster=leave,sunkbridge.io/component=slurmd"})["items"]
        names = sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))
        assert names == ["leave-slurmd-a100-0001", "leave-slurmd-a100-0002"]
        assert status["pools"][0]["draining"] == ["a100-0002"]
        assert _conds(status)["PoolA100Ready"]["reason"] == "Draining"
    finally:
        kube.merge_patch("/api/v1/nodes/a100-0002", {"metadata": {"labels": {"sunkbridge.io/pool": "a100"}}})


def test_missing_munge_secret_shows_in_status(kube: Kube, make_cluster: Any) -> None:
    make_cluster(_cluster("nokey", [{"name": "a100", "nodeSelector": {"sunkbridge.io/pool": "a100"}}],
                          munge={"secretName": "absent-munge"}))
    status = _settle(kube, "nokey", passes=1)
    ready = _conds(status)["Ready"]
    assert ready["status"] == "False" and "absent-munge" in ready["message"]


def test_override_slurm_refuses_is_not_rolled_out(kube: Kube, make_cluster: Any) -> None:
    make_cluster(_cluster("badconf", [{"name": "a100", "nodeSelector": {"sunkbridge.io/pool": "a100"}}],
                          slurmConf={"overrides": {"SchedulerParamters": "bf_interval=5"}}))
    status = _settle(kube, "badconf", passes=1)
    rendered = _conds(status)["ConfigRendered"]
    assert rendered["status"] == "False" and "SchedulerParamters" in rendered["message"]
    assert kube.get_or_none(f"/api/v1/namespaces/{NS}/configmaps/badconf-slurm-conf") is None


def test_missing_image_shows_in_status(kube: Kube, make_cluster: Any) -> None:
    body = make_cluster(_cluster("noimage", [{"name": "a100", "nodeSelector": {"sunkbridge.io/pool": "a100"}}]))
    fake = {"metadata": {"name": "noimage-probe", "namespace": NS,
                         "labels": {"sunkbridge.io/cluster": "noimage", "sunkbridge.io/component": "login"}},
            "status": {"containerStatuses": [{"name": "login", "image": "local/nope:1",
                                              "state": {"waiting": {"reason": "ErrImageNeverPull",
                                                                    "message": "image not present"}}}]}}
    from sunkbridge.operator.reconcile import _waiting_problems

    images, _ = _waiting_problems([fake])
    assert images and "local/nope:1" in images[0]
    assert body["metadata"]["name"] == "noimage"


def test_1000_node_pool_reconciles(kube_lane: KubeLane, kube: Kube, make_cluster: Any) -> None:
    pool = PoolSpec("big", 1000, gpus=8, gpu_product="NVIDIA-H100-80GB-HBM3")
    kube_lane.add_pools([pool], workers=16)
    try:
        make_cluster(_cluster("big", [{"name": "big", "nodeSelector": {"sunkbridge.io/pool": "big"}}]))
        started = time.monotonic()
        status = _settle(kube, "big", passes=30)
        elapsed = time.monotonic() - started
        conf = kube.get_json(f"/api/v1/namespaces/{NS}/configmaps/big-slurm-conf")["data"]["slurm.conf"]
        assert "NodeName=big-[0001-1000] NodeAddr=" in conf
        assert status["pools"][0]["kubernetesNodes"] == 1000
        assert _conds(status)["PoolBigReady"]["status"] == "True", status
        steady = reconcile(kube, kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "big"))
        print(f"1000 nodes: converged in {elapsed:.1f}s, steady reconcile {steady.status['reconcileSeconds']:.2f}s")
        assert steady.status["reconcileSeconds"] < 30
    finally:
        core = client.CoreV1Api(kube.api)
        core.delete_collection_node(label_selector="sunkbridge.io/pool=big")
