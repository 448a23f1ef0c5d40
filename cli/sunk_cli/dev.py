"""`sunk dev`: the local sandbox of real Slurm and a real Kubernetes control plane."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable

import click
from rich.console import Console
from rich.status import Status
from rich.table import Table

from sunkbridge.k8s import binaries
from sunkbridge.k8s.pools import parse_pools
from sunkbridge.lanes.daemons import LaneError
from sunkbridge.sandbox import BRIDGE_PARTITION, Sandbox, SandboxConfig, load_config

console = Console(stderr=True)


def _step_reporter(status: Status) -> Callable[[str], None]:
    """Show each long step in the spinner line and log it with its elapsed time."""
    started = time.monotonic()

    def on_step(step: str) -> None:
        status.update(f"[bold]{step}[/] [dim]({time.monotonic() - started:.0f}s)[/]")
        console.log(step)
    return on_step


def _fail(exc: Exception) -> None:
    click.echo(f"sunk dev: error: {exc}", err=True)
    sys.exit(1)


@click.group()
def dev() -> None:
    """Run the local sandbox: real Slurm + a real Kubernetes control plane with simulated GPU pools."""


@dev.command()
@click.option("--pools", default="h100=4,a100=4,cpu=2", show_default=True,
              help="Simulated node pools as NAME=COUNT (h100/a100 pools get 8 GPUs per node).")
@click.option("--api-port", default=6443, show_default=True, help="kube-apiserver port on 127.0.0.1.")
@click.option("--etcd-port", default=2379, show_default=True,
              help="etcd client port on 127.0.0.1 (the peer port is the next one).")
@click.option("--real-nodes", default=0, show_default=True,
              help="Also run N real worker nodes (kubelet + containerd in containers) that execute pods.")
@click.option("--accounting/--no-accounting", default=True, show_default=True,
              help="Run slurmdbd with a private MariaDB so sacct answers (about 4 s more to start).")
def up(pools: str, api_port: int, etcd_port: int, real_nodes: int, accounting: bool) -> None:
    """Start the sandbox in the background (idempotent); the first run builds Kubernetes from source."""
    try:
        config = SandboxConfig(api_port=api_port, etcd_port=etcd_port, pools=parse_pools(pools),
                               real_nodes=real_nodes, accounting=accounting)
    except ValueError as exc:
        _fail(exc)
    with console.status("starting the sandbox") as status:
        sandbox = Sandbox(config, _step_reporter(status))
        try:
            took = sandbox.up()
        except (LaneError, binaries.BuildError) as exc:
            _fail(exc)
    console.print(f"[green]sandbox up[/] in {took:.1f}s")
    click.echo(_usage(sandbox))


@dev.command()
@click.option("--purge", is_flag=True, help="Also delete the sandbox's state (etcd data, Slurm state, keys).")
def down(purge: bool) -> None:
    """Stop every process of the sandbox."""
    Sandbox(load_config()).down(purge=purge)
    console.print("sandbox stopped" + (" and its state deleted" if purge else ""))


@dev.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """Say what runs in the sandbox."""
    report = Sandbox(load_config()).status()
    if as_json:
        click.echo(json.dumps({"up": report.up, "components": {c.name: c.running for c in report.components},
                               "pools": report.pools, "env": report.env}))
        return
    table = Table("component", "state", "detail")
    for comp in report.components:
        table.add_row(comp.name, "[green]running[/]" if comp.running else "[red]stopped[/]", comp.detail)
    Console().print(table)
    if report.pools:
        Console().print("pools: " + ", ".join(f"{name}={count}" for name, count in sorted(report.pools.items())))
    sys.exit(0 if report.up else 3)


@dev.command()
def env() -> None:
    """Print `export` lines for the sandbox's clients: eval "$(sunk dev env)"."""
    sandbox = Sandbox(load_config())
    for key, value in sandbox.env().items():
        click.echo(f"export {key}={shlex.quote(value)}")
    click.echo(f"export PATH={shlex.quote(str(sandbox.kube.kubectl().parent))}:\"$PATH\"")


