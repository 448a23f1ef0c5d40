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
import os
import resource
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
    rest = JsonApi(core.api_client)
    return {kind: len(rest.call("GET", f"/api/v1/namespaces/{namespace}/{kind}",
                                query={"labelSelector": LABEL_JOB})["items"])
            for kind in ("pods", "services", "secrets")}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(marker: str) -> float:
    """CPU time used so far by this process and by every process whose command line names `marker`
    (the lane's daemons all name its folder)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclass
class Phase:
    """One timed phase: pods that reached Running, wall seconds to the last one, CPU seconds spent."""

    pods: int
    seconds: float
    cpu: float

    @property
    def pods_per_s(self) -> float:
        return self.pods / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_pod(self) -> float:
        return 1000 * self.cpu / self.pods if self.pods else float("nan")


@dataclass
class SubmitResult:
    nodes_per_job: int
    jobs: int
    rounds: int
    submit_to_running_p50_ms: float
    submit_to_running_p99_ms: float
    jobs_per_s: float
    bridge_pods_per_s: float
    raw_pods_per_s: float
    same_pods_per_s: float
    raw_to_bridge: float
    same_to_bridge: float
    cpu_ms_per_pod: dict[str, float]
    bridge_calls_per_job: dict[str, float]
    leaked: dict[str, int]


class _Arrivals:
    """When each object of a collection was first seen in phase Running (through a watch, not polling)."""

    def __init__(self, rest: JsonApi, path: str, expected: int, label_selector: str | None = None) -> None:
        self.expected = expected
        self.at: dict[str, float] = {}
        self.done = threading.Event()
        self.informer = Informer(rest, path, self._seen, label_selector=label_selector)

    def _seen(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name not in self.at and (obj.get("status") or {}).get("phase") == "Running":
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


def _settle(core: client.CoreV1Api, namespace: str, timeout: float = 180) -> dict[str, int]:
    """Wait until the bridge's objects and the baseline pods are gone; what is left of the bridge's."""
    rest = JsonApi(core.api_client)
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(core, namespace)
        busy = any(left.values()) or rest.call("GET", f"/api/v1/namespaces/{namespace}/pods",
                                               query={"labelSelector": "bench"})["items"]
        if not busy or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def _unowned(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """`pod` as a plain pod: no owner, none of the bridge's labels."""
    meta = {**pod["metadata"], "name": name, "labels": {"bench": "same"}}
    meta.pop("ownerReferences", None)
    return {**pod, "metadata": meta}


