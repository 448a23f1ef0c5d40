"""Run the SlurmJob controller as a foreground process until SIGTERM or SIGINT (`sunk bridge controller`)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from sunkbridge.jobs.builders import BridgeSettings
from sunkbridge.jobs.controller import Controller, slurm_running_jobs
from sunkbridge.k8s.client import api_client, in_cluster_client

READY_LINE = "sunk bridge controller: watching SlurmJobs"
"""Logged once the informers have listed SlurmJobs and pods and the workers run."""


def serve(kubeconfig: Path | None, settings: BridgeSettings, slurm_conf: Path | None,
          say: Callable[[str], None], ready_file: Path | None = None) -> None:
    """Run the controller until SIGTERM/SIGINT; with `slurm_conf`, collect pods of jobs Slurm no longer runs.

    Without `kubeconfig` it uses the pod's ServiceAccount; `ready_file` is written once the informers have
    listed everything and the workers run, and removed at stop (a readiness probe's test).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["SLURM_CONF"] = str(slurm_conf)

    def slurm_running(ids: Sequence[int]) -> set[int]:
        return slurm_running_jobs(ids, env)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    api = api_client(kubeconfig) if kubeconfig is not None else in_cluster_client()
    controller = Controller(api, settings,
                            slurm_running=slurm_running if slurm_conf is not None else None).start()
    say(f"{READY_LINE} in namespace {settings.namespace}")
    if ready_file is not None:
        ready_file.write_text("ready\n")
    stop.wait()
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)
    controller.stop()
    say("sunk bridge controller: stopped")
