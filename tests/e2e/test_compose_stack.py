"""The docker-compose stack: slurmctld, two GPU-like slurmd, slurmrestd and login run a 2-node job."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Iterator

import pytest

from sunkbridge.images.stack import SERVICES, ComposeStack

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stack() -> Iterator[ComposeStack]:
    """The bookworm (Slurm 22.05) stack, up and healthy; removed with its volumes afterwards."""
    stack = ComposeStack(project=f"sunk-e2e-{os.getpid()}", line="bookworm", restd_port=free_port())
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def test_every_service_is_healthy(stack: ComposeStack) -> None:
    health = stack.health()
    assert health.pop("init-keys") == "exited (0)"
    assert health == {s: "healthy" for s in SERVICES}


def test_two_node_sbatch_from_login_lands_in_the_shared_volume(stack: ComposeStack) -> None:
    script = 'srun -l bash -c "echo host=\\$(hostname) rank=\\$SLURM_PROCID gpus=\\$SLURM_GPUS_ON_NODE"'
    job = stack.sbatch("-N2", "--wait", "--gres=gpu:h100:2", "--chdir=/shared",
                       "--output=/shared/two-node-%j.out", "--wrap", script)
    # Read it where the job did not run: the file is in the shared volume, not on one node.
    out = stack.exec("login", "cat", f"/shared/two-node-{job}.out").stdout
    lines = sorted(line.split(": ", 1)[1] for line in out.splitlines() if ": host=" in line)
    assert lines == ["host=gpu-001 rank=0 gpus=2", "host=gpu-002 rank=1 gpus=2"], out
    state = stack.exec("login", "scontrol", "show", "job", "-o", str(job)).stdout
    assert "JobState=COMPLETED" in state and "NodeList=gpu-[001-002]" in state


def test_simulated_gpus_are_character_devices(stack: ComposeStack) -> None:
    for node in ("gpu-001", "gpu-002"):
        out = stack.exec(node, "stat", "-c", "%n %F %t:%T", "/dev/nvidia0", "/dev/nvidia3").stdout
        assert out.split("\n")[:2] == ["/dev/nvidia0 character special file c3:0",
                                       "/dev/nvidia3 character special file c3:3"]
    node = stack.exec("login", "scontrol", "show", "node", "gpu-001").stdout
    assert "Gres=gpu:h100:4" in node


def test_slurmrestd_answers_jwt_requests(stack: ComposeStack) -> None:
    token = stack.exec("login", "scontrol", "token", "lifespan=300").stdout.strip().removeprefix("SLURM_JWT=")
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.restd_port}/slurm/v0.0.38/nodes",
        headers={"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": token})
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200
        body = json.load(reply)
    assert sorted(n["name"] for n in body["nodes"]) == ["gpu-001", "gpu-002"]
    assert body["meta"]["Slurm"]["release"].startswith("22.05")


def test_daemons_run_as_their_users(stack: ComposeStack) -> None:
    def owners(service: str, program: str) -> set[str]:
        scan = (f'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = {program} ] && '
                f'stat -c %U $p; done; true')
        return set(stack.exec(service, "bash", "-c", scan).stdout.split())

    assert owners("slurmctld", "slurmctld") == {"slurm"}
    assert owners("gpu-001", "slurmd") == {"root"}
    assert owners("slurmrestd", "slurmrestd") == {"slurmrestd"}
    assert owners("login", "munged") == {"munge"}
