"""`sunk operator run` and `sunk render`: the SlurmCluster operator and its manifests."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
import yaml


@click.group("operator")
def operator() -> None:
    """The SlurmCluster operator."""


@operator.command("run")
@click.option("--namespace", "namespaces", multiple=True, help="Watch only these namespaces.")
@click.option("--all-namespaces", "-A", "clusterwide", is_flag=True, help="Watch every namespace.")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint URL ('' for none).")
@click.option("--verbose", "-v", is_flag=True)
def run(namespaces: tuple[str, ...], clusterwide: bool, liveness: str, verbose: bool) -> None:
    """Run the operator in the foreground (kubeconfig from $KUBECONFIG, else the pod's service account)."""
    import kopf

    from sunkbridge.operator import handlers  # registers the handlers

    _ = handlers
    if not namespaces and not clusterwide:
        clusterwide = True
    kopf.configure(verbose=verbose)
    if not verbose:
        # One line per handler run drowns what matters; keep the operator's own messages and warnings.
        logging.getLogger("kopf.objects").addFilter(lambda record: "succeeded" not in record.getMessage())
    kopf.run(clusterwide=clusterwide, namespaces=list(namespaces), standalone=True,
             liveness_endpoint=liveness or None)


@click.command("render")
@click.argument("cluster_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--nodes", "nodes_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML/JSON list of Node objects (or a NodeList) to place in the pools.")
@click.option("--files", "files_only", is_flag=True, help="Print only the Slurm configuration files.")
def render(cluster_file: Path, nodes_file: Path | None, files_only: bool) -> None:
    """Print the manifests (or Slurm files) the operator makes from a SlurmCluster, offline."""
    from sunkbridge.operator import builders as b
    from sunkbridge.operator.spec import SpecError, parse_cluster
    from sunkbridge.slurm.conf import conf_hash, render_all

    body = yaml.safe_load(cluster_file.read_text())
    body.setdefault("metadata", {}).setdefault("uid", "00000000-0000-0000-0000-000000000000")
    try:
        spec = parse_cluster(body)
    except SpecError as exc:
        click.echo(f"sunk render: {cluster_file}: {exc}", err=True)
        sys.exit(2)
    raw_nodes = yaml.safe_load(nodes_file.read_text()) if nodes_file else []
    if isinstance(raw_nodes, dict):
        raw_nodes = raw_nodes.get("items", [])
    known: dict[str, tuple[b.Member, str]] = {}
    members = []
    for node in raw_nodes:
        labels = node.get("metadata", {}).get("labels") or {}
        pool = next((p.name for p in spec.pools if p.matches(labels)), None)
        if pool:
            member = b.member_of(spec, pool, node)
            members.append(member)
            known[member.slurm_name] = (member, f"<{member.slurm_name}-pod-ip>")
    files = render_all(b.conf_inputs(spec, known))
    if files_only:
        for name, text in files.items():
            click.echo(f"# ---- {name}\n{text}")
        return
    uid = str(body["metadata"]["uid"])
    docs = [b.conf_map(spec, uid, files, conf_hash(files)),
            b.headless_service(spec, uid, "slurmctld", b.SLURMCTLD_PORT),
            b.headless_service(spec, uid, "slurmd", b.SLURMD_PORT), b.controller_statefulset(spec, uid),
            b.login_deployment(spec, uid), b.busy_pdb(spec, uid), *(b.slurmd_pod(spec, uid, m) for m in members)]
    click.echo(yaml.safe_dump_all(json.loads(json.dumps(docs)), sort_keys=False))
