"""`sunk status`: pools, partitions and node states side by side, disagreements flagged."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from sunkbridge.k8s.client import api_client
from sunkbridge.slurm.client import CliSlurmClient, SlurmError
from sunkbridge.syncer.__main__ import pools_from_file, pools_from_names
from sunkbridge.syncer.view import NodeRow, compare


@dataclass(frozen=True)
class _Args:
    kubeconfig: Path
    slurm_conf: str


def _defaults() -> _Args:
    from sunkbridge.sandbox import Sandbox, load_config

    sandbox = Sandbox(load_config())
    env = sandbox.env()
    return _Args(Path(os.environ.get("KUBECONFIG") or env.get("KUBECONFIG", "~/.kube/config")),
                 os.environ.get("SLURM_CONF") or env.get("SLURM_CONF", "/etc/slurm/slurm.conf"))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--pools", default="h100,a100,cpu", show_default=True, help="Pool names (sunkbridge.io/pool).")
@click.option("--pools-file", type=click.Path(exists=True, path_type=Path), help="YAML list of pools.")
@click.option("--kubeconfig", type=click.Path(path_type=Path), help="Default: $KUBECONFIG or the sandbox's.")
@click.option("--slurm-conf", help="Default: $SLURM_CONF or the sandbox's.")
def status_cmd(as_json: bool, pools: str, pools_file: Path | None, kubeconfig: Path | None,
               slurm_conf: str | None) -> None:
    """Pools, partitions and node states side by side; rows where Kubernetes and Slurm disagree are flagged."""
    defaults = _defaults() if kubeconfig is None or slurm_conf is None else None
    kc = kubeconfig or (defaults.kubeconfig if defaults else Path("~/.kube/config"))
    sc = slurm_conf or (defaults.slurm_conf if defaults else "/etc/slurm/slurm.conf")
    pool_list = pools_from_file(pools_file) if pools_file else pools_from_names(pools)
    try:
        from kubernetes import client

        core = client.CoreV1Api(api_client(kc.expanduser()))
        raw = json.loads(core.list_node(_preload_content=False).data)
        slurm = CliSlurmClient({"SLURM_CONF": sc})
        rows = compare(raw.get("items") or [], slurm.nodes(), slurm.partitions(), pool_list)
    except (SlurmError, OSError, Exception) as exc:  # one line, then a non-zero exit
        click.echo(f"sunk status: error: {exc}".splitlines()[0], err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"nodes": [asdict(r) for r in rows],
                               "disagreements": sum(1 for r in rows if r.problem)}, indent=1))
        return
    _table(rows)


def _table(rows: list[NodeRow]) -> None:
    table = Table(title="sunkbridge: Kubernetes pools vs Slurm partitions")
    for col in ("pool", "k8s node", "k8s state", "partition", "slurm node", "slurm state", "reason", ""):
        table.add_column(col)
    for r in rows:
        flag = f"[red]✗ {r.problem}[/]" if r.problem else "[green]✓[/]"
        table.add_row(r.pool or "-", r.k8s_node or "-", r.k8s_state or "-", r.partition or "-",
                      r.slurm_node or "-", r.slurm_state or "-", r.reason or "", flag)
    Console().print(table)
