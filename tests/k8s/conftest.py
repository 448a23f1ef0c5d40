"""The Kubernetes lane fixture: a real control plane with KWOK GPU pools, started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from sunkbridge.k8s.client import api_client
from sunkbridge.k8s.pools import PoolSpec, default_pools
from sunkbridge.lanes.daemons import free_port
from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig


@pytest.fixture(scope="session")
def kube_lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeLane]:
    """A running control plane on free loopback ports, with the default pools, torn down at the end."""
    base: Path = tmp_path_factory.mktemp("k8s")
    lane = KubeLane(KubeLaneConfig(base_dir=base, api_port=free_port(), etcd_port=free_port(),
                                   etcd_peer_port=free_port()))
    lane.start()
    pools: list[PoolSpec] = default_pools(h100=2, a100=2, cpu=1)
    lane.add_pools(pools)
    lane.wait_nodes_ready({p.node_name(i) for p in pools for i in range(1, p.count + 1)}, timeout=120)
    yield lane
    lane.stop()


@pytest.fixture(scope="session")
def kube_client(kube_lane: KubeLane) -> client.ApiClient:
    """An admin API client for the lane."""
    return api_client(kube_lane.kubeconfig)
