"""Real kubelet nodes: pods from locally built images run, and talk across nodes by Service name."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sunkbridge.images.base import ensure_base
from sunkbridge.k8s.client import api_client
from sunkbridge.lanes.daemons import LaneError, free_port
from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig
from sunkbridge.lanes.nodes import REAL_POOL, RealNodes, Site

pytestmark = pytest.mark.e2e

PROBE_IMAGE = "local/sunk-e2e-probe:1"
PROBE_CONTEXT = Path(__file__).parent / "probe"


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeLane, RealNodes]]:
    """A control plane of its own with two real nodes on site 1 (the sandbox uses site 0)."""
    ensure_base("bookworm")
    subprocess.run(["docker", "build", "-q", "-t", PROBE_IMAGE, str(PROBE_CONTEXT)], check=True,
                   capture_output=True)
    lane = KubeLane(KubeLaneConfig(base_dir=tmp_path_factory.mktemp("k8s-real"), api_port=free_port(),
                                   etcd_port=free_port(), etcd_peer_port=free_port()))
    lane.start()
    nodes = RealNodes(lane, Site(1, "sunk-e2e-node-"))
    try:
        nodes.up(2, images=(PROBE_IMAGE,))
        yield lane, nodes
    finally:
        nodes.down()
        lane.stop()


@pytest.fixture(scope="module")
def core(real_cluster: tuple[KubeLane, RealNodes]) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(real_cluster[0].kubeconfig))


def _pod(name: str, node: str, command: list[str], labels: dict[str, str] | None = None,
         **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"nodeName": node, "restartPolicy": "Never", **spec,
                     "containers": [{"name": "main", "image": PROBE_IMAGE, "command": command}]}}


def _wait_phase(core: client.CoreV1Api, name: str, phases: set[str], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    phase = "?"
    while time.monotonic() < deadline:
        phase = core.read_namespaced_pod(name, "default").status.phase
        if phase in phases:
            return str(phase)
        time.sleep(0.5)
    raise AssertionError(f"pod {name} is still {phase} after {timeout}s")


def test_real_nodes_join_ready_and_run_containerd(core: client.CoreV1Api,
                                                  real_cluster: tuple[KubeLane, RealNodes]) -> None:
    nodes = core.list_node(label_selector=f"sunkbridge.io/pool={REAL_POOL}").items
    assert sorted(n.metadata.name for n in nodes) == ["sunk-e2e-node-1", "sunk-e2e-node-2"]
    for node in nodes:
        assert node.status.node_info.container_runtime_version.startswith("containerd://2.")
        assert node.status.node_info.kubelet_version == "v1.36.3"


def test_each_real_node_runs_a_command_from_the_locally_built_image(core: client.CoreV1Api) -> None:
    names = []
    for node in ("sunk-e2e-node-1", "sunk-e2e-node-2"):
        name = f"probe-{uuid.uuid4().hex[:6]}"
        core.create_namespaced_pod("default", _pod(name, node, ["sh", "-c", "cat /etc/sunk-probe; hostname"]))
        names.append(name)
    for name in names:
        assert _wait_phase(core, name, {"Succeeded", "Failed"}) == "Succeeded"
        log = core.read_namespaced_pod_log(name, "default")
        assert log.splitlines() == ["built locally for sunkbridge e2e", name]


def test_pods_on_two_nodes_talk_by_headless_service_name(core: client.CoreV1Api) -> None:
    suffix = uuid.uuid4().hex[:6]
    service = f"peers-{suffix}"
    core.create_namespaced_service("default", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": service},
        "spec": {"clusterIP": "None", "selector": {"group": suffix}, "ports": [{"port": 7000}]}})
    server = f"rank0-{suffix}"
    core.create_namespaced_pod("default", _pod(server, "sunk-e2e-node-1", ["greet", "7000"],
                                               labels={"group": suffix}, hostname="rank0", subdomain=service))
    assert _wait_phase(core, server, {"Running"}) == "Running"
    fqdn = f"rank0.{service}.default.svc.cluster.local"
    client_pod = f"rank1-{suffix}"
    script = (f"for i in $(seq 50); do getent hosts {fqdn} && break; sleep 0.2; done; "
              f"exec 3<>/dev/tcp/{fqdn}/7000 && cat <&3")
    core.create_namespaced_pod("default", _pod(client_pod, "sunk-e2e-node-2", ["bash", "-c", script],
                                               labels={"group": suffix}))
    phase = _wait_phase(core, client_pod, {"Succeeded", "Failed"})
    log = core.read_namespaced_pod_log(client_pod, "default").splitlines()
    assert phase == "Succeeded", log
    server_ip = core.read_namespaced_pod(server, "default").status.pod_ip
    assert log[0].split() == [server_ip, fqdn]
    assert log[-1] == "hello from rank0"
    assert server_ip.startswith("10.245.1.")
    assert core.read_namespaced_pod(client_pod, "default").status.pod_ip.startswith("10.245.2.")


def test_a_node_that_cannot_join_is_named_with_its_log_and_nothing_stays(
        real_cluster: tuple[KubeLane, RealNodes]) -> None:
    lane, _ = real_cluster
    site = Site(4, "sunk-e2e-broken-")
    node_ip = "10.250.4.1"
    subprocess.run(["ip", "addr", "add", f"{node_ip}/32", "dev", "lo", "label", "lo:sunk4n1"], check=False)
    with socket.socket() as squatter:  # the kubelet's port on the node's address is taken: a real fault
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((node_ip, 10250))
        squatter.listen()
        with pytest.raises(LaneError) as failure:
            RealNodes(lane, site).up(1, ready_timeout=90)
    message = str(failure.value)
    assert "sunk-e2e-broken-1" in message
    assert "address already in use" in message
    assert "docker logs" in message
    left = subprocess.run(["docker", "ps", "-a", "--filter", "name=^sunk-e2e-broken-", "--format", "{{.Names}}"],
                          capture_output=True, text=True).stdout.split()
    assert left == []
    assert f" {node_ip}/" not in subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True,
                                                 text=True).stdout