@dev.command()
@click.option("--real-nodes", is_flag=True,
              help="Also prepare real nodes: Docker engine, Debian base images, node and job images, CoreDNS.")
def prepare(real_nodes: bool) -> None:
    """Install and build everything the sandbox and the tests need (idempotent, cached)."""
    from sunkbridge.lanes.slurm import ensure_installed

    with console.status("preparing") as status:
        on_step = _step_reporter(status)
        try:
            on_step("installing Debian's Slurm, slurmdbd and MariaDB packages when missing")
            ensure_installed()
            tools = binaries.ALL_TOOLS + (binaries.REAL_NODE_TOOLS if real_nodes else ())
            paths = binaries.build_all(on_step, tools)
            if real_nodes:
                from sunkbridge.images.base import ensure_base
                from sunkbridge.images.job import ensure_job_image
                from sunkbridge.lanes.nodes import RealNodes

                for suite in ("bookworm", "sid"):
                    ensure_base(suite, on_step=on_step)
                RealNodes(Sandbox(load_config()).kube, on_step=on_step).ensure_images()
                ensure_job_image(on_step)
        except (LaneError, binaries.BuildError) as exc:
            _fail(exc)
    for name, path in sorted(paths.items()):
        click.echo(f"{name}\t{path}")


def _usage(sandbox: Sandbox) -> str:
    env = sandbox.env()
    kubectl = sandbox.kube.kubectl()
    return "\n".join([
        "",
        "Use it from this shell:",
        '  eval "$(sunk dev env)"',
        "",
        *(f"  {k}={v}" for k, v in env.items()),
        f"  kubectl: {kubectl}",
        "",
        "Try:",
        "  kubectl get nodes -L sunkbridge.io/pool,nvidia.com/gpu.product",
        "  sinfo",
        "  sbatch -p h100 -N2 --gres=gpu:h100:8 --wrap 'srun hostname'",
        *([f"  sbatch -p {BRIDGE_PARTITION} -N2 --chdir={sandbox.shared_dir} --wrap 'srun hostname'"
           "   # a pod group on the real nodes",
           "  kubectl get sjob,pods -o wide"] if sandbox.config.real_nodes else []),
        "  squeue; sacct",
        "  sunk dev status      # what runs",
        "  sunk dev down        # stop everything",
    ])


@dev.command()
def demo() -> None:
    """Run a 2-node GPU job through the sandbox's Slurm and a GPU pod through its scheduler; with real nodes,
    also a pod on a real kubelet and a 2-node sbatch job of the podgroup partition as a pod group."""
    from sunkbridge.demo import run_demo

    sandbox = Sandbox(load_config())
    if not sandbox.status().up:
        _fail(LaneError("the sandbox is not running; start it with `sunk dev up`"))
    try:
        result = run_demo(sandbox, sandbox.config.root / "demo", console.log)
    except (TimeoutError, LaneError) as exc:
        _fail(exc)
    click.echo(f"Slurm job {result.job_id}: {result.job_state}")
    click.echo(result.job_output.rstrip())
    click.echo(f"Kubernetes pod {result.pod_name}: scheduled on {result.pod_node} (pool {result.pod_pool})")
    if result.real_pod_output:
        click.echo(result.real_pod_output)
    group = result.pod_group
    if group is not None:
        click.echo(f"Pod-group job {group.job_id} (partition {BRIDGE_PARTITION}): {group.job_state}")
        for name, node in sorted(group.pods.items()):
            click.echo(f"  pod {name} on real node {node}")
        click.echo(f"  output file {group.output_file}:")
        click.echo("\n".join(f"    {line}" for line in group.output.rstrip().splitlines()))
        if group.sacct:
            click.echo("  sacct -X -P:")
            click.echo("\n".join(f"    {line}" for line in group.sacct.splitlines()))
        if group.job_state != "COMPLETED":
            _fail(LaneError(f"the pod-group job {group.job_id} ended {group.job_state}; see its output above and "
                            f"`sunk dev status` for the bridge controller's log"))
