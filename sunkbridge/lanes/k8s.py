"""The Kubernetes lane: etcd, kube-apiserver, controller-manager, scheduler and KWOK on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sunkbridge.k8s import binaries
from sunkbridge.k8s.pools import KWOK_ANNOTATION, PoolSpec, pool_manifests
from sunkbridge.lanes import pki
from sunkbridge.lanes.daemons import Daemon, LaneError, require_ports, running, stop_pidfile, wait_until

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.192.0.0/12"
# KWOK's stock stages, read from its module: nodes become Ready and keep a lease; pods are created,
# become Ready, complete (Job pods) and are deleted.
_KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/general/pod-create.yaml",
    "kustomize/stage/pod/general/pod-init-container-running.yaml",
    "kustomize/stage/pod/general/pod-init-container-completed.yaml",
    "kustomize/stage/pod/general/pod-ready.yaml",
    "kustomize/stage/pod/general/pod-complete.yaml",
    "kustomize/stage/pod/general/pod-delete.yaml",
)
FEATURE_GATES = {"PodLogsQuerySplitStreams": True}
"""Alpha gates the lane turns on: a job's stdout and stderr read apart, for sbatch's separate `--error` file."""

DAEMONS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass
class KubeLaneConfig:
    """Where the lane lives and which loopback ports it takes."""

    base_dir: Path
    api_port: int = 6443
    etcd_port: int = 2379
    etcd_peer_port: int = 2380
    pod_api_ip: str | None = None
    """A host address where pods of real nodes reach the kube-apiserver (e.g. a site's DNS address on the
    loopback device): the apiserver then listens on every address, and its certificate names this one too.
    Without it the apiserver listens on 127.0.0.1 only, out of pods' reach (the lane runs no kube-proxy)."""


