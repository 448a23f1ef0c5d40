"""`docker compose` (the v2 CLI plugin) built from its Go module and installed as a docker CLI plugin.

Debian's docker.io engine comes without the compose plugin and no registry or release download is
available, so the plugin is compiled from `github.com/docker/compose/v2` through the Go module proxy,
cached by version (like the Kubernetes binaries), and copied into the docker CLI's per-user plugin folder
(`$DOCKER_CONFIG/cli-plugins`, default `~/.docker/cli-plugins`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from sunkbridge.k8s.binaries import BuildError, GoTool, build

COMPOSE_VERSION = "v2.40.3"
"""The newest docker/compose v2 release the Go module proxy serves (`go list -m -versions ...`)."""

COMPOSE = GoTool(
    name="docker-compose",
    module="github.com/docker/compose/v2",
    version=COMPOSE_VERSION,
    binaries={"docker-compose": "github.com/docker/compose/v2/cmd"},
    ldflags=f"-s -w -X github.com/docker/compose/v2/internal.Version={COMPOSE_VERSION}",
)


def plugin_dir() -> Path:
    """The docker CLI's per-user plugin folder."""
    config = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(config) / "cli-plugins"


def compose_available() -> bool:
    """True when `docker compose version` answers."""
    if shutil.which("docker") is None:
        return False
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return proc.returncode == 0


def ensure_compose(on_step: Callable[[str], None] = lambda _s: None) -> Path:
    """Make `docker compose` work: build the plugin (cached) and install it unless one answers already.

    Returns the plugin's path (the installed copy, or the folder's entry when one was found).
    """
    target = plugin_dir() / "docker-compose"
    if compose_available():
        return target
    binary = build(COMPOSE, on_step) / "docker-compose"
    on_step(f"installing docker-compose {COMPOSE_VERSION} into {target.parent}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(".docker-compose.partial")
    shutil.copy2(binary, partial)
    partial.chmod(0o755)
    partial.replace(target)
    if not compose_available():
        raise BuildError(f"docker compose: the plugin at {target} does not answer `docker compose version`; "
                         f"delete {COMPOSE.bin_dir} and run `sunk images compose` again")
    return target
