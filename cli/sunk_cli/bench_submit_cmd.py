"""`sunk bench submit`: SlurmJob → running pod group throughput and latency, against plain pods."""

from __future__ import annotations

import json

import click


@click.command("submit")
@click.option("--nodes-per-job", default=1, show_default=True, help="Allocated nodes (pods) per job.")
@click.option("--jobs", default=50, show_default=True, help="Jobs submitted at once.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the default output too).")
def submit(nodes_per_job: int, jobs: int, as_json: bool) -> None:
    """Start a control plane with KWOK nodes, push JOBS SlurmJobs through the bridge, then plain pods."""
    from sunkbridge.bench.submit import bench_submit

    click.echo(json.dumps(bench_submit(nodes_per_job, jobs), sort_keys=True))
