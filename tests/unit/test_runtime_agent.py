"""The in-pod runtime: srun's layout and per-task environment, scontrol, and a real local step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sunkbridge.runtime import agent
from sunkbridge.sbatch.hostlist import compress_hostlist, expand_hostlist

JOB = {"jobId": 77, "nodes": [{"name": f"n{i}", "host": f"n{i}.svc", "cpus": 4, "gpus": 2} for i in (1, 2, 3)],
       "env": {}, "script": "", "args": []}

names = st.lists(st.builds(lambda p, n, w: f"{p}{str(n).zfill(w)}", st.sampled_from(["a", "gpu-", "n"]),
                           st.integers(0, 120), st.integers(1, 3)), min_size=1, max_size=12)


@given(names)
def test_hostlists_match_the_sbatch_implementation(hosts: list[str]) -> None:
    assert agent.compress_hostlist(hosts) == compress_hostlist(hosts)
    text = compress_hostlist(hosts)
    assert agent.expand_hostlist(text) == expand_hostlist(text)


def test_counts() -> None:
    assert agent.compress_counts([2, 2, 2, 1]) == "2(x3),1"
    assert agent.expand_counts("2(x3),1") == [2, 2, 2, 1]


@pytest.mark.parametrize(("argv", "env", "nodes", "counts"), [
    ([], {"SLURM_NTASKS": "3"}, ["n1", "n2", "n3"], [1, 1, 1]),
    ([], {}, ["n1", "n2", "n3"], [1, 1, 1]),
    (["-n", "5"], {}, ["n1", "n2", "n3"], [2, 2, 1]),
    (["-N1"], {}, ["n1"], [1]),
    (["-N", "2", "--ntasks-per-node=2"], {}, ["n1", "n2"], [2, 2]),
    (["-n2"], {}, ["n1", "n2"], [1, 1]),
    (["-w", "n[2-3]"], {}, ["n2", "n3"], [1, 1]),
    ([], {"SLURM_NTASKS": "6", "SLURM_NTASKS_PER_NODE": "2"}, ["n1", "n2", "n3"], [2, 2, 2]),
])
def test_step_layout(argv: list[str], env: dict[str, str], nodes: list[str], counts: list[int]) -> None:
    opts, cmd = agent.parse_srun([*argv, "hostname"])
    assert cmd == ["hostname"]
    step_nodes, got = agent.plan_step(opts, JOB, env)
    assert [n["name"] for n in step_nodes] == nodes and got == counts


def test_srun_option_errors() -> None:
    with pytest.raises(agent.SrunError, match="unrecognized"):
        agent.parse_srun(["--bogus", "x"])
    with pytest.raises(agent.SrunError, match="not available"):
        agent.plan_step(agent.parse_srun(["-N4", "x"])[0], JOB, {})


def test_task_environment() -> None:
    opts, _ = agent.parse_srun(["-n", "4", "--gpus-per-task=1", "x"])
    nodes, counts = agent.plan_step(opts, JOB, {})
    tasks = agent.task_environments({"SLURM_JOB_ID": "77"}, JOB, 3, nodes, counts, 1)
    assert [(e["SLURM_PROCID"], e["SLURM_LOCALID"], e["SLURM_NODEID"], e["SLURMD_NODENAME"],
             e["CUDA_VISIBLE_DEVICES"]) for _, e in tasks] == [
        ("0", "0", "0", "n1", "0"), ("1", "1", "0", "n1", "1"), ("2", "0", "1", "n2", "0"), ("3", "0", "2", "n3", "0")]
    env = tasks[1][1]
    assert env["SLURM_STEP_ID"] == "3" and env["SLURM_STEP_NODELIST"] == "n[1-3]"
    assert env["SLURM_TASKS_PER_NODE"] == "2,1(x2)" and env["SLURM_NTASKS"] == "4"
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["MASTER_ADDR"]) == ("1", "4", "1", "n1.svc")


def test_requests_are_authenticated() -> None:
    line = agent.sign({"op": "ping"}, b"k")
    assert agent.verify(line, b"k")["op"] == "ping"
    with pytest.raises(PermissionError):
        agent.verify(line, b"k")  # a replay
    with pytest.raises(PermissionError):
        agent.verify(agent.sign({"op": "ping"}, b"other"), b"k")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_step_runs_through_a_real_agent(tmp_path: Path) -> None:
    """One agent on loopback (rank 0 of a one-node job) runs its script, whose srun fans out two tasks."""
    job_dir, rt = tmp_path / "job", tmp_path / "rt"
    job_dir.mkdir()
    rt.mkdir()
    (job_dir / "token").write_text("secret-token\n")
    script = "#!/bin/sh\nsrun -n2 -l sh -c 'echo $SLURM_PROCID/$SLURM_LOCALID/$SLURMD_NODENAME'\n" \
             "scontrol show hostnames n[1-2]\nenv | grep -c secret-token\nexit 3\n"
    doc: dict[str, Any] = {"jobId": 5, "nodes": [{"name": "n1", "host": "127.0.0.1", "cpus": 2, "gpus": 0}],
                           "env": {"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n1"}, "script": script, "args": []}
    (job_dir / "job.json").write_text(json.dumps(doc))
    (rt / "bin").mkdir()
    src = Path(agent.__file__).parent
    for shim in ("srun", "scontrol"):
        (rt / "bin" / shim).write_text((src / shim).read_text())
        (rt / "bin" / shim).chmod(0o755)
    (rt / "agent.py").write_text((src / "agent.py").read_text())
    env = {**os.environ, "SUNK_JOB_DIR": str(job_dir), "SUNK_RUNTIME_DIR": str(rt),
           "SUNK_AGENT_PORT": str(_free_port())}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(rt / "agent.py"), "run", "--rank", "0"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    out = proc.stdout.splitlines()
    assert sorted(out[:2]) == ["0: 0/0/n1", "1: 1/1/n1"]
    assert out[2:] == ["n1", "n2", "0"]
    assert time.monotonic() - start < 30