def _plain_pod(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench": "raw"}, "annotations": NO_KWOK_DELAY},
            "spec": {"nodeName": node, "restartPolicy": "Never", "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "main", "image": BENCH_IMAGE}]}}


def _pods_phase(rest: JsonApi, core: client.CoreV1Api, namespace: str, pods: Sequence[dict[str, Any]],
                cpu: Callable[[], float], timeout: float) -> Phase:
    """Create `pods` from 8 threads and time them until the last one runs; then delete them."""
    label = pods[0]["metadata"]["labels"]["bench"]
    path = f"/api/v1/namespaces/{namespace}/pods"
    with _Arrivals(rest, path, len(pods), label_selector=f"bench={label}") as arrivals:
        start, cpu0 = time.monotonic(), cpu()
        _create_all(rest, path, pods)
        arrivals.done.wait(timeout)
        phase = Phase(len(arrivals.at), max(arrivals.at.values(), default=start) - start, cpu() - cpu0)
    core.delete_collection_namespaced_pod(namespace, label_selector=f"bench={label}", grace_period_seconds=0)
    return phase


def run_bench(api: client.ApiClient, node_names: Sequence[str], nodes_per_job: int, jobs: int,
              namespace: str = "sunk-bench", rounds: int = 3, cpu: Callable[[], float] = lambda: 0.0,
              timeout: float = 600) -> SubmitResult:
    """Per round: submit `jobs` SlurmJobs of `nodes_per_job` nodes at once, then create the same pods
    without the bridge, then as many minimal pods; medians over the rounds.

    Phases alternate within each round so that load from elsewhere on the machine hits all three alike;
    each starts on a quiet apiserver (the previous phase's objects gone), goes through the same JSON
    client and is observed the same way, by a watch."""
    core = client.CoreV1Api(api)
    rest = JsonApi(api)
    ensure_namespace(core, namespace)
    settings = BridgeSettings(namespace=namespace, pod_annotations=NO_KWOK_DELAY)
    controller = Controller(api, settings, workers=8).start()
    jobs_path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    phases: dict[str, list[Phase]] = {"bridge": [], "same": [], "raw": []}
    latencies: list[float] = []
    left: dict[str, int] = {}
    try:
        for r in range(rounds):
            bodies = [slurmjob_for(1_000_000 + r * jobs + i, list(dict.fromkeys(
                node_names[(i * nodes_per_job + k) % len(node_names)] for k in range(nodes_per_job))), namespace)
                for i in range(jobs)]
            with _Arrivals(rest, jobs_path, jobs) as arrivals:
                start, cpu0 = time.monotonic(), cpu()
                submitted = _create_all(rest, jobs_path, bodies)
                arrivals.done.wait(timeout)
                phases["bridge"].append(Phase(len(arrivals.at) * nodes_per_job,
                                              max(arrivals.at.values(), default=start) - start, cpu() - cpu0))
            latencies += [(t - submitted[n]) * 1000 for n, t in arrivals.at.items()]
            # Clean up the way the launcher does, deleting the SlurmJobs; their objects must follow.
            for name in submitted:
                with contextlib.suppress(ApiException):
                    rest.call("DELETE", f"{jobs_path}/{name}",
                              {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
            left = _settle(core, namespace)
            # The very pods the bridge made (same spec, init container and volumes; no owner), then
            # minimal pods, pinned to the same nodes.
            same = [_unowned(build_pod(JobView.of(body), rank, settings), f"same-{r}-{i}-{rank}")
                    for i, body in enumerate(bodies) for rank in range(nodes_per_job)]
            phases["same"].append(_pods_phase(rest, core, namespace, same, cpu, timeout))
            _settle(core, namespace)
            plain = [_plain_pod(f"raw-{r}-{i}", node_names[i % len(node_names)]) for i in range(len(same))]
            phases["raw"].append(_pods_phase(rest, core, namespace, plain, cpu, timeout))
            _settle(core, namespace)
    finally:
        controller.stop()
    rate = {k: statistics.median(p.pods_per_s for p in v) for k, v in phases.items()}
    return SubmitResult(
        nodes_per_job=nodes_per_job, jobs=jobs, rounds=rounds,
        submit_to_running_p50_ms=round(statistics.median(latencies), 1) if latencies else float("nan"),
        submit_to_running_p99_ms=round(_pct(latencies, 0.99), 1) if latencies else float("nan"),
        jobs_per_s=round(rate["bridge"] / nodes_per_job, 2), bridge_pods_per_s=round(rate["bridge"], 1),
        raw_pods_per_s=round(rate["raw"], 1), same_pods_per_s=round(rate["same"], 1),
        raw_to_bridge=round(rate["raw"] / rate["bridge"], 2) if rate["bridge"] else float("inf"),
        same_to_bridge=round(rate["same"] / rate["bridge"], 2) if rate["bridge"] else float("inf"),
        cpu_ms_per_pod={k: round(statistics.median(p.cpu_ms_per_pod for p in v), 1) for k, v in phases.items()},
        bridge_calls_per_job={k: round(v / (jobs * rounds), 2) for k, v in sorted(controller.calls.items())},
        leaked=left)


def bench_submit(nodes_per_job: int, jobs: int, rounds: int = 3) -> dict[str, Any]:
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
        result = run_bench(api_client(lane.kubeconfig), names, nodes_per_job, jobs, rounds=rounds,
                           cpu=lambda: cpu_seconds(str(base)))
        return asdict(result)
    finally:
        lane.destroy()

