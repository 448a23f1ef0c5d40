"""`sunk bench submit`: how fast SlurmJobs become running pod groups, against plain pod creation.

Jobs enter the bridge the way the launcher creates them (``build_slurmjob`` over the environment slurmd
gives a batch job of that shape); KWOK plays the kubelets. Pod completion is driven by patching the rank-0
pod's status as a kubelet would (KWOK's stock pod-complete stage only completes Job-owned pods). Two
baselines run through the same apiserver in the same run, pinned to the same nodes: the bridge's own pods
created directly (`same_pods_per_s`: what the bridge costs on top of its pods) and minimal pods
(`raw_pods_per_s`: what the pod shape costs, e.g. KWOK's two extra init-container stages).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sunkbridge.jobs.builders import LABEL_JOB, BridgeSettings, JobView, build_pod
from sunkbridge.jobs.controller import Controller
from sunkbridge.jobs.informer import Informer, JsonApi
from sunkbridge.jobs.launcher import GROUP, PLURAL, VERSION, build_slurmjob
from sunkbridge.sbatch.hostlist import compress_hostlist

CRD = Path(__file__).parents[2] / "manifests" / "base" / "crds" / "sunkbridge.io_slurmjobs.yaml"
BENCH_IMAGE = "local/sunk-job-python:2"
# KWOK's stock stages wait 1-6 s per step (create, init running, init done, ready); pods may ask for none,
# so the figures measure the apiserver and the bridge rather than KWOK's simulated kubelet latency.
NO_KWOK_DELAY = {f"{stage}.stage.kwok.x-k8s.io/{kind}": "0s"
                 for stage in ("pod-create", "pod-init-container-running", "pod-init-container-completed",
                               "pod-ready", "pod-complete", "pod-delete")
                 for kind in ("delay", "jitter-delay")}


def allocation_env(job_id: int, nodes: Sequence[str], cpus: int = 1) -> dict[str, str]:
    """What slurmd puts in a batch job's environment for an allocation of `nodes`."""
    return {"SLURM_JOB_ID": str(job_id), "SLURM_JOB_NODELIST": compress_hostlist(nodes),
            "SLURM_JOB_CPUS_PER_NODE": f"{cpus}(x{len(nodes)})" if len(nodes) > 1 else str(cpus),
            "SLURM_JOB_UID": "0", "SLURM_JOB_GID": "0", "SLURM_JOB_USER": "root", "SLURM_NNODES": str(len(nodes)),
            "SLURM_JOB_NUM_NODES": str(len(nodes)), "SLURM_MEM_PER_NODE": "100", "SLURM_JOB_PARTITION": "bench"}


def slurmjob_for(job_id: int, nodes: Sequence[str], namespace: str, image: str = BENCH_IMAGE) -> dict[str, Any]:
    """The SlurmJob the launcher would create for job `job_id` on `nodes`."""
    return build_slurmjob(allocation_env(job_id, nodes), "#!/bin/sh\ntrue\n", [], cluster="bench",
                          namespace=namespace, default_image=image, cwd="/")