@dataclass
class KubeLane:
    """A real Kubernetes control plane built from the official Go modules, with KWOK-simulated nodes."""

    config: KubeLaneConfig
    on_step: Callable[[str], None] = field(default=lambda _s: None)

    @property
    def base(self) -> Path:
        return self.config.base_dir

    @property
    def pki_dir(self) -> Path:
        return self.base / "pki"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters)."""
        return self.base / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.config.api_port}"

    def env(self) -> dict[str, str]:
        """Environment for clients of this lane (kubectl, the Python client)."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self) -> Path:
        """The kubectl built with the control plane."""
        return binaries.KUBERNETES.path("kubectl")

    # -- lifecycle -------------------------------------------------------------------------------------

    def daemon_running(self, name: str) -> bool:
        """True when the lane's daemon `name` is alive."""
        return running(self._daemon_pidfile(name))

    def is_running(self) -> bool:
        """True when every daemon of the lane is alive."""
        return all(running(self._daemon_pidfile(name)) for name in DAEMONS)

    def start(self) -> None:
        """Build what is missing, then start etcd, the apiserver, controllers and KWOK; idempotent."""
        if self.is_running():
            return
        self.stop()
        binaries.build_all(self.on_step)
        c = self.config
        require_ports({"etcd": c.etcd_port, "etcd peers": c.etcd_peer_port, "kube-apiserver": c.api_port},
                      "--api-port/--etcd-port (or stop the other sandbox)")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "config.json").write_text(json.dumps(
            {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(c).items()}))
        try:
            self._write_pki()
            self._start_etcd()
            self._start_apiserver()
            self._start_controllers()
            self._start_kwok()
            self._wait_for_default_service_account()
        except BaseException:
            self.stop()
            raise

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same data; returns once it is ready."""
        stop_pidfile(self._daemon_pidfile("kube-apiserver"))
        self._start_apiserver()

    def stop(self) -> None:
        """Stop every daemon of the lane (in reverse order); data stays on disk."""
        for name in reversed(DAEMONS):
            stop_pidfile(self._daemon_pidfile(name))

    def destroy(self) -> None:
        """Stop the lane and delete its folder."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- pieces ----------------------------------------------------------------------------------------

    def _daemon_pidfile(self, name: str) -> Path:
        return self.base / "pids" / f"{name}.pid"

    def _daemon(self, name: str, argv: list[str]) -> Daemon:
        return Daemon(name=name, argv=argv, run_dir=self.base)

    def _write_pki(self) -> None:
        d = self.pki_dir
        ca = pki.make_ca(d)
        pki.issue(ca, d, "apiserver", "kube-apiserver", server=True, client=False,
                  dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                             "kubernetes.default.svc.cluster.local"),
                  ip_addresses=("127.0.0.1", "10.96.0.1", *filter(None, [self.config.pod_api_ip])))
        pki.service_account_key(d)
        identities = {
            "admin": ("sunk-admin", "system:masters"),
            "controller-manager": ("system:kube-controller-manager", None),
            "scheduler": ("system:kube-scheduler", None),
            "kwok": ("sunk-kwok", "system:masters"),
        }
        for stem, (cn, org) in identities.items():
            pair = pki.issue(ca, d, stem, cn, organization=org)
            path = self.kubeconfig if stem == "admin" else self.base / f"{stem}.kubeconfig"
            path.write_text(yaml.safe_dump(self._kubeconfig_doc(ca, pair, stem)))
            path.chmod(0o600)

    def _kubeconfig_doc(self, ca: pki.KeyPair, client: pki.KeyPair, user: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "sunk-sandbox",
                          "cluster": {"server": self.server, "certificate-authority": str(ca.cert)}}],
            "users": [{"name": user,
                       "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}],
            "contexts": [{"name": "sunk-sandbox", "context": {"cluster": "sunk-sandbox", "user": user}}],
            "current-context": "sunk-sandbox",
        }

    def _start_etcd(self) -> None:
        c = self.config
        client_url = f"http://127.0.0.1:{c.etcd_port}"
        peer_url = f"http://127.0.0.1:{c.etcd_peer_port}"
        daemon = self._daemon("etcd", [
            str(binaries.ETCD.path("etcd")), "--name=sunk", f"--data-dir={self.base / 'etcd'}",
            f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=sunk={peer_url}", "--unsafe-no-fsync=true",
            "--quota-backend-bytes=8589934592", "--log-level=warn", "--listen-metrics-urls=",
        ])
        self.on_step("starting etcd")
        daemon.start()
        wait_until(lambda: _http_ok(f"{client_url}/health"), 60, "etcd to report healthy", daemon)

    def _start_apiserver(self) -> None:
        c, d = self.config, self.pki_dir
        daemon = self._daemon("kube-apiserver", [
            str(binaries.KUBERNETES.path("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{c.etcd_port}",
            f"--bind-address={'0.0.0.0' if c.pod_api_ip else '127.0.0.1'}", "--advertise-address=127.0.0.1",
            f"--secure-port={c.api_port}",
            f"--tls-cert-file={d / 'apiserver.crt'}", f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            f"--service-account-key-file={d / 'sa.key'}", f"--service-account-signing-key-file={d / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
            "--allow-privileged=true", "--endpoint-reconciler-type=none",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={d / 'admin.crt'}", f"--kubelet-client-key={d / 'admin.key'}",
            "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
            "--enable-priority-and-fairness=false", "--profiling=false", "--v=1",
            "--feature-gates=" + ",".join(f"{k}={str(v).lower()}" for k, v in sorted(FEATURE_GATES.items())),
        ])
        self.on_step("starting kube-apiserver")
        daemon.start()
        wait_until(self._apiserver_ready, 120, "kube-apiserver /readyz", daemon, interval=0.5)

    def _apiserver_ready(self) -> bool:
        d = self.pki_dir
        return _https_ok(f"{self.server}/readyz", d / "ca.crt", d / "admin.crt", d / "admin.key")

    def _start_controllers(self) -> None:
        d = self.pki_dir
        cm_kubeconfig = self.base / "controller-manager.kubeconfig"
        self._daemon("kube-controller-manager", [
            str(binaries.KUBERNETES.path("kube-controller-manager")),
            f"--kubeconfig={cm_kubeconfig}", f"--authentication-kubeconfig={cm_kubeconfig}",
            f"--authorization-kubeconfig={cm_kubeconfig}",
            "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={d / 'sa.key'}", f"--root-ca-file={d / 'ca.crt'}",
            f"--cluster-signing-cert-file={d / 'ca.crt'}", f"--cluster-signing-key-file={d / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--kube-api-qps=500", "--kube-api-burst=1000",
            "--concurrent-job-syncs=20", "--v=1",
        ]).start()
        sched_kubeconfig = self.base / "scheduler.kubeconfig"
        self._daemon("kube-scheduler", [
            str(binaries.KUBERNETES.path("kube-scheduler")),
            f"--kubeconfig={sched_kubeconfig}", f"--authentication-kubeconfig={sched_kubeconfig}",
            f"--authorization-kubeconfig={sched_kubeconfig}",
            "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
            "--kube-api-qps=500", "--kube-api-burst=1000", "--v=1",
        ]).start()
        self.on_step("started kube-controller-manager and kube-scheduler")

    def _start_kwok(self) -> None:
        stages = self.base / "kwok-stages.yaml"
        stages.write_text("\n---\n".join(kwok_stage_documents()))
        self._daemon("kwok", [
            str(binaries.KWOK.path("kwok")), f"--kubeconfig={self.base / 'kwok.kubeconfig'}",
            f"--config={stages}", "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            "--node-lease-duration-seconds=40", f"--cidr={POD_CIDR}", "--node-ip=10.255.255.254",
        ]).start()
        self.on_step("started kwok")

    def _wait_for_default_service_account(self) -> None:
        kubectl = str(self.kubectl())

        def ready() -> bool:
            proc = subprocess.run([kubectl, f"--kubeconfig={self.kubeconfig}", "get", "serviceaccount",
                                   "default", "-n", "default", "-o", "name"], capture_output=True, text=True)
            return proc.returncode == 0
        cm = self._daemon("kube-controller-manager", [])
        wait_until(ready, 90, "the default ServiceAccount (kube-controller-manager)", cm, interval=0.5)

    # -- pools -----------------------------------------------------------------------------------------

    def add_pools(self, pools: Iterable[PoolSpec], workers: int = 16) -> int:
        """Create the Node objects of `pools` (existing ones are kept); returns how many were created."""
        from sunkbridge.k8s.client import core_api

        api = core_api(self.kubeconfig)
        manifests = [m for pool in pools for m in pool_manifests(pool)]

        def create(manifest: dict[str, Any]) -> int:
            from kubernetes.client.exceptions import ApiException

            try:
                api.create_node(manifest)
            except ApiException as exc:
                if exc.status == 409:
                    return 0
                raise LaneError(f"creating node {manifest['metadata']['name']} failed: "
                                f"{exc.status} {exc.reason}") from exc
            return 1

        with ThreadPoolExecutor(max_workers=workers) as pool_exec:
            return sum(pool_exec.map(create, manifests))

    def wait_nodes_ready(self, names: set[str], timeout: float = 300) -> None:
        """Wait until every named node reports Ready."""
        from sunkbridge.k8s.client import core_api

        api = core_api(self.kubeconfig)

        def all_ready() -> bool:
            ready = {n.metadata.name for n in api.list_node(label_selector="type=kwok").items
                     if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))}
            return names <= ready
        wait_until(all_ready, timeout, f"{len(names)} nodes to become Ready (kwok)",
                   self._daemon("kwok", []), interval=1.0)


def kwok_stage_documents(version: str = binaries.KWOK_VERSION) -> list[str]:
    """KWOK's stock Stage objects, read from its Go module (downloaded through the module proxy)."""
    proc = subprocess.run(["go", "mod", "download", "-json", f"sigs.k8s.io/kwok@{version}"],
                          capture_output=True, text=True, env={**os.environ, "GOFLAGS": "-mod=mod"})
    if proc.returncode != 0:
        raise LaneError(f"could not fetch kwok {version}'s stage definitions from the Go module proxy: "
                        f"{proc.stderr.strip() or proc.stdout.strip()}")
    module_dir = Path(json.loads(proc.stdout)["Dir"])
    return [(module_dir / rel).read_text() for rel in _KWOK_STAGE_FILES]


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _https_ok(url: str, ca: Path, cert: Path, key: Path) -> bool:
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
