"""`sunk bench`: benchmarks of the bridge on private lanes."""

from __future__ import annotations

import json

import click


@click.group("bench")
def bench() -> None:
    """Benchmarks (each starts its own Kubernetes and Slurm lanes)."""


@bench.command("sync")
@click.option("--nodes", default=1000, show_default=True, help="Simulated Kubernetes nodes to create.")
@click.option("--pools", default=4, show_default=True, help="Pools (= Slurm partitions) to spread them over.")
@click.option("--samples", default=20, show_default=True, help="Nodes cordoned and uncordoned one by one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the default output too).")
def sync(nodes: int, pools: int, samples: int, as_json: bool) -> None:
    """Cordon-to-drain latency vs the apiserver's own watch delivery, cold resync time and syncer memory."""
    from sunkbridge.bench.sync import run

    click.echo(json.dumps(run(nodes, pools, samples)))
