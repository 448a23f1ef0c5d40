"""The sandbox demo: a 2-node GPU job through the real Slurm, and a GPU pod through the real scheduler.

With real nodes, also the bridge itself: a 2-node sbatch job of the podgroup partition runs as a pod group
on the real kubelets, its output lands in its --output file and sacct records it.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sunkbridge.images.job import JOB_IMAGE
from sunkbridge.jobs.builders import LABEL_JOB_ID
from sunkbridge.k8s.pools import GPU_RESOURCE, POOL_LABEL
from sunkbridge.lanes.daemons import LaneError
from sunkbridge.sandbox import BRIDGE_NAMESPACE, BRIDGE_PARTITION, Sandbox

DEMO_SCRIPT = """#!/bin/bash
#SBATCH --job-name=demo-train
#SBATCH --partition=h100
#SBATCH --nodes 2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:h100:8
#SBATCH --time=5:00
#SBATCH --output=demo-%j.out
echo "job $SLURM_JOB_ID on $SLURM_JOB_NODELIST ($SLURM_NNODES nodes, $SLURM_NTASKS tasks)"
srun bash -c 'echo "  task $SLURM_PROCID on $SLURMD_NODENAME sees $SLURM_GPUS_ON_NODE GPUs"'
"""


PODGROUP_SCRIPT = f"""#!/bin/bash
#SBATCH --job-name=demo-podgroup
#SBATCH --partition={BRIDGE_PARTITION}
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --time=5:00
#SBATCH --output=podgroup-%j.out
echo "batch script on $(hostname)"
env | grep -E '^SLURM_(JOB_ID|JOB_NAME|JOB_PARTITION|JOB_NODELIST|NNODES|NTASKS|SUBMIT_DIR|CLUSTER_NAME)=' | sort
echo "srun hostname:"
srun hostname | sort
"""
_FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
          "BOOT_FAIL", "DEADLINE"}
SACCT_FIELDS = "JobID,JobName,Partition,NNodes,NodeList,State,ExitCode"


@dataclass(frozen=True)
class PodGroupResult:
    """What the bridge part of the demo observed: Slurm's view and the pods the job ran as."""

    job_id: str
    job_state: str
    output_file: Path
    output: str
    pods: dict[str, str] = field(default_factory=dict)
    """Pod name → the Kubernetes node it ran on."""
    sacct: str = ""
    """`sacct -X -P` header and line of the job."""


@dataclass(frozen=True)
class DemoResult:
    """What the demo observed."""

    job_id: str
    job_state: str
    job_output: str
    pod_name: str
    pod_node: str
    pod_pool: str
    real_pod_output: str | None = None
    pod_group: PodGroupResult | None = None


