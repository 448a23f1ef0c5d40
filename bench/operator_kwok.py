"""Operator at scale on KWOK: one SlurmCluster over a pool of N simulated GPU nodes.

Starts its own control plane (real apiserver, etcd, scheduler, controller-manager, KWOK), creates N nodes,
runs the operator as `sunk operator run` (kopf, a separate process), applies a SlurmCluster and measures:
  * converge: apply → every node has a slurmd pod that is Ready and slurm.conf lists all N nodes,
  * reconcile: the duration of one steady-state pass (status.reconcileSeconds, as the operator reports it),
  * rss: the operator process's resident memory (VmRSS) and peak (VmHWM) after converging.

    python3 bench/operator_kwok.py --nodes 1000 [--json bench/operator_kwok.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sunkbridge.k8s.client import api_client
from sunkbridge.k8s.pools import PoolSpec
from sunkbridge.lanes.daemons import free_port
from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig
from sunkbridge.operator.kube import Kube
from sunkbridge.operator.spec import GROUP, PLURAL, VERSION
from sunkbridge.operator.tools import kubectl

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sunk-bench-operator-"))
    lane = KubeLane(KubeLaneConfig(base_dir=base, api_port=free_port(), etcd_port=free_port(),
                                   etcd_peer_port=free_port()))
    lane.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        pool = PoolSpec("h100", args.nodes, gpus=8, gpu_product="NVIDIA-H100-80GB-HBM3")
        t0 = time.monotonic()
        lane.add_pools([pool])
        nodes_seconds = time.monotonic() - t0
        subprocess.run([str(kubectl()), "--kubeconfig", str(lane.kubeconfig), "apply", "--server-side", "-f",
                        str(ROOT / "manifests" / "base" / "crds")], check=True, capture_output=True)
        time.sleep(2)
        log = (base / "operator.log").open("wb")
        operator = subprocess.Popen([sys.executable, "-m", "sunkbridge", "operator", "run", "-A", "--liveness", ""],
                                    env={**os.environ, "KUBECONFIG": str(lane.kubeconfig)}, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=ROOT)
        kube = Kube(api_client(lane.kubeconfig))
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SlurmCluster",
                "metadata": {"name": "bench", "namespace": "default"},
                "spec": {"controller": {"persistence": {"enabled": False}},
                         "pools": [{"name": "h100", "default": True,
                                    "nodeSelector": {"sunkbridge.io/pool": "h100"}}]}}
        time.sleep(3)
        started = time.monotonic()
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
        converge = None
        status: dict[str, object] = {}
        while time.monotonic() - started < args.timeout:
            obj = kube.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "bench")
            status = obj.get("status") or {}
            pools = status.get("pools") or []
            conf = kube.get_or_none("/api/v1/namespaces/default/configmaps/bench-slurm-conf")
            listed = conf is not None and f"NodeName=h100-[0001-{args.nodes:04d}]" in conf["data"]["slurm.conf"]
            if listed and pools and pools[0].get("ready") == "True":  # type: ignore[index,union-attr]
                converge = time.monotonic() - started
                break
            time.sleep(1)
        time.sleep(15)  # a few steady passes
        obj = kube.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "bench")
        rss, hwm = _rss_kib(operator.pid)
        figures = {
            "nodes": args.nodes,
            "create_nodes_seconds": round(nodes_seconds, 1),
            "converge_seconds": round(converge, 1) if converge is not None else None,
            "steady_reconcile_seconds": (obj.get("status") or {}).get("reconcileSeconds"),
            "operator_rss_mib": round(rss / 1024, 1),
            "operator_peak_rss_mib": round(hwm / 1024, 1),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(20)
            except subprocess.TimeoutExpired:
                operator.kill()
        lane.stop()


if __name__ == "__main__":
    main()
