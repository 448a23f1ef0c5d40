"""The real Slurm lane: jobs span simulated GPU nodes, slurmrestd answers, stop leaves nothing behind."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sunkbridge.lanes.slurm import (
    REST_API_VERSION,
    NodeSpec,
    PartitionSpec,
    SlurmLane,
    SlurmLaneConfig,
    SlurmLaneError,
    make_base_dir,
)

pytestmark = pytest.mark.slurm

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}


def _job_field(lane: SlurmLane, job_id: str, key: str) -> str:
    line = lane.run("scontrol", "show", "job", "-o", job_id).stdout
    for token in line.split():
        if token.startswith(f"{key}="):
            return token.split("=", 1)[1]
    raise AssertionError(f"{key} missing from {line!r}")


def _submit(lane: SlurmLane, *argv: str) -> str:
    return lane.run("sbatch", "--parsable", *argv).stdout.strip().split(";")[0]


def _wait_done(lane: SlurmLane, job_id: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    state = "?"
    while time.monotonic() < deadline:
        state = _job_field(lane, job_id, "JobState")
        if state in TERMINAL:
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {state} after {timeout}s")


def _small_config(base: Path, **overrides: Any) -> SlurmLaneConfig:
    nodes = (
        NodeSpec("gpu-001", cpus=8, memory_mb=4000, gpus=4, gpu_type="h100"),
        NodeSpec("gpu-002", cpus=8, memory_mb=4000, gpus=4, gpu_type="h100"),
        NodeSpec("gpu-003", cpus=8, memory_mb=4000, gpus=4, gpu_type="a100"),
        NodeSpec("gpu-004", cpus=8, memory_mb=4000, gpus=4, gpu_type="a100"),
    )
    parts = (
        PartitionSpec("h100", ("gpu-001", "gpu-002"), default=True),
        PartitionSpec("a100", ("gpu-003", "gpu-004")),
    )
    return SlurmLaneConfig(base_dir=base / "lane", cluster_name="small", nodes=nodes, partitions=parts,
                           **overrides)


def test_every_node_is_idle_in_its_partition(slurm_lane: SlurmLane) -> None:
    out = slurm_lane.run("sinfo", "-h", "-N", "-o", "%N %P %t %G").stdout.split("\n")
    rows = {tuple(line.split()) for line in out if line.strip()}
    assert rows == {
        ("gpu-001", "h100*", "idle", "gpu:h100:8"),
        ("gpu-002", "h100*", "idle", "gpu:h100:8"),
        ("gpu-003", "a100", "idle", "gpu:a100:8"),
        ("gpu-004", "a100", "idle", "gpu:a100:8"),
        ("cpu-001", "cpu", "idle", "(null)"),
        ("cpu-002", "cpu", "idle", "(null)"),
    }
    assert slurm_lane.is_running()


def test_two_node_gpu_job_reaches_both_nodes(slurm_lane: SlurmLane, tmp_path: Path) -> None:
    script = tmp_path / "two_nodes.sbatch"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --nodes=2 --ntasks-per-node=1 --gres=gpu:h100:4 --partition=h100 --time=2\n"
        "echo \"batch nodelist=$SLURM_JOB_NODELIST nnodes=$SLURM_NNODES ntasks=$SLURM_NTASKS\"\n"
        "srun hostname | sed 's/^/hostname /'\n"
        "srun bash -c 'echo task node=$SLURM_NODEID proc=$SLURM_PROCID host=$SLURMD_NODENAME "
        "gpus=$SLURM_GPUS_ON_NODE cvd=$CUDA_VISIBLE_DEVICES'\n"
    )
    out = tmp_path / "out.txt"
    job_id = _submit(slurm_lane, f"--output={out}", str(script))
    assert _wait_done(slurm_lane, job_id) == "COMPLETED", out.read_text() if out.exists() else "(no output)"
    lines = out.read_text().splitlines()
    assert "batch nodelist=gpu-[001-002] nnodes=2 ntasks=2" in lines
    assert len([line for line in lines if line.startswith("hostname ")]) == 2
    tasks = sorted(line for line in lines if line.startswith("task "))
    assert tasks == [
        "task node=0 proc=0 host=gpu-001 gpus=4 cvd=0,1,2,3",
        "task node=1 proc=1 host=gpu-002 gpus=4 cvd=0,1,2,3",
    ]


def test_srun_env_carries_job_and_task_variables(slurm_lane: SlurmLane, tmp_path: Path) -> None:
    script = tmp_path / "env.sbatch"
    wanted = "NODEID|PROCID|LOCALID|JOB_PARTITION|GPUS_ON_NODE|JOB_NUM_NODES|CLUSTER_NAME"
    script.write_text(f"#!/bin/bash\nsrun env | grep -E '^SLURM_({wanted})=' | sort -u\n")
    out = tmp_path / "env.txt"
    job_id = _submit(slurm_lane, "-p", "a100", "-N2", "--gpus-per-node=a100:2", f"--output={out}",
                     str(script))
    assert _wait_done(slurm_lane, job_id) == "COMPLETED"
    env = set(out.read_text().split())
    assert {"SLURM_NODEID=0", "SLURM_NODEID=1", "SLURM_PROCID=0", "SLURM_PROCID=1", "SLURM_LOCALID=0",
            "SLURM_JOB_PARTITION=a100", "SLURM_GPUS_ON_NODE=2", "SLURM_JOB_NUM_NODES=2",
            "SLURM_CLUSTER_NAME=sunk"} <= env


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self._path)
        self.sock = sock


def _node_names(payload: dict[str, Any]) -> dict[str, str]:
    assert payload["errors"] == [], payload["errors"]
    return {node["name"]: node["gres"] for node in payload["nodes"]}


def test_slurmrestd_lists_nodes_over_its_socket(slurm_lane: SlurmLane) -> None:
    conn = _UnixHTTPConnection(slurm_lane.env()["SUNK_SLURMRESTD_SOCKET"])
    conn.request("GET", f"/slurm/{REST_API_VERSION}/nodes")
    resp = conn.getresponse()
    assert resp.status == 200
    nodes = _node_names(json.loads(resp.read()))
    assert set(nodes) == set(slurm_lane.node_names)
    assert nodes["gpu-003"] == "gpu:a100:8"


def test_slurmrestd_lists_nodes_with_a_jwt(slurm_lane: SlurmLane) -> None:
    req = urllib.request.Request(
        f"{slurm_lane.restd_url}/slurm/{REST_API_VERSION}/nodes",
        headers={"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": slurm_lane.token("root", 300)},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        nodes = _node_names(json.loads(resp.read()))
    assert set(nodes) == set(slurm_lane.node_names)
    bad = urllib.request.Request(f"{slurm_lane.restd_url}/slurm/{REST_API_VERSION}/nodes",
                                 headers={"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": "not-a-token"})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(bad, timeout=10)


def test_attach_finds_the_running_lane(slurm_lane: SlurmLane) -> None:
    again = SlurmLane.attach(slurm_lane.base_dir)
    assert again.is_running()
    assert again.env() == slurm_lane.env()
    assert again.run("scontrol", "ping").stdout.count("is UP") == 1


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_lane_outlives_its_starter_and_stops_from_another_process() -> None:
    base = make_base_dir("sunk-slurm-small-")
    config = _small_config(base)
    start = _python(
        "from pathlib import Path\n"
        "from sunkbridge.lanes.slurm import NodeSpec, PartitionSpec, SlurmLane, SlurmLaneConfig\n"
        f"SlurmLane(SlurmLaneConfig(base_dir=Path({str(config.base_dir)!r}), cluster_name='small', "
        f"nodes={config.nodes!r}, partitions={config.partitions!r})).start()\n"
    )
    assert start.returncode == 0, start.stderr
    lane = SlurmLane.attach(config.base_dir)
    try:
        assert lane.is_running()
        job = _submit(lane, "-N2", "-o", "/dev/null", "--wrap", "srun sleep 300")
        deadline = time.monotonic() + 30
        while _job_field(lane, job, "JobState") != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _job_field(lane, job, "JobState") == "RUNNING"
        time.sleep(1)
        assert _all_listening(lane)
        busy = lane.processes()
        assert {"mariadbd", "slurmdbd"} <= {_comm(pid) for pid in busy}
        stop = _python("from sunkbridge.lanes.slurm import SlurmLane\n"
                       f"SlurmLane.attach({str(config.base_dir)!r}).stop()\n")
        assert stop.returncode == 0, stop.stderr
        assert lane.processes() == []
        assert not any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in busy)
        assert not lane.is_running()
        assert lane.ports is not None
        assert lane.ports.slurmdbd is not None and lane.ports.mariadb is not None
        ports = [lane.ports.slurmctld, lane.ports.restd, *lane.ports.slurmd.values(), lane.ports.slurmdbd,
                 lane.ports.mariadb]
        assert not any(_listening(p) for p in ports)
        assert str(base) not in Path("/proc/mounts").read_text()
        assert not list((config.base_dir / "run").glob("*.pid"))
    finally:
        lane.stop()
        shutil.rmtree(base, ignore_errors=True)


def _all_listening(lane: SlurmLane) -> bool:
    assert lane.ports is not None
    return _listening(lane.ports.slurmctld) and all(_listening(p) for p in lane.ports.slurmd.values())


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def test_a_base_dir_under_a_private_parent_keeps_sockets_elsewhere() -> None:
    private = Path(tempfile.mkdtemp(prefix="sunk-private-"))  # 0700, like a home directory
    lane = SlurmLane(_small_config(private, jwt=False))
    try:
        lane.start()
        assert lane.paths.runtime != lane.base_dir
        assert Path(lane.env()["SLURM_CONF"]).is_relative_to(lane.paths.runtime)
        assert set(lane.node_states().values()) == {"idle"}
        assert SlurmLane.attach(lane.base_dir).env() == lane.env()
        # MariaDB runs as `mysql`, which cannot reach the private base: its datadir lives beside the sockets.
        assert lane.paths.db_data.is_relative_to(lane.paths.runtime)
        assert lane.run("sacctmgr", "-n", "-P", "show", "cluster", "format=cluster").stdout.split() == ["small"]
    finally:
        lane.purge()
        shutil.rmtree(private, ignore_errors=True)
    assert lane.processes() == []
    assert not lane.paths.runtime.exists()


def test_a_taken_port_is_reported_before_anything_starts() -> None:
    base = make_base_dir("sunk-slurm-port-")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        lane = SlurmLane(_small_config(base, slurmctld_port=port))
        with pytest.raises(SlurmLaneError) as err:
            lane.start()
    message = str(err.value)
    assert "check ports" in message and str(port) in message and "fix:" in message
    assert "\n" not in message
    assert lane.processes() == []
    shutil.rmtree(base, ignore_errors=True)


def test_a_daemon_dying_at_start_is_reported_and_cleaned_up() -> None:
    base = make_base_dir("sunk-slurm-bad-")
    # Slurm 22.05 refuses GPU TRES accounting without slurmdbd: slurmctld exits right after starting.
    lane = SlurmLane(_small_config(base, accounting=False, extra_conf={"AccountingStorageTRES": "gres/gpu"}))
    with pytest.raises(SlurmLaneError) as err:
        lane.start()
    message = str(err.value)
    assert message.startswith("slurm lane: start slurmctld failed:")
    assert "slurmdbd is required" in message
    assert f"log: {lane.paths.slurmctld_log}" in message and "fix:" in message
    assert lane.processes() == [], "munged should have been stopped again"
    shutil.rmtree(base, ignore_errors=True)


def test_client_env_points_at_the_lane(slurm_lane: SlurmLane) -> None:
    env = slurm_lane.env()
    assert Path(env["SLURM_CONF"]).is_file()
    proc = subprocess.run(["scontrol", "show", "config"], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=30)
    assert "ClusterName             = sunk" in proc.stdout
    assert "MaxArraySize            = 1001" in proc.stdout
