"""`sunk dev up --real-nodes 2` runs the job bridge: `sunk dev demo`'s pod-group job runs as pods on the real
kubelets, its output reaches its --output file, sacct records it, and `sunk dev down` leaves nothing.

The sandbox's real nodes are site 0 (`sunk-node-1`, `sunk-node-2`); the test uses its own state folder and
free ports, never the shared sandbox's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sunkbridge.lanes.daemons import free_port
from sunkbridge.lanes.nodes import RealNode, Site

pytestmark = pytest.mark.e2e

NODES = [RealNode(Site(0), i) for i in (1, 2)]


def _sunk(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sunkbridge", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _group(pattern: str, text: str) -> str:
    """The first group of `pattern`'s first match in `text` (lines anchored)."""
    match = re.search(pattern, text, re.M)
    assert match, f"{pattern!r} not in:\n{text}"
    return match.group(1)


def _processes_naming(path: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(path) in line and " Z" not in line]


def _leftovers(root: Path) -> dict[str, list[str]]:
    """Everything of the sandbox's real nodes and bridge that could outlive `sunk dev down`."""
    containers = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                                text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    addresses = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True).stdout
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    return {
        "processes": _processes_naming(root),
        "containers": [c for c in containers if c in {n.name for n in NODES}],
        "bridges": [n.bridge for n in NODES if f" {n.bridge}:" in links],
        "addresses": [a for a in (*(n.node_ip for n in NODES), Site(0).dns_ip) if f" {a}/" in addresses],
        "rules": [r for r in rules.splitlines() if Site(0).pod_supernet in r],
        "mounts": [m for m in Path("/proc/mounts").read_text().splitlines() if str(root) in m],
    }


@pytest.fixture(scope="module")
def sandbox_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    running = subprocess.run(["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
    if any(n.name in running.split() for n in NODES):
        pytest.skip("real nodes of site 0 already run (another sandbox with --real-nodes); stop it first")
    root = tmp_path_factory.mktemp("sandbox-bridge", numbered=True)
    root.chmod(0o755)
    env = {**os.environ, "SUNK_STATE": str(root)}
    yield env
    _sunk(env, "dev", "down", "--purge")


def test_demo_runs_a_pod_group_job_on_the_real_nodes_and_down_leaves_nothing(sandbox_env: dict[str, str]) -> None:
    root = Path(sandbox_env["SUNK_STATE"])
    started = time.monotonic()
    up = _sunk(sandbox_env, "dev", "up", "--real-nodes", "2", "--pools", "h100=2,cpu=1",
               "--api-port", str(free_port()), "--etcd-port", str(free_port()))
    up_seconds = time.monotonic() - started
    assert up.returncode == 0, up.stderr
    status = json.loads(_sunk(sandbox_env, "dev", "status", "--json").stdout)
    assert status["up"] is True and status["components"]["sunk-bridge-controller"] is True, status
    env = {**sandbox_env, **status["env"]}
    assert subprocess.run(["sinfo", "-h", "-p", "k8s", "-o", "%N"], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "sunk-node-[1-2]"

    started = time.monotonic()
    demo = _sunk(sandbox_env, "dev", "demo", timeout=300)
    demo_seconds = time.monotonic() - started
    assert demo.returncode == 0, demo.stdout + demo.stderr
    print(f"sunk dev up --real-nodes 2: {up_seconds:.1f}s; sunk dev demo: {demo_seconds:.1f}s")
    job = _group(r"^Pod-group job (\d+) \(partition k8s\): COMPLETED$", demo.stdout)
    pods = re.findall(rf"^  pod (sunk-{job}-\d+) on real node (\S+)$", demo.stdout, re.M)
    assert sorted(node for _, node in pods) == ["sunk-node-1", "sunk-node-2"], demo.stdout
    assert len({name for name, _ in pods}) == 2

    out_file = Path(_group(r"^  output file (\S+):$", demo.stdout))
    assert out_file.name == f"podgroup-{job}.out"
    lines = out_file.read_text().splitlines()
    assert lines[0] == "batch script on sunk-node-1", lines  # rank 0's pod carries the first Slurm node's name
    assert {f"SLURM_JOB_ID={job}", "SLURM_JOB_PARTITION=k8s", "SLURM_JOB_NODELIST=sunk-node-[1-2]",
            "SLURM_NNODES=2", "SLURM_NTASKS=2", f"SLURM_SUBMIT_DIR={out_file.parent}"} <= set(lines)
    assert lines[lines.index("srun hostname:") + 1:] == ["sunk-node-1", "sunk-node-2"]

    sacct = subprocess.run(["sacct", "-X", "-P", "-n", "-j", job, "-o", "JobID,Partition,NNodes,NodeList,State,"
                            "ExitCode"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert sacct == f"{job}|k8s|2|sunk-node-[1-2]|COMPLETED|0:0"

    kubectl = [_sunk_kubectl(sandbox_env), f"--kubeconfig={env['KUBECONFIG']}"]
    deadline = time.monotonic() + 30
    left = "?"
    while left and time.monotonic() < deadline:  # the SlurmJob, and with it its pods, go with the job
        left = subprocess.run([*kubectl, "get", "slurmjobs,pods,services,secrets", "-l",
                               f"sunkbridge.io/job-id={job}", "-o", "name"], capture_output=True, text=True,
                              check=True).stdout.strip()
        time.sleep(0.5)
    assert left == ""

    down = _sunk(sandbox_env, "dev", "down")
    assert down.returncode == 0, down.stderr
    assert _leftovers(root) == {k: [] for k in ("processes", "containers", "bridges", "addresses", "rules",
                                                "mounts")}
    assert json.loads(_sunk(sandbox_env, "dev", "status", "--json").stdout)["up"] is False
    shared = out_file.parent
    assert _sunk(sandbox_env, "dev", "down", "--purge").returncode == 0
    assert not shared.exists() and not root.joinpath("sandbox").exists()


def _sunk_kubectl(env: dict[str, str]) -> str:
    exports = _sunk(env, "dev", "env").stdout
    return str(Path(_group(r"^export PATH=(\S+):", exports).strip("'")) / "kubectl")