def run_demo(sandbox: Sandbox, workdir: Path, on_step: Callable[[str], None] = lambda _s: None,
             timeout: float = 120) -> DemoResult:
    """Submit the demo job and a GPU pod to a running sandbox and wait for both."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "train.sbatch"
    script.write_text(DEMO_SCRIPT)
    lane = sandbox.slurm
    on_step("sbatch train.sbatch (2 nodes of h100, 8 GPUs each)")
    job_id = lane.run("sbatch", "--parsable", f"--chdir={workdir}", str(script)).stdout.strip().split(";")[0]
    state = _wait_job(lambda: lane.run("scontrol", "show", "job", "-o", job_id).stdout, timeout)
    output = (workdir / f"demo-{job_id}.out").read_text()

    from sunkbridge.k8s.client import core_api

    core = core_api(sandbox.kube.kubeconfig)
    pod_name = f"demo-gpu-{uuid.uuid4().hex[:6]}"
    on_step(f"kubectl create pod {pod_name} (8 x {GPU_RESOURCE} in pool h100)")
    core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name},
        "spec": {"nodeSelector": {POOL_LABEL: "h100"},
                 "containers": [{"name": "train", "image": "demo:latest",
                                 "resources": {"limits": {GPU_RESOURCE: "8"}}}]}})
    deadline = time.monotonic() + timeout
    while (pod := core.read_namespaced_pod(pod_name, "default")).status.phase != "Running":
        if time.monotonic() > deadline:
            raise TimeoutError(f"pod {pod_name} did not run within {timeout:.0f}s")
        time.sleep(0.5)
    node = core.read_node(pod.spec.node_name)
    core.delete_namespaced_pod(pod_name, "default", grace_period_seconds=0)
    real_output = pod_group = None
    if sandbox.config.real_nodes:
        real_output = _run_on_real_node(sandbox, on_step, timeout)
        pod_group = run_pod_group(sandbox, on_step, timeout)
    return DemoResult(job_id, state, output, pod_name, pod.spec.node_name, node.metadata.labels[POOL_LABEL],
                      real_output, pod_group)


def run_pod_group(sandbox: Sandbox, on_step: Callable[[str], None] = lambda _s: None,
                  timeout: float = 180) -> PodGroupResult:
    """sbatch a 2-node job of the podgroup partition; follow its pods; return its output and sacct line."""
    from sunkbridge.k8s.client import core_api

    workdir = sandbox.shared_dir
    script = workdir / "podgroup.sbatch"
    script.write_text(PODGROUP_SCRIPT)
    lane = sandbox.slurm
    on_step(f"sbatch podgroup.sbatch (2 nodes of partition {BRIDGE_PARTITION}: a pod group on the real nodes)")
    # Submitted from the job folder, as a researcher would: it becomes SLURM_SUBMIT_DIR and the working dir.
    submitted = subprocess.run(["sbatch", "--parsable", str(script)], cwd=workdir, env=lane.client_env(),
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if submitted.returncode != 0:
        raise LaneError(f"sbatch of {script} failed: {submitted.stderr.strip()}; read the slurmctld log "
                        f"{lane.paths.slurmctld_log}")
    job_id = submitted.stdout.strip().split(";")[0]
    core = core_api(sandbox.kube.kubeconfig)
    pods: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        # The pods go with the job: note each one (and its node) while it exists.
        for pod in core.list_namespaced_pod(BRIDGE_NAMESPACE, label_selector=f"{LABEL_JOB_ID}={job_id}").items:
            pods[pod.metadata.name] = pod.spec.node_name or "(not placed)"
        fields = dict(kv.split("=", 1) for kv in lane.run("scontrol", "show", "job", "-o", job_id).stdout.split()
                      if "=" in kv)
        state = fields.get("JobState", "UNKNOWN")
        if state in _FINAL:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pod-group job {job_id} is still {state} after {timeout:.0f}s; see `squeue` "
                               f"and `kubectl get sjob,pods`")
        time.sleep(0.3)
    output_file = workdir / f"podgroup-{job_id}.out"
    output = output_file.read_text() if output_file.exists() else ""
    return PodGroupResult(job_id, state, output_file, output, pods, _sacct(sandbox, job_id, timeout=30))


def _sacct(sandbox: Sandbox, job_id: str, timeout: float) -> str:
    """`sacct -X -P` of the job once slurmdbd has its final state ('' without accounting)."""
    if not sandbox.config.accounting:
        return ""
    deadline = time.monotonic() + timeout
    while True:
        out = sandbox.slurm.run("sacct", "-X", "-P", "-j", job_id, "-o", SACCT_FIELDS).stdout.strip()
        lines = out.splitlines()
        if (len(lines) == 2 and lines[1].split("|")[5].split()[0] in _FINAL) or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def _run_on_real_node(sandbox: Sandbox, on_step: Callable[[str], None], timeout: float) -> str:
    """Run a container of the job image (loaded into the nodes by `sunk dev up`) on the first real node."""
    from sunkbridge.k8s.client import core_api

    first = sandbox.real_nodes().running_nodes()[0].name
    core = core_api(sandbox.kube.kubeconfig)
    name = f"demo-real-{uuid.uuid4().hex[:6]}"
    on_step(f"running pod {name} on real node {first}")
    core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": first, "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": JOB_IMAGE, "imagePullPolicy": "Never", "command": [
                     "sh", "-c", "echo \"pod $(hostname) ran on a real kubelet: $(head -1 /etc/os-release)\""]}]}})
    deadline = time.monotonic() + timeout
    while core.read_namespaced_pod(name, "default").status.phase not in {"Succeeded", "Failed"}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pod {name} did not finish within {timeout:.0f}s")
        time.sleep(0.5)
    log = str(core.read_namespaced_pod_log(name, "default")).strip()
    core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
    return log


def _wait_job(show: Callable[[], str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        fields = dict(kv.split("=", 1) for kv in show().split() if "=" in kv)
        state = fields.get("JobState", "UNKNOWN")
        if state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo job is still {state} after {timeout:.0f}s; see `squeue`")
        time.sleep(0.5)
