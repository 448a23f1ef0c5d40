"""`sunk bridge controller`: the SlurmJob controller that turns podgroup jobs into pods."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sunkbridge.jobs.builders import SharedVolume


@click.group("bridge")
def bridge() -> None:
    """The job bridge: sbatch jobs of podgroup partitions run as pod groups."""


def _shared_volume(_ctx: click.Context, _param: click.Parameter,
                   values: tuple[str, ...]) -> list[SharedVolume]:
    from sunkbridge.jobs.builders import SharedVolume

    try:
        return [SharedVolume.parse(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@bridge.command("controller")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Kubeconfig of the controller's identity (needs the sunk-jobs-controller Role).")
@click.option("--in-cluster", is_flag=True, help="Use the pod's ServiceAccount instead of a kubeconfig.")
@click.option("--namespace", default="default", show_default=True, help="Namespace of the SlurmJobs and pods.")
@click.option("--slurm-conf", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="slurm.conf of the cluster; with it, pods of jobs Slurm no longer runs are collected.")
@click.option("--shared-volume", "shared_volumes", multiple=True, callback=_shared_volume,
              help="NAME=/PATH[:hostPath=/SRC|:claim=CLAIM]: a volume mounted at PATH in every job pod, "
              "by default the host folder at the same path (repeatable).")
@click.option("--image-pull-policy", default="IfNotPresent", show_default=True,
              type=click.Choice(["Always", "IfNotPresent", "Never"]),
              help="Never when images are loaded into the nodes without a registry.")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file that exists while the controller is synced and working (for a readiness probe).")
def controller(kubeconfig: Path | None, in_cluster: bool, namespace: str, slurm_conf: Path | None,
               shared_volumes: list[SharedVolume], image_pull_policy: str, ready_file: Path | None) -> None:
    """Run the SlurmJob controller in the foreground until SIGTERM or SIGINT."""
    from sunkbridge.jobs.builders import BridgeSettings
    from sunkbridge.jobs.serve import serve

    if (kubeconfig is None) == (not in_cluster):
        raise click.UsageError("give either --kubeconfig FILE or --in-cluster (inside a pod)")
    settings = BridgeSettings(namespace=namespace, image_pull_policy=image_pull_policy,
                              shared_volumes=tuple(shared_volumes))
    try:
        serve(kubeconfig, settings, slurm_conf, lambda line: click.echo(line, err=True), ready_file)
    except TimeoutError as exc:
        click.echo(f"sunk bridge controller: error: {exc}", err=True)
        sys.exit(1)
