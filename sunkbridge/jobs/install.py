"""Put the job bridge into a Slurm configuration directory: job_submit.lua, the launcher, pyxis' options.

The job_submit.lua is the operator's template (``sunkbridge.slurm.conf.render_job_submit_lua``); its
``launcher`` parameter carries the launcher command with the kubeconfig of the launcher's identity.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sunkbridge.slurm.conf import ConfInputs, Partition, render_job_submit_lua

SPANK_SOURCE = Path(__file__).parent / "spank" / "sunk_pyxis.c"
LAUNCHER_SOURCE = Path(__file__).parent / "launcher.py"
_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-=:@+, ")


def slurm_version_number(version: str) -> int:
    """Slurm's SLURM_VERSION_NUMBER for ``22.05.8``."""
    major, minor, micro = (int(x) for x in ([*version.split("."), "0", "0"])[:3])
    return (major << 16) | (minor << 8) | micro


def installed_slurm_version() -> str:
    """The version of the installed Slurm (``slurmd -V`` prints ``slurm-wlm 22.05.8``)."""
    out = subprocess.run(["slurmd", "-V"], capture_output=True, text=True, check=True).stdout
    return out.split()[-1]


def build_spank_plugin(out_dir: Path, version: str | None = None) -> Path:
    """Compile the pyxis-option SPANK plugin for the installed Slurm (cached by source and version)."""
    version = version or installed_slurm_version()
    source = SPANK_SOURCE.read_bytes()
    digest = hashlib.sha256(source + version.encode()).hexdigest()[:12]
    out = out_dir / f"sunk_pyxis-{digest}.so"
    if not out.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        define = f"-DSUNK_SLURM_VERSION={slurm_version_number(version)}"
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", define, "-o", str(tmp), str(SPANK_SOURCE)],
                       check=True, capture_output=True)
        tmp.rename(out)
    return out


def launcher_command(kubeconfig: Path, namespace: str, cluster: str, default_image: str | None = None,
                     python: str = sys.executable, launcher: Path = LAUNCHER_SOURCE) -> str:
    """The command job_submit.lua execs (the job's arguments follow its closing ``--``)."""
    argv = [python, str(launcher), "--kubeconfig", str(kubeconfig), "--namespace", namespace,
            "--cluster", cluster]
    if default_image:
        argv += ["--default-image", default_image]
    for arg in argv:
        if not set(arg) <= _SAFE:
            raise ValueError(f"launcher argument {arg!r} has characters job_submit.lua cannot carry")
    return " ".join(shlex.quote(a) for a in argv) + " --"


def install(etc: Path, cluster: str, podgroup_partitions: Sequence[str], default_partition: str,
            launcher: str, spank_plugin: Path | None) -> dict[str, str]:
    """Write job_submit.lua (and plugstack.conf) into `etc`; return the slurm.conf lines they need."""
    etc.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys([default_partition, *podgroup_partitions]))
    partitions = tuple(Partition(name, default=name == default_partition, podgroup=name in podgroup_partitions)
                       for name in names)
    inputs = ConfInputs(cluster_name=cluster, nodes=(), partitions=partitions, launcher_path=launcher)
    (etc / "job_submit.lua").write_text(render_job_submit_lua(inputs))
    extra = {"JobSubmitPlugins": "lua"}
    if spank_plugin is not None:
        plugstack = etc / "plugstack.conf"
        plugstack.write_text(f"required {spank_plugin}\n")
        extra["PlugStackConfig"] = str(plugstack)
    return extra
