"""The local sandbox: the real Slurm lane and the real Kubernetes lane with simulated GPU pools.

With real nodes, the sandbox also runs the job bridge: Slurm nodes named after the real Kubernetes
nodes form the podgroup partition `k8s`, job_submit.lua hands its jobs to the launcher, and the SlurmJob
controller (`sunk bridge controller`, a background daemon with its own least-privilege identity) runs
one pod per allocated node. Job folders live under /dev/shm, which the node containers share with the
host, so a job's files have the same path for sbatch, slurmd and the pods.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sunkbridge.images.engine import engine_ready
from sunkbridge.images.job import JOB_IMAGE, ensure_job_image
from sunkbridge.k8s.pools import POOL_LABEL, PoolSpec, default_pools
from sunkbridge.lanes import pki
from sunkbridge.lanes.daemons import Daemon, LaneError, running, stop_pidfile, wait_until
from sunkbridge.lanes.k8s import DAEMONS as KUBE_DAEMONS
from sunkbridge.lanes.k8s import KubeLane, KubeLaneConfig
from sunkbridge.lanes.nodes import RealNode, RealNodes, Site
from sunkbridge.lanes.slurm import (
    NodeSpec,
    PartitionSpec,
    SlurmLane,
    SlurmLaneConfig,
    default_nodes,
    default_partitions,
)
from sunkbridge.paths import state_root

BRIDGE_PARTITION = "k8s"
"""The podgroup partition over the real nodes: its jobs run as pod groups."""
BRIDGE_NAMESPACE = "default"
BRIDGE_CONTROLLER = "sunk-bridge-controller"
CONTROLLER_USER = "sunkbridge:jobs-controller"
REAL_NODE_CPUS = 2
REAL_NODE_MEMORY_MB = 4000
_CRD = Path(__file__).parents[1] / "manifests" / "base" / "crds" / "sunkbridge.io_slurmjobs.yaml"


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
        self.bridge_dir = root / "bridge"

    @property
    def shared_dir(self) -> Path:
        """The job folder of the bridge: under /dev/shm, so slurmd on the host and the pods share it."""
        digest = hashlib.sha1(str(self.config.root.absolute()).encode()).hexdigest()[:10]
        return Path("/dev/shm") / f"sunk-sandbox-{digest}"

    def real_node_names(self) -> list[str]:
        """Names of the real nodes, which the bridge partition's Slurm nodes carry too."""
        return [RealNode(Site(0), i).name for i in range(1, self.config.real_nodes + 1)]

    def controller_daemon(self) -> Daemon:
        """The SlurmJob controller's background process."""
        argv = [sys.executable, "-m", "sunkbridge", "bridge", "controller",
                "--kubeconfig", str(self.bridge_dir / "controller.kubeconfig"), "--namespace", BRIDGE_NAMESPACE,
                "--slurm-conf", str(self.slurm.paths.slurm_conf), "--shared-volume", f"shared={self.shared_dir}",
                "--image-pull-policy", "Never"]
        return Daemon(name=BRIDGE_CONTROLLER, argv=argv, run_dir=self.bridge_dir)

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
                image = ensure_job_image(self.on_step)
                self.on_step(f"starting {self.config.real_nodes} real kubelet node(s) with {image}")
                self.real_nodes().up(self.config.real_nodes, images=(image,))
                self.on_step("preparing the job bridge: SlurmJob CRD, launcher and controller identities")
                self._prepare_bridge()
                controller_ready = self._start_controller()
            wanted = self._slurm_config()
            if self.slurm.is_running() and _shape(self.slurm.config) != _shape(wanted):
                self.on_step("restarting the Slurm lane for the new node set")
                self.slurm.stop()
            if not self.slurm.is_running():
                accounting = " (with slurmdbd and MariaDB)" if self.config.accounting else ""
                self.on_step(f"starting the Slurm lane{accounting}")
                lane = SlurmLane(wanted)
                if self.config.real_nodes:
                    wanted.extra_conf = self._install_interception(lane)
                self.slurm = lane.start()
            if self.config.real_nodes:
                controller_ready()
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
        stop_pidfile(self.controller_daemon().pidfile)
        if engine_ready():
            self.real_nodes().down()
        self.kube.stop()
        if purge:
            shutil.rmtree(self.shared_dir, ignore_errors=True)
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
            components.append(ComponentStatus(BRIDGE_CONTROLLER, running(self.controller_daemon().pidfile),
                                              f"SlurmJob controller: partition {BRIDGE_PARTITION} jobs run as "
                                              f"pods on the real nodes; log {self.controller_daemon().log}"))
        pools: dict[str, int] = {}
        if self.kube.daemon_running("kube-apiserver"):
            try:
                pools = self._pool_counts()
            except Exception as exc:  # the apiserver answered /readyz but not this; report, don't fail
                components.append(ComponentStatus("kube-api", False, str(exc)))
        return SandboxStatus(components, pools, self.env())

    # -- the job bridge ------------------------------------------------------------------------------------

    def _slurm_config(self) -> SlurmLaneConfig:
        """The Slurm lane's shape: the simulated GPU nodes, plus with real nodes the bridge partition."""
        nodes, partitions = default_nodes(), default_partitions()
        names = tuple(self.real_node_names())
        if names:
            nodes += tuple(NodeSpec(n, cpus=REAL_NODE_CPUS, memory_mb=REAL_NODE_MEMORY_MB) for n in names)
            partitions += (PartitionSpec(BRIDGE_PARTITION, names),)
        return SlurmLaneConfig(base_dir=self.config.root / "slurm", nodes=nodes, partitions=partitions,
                               accounting=self.config.accounting)

    def _kubectl(self, *args: str, stdin: str | None = None) -> None:
        argv = [str(self.kube.kubectl()), f"--kubeconfig={self.kube.kubeconfig}", *args]
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise LaneError(f"`kubectl {' '.join(args)}` failed: {proc.stderr.strip()}; check the apiserver log "
                            f"{self.kube.base / 'logs' / 'kube-apiserver.log'}")

    def _prepare_bridge(self) -> None:
        """SlurmJob CRD, the launcher's token kubeconfig and the controller's certificate and Role."""
        from sunkbridge.jobs.identity import controller_node_reader, controller_role, write_launcher_kubeconfig
        from sunkbridge.k8s.client import api_client

        self.bridge_dir.mkdir(parents=True, exist_ok=True)
        self.shared_dir.mkdir(exist_ok=True)
        self.shared_dir.chmod(0o1777)
        self._kubectl("apply", "-f", str(_CRD))
        self._kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/slurmjobs.sunkbridge.io")
        role = controller_role(BRIDGE_NAMESPACE)
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": role["metadata"]["name"], "namespace": BRIDGE_NAMESPACE},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": role["metadata"]["name"]},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": CONTROLLER_USER}]}
        reader = controller_node_reader()
        node_binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                        "metadata": {"name": reader["metadata"]["name"]},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                    "name": reader["metadata"]["name"]},
                        "subjects": binding["subjects"]}
        self._kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([role, binding, reader, node_binding]))
        ca = pki.KeyPair(self.kube.pki_dir / "ca.crt", self.kube.pki_dir / "ca.key")
        cert = pki.issue(ca, self.bridge_dir, "controller", CONTROLLER_USER)
        kubeconfig = self.bridge_dir / "controller.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(_cert_kubeconfig(self.kube.server, ca.cert, cert, CONTROLLER_USER)))
        kubeconfig.chmod(0o600)
        # A fresh token on every `up`: the launcher reads the file for each job.
        with api_client(self.kube.kubeconfig) as api:
            write_launcher_kubeconfig(api, BRIDGE_NAMESPACE, self.kube.server, ca.cert,
                                      self.bridge_dir / "launcher.kubeconfig", expiration_seconds=7 * 86400)

    def _install_interception(self, lane: SlurmLane) -> dict[str, str]:
        """job_submit.lua, the launcher command and the pyxis-option SPANK plugin; the slurm.conf lines."""
        from sunkbridge.jobs.install import build_spank_plugin, install, launcher_command

        launcher = launcher_command(self.bridge_dir / "launcher.kubeconfig", BRIDGE_NAMESPACE,
                                    lane.config.cluster_name, default_image=JOB_IMAGE)
        default = next(p.name for p in lane.config.partitions if p.default)
        return install(lane.paths.etc, lane.config.cluster_name, [BRIDGE_PARTITION], default, launcher,
                       build_spank_plugin(self.bridge_dir / "spank"))

    def _start_controller(self) -> Callable[[], None]:
        """Start the controller unless it runs (it needs slurm.conf only later, to collect pods); return
        what waits until it has listed SlurmJobs and pods."""
        from sunkbridge.jobs.serve import READY_LINE

        daemon = self.controller_daemon()
        if running(daemon.pidfile):
            return lambda: None
        self.on_step("starting the SlurmJob controller (sunk bridge controller)")
        offset = daemon.log.stat().st_size if daemon.log.exists() else 0

        def ready() -> bool:
            with daemon.log.open("rb") as log:
                log.seek(offset)
                return READY_LINE.encode() in log.read()
        daemon.start()
        return lambda: wait_until(ready, 60, "the SlurmJob controller to list SlurmJobs and pods", daemon)

    def _pool_counts(self) -> dict[str, int]:
        from sunkbridge.k8s.client import core_api

        counts: dict[str, int] = {}
        for node in core_api(self.kube.kubeconfig).list_node(label_selector=POOL_LABEL).items:
            pool = node.metadata.labels[POOL_LABEL]
            counts[pool] = counts.get(pool, 0) + 1
        return counts


def _shape(config: SlurmLaneConfig) -> tuple[object, ...]:
    """What a running Slurm lane must match to be reused: its nodes, partitions and accounting."""
    return (config.nodes, config.partitions, config.accounting)


def _cert_kubeconfig(server: str, ca: Path, cert: pki.KeyPair, user: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "sunk-sandbox", "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": user, "user": {"client-certificate": str(cert.cert), "client-key": str(cert.key)}}],
            "contexts": [{"name": "sunk-sandbox", "context": {"cluster": "sunk-sandbox", "user": user,
                                                              "namespace": BRIDGE_NAMESPACE}}],
            "current-context": "sunk-sandbox"}


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


__all__ = ["BRIDGE_PARTITION", "LaneError", "Sandbox", "SandboxConfig", "SandboxStatus", "load_config"]
