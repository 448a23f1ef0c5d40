"""The local sandbox: the real Slurm lane and the real Kubernetes lane with simulated GPU pools."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sunkbridge.images.engine import engine_ready
from sunkbridge.k8s.pools import POOL_LABEL, PoolSpec, default_pools
from sunkbridge.lanes.daemons import LaneError
from sunkbridge.lanes.k8s import DAEMONS as KUBE_DAEMONS
from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig
from sunkbridge.lanes.nodes import RealNode, RealNodes, Site
from sunkbridge.lanes.slurm import SlurmLane, SlurmLaneConfig
from sunkbridge.paths import state_root


def sandbox_root() -> Path:
    """The sandbox's state folder."""
    return state_root() / "sandbox"


@dataclass
class SandboxConfig:
    """What `sunk dev up` starts."""

    root: Path = field(default_factory=sandbox_root)
    api_port: int = 6443
    etcd_port: int = 2379
    pools: list[PoolSpec] = field(default_factory=default_pools)
    real_nodes: int = 0
    accounting: bool = True
    """Run slurmdbd and MariaDB with the Slurm lane, so `sacct` answers."""


@dataclass(frozen=True)
class ComponentStatus:
    """One process or group of the sandbox and whether it runs."""

    name: str
    running: bool
    detail: str = ""


@dataclass(frozen=True)
class SandboxStatus:
    """What runs in the sandbox right now."""

    components: list[ComponentStatus]
    pools: dict[str, int]
    env: dict[str, str]

    @property
    def up(self) -> bool:
        return bool(self.components) and all(c.running for c in self.components)


class Sandbox:
    """Start, stop and report on the local sandbox; every operation is idempotent."""

    def __init__(self, config: SandboxConfig | None = None,
                 on_step: Callable[[str], None] = lambda _s: None) -> None:
        self.config = config or SandboxConfig()
        self.on_step = on_step
        root = self.config.root
        self.kube = KubeLane(KubeLaneConfig(base_dir=root / "k8s", api_port=self.config.api_port,
                                            etcd_port=self.config.etcd_port,
                                            etcd_peer_port=self.config.etcd_port + 1), on_step)
        self.slurm = _slurm_lane(root / "slurm")

    def up(self) -> float:
        """Start whatever is not running and add the pools; returns the seconds it took."""
        started = time.monotonic()
        self.config.root.mkdir(parents=True, exist_ok=True)
        try:
            self.on_step("starting the Kubernetes lane")
            self.kube.start()
            self.on_step("adding simulated GPU node pools")
            self.kube.add_pools(self.config.pools)
            names = {p.node_name(i) for p in self.config.pools for i in range(1, p.count + 1)}
            self.kube.wait_nodes_ready(names)
            if self.config.real_nodes:
                self.on_step(f"starting {self.config.real_nodes} real kubelet node(s)")
                self.real_nodes().up(self.config.real_nodes)
            accounting = " (with slurmdbd and MariaDB)" if self.config.accounting else ""
            self.on_step(f"starting the Slurm lane{accounting}")
            if not self.slurm.is_running():
                self.slurm = SlurmLane(SlurmLaneConfig(base_dir=self.config.root / "slurm",
                                                       accounting=self.config.accounting)).start()
        except BaseException:
            self.down()
            raise
        saved = {"api_port": self.config.api_port, "etcd_port": self.config.etcd_port,
                 "real_nodes": self.config.real_nodes, "accounting": self.config.accounting,
                 "pools": [asdict(p) for p in self.config.pools]}
        (self.config.root / "sandbox.json").write_text(json.dumps(saved, indent=2))
        return time.monotonic() - started

    def real_nodes(self) -> RealNodes:
        """The sandbox's real kubelet nodes."""
        return RealNodes(self.kube, Site(0), self.on_step)

    def down(self, purge: bool = False) -> None:
        """Stop every process of the sandbox; with `purge`, delete its state too (the Slurm lane's runtime
        folder with its accounting database included, which lives outside the state folder when that is
        private)."""
        if purge:
            self.slurm.purge()
        else:
            self.slurm.stop()
        if engine_ready():
            self.real_nodes().down()
        self.kube.stop()
        if purge:
            shutil.rmtree(self.config.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """Environment for clients: KUBECONFIG and SLURM_CONF."""
        env = self.kube.env()
        if self.slurm.ports is not None:
            env.update(self.slurm.env())
        return env

    def status(self) -> SandboxStatus:
        """The state of each component and the node count of each pool."""
        components = [ComponentStatus(name, self.kube.daemon_running(name)) for name in KUBE_DAEMONS]
        components.append(ComponentStatus("slurm", self.slurm.is_running()))
        if self.config.real_nodes:
            running_nodes = {n.name for n in self.real_nodes().running_nodes()} if engine_ready() else set()
            for index in range(1, self.config.real_nodes + 1):
                name = RealNode(Site(0), index).name
                components.append(ComponentStatus(name, name in running_nodes, "real kubelet node"))
        pools: dict[str, int] = {}
        if self.kube.daemon_running("kube-apiserver"):
            try:
                pools = self._pool_counts()
            except Exception as exc:  # the apiserver answered /readyz but not this; report, don't fail
                components.append(ComponentStatus("kube-api", False, str(exc)))
        return SandboxStatus(components, pools, self.env())

    def _pool_counts(self) -> dict[str, int]:
        from sunkbridge.k8s.client import core_api

        counts: dict[str, int] = {}
        for node in core_api(self.kube.kubeconfig).list_node(label_selector=POOL_LABEL).items:
            pool = node.metadata.labels[POOL_LABEL]
            counts[pool] = counts.get(pool, 0) + 1
        return counts


def _slurm_lane(base_dir: Path) -> SlurmLane:
    """The Slurm lane recorded under `base_dir`, or a new one to start there."""
    try:
        return SlurmLane.attach(base_dir)
    except LaneError:
        return SlurmLane(SlurmLaneConfig(base_dir=base_dir))


def load_config(root: Path | None = None) -> SandboxConfig:
    """The configuration a running sandbox was started with, else the defaults."""
    root = root or sandbox_root()
    saved = root / "sandbox.json"
    if not saved.exists():
        return SandboxConfig(root=root)
    data = json.loads(saved.read_text())
    return SandboxConfig(root=root, api_port=int(data["api_port"]),
                         etcd_port=int(data["etcd_port"]), real_nodes=int(data.get("real_nodes", 0)),
                         accounting=bool(data.get("accounting", True)),
                         pools=[PoolSpec(**p) for p in data["pools"]])


__all__ = ["LaneError", "Sandbox", "SandboxConfig", "SandboxStatus", "load_config"]
