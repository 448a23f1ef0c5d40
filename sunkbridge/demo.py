"""The sandbox demo: a 2-node GPU job through the real Slurm, and a GPU pod through the real scheduler."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sunkbridge.k8s.pools import GPU_RESOURCE, POOL_LABEL
from sunkbridge.sandbox import Sandbox

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
    real_output = _run_on_real_node(sandbox, on_step, timeout) if sandbox.config.real_nodes else None
    return DemoResult(job_id, state, output, pod_name, pod.spec.node_name, node.metadata.labels[POOL_LABEL],
                      real_output)


def _run_on_real_node(sandbox: Sandbox, on_step: Callable[[str], None], timeout: float) -> str:
    """Run a container from a locally built image on the first real node and return its output."""
    from sunkbridge.images.base import base_tag, ensure_base
    from sunkbridge.k8s.client import core_api

    nodes = sandbox.real_nodes()
    image = ensure_base("bookworm")
    on_step(f"loading {image} into the real nodes (no registry)")
    nodes.load_image(image)
    first = nodes.running_nodes()[0].name
    core = core_api(sandbox.kube.kubeconfig)
    name = f"demo-real-{uuid.uuid4().hex[:6]}"
    on_step(f"running pod {name} on real node {first}")
    core.create_namespaced_pod("default", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": first, "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": base_tag("bookworm"), "command": [
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
