"""The in-pod runtime: a stdlib-only agent plus `srun` and `scontrol` shims, shipped to pods in a ConfigMap."""

from __future__ import annotations

from pathlib import Path

RUNTIME_FILES = ("agent.py", "srun", "scontrol")


def runtime_files() -> dict[str, str]:
    """The runtime's files by name, as the ConfigMap carries them."""
    here = Path(__file__).parent
    return {name: (here / name).read_text() for name in RUNTIME_FILES}
