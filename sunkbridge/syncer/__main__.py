"""`python -m sunkbridge.syncer`: run the syncer against a kubeconfig and a Slurm cluster."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import yaml

from sunkbridge.cluster import NodePool
from sunkbridge.k8s.client import api_client
from sunkbridge.k8s.pools import POOL_LABEL, RACK_LABEL
from sunkbridge.slurm.client import CliSlurmClient, RestSlurmClient, SlurmClient
from sunkbridge.syncer.loop import Syncer, SyncerConfig


def pools_from_names(names: str) -> list[NodePool]:
    """Pools selected by the `sunkbridge.io/pool` label, one partition each, racks as features and switches."""
    return [NodePool(n.strip(), {POOL_LABEL: n.strip()}, feature_labels=(RACK_LABEL,), topology_label=RACK_LABEL)
            for n in names.split(",") if n.strip()]


def pools_from_file(path: Path) -> list[NodePool]:
    """Pools from a YAML/JSON list of NodePool fields (the shape of SlurmCluster `spec.pools[]`)."""
    items = yaml.safe_load(path.read_text()) or []
    pools = []
    for item in items:
        for key in ("feature_labels",):
            if key in item:
                item[key] = tuple(item[key])
        pools.append(NodePool(**item))
    return pools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sunkbridge.syncer", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, default=Path(os.environ.get("KUBECONFIG", "~/.kube/config")))
    parser.add_argument("--slurm-conf", default=os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    parser.add_argument("--pools", default="h100,a100,cpu", help="pool names selected by sunkbridge.io/pool")
    parser.add_argument("--pools-file", type=Path, help="YAML list of NodePool fields (overrides --pools)")
    parser.add_argument("--restd-url", help="read Slurm through slurmrestd v0.0.38 (JWT from `scontrol token`)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between Slurm node-state reads")
    parser.add_argument("--resync", type=float, default=300.0, help="seconds between full resyncs")
    parser.add_argument("--namespace", default="default", help="namespace for Events and the status ConfigMap")
    parser.add_argument("--topology-path", type=Path, help="write topology.conf switches here")
    parser.add_argument("--node-addr", help="NodeAddr of created Slurm nodes (default: Slurm resolves the name)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='{"t":"%(asctime)s","level":"%(levelname)s","msg":%(message)r}')
    pools = pools_from_file(args.pools_file) if args.pools_file else pools_from_names(args.pools)
    cli = CliSlurmClient({"SLURM_CONF": args.slurm_conf})
    slurm: SlurmClient = cli
    if args.restd_url:
        def token() -> str:
            out = cli._run("scontrol", "token", "lifespan=3600").stdout
            return out.strip().split("=", 1)[1]
        slurm = RestSlurmClient(args.restd_url, token, cli)
    config = SyncerConfig(pools, slurm_poll_interval=args.poll, resync_interval=args.resync, node_addr=args.node_addr,
                          namespace=args.namespace, topology_path=args.topology_path)
    print(json.dumps({"syncer": "started", "pools": [p.name for p in pools]}), file=sys.stderr, flush=True)
    Syncer(config, api_client(args.kubeconfig.expanduser()), slurm).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
