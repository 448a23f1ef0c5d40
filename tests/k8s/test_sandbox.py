"""`sunk dev up | status | down` on both real lanes, in a private state folder and on free ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sunkbridge.lanes.daemons import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.slurm]


def _sunk(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sunkbridge", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _lane_processes(root: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(root) in line and " Z" not in line]


@pytest.fixture
def sandbox_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("sandbox", numbered=True)
    root.chmod(0o755)
    env = {**os.environ, "SUNK_STATE": str(root)}
    yield env
    _sunk(env, "dev", "down", "--purge")


def test_dev_up_is_idempotent_reports_status_and_down_leaves_nothing(sandbox_env: dict[str, str]) -> None:
    ports = ["--api-port", str(free_port()), "--etcd-port", str(free_port())]
    first = _sunk(sandbox_env, "dev", "up", "--pools", "h100=2,cpu=1", *ports)
    assert first.returncode == 0, first.stderr
    assert "KUBECONFIG=" in first.stdout and "SLURM_CONF=" in first.stdout
    second = _sunk(sandbox_env, "dev", "up", "--pools", "h100=2,cpu=1", *ports)
    assert second.returncode == 0, second.stderr

    status = json.loads(_sunk(sandbox_env, "dev", "status", "--json").stdout)
    assert status["up"] is True
    assert status["pools"] == {"h100": 2, "cpu": 1}
    # Without real nodes there is no job bridge: no controller, no podgroup partition.
    assert "sunk-bridge-controller" not in status["components"]
    partitions = subprocess.run(["sinfo", "-h", "-o", "%R"], env={**sandbox_env, **status["env"]},
                                capture_output=True, text=True, check=True).stdout.split()
    assert sorted(partitions) == ["a100", "cpu", "h100"]

    env_lines = _sunk(sandbox_env, "dev", "env").stdout
    assert "export KUBECONFIG=" in env_lines and "export SLURM_CONF=" in env_lines

    demo = _sunk(sandbox_env, "dev", "demo", timeout=180)
    assert demo.returncode == 0, demo.stderr
    assert "COMPLETED" in demo.stdout and "task 1 on gpu-002" in demo.stdout
    assert "(pool h100)" in demo.stdout

    root = Path(sandbox_env["SUNK_STATE"])
    down = _sunk(sandbox_env, "dev", "down")
    assert down.returncode == 0, down.stderr
    assert _lane_processes(root) == []
    mounts = Path("/proc/mounts").read_text()
    assert str(root) not in mounts
    stopped = _sunk(sandbox_env, "dev", "status", "--json")
    assert json.loads(stopped.stdout)["up"] is False


def test_dev_up_names_a_taken_port_and_leaves_nothing_running(sandbox_env: dict[str, str]) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        result = _sunk(sandbox_env, "dev", "up", "--api-port", str(taken), "--etcd-port", str(free_port()))
    assert result.returncode == 1
    assert f"port {taken}" in result.stderr and "--api-port" in result.stderr
    assert "Traceback" not in result.stderr
    assert _lane_processes(Path(sandbox_env["SUNK_STATE"])) == []
