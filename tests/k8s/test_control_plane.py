"""The Kubernetes lane: real scheduler, controllers and watches over KWOK GPU pools."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from kubernetes import client, watch

from sunkbridge.k8s.pools import GPU_PRODUCT_LABEL, GPU_RESOURCE, POOL_LABEL, PoolSpec
from sunkbridge.lanes.k8s import KubeLane

pytestmark = pytest.mark.k8s


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_apiserver_serves_tls_and_enforces_rbac(kube_lane: KubeLane, kube_client: client.ApiClient) -> None:
    version = client.VersionApi(kube_client).get_code()
    assert version.git_version == "v1.36.3"
    review = client.AuthorizationV1Api(kube_client).create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "nobody", "resourceAttributes": {"verb": "list", "resource": "secrets"}}})
    assert review.status.allowed is False


def test_gpu_pod_is_scheduled_onto_a_pool_node_and_runs(kube_client: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_client)
    name = f"gpu-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeSelector": {POOL_LABEL: "h100"},
                 "containers": [{"name": "train", "image": "train:latest",
                                 "resources": {"limits": {GPU_RESOURCE: "8"}}}]}})
    pod = _wait(lambda: (p := core.read_namespaced_pod(name, "default")).status.phase == "Running" and p,
                60, "the GPU pod to run")
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels[POOL_LABEL] == "h100"
    assert node.metadata.labels[GPU_PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3"
    core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def test_gpu_request_no_node_can_hold_stays_pending(kube_client: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_client)
    name = f"toolarge-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {GPU_RESOURCE: "9"}}}]}})

    def unschedulable() -> bool:
        conds = core.read_namespaced_pod(name, "default").status.conditions or []
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conds)
    _wait(unschedulable, 30, "the scheduler to report Unschedulable")
    core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def test_job_completes_through_controller_manager_and_kwok(kube_client: client.ApiClient) -> None:
    batch = client.BatchV1Api(kube_client)
    name = f"job-{uuid.uuid4().hex[:6]}"
    batch.create_namespaced_job("default", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"completions": 2, "parallelism": 2, "template": {
            "metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": "1s",
                                         "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "1s"}},
            "spec": {"restartPolicy": "Never", "nodeSelector": {POOL_LABEL: "cpu"},
                     "containers": [{"name": "c", "image": "busybox"}]}}}})
    job = _wait(lambda: (j := batch.read_namespaced_job(name, "default")).status.succeeded == 2 and j,
                90, "the Job to complete")
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)
    batch.delete_namespaced_job(name, "default", propagation_policy="Background")


def test_node_deletion_is_seen_by_a_watch(kube_lane: KubeLane, kube_client: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_client)
    extra = PoolSpec("spare", 1, gpus=8, gpu_product="NVIDIA-H100-80GB-HBM3")
    kube_lane.add_pools([extra])
    name = extra.node_name(1)
    start_rv = core.list_node().metadata.resource_version
    seen: list[str] = []
    watcher = watch.Watch()

    def observe() -> None:
        for event in watcher.stream(core.list_node, resource_version=start_rv, timeout_seconds=30):
            if event["type"] == "DELETED" and event["object"].metadata.name == name:
                seen.append(name)
                watcher.stop()
    thread = threading.Thread(target=observe)
    thread.start()
    core.delete_node(name)
    thread.join(timeout=35)
    assert seen == [name]


def test_a_thousand_node_pool_becomes_ready(kube_lane: KubeLane, kube_client: client.ApiClient) -> None:
    big = PoolSpec("big", 1000, gpus=8, gpu_product="NVIDIA-H100-80GB-HBM3")
    created = kube_lane.add_pools([big])
    assert created == 1000
    kube_lane.wait_nodes_ready({big.node_name(i) for i in range(1, 1001)}, timeout=600)
    core = client.CoreV1Api(kube_client)
    nodes = core.list_node(label_selector=f"{POOL_LABEL}=big").items
    assert len(nodes) == 1000
    assert all(n.status.allocatable[GPU_RESOURCE] == "8" for n in nodes)
