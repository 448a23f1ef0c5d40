"""`sunk bridge controller`: the SlurmJob controller that turns podgroup jobs into pods."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import click

READY_LINE = "sunk bridge controller: watching SlurmJobs"
"""Printed once the controller's informers have listed everything and its workers run."""


@click.group("bridge")
def bridge() -> None:
    """The job bridge: sbatch jobs of podgroup partitions run as pod groups."""


def _shared_volume(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[tuple[str, str]]:
    volumes = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path.startswith("/"):
            raise click.BadParameter(f"{value!r} is not NAME=/ABSOLUTE/PATH, e.g. shared=/dev/shm/jobs")
        volumes.append((name, path))
    return volumes


@bridge.command("controller")
@click.option("--kubeconfig", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Kubeconfig of the controller's identity (needs the sunk-jobs-controller Role).")
@click.option("--namespace", default="default", show_default=True, help="Namespace of the SlurmJobs and pods.")
@click.option("--slurm-conf", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="slurm.conf of the cluster; with it, pods of jobs Slurm no longer runs are collected.")
@click.option("--shared-volume", "shared_volumes", multiple=True, callback=_shared_volume,
              help="NAME=PATH: a host folder mounted at the same path in every job pod (repeatable).")
@click.option("--image-pull-policy", default="IfNotPresent", show_default=True,
              type=click.Choice(["Always", "IfNotPresent", "Never"]),
              help="Never when images are loaded into the nodes without a registry.")
def controller(kubeconfig: Path, namespace: str, slurm_conf: Path | None,
               shared_volumes: list[tuple[str, str]], image_pull_policy: str) -> None:
    """Run the SlurmJob controller in the foreground until SIGTERM or SIGINT."""
    from sunkbridge.jobs.builders import BridgeSettings, SharedVolume
    from sunkbridge.jobs.controller import Controller, slurm_running_jobs
    from sunkbridge.k8s.client import api_client

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = BridgeSettings(namespace=namespace, image_pull_policy=image_pull_policy,
                              shared_volumes=tuple(SharedVolume(n, p) for n, p in shared_volumes))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["SLURM_CONF"] = str(slurm_conf)

    def slurm_running(ids: Sequence[int]) -> set[int]:
        return slurm_running_jobs(ids, env)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        running = Controller(api_client(kubeconfig), settings,
                             slurm_running=slurm_running if slurm_conf is not None else None).start()
    except TimeoutError as exc:
        click.echo(f"sunk bridge controller: error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{READY_LINE} in namespace {namespace}", err=True)
    stop.wait()
    running.stop()
    click.echo("sunk bridge controller: stopped", err=True)
