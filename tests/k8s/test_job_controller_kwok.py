"""The SlurmJob controller's cache and batching against a real API server with KWOK nodes.

The controller reads SlurmJobs and pods from informers, creates a job's objects once, and writes status
only when it changed (at once for Running and final phases, otherwise at most every few seconds). These
tests count what the API server really saw, and break the watches the way a network or a long outage
would: a dropped connection resumes from the last resourceVersion; a resourceVersion the server no longer
has gets a real 410 Gone and a relist that forgets objects deleted meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from sunkbridge.bench.submit import CRD, NO_KWOK_DELAY, complete_pod, ensure_namespace, slurmjob_for
from sunkbridge.jobs.builders import LABEL_JOB, BridgeSettings
from sunkbridge.jobs.controller import Controller
from sunkbridge.jobs.launcher import GROUP, PLURAL, VERSION
from sunkbridge.k8s.pools import PoolSpec
from sunkbridge.lanes.k8s import KubeLane

pytestmark = pytest.mark.k8s

NS = "sunk-jobs-ctl"
POOL = PoolSpec("sjctl", 16, gpus=8)


@pytest.fixture(scope="module")
def nodes(kube_lane: KubeLane, kube_client: client.ApiClient) -> Iterator[list[str]]:
    subprocess.run([str(kube_lane.kubectl()), "--kubeconfig", str(kube_lane.kubeconfig), "apply", "-f", str(CRD)],
                   check=True, capture_output=True)
    core = client.CoreV1Api(kube_client)
    ensure_namespace(core, NS)
    kube_lane.add_pools([POOL])
    names = [POOL.node_name(i) for i in range(1, POOL.count + 1)]
    kube_lane.wait_nodes_ready(set(names), timeout=180)
    yield names
    for name in names:
        with contextlib.suppress(ApiException):
            core.delete_node(name)


@pytest.fixture()
def controller(nodes: list[str], kube_client: client.ApiClient) -> Iterator[Controller]:
    ctl = Controller(kube_client, BridgeSettings(namespace=NS, pod_annotations=NO_KWOK_DELAY), workers=4).start()
    yield ctl
    ctl.stop()
    custom = client.CustomObjectsApi(kube_client)
    for item in custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]:
        with contextlib.suppress(ApiException):
            custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, item["metadata"]["name"])


def _wait(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _phase(custom: client.CustomObjectsApi, name: str) -> str | None:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    return (obj.get("status") or {}).get("phase")


class StatusRecorder:
    """Every distinct status of one SlurmJob the API server announced, through a watch of its own."""

    def __init__(self, custom: client.CustomObjectsApi, name: str) -> None:
        self.statuses: list[dict[str, Any]] = []
        self._watch = watch.Watch()
        listing = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
        self._thread = threading.Thread(target=self._run, args=(custom, name, listing["metadata"]["resourceVersion"]),
                                        daemon=True)
        self._thread.start()

    def _run(self, custom: client.CustomObjectsApi, name: str, rv: str) -> None:
        with contextlib.suppress(ProtocolError):  # the lane may stop before the watch times out
            self._record(custom, name, rv)

    def _record(self, custom: client.CustomObjectsApi, name: str, rv: str) -> None:
        for event in self._watch.stream(custom.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                                        resource_version=rv, field_selector=f"metadata.name={name}",
                                        timeout_seconds=120):
            status = event["object"].get("status") or {}
            if status and (not self.statuses or self.statuses[-1] != status):
                self.statuses.append(status)

    def stop(self) -> None:
        self._watch.stop()


def test_a_large_job_is_created_once_and_its_status_written_only_on_change(
        controller: Controller, nodes: list[str], kube_client: client.ApiClient) -> None:
    core, custom = client.CoreV1Api(kube_client), client.CustomObjectsApi(kube_client)
    body = slurmjob_for(7001, nodes, NS)
    name = body["metadata"]["name"]
    recorder = StatusRecorder(custom, name)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    _wait("Running", lambda: _phase(custom, name) == "Running")
    complete_pod(core, f"{name}-0", NS)
    _wait("Succeeded", lambda: _phase(custom, name) == "Succeeded")
    time.sleep(1)
    recorder.stop()
    phases = [s.get("phase") for s in recorder.statuses]
    # 16 pods pass through four KWOK stages each; the status changed at most for Pending (only when the
    # job pends longer than the status interval), Running and Succeeded.
    assert phases[-2:] == ["Running", "Succeeded"], phases
    assert len(recorder.statuses) <= 3, phases
    assert controller.calls["patch status"] <= 3, controller.calls
    running = recorder.statuses[-2]
    assert sorted(p["rank"] for p in running["pods"]) == list(range(16))
    assert all(p["started"] for p in running["pods"])
    # Each object exactly once: no create was repeated for a pod the cache had not seen yet.
    assert controller.calls["create pods"] == 16, controller.calls
    assert controller.calls["create secrets"] == controller.calls["create services"] == 1, controller.calls
    # The finished job's peers are deleted; rank 0 stays for its logs until the SlurmJob goes.
    _wait("peers deleted", lambda: [p.metadata.name for p in core.list_namespaced_pod(
        NS, label_selector=f"{LABEL_JOB}={name}").items] == [f"{name}-0"])


def test_a_single_node_job_needs_no_service(controller: Controller, nodes: list[str],
                                            kube_client: client.ApiClient) -> None:
    core, custom = client.CoreV1Api(kube_client), client.CustomObjectsApi(kube_client)
    body = slurmjob_for(7002, nodes[:1], NS)
    name = body["metadata"]["name"]
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    _wait("Running", lambda: _phase(custom, name) == "Running")
    pod = core.read_namespaced_pod(f"{name}-0", NS)
    assert pod.spec.hostname and pod.spec.subdomain == name  # its own FQDN is in its /etc/hosts
    assert core.list_namespaced_service(NS, label_selector=f"{LABEL_JOB}={name}").items == []
    assert [s.metadata.name for s in core.list_namespaced_secret(NS, label_selector=f"{LABEL_JOB}={name}").items] \
        == [f"{name}-auth"]


def _cached(controller: Controller) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in controller.jobs.items()}


def _listed(custom: client.CustomObjectsApi) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
            for o in custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]}


def test_a_dropped_watch_resumes_without_losing_events(controller: Controller, nodes: list[str],
                                                       kube_client: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(kube_client)
    relists = (controller.jobs.relists, controller.pods.relists)
    controller.jobs.interrupt()
    controller.pods.interrupt()
    body = slurmjob_for(7003, nodes[:4], NS)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    _wait("Running after the watches were dropped", lambda: _phase(custom, body["metadata"]["name"]) == "Running")
    assert (controller.jobs.relists, controller.pods.relists) == relists  # resumed, not listed again
    _wait("cache equal to the API server", lambda: _cached(controller) == _listed(custom), timeout=10)


def test_410_gone_relists_and_forgets_what_was_deleted_meanwhile(controller: Controller, nodes: list[str],
                                                                 kube_client: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(kube_client)
    old = slurmjob_for(7004, nodes[:2], NS)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, old)
    _wait("the first job Running", lambda: _phase(custom, old["metadata"]["name"]) == "Running")
    relists = controller.jobs.relists
    # An outage: the SlurmJob informer stops; meanwhile one job goes and another comes.
    controller.jobs.stop()
    _wait("the informer to stop", lambda: not controller.jobs.running)
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, old["metadata"]["name"])
    new = slurmjob_for(7005, nodes[2:5], NS)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, new)
    assert old["metadata"]["name"] in _cached(controller)  # the cache has not seen the deletion
    # It comes back asking for a resourceVersion long compacted away, as after a long outage: the API
    # server answers 410 Gone, and the informer must list again.
    controller.jobs.resource_version = "1"
    controller.jobs.start()
    _wait("the new job Running", lambda: _phase(custom, new["metadata"]["name"]) == "Running")
    assert controller.jobs.relists == relists + 1
    assert old["metadata"]["name"] not in _cached(controller)
    _wait("cache equal to the API server", lambda: _cached(controller) == _listed(custom), timeout=10)
    assert json.dumps(controller.jobs.get(new["metadata"]["name"]), sort_keys=True) == json.dumps(
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, new["metadata"]["name"]), sort_keys=True)


@pytest.mark.parametrize(("where", "gpus", "reason"), [
    ("missing", 0, "Kubernetes node sunk-no-such-node does not exist"),
    ("pool", 16, "has 8 nvidia.com/gpu, the job asks for 16 per node"),
])
def test_a_job_its_nodes_cannot_hold_fails_before_any_object_is_made(
        controller: Controller, nodes: list[str], kube_client: client.ApiClient, where: str, gpus: int,
        reason: str) -> None:
    """A pod bound by nodeName skips the scheduler, and the kubelet ignores GPUs its node lacks."""
    core, custom = client.CoreV1Api(kube_client), client.CustomObjectsApi(kube_client)
    body = slurmjob_for(7006 + gpus, ["sunk-no-such-node"] if where == "missing" else nodes[:2], NS)
    for node in body["spec"]["nodes"]:
        node["gpus"] = gpus
    name = body["metadata"]["name"]
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    _wait("Failed", lambda: _phase(custom, name) == "Failed", timeout=30)
    status = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)["status"]
    assert status["reason"] == "Unfit" and reason in status["message"], status
    assert status["exitStatus"] == "1:0"
    time.sleep(1)
    selector = f"{LABEL_JOB}={name}"
    assert core.list_namespaced_pod(NS, label_selector=selector).items == []
    assert core.list_namespaced_secret(NS, label_selector=selector).items == []
    assert core.list_namespaced_service(NS, label_selector=selector).items == []
