"""Entry point of the `sunk` command."""

from __future__ import annotations

import click

from sunk_cli.bench_cmd import bench
from sunk_cli.bench_submit_cmd import submit as bench_submit
from sunk_cli.bridge_cmd import bridge
from sunk_cli.dev import dev
from sunk_cli.images import images
from sunk_cli.inspect_cmd import inspect_cmd
from sunk_cli.operator_cmd import operator, render
from sunk_cli.status_cmd import status_cmd
from sunkbridge import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sunk")
def main() -> None:
    """sunkbridge: Slurm on Kubernetes, with sbatch jobs run as pod groups."""


main.add_command(dev)
main.add_command(inspect_cmd)
main.add_command(images)
main.add_command(status_cmd)
main.add_command(bench)
bench.add_command(bench_submit)
main.add_command(operator)
main.add_command(render)
main.add_command(bridge)
