"""The Docker engine from Debian's packages, installed and started when absent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sunkbridge.lanes.daemons import Daemon, LaneError, running, wait_until
from sunkbridge.paths import state_root

ENGINE_PACKAGES = ("docker.io", "debootstrap", "iptables")


def engine_ready() -> bool:
    """True when `docker info` answers."""
    if shutil.which("docker") is None:
        return False
    proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    return proc.returncode == 0


def install_packages(packages: tuple[str, ...], step: str) -> None:
    """`apt-get install` the packages that are missing; raise LaneError naming the step and the fix."""
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise LaneError(f"{step}: `{' '.join(argv)}` failed ({tail}); check that Debian's package "
                            f"mirror is reachable and run `apt-get install {' '.join(missing)}` by hand")


def engine_daemon() -> Daemon:
    """dockerd as a background daemon of the sandbox."""
    return Daemon(name="dockerd", argv=["dockerd", "--host=unix:///var/run/docker.sock"],
                  run_dir=state_root() / "docker")


def ensure_engine(timeout: float = 60) -> None:
    """Make `docker` usable: install docker.io and start dockerd unless an engine answers already."""
    if engine_ready():
        return
    install_packages(ENGINE_PACKAGES, "installing the Docker engine")
    daemon = engine_daemon()
    if not running(daemon.pidfile):
        Path("/var/run/docker.sock").unlink(missing_ok=True)
        daemon.start()
    wait_until(engine_ready, timeout, "dockerd to answer `docker info`", daemon, interval=0.5)
