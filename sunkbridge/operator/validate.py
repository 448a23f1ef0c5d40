"""Checks of a rendered configuration before it is rolled out, with Slurm's own parser."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path


def parse_check(files: Mapping[str, str], workdir: Path | None = None) -> str | None:
    """Parse `files` with the Slurm client library (`scontrol` reads slurm.conf fully before it acts).

    Returns None when the configuration parses, else Slurm's own error lines; also None when no `scontrol`
    is installed here (the operator then checks inside the slurmctld pod instead).
    """
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return None
    own = workdir is None
    base = Path(tempfile.mkdtemp(prefix="sunk-conf-check-")) if workdir is None else workdir
    base.mkdir(parents=True, exist_ok=True)
    try:
        for name, text in files.items():
            (base / name).write_text(text)
        return check_command_result(subprocess.run(
            [scontrol, "show", "hostnames", "check"], env={**os.environ, "SLURM_CONF": str(base / "slurm.conf")},
            capture_output=True, text=True, timeout=30))
    finally:
        if own:
            shutil.rmtree(base, ignore_errors=True)


def check_command() -> list[str]:
    """The shell command that parses a configuration at $SUNK_CHECK_DIR inside a Slurm container."""
    return ["sh", "-c", 'SLURM_CONF="$SUNK_CHECK_DIR/slurm.conf" scontrol show hostnames check']


def check_command_result(proc: subprocess.CompletedProcess[str]) -> str | None:
    """None when the parse succeeded, else the error lines Slurm printed."""
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    return "; ".join(lines[-3:]) or f"scontrol exited {proc.returncode}"
