"""Every Slurm line (bookworm 22.05, trixie 24.11, sid 26.05): its images build and its slurmctld starts.

The newer lines are marked `e2e_slow` (each builds a fresh set of images); they run in a later CI step.
The slow tests also run the whole compose stack on the newer lines, with a 2-node job.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sunkbridge.images.build import IMAGE_NAMES, build_slurm_images, image_tag, repo_root, resolve_line
from sunkbridge.images.stack import SERVICES, ComposeStack

pytestmark = pytest.mark.e2e

LINES = [
    pytest.param("bookworm", id="bookworm-22.05"),
    pytest.param("trixie", id="trixie-24.11", marks=pytest.mark.e2e_slow),
    pytest.param("sid", id="sid-26.05", marks=pytest.mark.e2e_slow),
]
NEWER_LINES = [p for p in LINES if p.values[0] != "bookworm"]


def _docker(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A munge key and a JWT key, as a mounted Secret would hold them."""
    folder = tmp_path / "keys"
    folder.mkdir()
    for name in ("munge.key", "jwt_hs256.key"):
        (folder / name).write_bytes(secrets.token_bytes(1024))
        (folder / name).chmod(0o400)
    return folder


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of containers a test starts; removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        _docker("rm", "-f", "-v", name, check=False)


def _wait_for_ping(container: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc = _docker("exec", container, "scontrol", "ping", check=False, timeout=30)
        last = (proc.stdout + proc.stderr).strip()
        if " is UP" in last:
            return last
        running = _docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout.strip()
        if running != "true":
            break
        time.sleep(1)
    logs = _docker("logs", "--tail", "15", container, check=False)
    pytest.fail(f"slurmctld in {container} does not answer `scontrol ping` ({last}); "
                f"logs: {(logs.stdout + logs.stderr)[-2000:]}")


@pytest.mark.parametrize("line", LINES)
def test_line_images_build_and_slurmctld_starts(line: str, keys: Path, containers: list[str]) -> None:
    slurm = resolve_line(line).slurm
    built = build_slurm_images(line)
    assert [b.name for b in built] == list(IMAGE_NAMES)
    assert all(b.tag.endswith(f":{slurm}") for b in built)

    compose = repo_root() / "compose"
    name = f"sunk-e2e-ctld-{line}-{os.getpid()}"
    containers.append(name)
    _docker("run", "-d", "--name", name, "--hostname", "slurmctld", "--init",
            "-v", f"{compose / 'etc'}:/etc/slurm:ro",
            "-v", f"{compose / 'lines' / slurm}:/etc/slurm-line:ro",
            "-v", f"{compose / 'lines' / slurm / 'cgroup.conf'}:/etc/slurm/cgroup.conf:ro",
            "-v", f"{keys}:/etc/munge-key:ro", "-e", "JWT_KEY_FILE=/etc/munge-key/jwt_hs256.key",
            image_tag("slurmctld", line))
    answer = _wait_for_ping(name)
    assert "Slurmctld(primary) at slurmctld is UP" in answer
    version = _docker("exec", name, "scontrol", "version").stdout
    assert re.match(rf"slurm(-wlm)? {re.escape(slurm)}\.\d+$", version.strip()), version
    daemon_user = _docker("exec", name, "bash", "-c",
                          "stat -c %U /proc/$(cat /run/slurm/slurmctld.pid)").stdout.strip()
    assert daemon_user == "slurm"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("line", NEWER_LINES)
def test_line_stack_runs_a_two_node_job(line: str) -> None:
    stack = ComposeStack(project=f"sunk-e2e-{line}-{os.getpid()}", line=line, restd_port=_free_port())
    try:
        stack.up()
        health = stack.health()
        assert {s: health.get(s) for s in SERVICES} == {s: "healthy" for s in SERVICES}, health
        job = stack.sbatch("-N2", "--wait", "--gres=gpu:h100:1", "--chdir=/shared",
                           "--output=/shared/line-%j.out", "--wrap", "srun -l hostname")
        out = stack.exec("gpu-002", "cat", f"/shared/line-{job}.out").stdout
        assert sorted(out.split()) == ["0:", "1:", "gpu-001", "gpu-002"], out
    finally:
        stack.down()
