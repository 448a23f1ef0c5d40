"""`sunk bridge controller`: the SlurmJob controller that turns podgroup jobs into pods."""

from __future__ import annotations

import sys
from pathlib import Path

import click


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
    from sunkbridge.jobs.serve import serve

    settings = BridgeSettings(namespace=namespace, image_pull_policy=image_pull_policy,
                              shared_volumes=tuple(SharedVolume(n, p) for n, p in shared_volumes))
    try:
        serve(kubeconfig, settings, slurm_conf, lambda line: click.echo(line, err=True))
    except TimeoutError as exc:
        click.echo(f"sunk bridge controller: error: {exc}", err=True)
        sys.exit(1)
