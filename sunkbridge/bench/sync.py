"""`sunk bench sync`: how fast the syncer turns a cordon into a Slurm drain, against the apiserver's own watch.

Starts a private Kubernetes lane (apiserver + KWOK) and a private Slurm lane, creates N simulated nodes in
P pools, runs the syncer as its own process, and measures:

- `resync_s`: from the syncer's start (cold: Slurm knows none of the nodes) to every node in its partition;
- `cordon_to_drain_*`: from the cordon request to Slurm reporting DRAIN (read with `scontrol show node`);
- `watch_delivery_*`: for the same cordons, from the request to a plain watch of the apiserver seeing it:
  the floor any watch-driven syncer stands on;
- `syncer_rss_mb`: the syncer process's resident memory at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sunkbridge.k8s.client import core_api
from sunkbridge.k8s.pools import PoolSpec
from sunkbridge.lanes.daemons import free_port
from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig
from sunkbridge.lanes.slurm import NodeSpec, PartitionSpec, SlurmLane, SlurmLaneConfig, make_base_dir
from sunkbridge.slurm.client import SYNC_SLURM_CONF, CliSlurmClient


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else 0.0


def _wait(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class _Watcher:
    """A plain watch of Nodes that records when each node was first seen cordoned / uncordoned."""

    def __init__(self, kubeconfig: Path) -> None:
        self.core = core_api(kubeconfig)
        self.seen: dict[tuple[str, bool], float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        version = json.loads(self.core.list_node(_preload_content=False, limit=1).data)["metadata"]
        self._version = version["resourceVersion"]

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        resp = self.core.list_node(watch=True, resource_version=self._version, _preload_content=False,
                                   timeout_seconds=3600)
        buffer = b""
        try:
            self._read(resp, buffer)
        except Exception:  # the lane stops under the watch when the benchmark ends
            return

    def _read(self, resp: Any, buffer: bytes) -> None:
        for chunk in resp.stream(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            now = time.monotonic()
            for line in lines:
                obj = json.loads(line).get("object") or {}
                name = str((obj.get("metadata") or {}).get("name"))
                key = (name, bool((obj.get("spec") or {}).get("unschedulable")))
                self.seen.setdefault(key, now)


def run(nodes: int, pools: int = 4, samples: int = 20, keep: bool = False) -> dict[str, Any]:
    """Run the benchmark on private lanes; returns the figures as one dict."""
    base = Path(tempfile.mkdtemp(prefix="sunk-bench-"))
    kube = KubeLane(KubeLaneConfig(base_dir=base / "k8s", api_port=free_port(), etcd_port=free_port(),
                                   etcd_peer_port=free_port()))
    slurm_base = make_base_dir("sunk-bench-slurm-")
    slurm_lane = SlurmLane(SlurmLaneConfig(
        base_dir=slurm_base / "lane", cluster_name="bench", nodes=(NodeSpec("ctl-001", cpus=2, memory_mb=1000),),
        partitions=(PartitionSpec("ctl", ("ctl-001",), default=True),), extra_conf=SYNC_SLURM_CONF))
    proc: subprocess.Popen[bytes] | None = None
    try:
        kube.start()
        slurm_lane.start()
        specs = [PoolSpec(f"bench-{i}", nodes // pools + (1 if i < nodes % pools else 0),
                          gpu_product="NVIDIA-H100-80GB-HBM3") for i in range(pools)]
        kube.add_pools(specs)
        slurm = CliSlurmClient(slurm_lane.env())
        argv = [sys.executable, "-m", "sunkbridge.syncer", f"--kubeconfig={kube.kubeconfig}",
                f"--slurm-conf={slurm_lane.paths.slurm_conf}", f"--pools={','.join(s.name for s in specs)}",
                "--poll=1.0", "--node-addr=127.0.0.1"]
        started = time.monotonic()
        proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                                stderr=subprocess.DEVNULL)

        def all_in() -> bool:
            return sum(len(p.nodes) for n, p in slurm.partitions().items() if n.startswith("bench-")) >= nodes
        if not _wait(all_in, timeout=600, interval=0.25):
            raise RuntimeError(f"the syncer did not bring {nodes} nodes into Slurm within 600s")
        resync_s = time.monotonic() - started
        watcher = _Watcher(kube.kubeconfig)
        watcher.start()
        time.sleep(0.5)
        core = core_api(kube.kubeconfig)
        names = [s.node_name(i + 1) for i in range(samples) for s in specs][:samples]
        to_drain: list[float] = []
        delivery: list[float] = []
        for name in names:
            def drained(name: str = name) -> bool:
                out = slurm._run("scontrol", "show", "node", name, "-o", check=False).stdout
                return "DRAIN" in out
            t0 = time.monotonic()
            core.patch_node(name, {"spec": {"unschedulable": True}})
            if _wait(drained, timeout=60):
                to_drain.append((time.monotonic() - t0) * 1000)
            def delivered(name: str = name) -> bool:
                return (name, True) in watcher.seen
            _wait(delivered, timeout=10)
            if (name, True) in watcher.seen:
                delivery.append((watcher.seen[(name, True)] - t0) * 1000)
            core.patch_node(name, {"spec": {"unschedulable": None}})
            def resumed(name: str = name) -> bool:
                return not drained(name)
            _wait(resumed, timeout=60)
        return {
            "nodes": nodes, "pools": pools, "samples": len(names),
            "cordon_to_drain_p50_ms": _pct(to_drain, 0.5), "cordon_to_drain_p99_ms": _pct(to_drain, 0.99),
            "watch_delivery_p50_ms": _pct(delivery, 0.5), "watch_delivery_p99_ms": _pct(delivery, 0.99),
            "resync_s": round(resync_s, 2), "syncer_rss_mb": _rss_mb(proc.pid),
            "drain_mean_ms": round(statistics.fmean(to_drain), 1) if to_drain else None,
        }
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        slurm_lane.stop()
        kube.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(slurm_base, ignore_errors=True)