def complete_pod(core: client.CoreV1Api, name: str, namespace: str, code: int = 0, sig: int = 0) -> None:
    """Finish a pod as its kubelet would: main container terminated with the agent's exit:signal message."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    term = {"exitCode": 128 + sig if sig else code, "message": f"{code}:{sig}", "reason": "Completed" if not
            (code or sig) else "Error", "startedAt": now, "finishedAt": now}
    status = {"phase": "Succeeded" if not (code or sig) else "Failed",
              "containerStatuses": [{"name": "main", "ready": False, "restartCount": 0, "image": BENCH_IMAGE,
                                     "imageID": "", "state": {"terminated": term}}]}
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


def ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def leftovers(core: client.CoreV1Api, namespace: str) -> dict[str, int]:
    """Bridge objects still in `namespace` (pods, Services, Secrets of SlurmJobs)."""
    return {"pods": len(core.list_namespaced_pod(namespace, label_selector=LABEL_JOB).items),
            "services": len(core.list_namespaced_service(namespace, label_selector=LABEL_JOB).items),
            "secrets": len(core.list_namespaced_secret(namespace, label_selector=LABEL_JOB).items)}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class SubmitResult:
    nodes_per_job: int
    jobs: int
    submit_to_running_p50_ms: float
    submit_to_running_p99_ms: float
    jobs_per_s: float
    bridge_pods_per_s: float
    raw_pods_per_s: float
    same_pods_per_s: float
    bridge_calls_per_job: dict[str, float]
    leaked: dict[str, int]


class _Arrivals:
    """When each object of a collection was first seen in `phase` (through a watch, not polling)."""

    def __init__(self, rest: JsonApi, path: str, phase: Callable[[dict[str, Any]], str | None], expected: int,
                 label_selector: str | None = None) -> None:
        self.phase, self.expected = phase, expected
        self.at: dict[str, float] = {}
        self.done = threading.Event()
        self.informer = Informer(rest, path, self._seen, label_selector=label_selector)

    def _seen(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name not in self.at and self.phase(obj) == "Running":
            self.at[name] = time.monotonic()
            if len(self.at) >= self.expected:
                self.done.set()

    def __enter__(self) -> _Arrivals:
        self.informer.start()
        self.informer.synced.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.informer.stop()


def _create_all(rest: JsonApi, path: str, bodies: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Create `bodies` from 8 threads; when each create was sent, by object name."""
    sent: dict[str, float] = {}

    def create(body: dict[str, Any]) -> None:
        sent[body["metadata"]["name"]] = time.monotonic()
        rest.call("POST", path, body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, bodies))
    return sent


