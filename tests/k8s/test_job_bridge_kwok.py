"""500 queued jobs of 1-8 nodes flow through the SlurmJob controller on KWOK nodes without leaks.

The test plays Slurm (FIFO allocation of free nodes, like slurmctld without backfill) and the launcher
(SlurmJob created from the allocation's environment, deleted when the job ends). KWOK runs the pods; the
rank-0 pod's completion is driven by patching its status as a kubelet would, because KWOK's stock
pod-complete stage only completes pods owned by a Job.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
from collections import deque
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sunkbridge.bench.submit import CRD, NO_KWOK_DELAY, complete_pod, ensure_namespace, leftovers, slurmjob_for
from sunkbridge.jobs.builders import BridgeSettings
from sunkbridge.jobs.controller import Controller
from sunkbridge.jobs.launcher import GROUP, PLURAL, VERSION
from sunkbridge.k8s.pools import PoolSpec
from sunkbridge.lanes.k8s import KubeLane

pytestmark = pytest.mark.k8s

NS = "sunk-jobs-kwok"
POOL = PoolSpec("sjobs", 48, gpus=8)


@pytest.fixture(scope="module")
def bridge(kube_lane: KubeLane, kube_client: client.ApiClient) -> Iterator[tuple[list[str], Controller]]:
    subprocess.run([str(kube_lane.kubectl()), "--kubeconfig", str(kube_lane.kubeconfig), "apply", "-f", str(CRD)],
                   check=True, capture_output=True)
    core = client.CoreV1Api(kube_client)
    ensure_namespace(core, NS)
    kube_lane.add_pools([POOL])
    names = [POOL.node_name(i) for i in range(1, POOL.count + 1)]
    kube_lane.wait_nodes_ready(set(names), timeout=180)
    controller = Controller(kube_client, BridgeSettings(namespace=NS, pod_annotations=NO_KWOK_DELAY), workers=8).start()
    try:
        yield names, controller
    finally:
        controller.stop()
        for name in names:
            with contextlib.suppress(ApiException):
                core.delete_node(name)


def test_500_jobs_flow_through_without_leaks(bridge: tuple[list[str], Controller],
                                             kube_client: client.ApiClient) -> None:
    core, custom = client.CoreV1Api(kube_client), client.CustomObjectsApi(kube_client)
    pool_nodes, controller = bridge
    rng = random.Random(7)
    queue = deque((1000 + i, rng.randint(1, 8), rng.choice([0, 0, 0, 3])) for i in range(500))
    sizes = sum(size for _, size, _ in queue)
    free = list(pool_nodes)
    running: dict[str, tuple[int, list[str], int]] = {}
    finished: dict[int, tuple[str, int]] = {}
    completed_pods: set[str] = set()
    deadline = time.monotonic() + 900
    while (queue or running) and time.monotonic() < deadline:
        while queue and len(free) >= queue[0][1]:  # FIFO: the head of the queue blocks the rest
            job_id, size, code = queue.popleft()
            nodes, free = free[:size], free[size:]
            body = slurmjob_for(job_id, nodes, NS)
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
            running[body["metadata"]["name"]] = (job_id, nodes, code)
        items = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]
        for item in items:
            name = item["metadata"]["name"]
            if name not in running:
                continue
            status = item.get("status") or {}
            job_id, nodes, code = running[name]
            if status.get("phase") == "Running" and name not in completed_pods:
                complete_pod(core, f"{name}-0", NS, code=code)
                completed_pods.add(name)
            elif status.get("phase") in ("Succeeded", "Failed"):
                finished[job_id] = (status["phase"], int(status["exitCode"]))
                custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)  # the launcher exits
                del running[name]
                free += nodes
        time.sleep(0.2)
    assert not queue and not running, f"{len(queue)} queued and {len(running)} running after the deadline"
    assert len(finished) == 500
    for job_id, (phase, code) in finished.items():
        assert (phase, code) in (("Succeeded", 0), ("Failed", 3)), (job_id, phase, code)
    gone = time.monotonic() + 180
    left = leftovers(core, NS)
    while any(left.values()) and time.monotonic() < gone:
        time.sleep(1)
        left = leftovers(core, NS)
    assert left == {"pods": 0, "services": 0, "secrets": 0}
    # Each pod was created once, and each job's status written at most three times (Pending only when
    # it pended longer than the status interval, Running, the final phase) — not once per pod change.
    assert controller.calls["create pods"] == sizes, controller.calls
    assert controller.calls["patch status"] <= 3 * 500, controller.calls
    assert custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"] == []
