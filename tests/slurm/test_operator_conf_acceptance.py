"""Configurations the operator renders are accepted by Debian's real slurmctld (22.05).

Each case renders a cluster's files into a private directory, starts slurmctld on them (own munged, own
ports, loopback addresses for the nodes), and reads back partitions, nodes and gres through scontrol.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sunkbridge.lanes.daemons import free_port
from sunkbridge.slurm.conf import ConfInputs, ConfPaths, Partition, SlurmNode, render_all

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def munge_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("munge")
    key = base / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    sock = base / "munge.sock"
    subprocess.run(["/usr/sbin/munged", f"--socket={sock}", f"--key-file={key}", f"--pid-file={base}/pid",
                    f"--log-file={base}/log", f"--seed-file={base}/seed", "-f"], check=True)
    yield sock
    pid = int((base / "pid").read_text())
    os.kill(pid, 15)


def _start(tmp: Path, inputs: ConfInputs) -> dict[str, str]:
    files = render_all(inputs)
    etc = tmp / "etc"
    etc.mkdir(exist_ok=True)
    for name, text in files.items():
        (etc / name).write_text(text)
    env = {**os.environ, "SLURM_CONF": str(etc / "slurm.conf")}
    subprocess.run(["/usr/sbin/slurmctld", "-f", str(etc / "slurm.conf")], check=True, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ping = subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True)
        if "is UP" in ping.stdout:
            return env
        time.sleep(0.3)
    log = (tmp / "log" / "slurmctld.log").read_text()[-2000:]
    raise AssertionError(f"slurmctld did not come up on the rendered conf: {log}")


def _stop(env: dict[str, str]) -> None:
    subprocess.run(["scontrol", "shutdown", "slurmctld"], env=env, capture_output=True)
    time.sleep(1)


def _inputs(tmp: Path, sock: Path, nodes: tuple[SlurmNode, ...], partitions: tuple[Partition, ...],
            **kw: object) -> ConfInputs:
    for sub in ("state", "run", "log", "spool"):
        (tmp / sub).mkdir(exist_ok=True)
    jwt = tmp / "jwt.key"
    jwt.write_bytes(os.urandom(32))
    jwt.chmod(0o600)
    paths = ConfPaths(controller_host=socket.gethostname().split(".")[0], controller_addr="127.0.0.1",
                      slurmctld_port=free_port(), slurmd_port=free_port(), slurm_user="root",
                      state_save=str(tmp / "state"), slurmd_spool=str(tmp / "spool"), run_dir=str(tmp / "run"),
                      log_dir=str(tmp / "log"), auth_info=f"socket={sock}", jwt_key=str(jwt))
    return ConfInputs("acc", nodes, partitions, paths=paths, **kw)  # type: ignore[arg-type]


def _scontrol(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["scontrol", *args], env=env, capture_output=True, text=True, check=True).stdout


def test_gpu_pool_with_topology_podgroup_and_overrides_is_accepted(tmp_path: Path, munge_socket: Path) -> None:
    nodes = tuple(SlurmNode(f"h100-{i:04d}", "h100", 96, 1_048_576, 8, "h100", ("h100", "ib"),
                            f"rack-{(i - 1) // 4}", addr="127.0.0.1") for i in range(1, 9))
    nodes += tuple(SlurmNode(f"cpu-{i}", "pg", 16, 64_000, addr="127.0.0.1") for i in range(1, 3))
    inputs = _inputs(tmp_path, munge_socket, nodes,
                     (Partition("h100", True, {"MaxTime": "4:00:00", "OverSubscribe": "NO"}),
                      Partition("pg", podgroup=True)),
                     overrides={"MaxJobCount": "20000", "MaxArraySize": "1001"})
    env = _start(tmp_path, inputs)
    try:
        part = _scontrol(env, "show", "partition", "h100", "-o")
        assert "Nodes=h100-[0001-0008]" in part and "MaxTime=04:00:00" in part and "Default=YES" in part
        node = _scontrol(env, "show", "node", "h100-0003", "-o")
        assert "Gres=gpu:h100:8" in node and "CPUTot=96" in node and "AvailableFeatures=h100,ib" in node
        assert "Nodes=cpu-[1-2]" in _scontrol(env, "show", "partition", "pg", "-o")
        topo = _scontrol(env, "show", "topology")
        assert "SwitchName=rack-0" in topo and "SwitchName=acc-root" in topo
        assert "job_submit.lua loaded" in (tmp_path / "log" / "slurmctld.log").read_text()
    finally:
        _stop(env)


def test_empty_pool_is_accepted(tmp_path: Path, munge_socket: Path) -> None:
    env = _start(tmp_path, _inputs(tmp_path, munge_socket, (), (Partition("h100", True),)))
    try:
        assert "Nodes=(null)" in _scontrol(env, "show", "partition", "h100", "-o")
    finally:
        _stop(env)


def test_partition_change_applies_with_reconfigure(tmp_path: Path, munge_socket: Path) -> None:
    nodes = (SlurmNode("n1", "p", 4, 4000, addr="127.0.0.1"),)
    inputs = _inputs(tmp_path, munge_socket, nodes, (Partition("p", True, {"MaxTime": "1:00:00"}),))
    env = _start(tmp_path, inputs)
    try:
        changed = ConfInputs(inputs.cluster_name, nodes, (Partition("p", True, {"MaxTime": "2:00:00"}),),
                             paths=inputs.paths)
        (tmp_path / "etc" / "slurm.conf").write_text(render_all(changed)["slurm.conf"])
        _scontrol(env, "reconfigure")
        assert "MaxTime=02:00:00" in _scontrol(env, "show", "partition", "p", "-o")
    finally:
        _stop(env)


def test_missing_munge_is_not_needed_for_the_parse_check(tmp_path: Path) -> None:
    """The operator's pre-rollout check parses a candidate conf with the real client library."""
    from sunkbridge.operator.validate import parse_check

    good = render_all(ConfInputs("c", (), (Partition("p", True),)))
    assert parse_check(good, tmp_path / "good") is None
    bad = dict(good)
    bad["slurm.conf"] += "NotAKey=1\n"
    problem = parse_check(bad, tmp_path / "bad")
    assert problem is not None and "NotAKey" in problem
    shutil.rmtree(tmp_path, ignore_errors=True)
