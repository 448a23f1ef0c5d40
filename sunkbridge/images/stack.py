"""The docker-compose Slurm stack (docker-compose.yml at the repo root), driven from Python.

`ComposeStack` builds the images the stack needs, provides `docker compose` when missing, starts the
stack and waits for every health check, runs commands in its services and tears it down with its
volumes. Each stack is a compose project, so several (e.g. one per Slurm line) can run side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sunkbridge.images.build import DEFAULT_LINE, Progress, build_slurm_images, repo_root, resolve_line
from sunkbridge.images.compose import ensure_compose

STACK_IMAGES = ("base", "slurmctld", "slurmd", "login", "slurmrestd")
"""The images the compose stack runs (the init service uses `base`)."""

SERVICES = ("slurmctld", "gpu-001", "gpu-002", "slurmrestd", "login")
"""Its long-running services."""


class StackError(RuntimeError):
    """The stack did not come up, or a command in it failed; the message says which and what to read."""


def _quiet(_step: str) -> None:
    """Default progress callback: say nothing."""


@dataclass
class ComposeStack:
    """One compose project of the Slurm stack, on one Slurm line."""

    project: str = "sunk"
    line: str = DEFAULT_LINE
    restd_port: int = 6820
    compose_file: Path = field(default_factory=lambda: repo_root() / "docker-compose.yml")

    @property
    def slurm(self) -> str:
        """The Slurm release of the stack's images, e.g. `22.05`."""
        return resolve_line(self.line).slurm

    def env(self) -> dict[str, str]:
        """The environment `docker compose` runs with for this stack."""
        return {**os.environ, "SUNK_SLURM": self.slurm, "SUNK_RESTD_PORT": str(self.restd_port)}

    def compose(self, *args: str, check: bool = True, timeout: float = 300,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `docker compose -p PROJECT -f FILE ARGS...`; with `check`, a failure raises StackError."""
        cmd = ["docker", "compose", "-p", self.project, "-f", str(self.compose_file), *args]
        try:
            proc = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=timeout,
                                  input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"`{' '.join(cmd[4:])}` in stack {self.project} did not finish in "
                             f"{timeout:.0f}s") from exc
        if check and proc.returncode != 0:
            detail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise StackError(f"`docker compose {' '.join(args)}` in stack {self.project} exited "
                             f"{proc.returncode}: {detail}")
        return proc

    def up(self, *, build: bool = True, wait_timeout: int = 240, on_step: Progress = _quiet) -> None:
        """Build the images (cached) and start the stack; return when every health check passes."""
        ensure_compose(on_step)
        if build:
            build_slurm_images(self.line, STACK_IMAGES, on_step=on_step)
        on_step(f"starting stack {self.project} (Slurm {self.slurm})")
        proc = self.compose("up", "-d", "--wait", "--wait-timeout", str(wait_timeout), check=False,
                            timeout=wait_timeout + 120)
        if proc.returncode != 0:
            health = ", ".join(f"{k}={v}" for k, v in sorted(self.health().items()))
            bad = [s for s, h in self.health().items() if h not in ("healthy", "exited (0)")]
            logs = self.logs(*bad, tail=5) if bad else ""
            raise StackError(f"stack {self.project} did not come up: {proc.stderr.strip().splitlines()[-1:]}; "
                             f"services: {health}; last log lines: {' | '.join(logs.splitlines()[-10:])}; "
                             f"read `docker compose -p {self.project} logs`")

    def down(self) -> None:
        """Stop the stack and remove its containers, network and volumes."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False, timeout=180)

    def exec(self, service: str, *argv: str, check: bool = True, timeout: float = 120,
             user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv in a running service (no TTY)."""
        extra: Sequence[str] = ("--user", user) if user else ()
        return self.compose("exec", "-T", *extra, service, *argv, check=check, timeout=timeout)

    def logs(self, *services: str, tail: int = 50) -> str:
        """The last log lines of the services (all when none are named)."""
        return self.compose("logs", "--no-color", "--tail", str(tail), *services, check=False).stdout

    def health(self) -> dict[str, str]:
        """service → `healthy`, `unhealthy`, `starting`, `running` (no check) or `exited (N)`."""
        proc = self.compose("ps", "-a", "--format", "json", check=False)
        states: dict[str, str] = {}
        text = proc.stdout.strip()
        rows = json.loads(text) if text.startswith("[") else [json.loads(ln) for ln in text.splitlines() if ln]
        for row in rows:
            service = str(row.get("Service", "?"))
            if row.get("State") == "exited":
                states[service] = f"exited ({row.get('ExitCode', '?')})"
            else:
                states[service] = str(row.get("Health") or row.get("State") or "?")
        return states

    def sbatch(self, *args: str) -> int:
        """Submit from the login service (`sbatch --parsable ARGS`); returns the job id."""
        out = self.exec("login", "sbatch", "--parsable", *args).stdout.strip()
        try:
            return int(out.split(";")[0])
        except ValueError as exc:
            raise StackError(f"sbatch printed {out!r}, not a job id") from exc
