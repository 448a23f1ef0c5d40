"""The sync lane: a real Kubernetes control plane (KWOK nodes) and a real Slurm cluster, side by side.

Each test names its own pools, so tests share the two lanes without seeing each other's nodes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from sunkbridge.cluster import NodePool
from sunkbridge.k8s.client import api_client
from sunkbridge.lanes.daemons import free_port
from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig
from sunkbridge.lanes.slurm import NodeSpec, PartitionSpec, SlurmLane, SlurmLaneConfig, make_base_dir
from sunkbridge.slurm.client import SYNC_SLURM_CONF, CliSlurmClient
from sunkbridge.syncer.loop import Syncer, SyncerConfig


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeLane]:
    lane = KubeLane(KubeLaneConfig(base_dir=tmp_path_factory.mktemp("sync-k8s"), api_port=free_port(),
                                   etcd_port=free_port(), etcd_peer_port=free_port()))
    lane.start()
    yield lane
    lane.stop()


@pytest.fixture(scope="session")
def slurm_lane() -> Iterator[SlurmLane]:
    """Slurm with dynamic nodes enabled; `odd_001` is a node no Kubernetes node can be named after."""
    base = make_base_dir("sunk-sync-")
    lane = SlurmLane(SlurmLaneConfig(
        base_dir=base / "lane", cluster_name="sync",
        nodes=(NodeSpec("static-001", cpus=2, memory_mb=1000), NodeSpec("odd_001", cpus=2, memory_mb=1000)),
        partitions=(PartitionSpec("static", ("static-001", "odd_001"), default=True),),
        extra_conf=SYNC_SLURM_CONF)).start()
    yield lane
    lane.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def kube_api(kube: KubeLane) -> client.ApiClient:
    return api_client(kube.kubeconfig)


@pytest.fixture(scope="session")
def core(kube_api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


@pytest.fixture()
def slurm(slurm_lane: SlurmLane) -> CliSlurmClient:
    return CliSlurmClient(slurm_lane.env())


@pytest.fixture()
def run_syncer(kube_api: client.ApiClient, slurm: CliSlurmClient,
               tmp_path: Path) -> Iterator[Callable[..., Syncer]]:
    """Start an in-process syncer for the given pools; stopped after the test."""
    started: list[Syncer] = []

    def start(pools: list[NodePool], **kw: object) -> Syncer:
        kw.setdefault("node_addr", "127.0.0.1")  # KWOK nodes: no slurmd, names no resolver knows
        config = SyncerConfig(pools, slurm_poll_interval=0.3, topology_path=tmp_path / "topology.conf",
                              **kw)  # type: ignore[arg-type]
        syncer = Syncer(config, kube_api, slurm).start()
        started.append(syncer)
        return syncer

    yield start
    for syncer in started:
        syncer.stop()
