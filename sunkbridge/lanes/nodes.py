"""Real Kubernetes worker nodes: kubelet + containerd + runc in privileged containers on the host network.

Each node is a privileged container of `local/sunk-kube-node` with its own mount and PID namespaces, its
own containerd (state on a host folder, so overlayfs is not stacked on overlayfs), its own cgroup root and
its own CNI bridge and pod subnet, but the host's network namespace. That keeps the control plane on
loopback (kubelets reach https://127.0.0.1), gives every pod a real network namespace, and routes pod
traffic between nodes through the host's connected routes between the node bridges. CoreDNS, built from
Go modules, runs on the host at the site's DNS address (on the loopback device, which pods reach through
their bridge gateway) and serves the cluster's Services.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sunkbridge.images.base import ensure_base, image_exists
from sunkbridge.images.engine import ensure_engine
from sunkbridge.k8s import binaries
from sunkbridge.k8s.pools import POOL_LABEL
from sunkbridge.lanes import pki
from sunkbridge.lanes.daemons import Daemon, LaneError, running, stop_pidfile, wait_until
from sunkbridge.lanes.k8s import FEATURE_GATES, KubeLane

NODE_IMAGE = "local/sunk-kube-node:1"
PAUSE_IMAGE = "local/pause:1"
REAL_POOL = "real"
_IMAGE_DIR = Path(__file__).parent / "node_image"
# Everything `--privileged` gives, spelled out: on hosts whose bounding set lacks a capability (here
# CAP_SYS_RESOURCE) `--privileged` cannot start at all, while ALL-minus-that works.
_NODE_PRIVILEGES = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "-v", "/dev:/dev",
)


@dataclass(frozen=True)
class Site:
    """The addresses of one set of real nodes; sites 0-5 coexist on one host (the sandbox uses 0)."""

    number: int = 0
    prefix: str = "sunk-node-"

    def __post_init__(self) -> None:
        if not 0 <= self.number <= 5:  # pod supernets 10.244-10.249/16; node addresses are 10.250.<site>.x
            raise ValueError(f"site {self.number} is out of range 0-5")

    @property
    def pod_supernet(self) -> str:
        return f"10.{244 + self.number}.0.0/16"

    @property
    def dns_ip(self) -> str:
        """The cluster DNS address (on the host's loopback device, reached by pods via their gateway)."""
        return f"10.250.{self.number}.253"


@dataclass(frozen=True)
class RealNode:
    """One worker node: its name, index and pod subnet."""

    site: Site
    index: int

    @property
    def name(self) -> str:
        return f"{self.site.prefix}{self.index}"

    @property
    def pod_cidr(self) -> str:
        return f"10.{244 + self.site.number}.{self.index}.0/24"

    @property
    def bridge(self) -> str:
        return f"sunk{self.site.number}br{self.index}"

    @property
    def node_ip(self) -> str:
        """A host address on the loopback device that stands for this node (kubelets refuse 127/8)."""
        return f"10.250.{self.site.number}.{self.index}"

    @property
    def cgroup_root(self) -> str:
        return f"/{self.name}"


def kubelet_config(node: RealNode) -> dict[str, Any]:
    """The KubeletConfiguration of `node` (paths as seen inside the node container)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.node_ip,
        "port": 10250,
        "healthzPort": 0,
        "readOnlyPort": 0,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": "/etc/sunk-node/ca.crt"}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": "/etc/sunk-node/kubelet-serving.crt",
        "tlsPrivateKeyFile": "/etc/sunk-node/kubelet-serving.key",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "failCgroupV1": False,
        "featureGates": dict(FEATURE_GATES),
        "failSwapOn": False,
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "clusterDNS": [node.site.dns_ip],
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/sunk-node/resolv.conf",
        "podCIDR": node.pod_cidr,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "syncFrequency": "10s",
        "staticPodPath": "",
        "maxPods": 110,
    }


def cni_config(node: RealNode) -> dict[str, Any]:
    """The CNI network of `node`: its own bridge and host-local subnet, no masquerading."""
    return {
        "cniVersion": "1.0.0",
        "name": node.name,
        "plugins": [
            {"type": "bridge", "bridge": node.bridge, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": node.pod_cidr}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "loopback"},
        ],
    }


def containerd_config() -> str:
    """containerd 2.x configuration: runc with cgroupfs, Debian's CNI plugins, the local pause image."""
    return f"""version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "docker.io/{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_unprivileged_ports = true
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which node containers do not have here.
  restrict_oom_score_adj = true

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "/etc/sunk-node/cni"
"""


def corefile(kubeconfig: Path, dns_ip: str) -> str:
    """CoreDNS serving cluster.local from the apiserver, bound to the cluster DNS address only."""
    return f""".:53 {{
    bind {dns_ip}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} sunk-sandbox
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
"""


COREDNS_RBAC: list[dict[str, Any]] = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "sunkbridge:coredns"},
     "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"]},
               {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                "verbs": ["list", "watch"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "sunkbridge:coredns"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sunkbridge:coredns"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "sunkbridge:coredns"}]},
]


def _run(argv: list[str], step: str, fix: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, input=stdin)
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise LaneError(f"{step}: `{' '.join(argv[:4])}` failed ({' | '.join(detail)}); {fix}")
    return proc.stdout.decode(errors="replace")


def _quiet(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True)


class RealNodes:
    """Adds, lists and removes real kubelet nodes of a running KubeLane."""

    def __init__(self, lane: KubeLane, site: Site | None = None,
                 on_step: Callable[[str], None] = lambda _s: None) -> None:
        self.lane = lane
        self.site = site or Site()
        self.on_step = on_step
        self.root = lane.base / f"nodes-site{self.site.number}"

    # -- images ----------------------------------------------------------------------------------------

    def ensure_images(self) -> None:
        """Build the pause and node images when missing."""
        ensure_engine()
        if not image_exists(PAUSE_IMAGE):
            self.on_step("building the pause image")
            work = self.root / "pause-build"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(_IMAGE_DIR / "pause", work)
            _run(["sh", "-c", f"cd {work} && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath "
                              "-ldflags='-s -w' -o pause ."], "building the pause binary",
                 "check that Go 1.22+ is installed")
            _run(["docker", "build", "-q", "-t", PAUSE_IMAGE, str(work)], "building the pause image",
                 "see `docker build` output above")
        if not image_exists(NODE_IMAGE):
            ensure_base("sid", on_step=self.on_step)
            self.on_step("building the node image (containerd, runc, CNI plugins from Debian sid)")
            _run(["docker", "build", "-q", "--build-arg", "SUITE=sid", "-t", NODE_IMAGE, str(_IMAGE_DIR)],
                 "building the node image", "check that Debian's mirror is reachable, then retry")

    # -- nodes -----------------------------------------------------------------------------------------

    def running_nodes(self) -> list[RealNode]:
        """The node containers that run now."""
        return self._containers(all_states=False)

    def up(self, count: int, images: tuple[str, ...] = (), ready_timeout: float = 180) -> list[RealNode]:
        """Ensure nodes 1..count run and are Ready, with `images` loaded into each; idempotent.

        On failure every node, rule and address of the site is removed again before the error is raised.
        """
        self.ensure_images()
        try:
            self._start_dns()
            for flag in ("-s", "-d"):
                _quiet(["iptables", "-D", "FORWARD", flag, self.site.pod_supernet, "-j", "ACCEPT"])
                _run(["iptables", "-I", "FORWARD", flag, self.site.pod_supernet, "-j", "ACCEPT"],
                     "allowing pod traffic between node bridges", "check that iptables works on this host")
            running_now = {n.index for n in self.running_nodes()}
            nodes = [RealNode(self.site, i) for i in range(1, count + 1)]
            for node in nodes:
                if node.index not in running_now:
                    self._start_node(node, images)
            self.wait_ready([n.name for n in nodes], ready_timeout)
        except BaseException:
            self.down()
            raise
        return nodes

    def load_image(self, image: str, nodes: list[RealNode] | None = None) -> None:
        """Copy a locally built image into each node's containerd (no registry involved)."""
        archive = self.root / "images" / (image.replace("/", "_").replace(":", "_") + ".tar")
        archive.parent.mkdir(parents=True, exist_ok=True)
        _run(["docker", "save", "-o", str(archive), image], f"saving image {image}",
             f"build it first (`docker image inspect {image}`)")
        for node in nodes or self.running_nodes():
            self.on_step(f"loading {image} into {node.name}")
            _run(["docker", "exec", "-i", node.name, "ctr", "-n", "k8s.io", "images", "import", "-"],
                 f"importing {image} into {node.name}", "check the node's containerd log",
                 stdin=archive.read_bytes())

    def wait_ready(self, names: list[str], timeout: float = 180) -> None:
        """Wait until the named nodes report Ready; fail at once when a node container exits."""
        from sunkbridge.k8s.client import core_api

        api = core_api(self.lane.kubeconfig)

        def ready() -> bool:
            running_names = {n.name for n in self.running_nodes()}
            for name in names:
                if name not in running_names:
                    raise LaneError(f"real node {name} failed to join: its container exited "
                                    f"(last log lines: {self._container_log_tail(name)}); "
                                    f"see `docker logs {name}`")
            nodes = {n.metadata.name: n for n in api.list_node(label_selector=f"{POOL_LABEL}={REAL_POOL}").items}
            return all(name in nodes and any(c.type == "Ready" and c.status == "True"
                                             for c in nodes[name].status.conditions or [])
                       for name in names)
        try:
            wait_until(ready, timeout, f"real nodes {', '.join(names)} to become Ready", interval=1.0)
        except LaneError as exc:
            if "failed to join" in str(exc):
                raise
            logs = {n: self._container_log_tail(n) for n in names}
            raise LaneError(f"{exc}; node logs: {json.dumps(logs)}; see `docker logs <node>` and "
                            f"`docker exec <node> cat /var/log/sunk-node/containerd.log`") from exc

    def down(self) -> None:
        """Remove every node container, its Node object, bridge and cgroups, CoreDNS and the rules."""
        for node in self._containers(all_states=True):
            _quiet(["docker", "rm", "-f", "-v", node.name])
            _quiet(["ip", "link", "delete", node.bridge])
            _quiet(["ip", "addr", "del", f"{node.node_ip}/32", "dev", "lo"])
            for controller in Path("/sys/fs/cgroup").glob("*/"):
                cg = controller / node.cgroup_root.lstrip("/")
                if cg.is_dir():
                    for sub in sorted(cg.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                        if sub.is_dir():
                            _quiet(["rmdir", str(sub)])
                    _quiet(["rmdir", str(cg)])
            if self.lane.daemon_running("kube-apiserver"):
                _quiet([str(self.lane.kubectl()), f"--kubeconfig={self.lane.kubeconfig}", "delete", "node",
                        node.name, "--ignore-not-found", "--wait=false"])
        stop_pidfile(self._dns_daemon().pidfile)
        _quiet(["ip", "addr", "del", f"{self.site.dns_ip}/32", "dev", "lo"])
        for flag in ("-s", "-d"):
            _quiet(["iptables", "-D", "FORWARD", flag, self.site.pod_supernet, "-j", "ACCEPT"])
        shutil.rmtree(self.root / "images", ignore_errors=True)

    def _containers(self, all_states: bool) -> list[RealNode]:
        prefix = self.site.prefix
        out = subprocess.run(["docker", "ps", *(["-a"] if all_states else []), "--filter", f"name=^{prefix}",
                              "--format", "{{.Names}}"], capture_output=True, text=True).stdout
        return sorted((RealNode(self.site, int(n.removeprefix(prefix))) for n in out.split()
                       if n.removeprefix(prefix).isdigit()), key=lambda n: n.index)

    def _container_log_tail(self, name: str) -> str:
        proc = subprocess.run(["docker", "logs", "--tail", "3", name], capture_output=True, text=True)
        return " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])

    def _start_node(self, node: RealNode, images: tuple[str, ...]) -> None:
        self.on_step(f"starting real node {node.name}")
        _add_loopback_address(node.node_ip, f"lo:sunk{self.site.number}n{node.index}")
        etc = self._write_node_config(node, images)
        containerd_dir = self.root / node.name / "containerd"
        kubelet_dir = self.root / node.name / "kubelet"
        containerd_dir.mkdir(parents=True, exist_ok=True)
        kubelet_dir.mkdir(parents=True, exist_ok=True)
        _quiet(["docker", "rm", "-f", "-v", node.name])
        _run(["docker", "run", "-d", "--name", node.name, *_NODE_PRIVILEGES, "--network", "host",
              "--cgroupns", "host", "--tmpfs", "/run", "--tmpfs", "/tmp",
              "-v", f"{etc}:/etc/sunk-node:ro",
              "-v", f"{containerd_dir}:/var/lib/containerd",
              "-v", "/var/lib/kubelet",
              "-v", f"{binaries.KUBERNETES.path('kubelet')}:/usr/local/bin/kubelet:ro",
              "-e", f"NODE_NAME={node.name}", "-e", f"NODE_IP={node.node_ip}",
              "-e", f"CGROUP_ROOT={node.cgroup_root}",
              "-e", f"NODE_LABELS={POOL_LABEL}={REAL_POOL},sunkbridge.io/real-node=true",
              "--label", "sunkbridge.io/sandbox-node=true",
              NODE_IMAGE], f"starting node container {node.name}", "see `docker logs` of the container")

    def _write_node_config(self, node: RealNode, images: tuple[str, ...]) -> Path:
        etc = self.root / node.name / "etc"
        shutil.rmtree(etc, ignore_errors=True)
        (etc / "images").mkdir(parents=True)
        ca = pki.KeyPair(self.lane.pki_dir / "ca.crt", self.lane.pki_dir / "ca.key")
        pki.issue(ca, etc, "kubelet-client", f"system:node:{node.name}", organization="system:nodes")
        pki.issue(ca, etc, "kubelet-serving", f"system:node:{node.name}", server=True, client=False,
                  dns_names=(node.name,), ip_addresses=(node.node_ip,))
        shutil.copy(ca.cert, etc / "ca.crt")
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "sunk-sandbox",
                          "cluster": {"server": self.lane.server, "certificate-authority": "/etc/sunk-node/ca.crt"}}],
            "users": [{"name": node.name, "user": {"client-certificate": "/etc/sunk-node/kubelet-client.crt",
                                                   "client-key": "/etc/sunk-node/kubelet-client.key"}}],
            "contexts": [{"name": "sunk-sandbox", "context": {"cluster": "sunk-sandbox", "user": node.name}}],
            "current-context": "sunk-sandbox",
        }
        (etc / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        (etc / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(node)))
        (etc / "containerd.toml").write_text(containerd_config())
        (etc / "resolv.conf").write_text("")
        cni = etc / "cni"
        cni.mkdir()
        (cni / "10-sunk.conflist").write_text(json.dumps(cni_config(node), indent=2))
        for image in (PAUSE_IMAGE, *images):
            archive = etc / "images" / (image.replace("/", "_").replace(":", "_") + ".tar")
            _run(["docker", "save", "-o", str(archive), image], f"saving image {image}",
                 f"build it first (`docker image inspect {image}`)")
        return etc

    # -- cluster DNS -----------------------------------------------------------------------------------

    def _dns_daemon(self) -> Daemon:
        return Daemon(name=f"coredns-site{self.site.number}", argv=[str(binaries.COREDNS.path("coredns")), "-conf",
                                            str(self.root / "Corefile")], run_dir=self.lane.base)

    def _start_dns(self) -> None:
        daemon = self._dns_daemon()
        if running(daemon.pidfile):
            return
        binaries.build(binaries.COREDNS, self.on_step)
        self.root.mkdir(parents=True, exist_ok=True)
        ca = pki.KeyPair(self.lane.pki_dir / "ca.crt", self.lane.pki_dir / "ca.key")
        cert = pki.issue(ca, self.lane.pki_dir, "coredns", "sunkbridge:coredns")
        kubeconfig = self.root / "coredns.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(self.lane._kubeconfig_doc(ca, cert, "coredns")))
        kubectl = [str(self.lane.kubectl()), f"--kubeconfig={self.lane.kubeconfig}"]
        _run([*kubectl, "apply", "-f", "-"], "granting CoreDNS read access", "check the apiserver",
             stdin=yaml.safe_dump_all(COREDNS_RBAC).encode())
        (self.root / "Corefile").write_text(corefile(kubeconfig, self.site.dns_ip))
        _add_loopback_address(self.site.dns_ip, f"lo:sunk{self.site.number}dns")
        daemon.start()
        wait_until(lambda: _dns_answers(self.site.dns_ip), 60, "CoreDNS to answer", daemon)


def _add_loopback_address(address: str, label: str) -> None:
    """Give the host `address` on the loopback device (idempotent)."""
    shown = _run(["ip", "-o", "addr", "show", "dev", "lo"], "reading the loopback device", "run as root")
    if f" {address}/" not in shown:
        _run(["ip", "addr", "add", f"{address}/32", "dev", "lo", "label", label],
             f"adding {address} to the loopback device", "run as root")


def _dns_answers(dns_ip: str) -> bool:
    import socket

    query = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x0akubernetes\x07default\x03svc\x07cluster"
             b"\x05local\x00\x00\x01\x00\x01")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        try:
            sock.sendto(query, (dns_ip, 53))
            return len(sock.recv(512)) > 12
        except OSError:
            return False