def _settle(core: client.CoreV1Api, namespace: str, timeout: float = 120) -> dict[str, int]:
    """Wait until the bridge's objects and the baseline pods are gone; what is left of the bridge's."""
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(core, namespace)
        busy = any(left.values()) or core.list_namespaced_pod(namespace, label_selector="bench=raw").items
        if not busy or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def _unowned(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """`pod` as a plain pod: no owner, none of the bridge's labels."""
    meta = {**pod["metadata"], "name": name, "labels": {"bench": "raw"}}
    meta.pop("ownerReferences", None)
    return {**pod, "metadata": meta}


def _pods_per_s(rest: JsonApi, path: str, pods: Sequence[dict[str, Any]], timeout: float) -> float:
    """Create `pods` from 8 threads; pods per second until the last one runs."""
    with _Arrivals(rest, path, lambda o: (o.get("status") or {}).get("phase"), len(pods),
                   label_selector="bench=raw") as arrivals:
        start = time.monotonic()
        _create_all(rest, path, pods)
        arrivals.done.wait(timeout)
    return round(len(arrivals.at) / (max(arrivals.at.values()) - start), 1) if arrivals.at else 0.0


def run_bench(api: client.ApiClient, node_names: Sequence[str], nodes_per_job: int, jobs: int,
              namespace: str = "sunk-bench", timeout: float = 600) -> SubmitResult:
    """Submit `jobs` SlurmJobs of `nodes_per_job` nodes at once; then the same pods without the bridge,
    then as many minimal pods; compare. Every phase starts on a quiet apiserver, goes through the same
    JSON client and is observed the same way, by a watch."""
    core = client.CoreV1Api(api)
    rest = JsonApi(api)
    ensure_namespace(core, namespace)
    settings = BridgeSettings(namespace=namespace, pod_annotations=NO_KWOK_DELAY)
    controller = Controller(api, settings, workers=8).start()
    bodies = [slurmjob_for(1_000_000 + i, list(dict.fromkeys(
        node_names[(i * nodes_per_job + k) % len(node_names)] for k in range(nodes_per_job))), namespace)
        for i in range(jobs)]
    jobs_path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    with _Arrivals(rest, jobs_path, lambda o: (o.get("status") or {}).get("phase"), jobs) as arrivals:
        start = time.monotonic()
        submitted = _create_all(rest, jobs_path, bodies)
        arrivals.done.wait(timeout)
    running = arrivals.at
    bridge_elapsed = max(running.values()) - start if running else float("inf")
    latencies = [(running[n] - submitted[n]) * 1000 for n in running]
    calls = {k: round(v / jobs, 2) for k, v in sorted(controller.calls.items())}
    # Clean up the bridge's objects the way the launcher does: delete the SlurmJobs.
    for name in submitted:
        with contextlib.suppress(ApiException):
            rest.call("DELETE", f"{jobs_path}/{name}",
                      {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
    controller.stop()
    _settle(core, namespace)
    # Baselines through the same apiserver, pinned to the same nodes: the very pods the bridge made (same
    # spec, init container and volumes, no owner: `same_pods_per_s`), then as many minimal pods
    # (`raw_pods_per_s`).
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    same = [_unowned(build_pod(JobView.of(body), rank, settings), f"same-{i}-{rank}")
            for i, body in enumerate(bodies) for rank in range(nodes_per_job)]
    same_rate = _pods_per_s(rest, pods_path, same, timeout)
    core.delete_collection_namespaced_pod(namespace, label_selector="bench=raw", grace_period_seconds=0)
    _settle(core, namespace)
    plain = [{"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": f"raw-{i}", "labels": {"bench": "raw"}, "annotations": NO_KWOK_DELAY},
              "spec": {"nodeName": node_names[i % len(node_names)], "restartPolicy": "Never",
                       "tolerations": [{"operator": "Exists"}],
                       "containers": [{"name": "main", "image": BENCH_IMAGE}]}} for i in range(len(same))]
    raw_rate = _pods_per_s(rest, pods_path, plain, timeout)
    core.delete_collection_namespaced_pod(namespace, label_selector="bench=raw", grace_period_seconds=0)
    left = _settle(core, namespace)
    return SubmitResult(
        nodes_per_job=nodes_per_job, jobs=jobs,
        submit_to_running_p50_ms=round(statistics.median(latencies), 1) if latencies else float("nan"),
        submit_to_running_p99_ms=round(_pct(latencies, 0.99), 1) if latencies else float("nan"),
        jobs_per_s=round(len(running) / bridge_elapsed, 2),
        bridge_pods_per_s=round(len(running) * nodes_per_job / bridge_elapsed, 1),
        raw_pods_per_s=raw_rate, same_pods_per_s=same_rate, bridge_calls_per_job=calls, leaked=left)


def bench_submit(nodes_per_job: int, jobs: int) -> dict[str, Any]:
    """Start a control plane with KWOK nodes, run the benchmark, stop everything; the result as a dict."""
    from sunkbridge.k8s.client import api_client
    from sunkbridge.k8s.pools import PoolSpec
    from sunkbridge.lanes.daemons import free_port
    from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig

    base = Path(tempfile.mkdtemp(prefix="sunk-bench-submit-"))
    lane = KubeLane(KubeLaneConfig(base_dir=base, api_port=free_port(), etcd_port=free_port(),
                                   etcd_peer_port=free_port()))
    lane.start()
    try:
        import subprocess
        subprocess.run([str(lane.kubectl()), "--kubeconfig", str(lane.kubeconfig), "apply", "-f", str(CRD)],
                       check=True, capture_output=True)
        pool = PoolSpec("bench", max(nodes_per_job, 16), gpus=8)
        lane.add_pools([pool])
        names = [pool.node_name(i) for i in range(1, pool.count + 1)]
        lane.wait_nodes_ready(set(names), timeout=300)
        time.sleep(2)  # CRD established
        result = run_bench(api_client(lane.kubeconfig), names, nodes_per_job, jobs)
        return asdict(result)
    finally:
        lane.destroy()


def main_json(nodes_per_job: int, jobs: int) -> str:
    return json.dumps(bench_submit(nodes_per_job, jobs), sort_keys=True)
